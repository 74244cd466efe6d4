/*
 * coord/models.h - the models a job may name: directories (or .gguf files) an admin registered,
 * never a path a user chose. Two sources, both read at every submit, so a change needs no
 * restart:
 *
 *   model_root=PATH   lines of STATE/coord.conf (repeatable): any model under PATH
 *   STATE/models      (0600) "NAME<TAB>PATH" lines written by `melbo-coord model add NAME PATH`
 *
 * `melbo submit --model NAME` names a registered model; `--model PATH` must lie under a root
 * once symlinks and ".." are resolved (realpath). Anything else - a missing path, an existing
 * one outside the roots, a file the user could not read - gets one message that does not say
 * whether the path exists.
 *
 * Everything here opens files: call it from a worker thread (uv_queue_work), not the loop.
 * Layer: a leaf (common/, rank/model/config.h).
 */
#ifndef MELBO_COORD_MODELS_H
#define MELBO_COORD_MODELS_H

#include <stddef.h>

#include "common/err.h"

struct melbo_model_config;

#define MELBO_MODEL_CONFIG_MAX (16u * 1024u * 1024u)  // bytes of a config.json read at submit

/* 1 if name is a valid registered-model name ([A-Za-z0-9._-], 1..64, not starting with '.'). */
int melbo_model_name_valid(const char *name);

/*
 * `melbo-coord model add NAME PATH`: records NAME -> realpath(PATH) in STATE/models (0600,
 * rewritten atomically; an existing NAME is replaced). Works while the coordinator is stopped.
 * Returns 0, or MELBO_EINVAL / MELBO_ENOENT / MELBO_EIO with err set.
 */
int melbo_models_add(const char *state, const char *name, const char *path,
                     struct melbo_err *err);

/*
 * Resolves a job's --model value against STATE's roots and names into out (n bytes, a real
 * path) and the root it lies under into root (n bytes). Returns 0, or MELBO_EINVAL with err
 * "--model X is not a registered model or under a model root" whatever the reason.
 */
int melbo_models_resolve(const char *state, const char *given, char *out, char *root, size_t n,
                         struct melbo_err *err);

/*
 * The config of the resolved model at path (under root): DIR/config.json read as a regular file
 * of at most MELBO_MODEL_CONFIG_MAX bytes whose real path is still under root, or a .gguf
 * regular file's metadata. A FIFO, a device or an oversized file is refused without being read.
 * Returns 0 or a negative code with err set.
 */
int melbo_models_config(const char *path, const char *root, struct melbo_model_config *cfg,
                        struct melbo_err *err);

#endif
