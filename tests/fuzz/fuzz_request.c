/*
 * tests/fuzz/fuzz_request.c - what the coordinator does with the bytes of a client before it
 * touches its job table (coord/requests.c, which needs a live loop and database beyond this):
 * the stream is cut into frames (proto/frame.c, with the pre-authentication frame limit),
 * each frame decoded as an Envelope (proto/wire.c), and a SubmitRequest's spec copied (packed
 * and unpacked, as on_submit does) and put through the coordinator's checks in the order
 * on_submit runs them
 * (melbo_jobspec_check_inputs on the loop, then melbo_jobspec_validate on the worker, which
 * parses every option, resolves the model - tiny-llama3 and qwen3 are registered, from
 * MELBO_FUZZ_MODELS (tests/golden/models) - and reads its config.json), and finally
 * turned into the ranks' command line (melbo_jobspec_to_argv, as the launcher does).
 * An input starting with '#' is coord.conf text for melbo_coord_limits_parse instead.
 */
#include <assert.h>
#include <limits.h>
#include <sys/stat.h>

#include "coord/conf.h"
#include "coord/jobspec.h"
#include "coord/models.h"
#include "proto/wire.h"
#include "tests/fuzz/fuzz.h"

static void submit(const Melbo__JobSpec *spec) {
    static struct melbo_coord_limits lim;
    static char job_dir[PATH_MAX];
    if (!job_dir[0]) {
        melbo_coord_limits_defaults(&lim);
        snprintf(job_dir, sizeof job_dir, "%s/job", fuzz_dir());
        mkdir(job_dir, 0700);
        /* registered models (the seeds name them), so validation reads a real config.json */
        const char *models = getenv("MELBO_FUZZ_MODELS");
        char path[PATH_MAX];
        struct melbo_err e = {0};
        static const char *const names[][2] = {{"tiny-llama3", "llama3"}, {"qwen3", "qwen3"}};
        for (int i = 0; models && i < 2; i++) {
            snprintf(path, sizeof path, "%s/%s", models, names[i][1]);
            if (melbo_models_add(fuzz_dir(), names[i][0], path, &e) != 0)
                fprintf(stderr, "fuzz_request: %s\n", e.msg);
        }
    }
    struct melbo_err err = {0};
    if (melbo_jobspec_check_inputs(spec, &lim, &err) != 0)
        return;
    struct melbo_job_params jp;
    memset(&jp, 0, sizeof jp);
    char model[PATH_MAX];
    int ret = melbo_jobspec_validate(spec, fuzz_dir(), &jp, model, sizeof model, &err);
    melbo_job_params_free(&jp);
    if (getenv("MELBO_FUZZ_VERBOSE")) /* for whoever writes seeds: how far a spec got */
        fprintf(stderr, "fuzz_request: validate: %s\n", ret ? err.msg : "ok");
    if (ret != 0) {
        /* the model cannot resolve in an empty state directory: parse alone still runs */
        memset(&jp, 0, sizeof jp);
        ret = melbo_jobspec_parse(spec, &jp, &err);
        melbo_job_params_free(&jp);
        if (ret != 0)
            return;
    }
    struct melbo_argv av = {0};
    melbo_jobspec_to_argv(spec, job_dir, NULL, NULL, "1", &av);
    for (int i = 0; i < av.n; i++)
        assert(av.v[i] != NULL);
    melbo_argv_free(&av);
}

static void conf(const uint8_t *data, size_t size) {
    char *text = fuzz_strndup(data, size);
    struct melbo_coord_limits l;
    struct melbo_err err = {0};
    if (melbo_coord_limits_parse(&l, text, &err) == 0) {
#define CHECK_LIMIT(field, key, def, lo, hi, help) assert(l.field >= (lo) && l.field <= (hi));
        MELBO_COORD_LIMITS(CHECK_LIMIT)
#undef CHECK_LIMIT
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0; // an empty feed is the one fuzz_frame.c skips
    if (data[0] == '#') {
        conf(data, size);
        return 0;
    }
    struct melbo_frame_reader rd;
    melbo_frame_reader_init(&rd, 65536); // limits.preauth_frame_bytes' default
    if (melbo_frame_reader_feed(&rd, data, size) != 0)
        abort();
    const uint8_t *p;
    size_t len;
    while (melbo_frame_reader_next(&rd, &p, &len) == 1) {
        Melbo__Envelope *env = melbo_wire_decode(p, len);
        if (env == NULL)
            continue;
        if (env->body_case == MELBO__ENVELOPE__BODY_SUBMIT && env->submit->spec) {
            /* on_submit keeps a copy of the spec by packing and unpacking it */
            const Melbo__JobSpec *spec = env->submit->spec;
            size_t n = melbo__job_spec__get_packed_size(spec);
            uint8_t *buf = malloc(n ? n : 1);
            melbo__job_spec__pack(spec, buf);
            Melbo__JobSpec *copy = melbo__job_spec__unpack(NULL, n, buf);
            free(buf);
            if (copy) {
                submit(copy);
                melbo__job_spec__free_unpacked(copy, NULL);
            } else if (getenv("MELBO_FUZZ_VERBOSE")) {
                fprintf(stderr,
                        "fuzz_request: a spec that decodes but whose packed copy does not\n");
            }
        }
        melbo__envelope__free_unpacked(env, NULL);
    }
    melbo_frame_reader_free(&rd);
    return 0;
}
