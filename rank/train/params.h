/*
 * rank/train/params.h - everything a training job is given (the JobSpec of DESIGN §3), its
 * defaults (DESIGN §4) and `melbo-rank train`'s command line.
 *
 * Prompts come as text (the tokenizer's --prompt/--raw-prompt/--prompts, rendered with the
 * model's chat template) and/or as token ids (--prompt-ids 1,2,3, repeatable); text prompts come
 * first, in the order given, then id prompts.
 */
#ifndef MELBO_RANK_TRAIN_PARAMS_H
#define MELBO_RANK_TRAIN_PARAMS_H

#include <stdint.h>

#include "common/err.h"
#include "rank/generate/settings.h"
#include "rank/tokenizer/prompt.h"
#include "rank/train/objective.h"
#include "rank/train/slice.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_train_params {
    char *model;                    // checkpoint directory
    struct melbo_prompt_opts text;  // text prompts (tokenizer)
    int n_id_prompts;
    int32_t **id_prompts;           // (n_id_prompts) arrays, owned
    int *id_lens;                   // (n_id_prompts)
    int source_layer;               // s; -1 = default 7
    int target_layer;               // t; -1 = default L - 8
    double radius;                  // R; required (> 0), or found by --radius auto
    int radius_auto;                // --radius auto: calibrate (rank/train/calibrate.h)
    int calibration_samples;        // directions (30)
    double calibration_lambda;      // target nonlinearity ratio (0.5)
    char *calibration_init;         // directions from a file's 'directions' [n, d], or NULL
    double p, q;                    // q < 0: defaults to p
    enum melbo_loss_axis loss_axis;
    struct melbo_slice target_tokens;
    int steps;                      // 300
    int vectors;                    // N = 32
    int wave;                       // B; 0 = min(vectors, 64)
    int orthogonal;                 // 1
    double lr, beta1, beta2, eps;   // 1e-3, 0.9, 0.98, 1e-8
    uint64_t seed;                  // 0
    char *init;                     // raw draws file, or NULL
    char *out;                      // bank path
    char *checkpoint;               // checkpoint path, or NULL
    int checkpoint_every;           // steps between checkpoints (0: only at wave ends)
    char *resume;                   // checkpoint to resume from, or NULL
    int stop_on_signal;             // after the SIGUSR1 checkpoint, stop (exit status 75)
    int threads;                    // 0 = OMP default
    int device;                     // MELBO_DEVICE_* (--device; auto: cuda when a GPU is seen)
    int gpu_bf16;                   // --dtype on cuda: 1 bf16 (default), 0 fp32
    int tp, dp;                     // tensor- and data-parallel sizes (--tp, --dp; 1)
    int rank, tp_rank, dp_rank;     // this process's place (set by cmd_train from the comm)
    char *job_id;                   // recorded in the bank, "" standalone
    /* completions after training (rank/generate/) */
    int generate;                   // 1: write completions into the bank (--no-generate: 0)
    int random_baselines;           // K random vectors of norm R, never trained (4)
    struct melbo_gen_settings gen;  // decoding settings
};

/* --device values; AUTO is resolved by melbo_device_resolve before the model is loaded. */
enum { MELBO_DEVICE_AUTO = 0, MELBO_DEVICE_CPU = 1, MELBO_DEVICE_CUDA = 2 };

/* Parses "cpu" / "cuda" into *device; MELBO_EINVAL naming the value otherwise. */
int melbo_device_parse(const char *s, int *device, struct melbo_err *err);
/* Parses --dtype "bf16" (*bf16 = 1) or "fp32" (*bf16 = 0); MELBO_EINVAL naming the value. */
int melbo_dtype_flag_parse(const char *s, int *bf16, struct melbo_err *err);
/* AUTO -> CUDA when this build has the CUDA backend and a device is visible, else CPU; CUDA in a
 * build without the backend is refused with a message. */
int melbo_device_resolve(int *device, struct melbo_err *err);

void melbo_train_params_init(struct melbo_train_params *p);
void melbo_train_params_free(struct melbo_train_params *p);

/*
 * Parses `melbo-rank train` options (argv[0] is "train"). Returns 0, 1 if --help was printed,
 * or a negative code with err naming the bad option or value. Checks only what needs no model
 * (ranges that depend on the model are checked by melbo_train_params_check).
 */
int melbo_train_params_parse(struct melbo_train_params *p, int argc, char **argv,
                             struct melbo_err *err);

/* Resolves defaults that need the model (layers, wave, q) and checks them against it. */
int melbo_train_params_resolve(struct melbo_train_params *p, int n_layers, int d_model,
                               struct melbo_err *err);

void melbo_train_usage(void);

/* Parses "1,2,3" (non-negative ids) into a new array (*out, caller frees). 0, or -1 if malformed
 * or empty. */
int melbo_parse_id_list(const char *s, int32_t **out, int *n_out);

#ifdef __cplusplus
}
#endif
#endif
