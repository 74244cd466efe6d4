/*
 * options/train.h - everything a training job is given (the JobSpec of DESIGN §3), as one
 * table: `melbo-rank train`'s command line and --help, `melbo submit`'s flags, the coordinator's
 * job spec -> rank command line and its validation, the settings recorded in a bank and a
 * checkpoint's identity all come from MELBO_TRAIN_OPTIONS below.
 *
 * Adding a training option is one entry in MELBO_TRAIN_OPTIONS: it declares the field of
 * struct melbo_train_params and the row of its table together. The entry's flags say where the
 * value goes beyond the command line: MELBO_OPT_BANK records it in every bank's metadata (key:
 * the name with '_' for '-'), MELBO_OPT_RESULT makes it part of a checkpoint's identity,
 * MELBO_OPT_LOCAL keeps it out of `melbo submit` (the coordinator chooses it). The job spec
 * carries options by name (proto/melbo.proto JobSpec.options), so the wire needs no change.
 *
 * Defaults are DESIGN §4's (the reference code's where it has one). A default in parentheses is
 * decided by melbo_train_params_resolve once the model is known.
 */
#ifndef MELBO_OPTIONS_TRAIN_H
#define MELBO_OPTIONS_TRAIN_H

#include <stdint.h>

#include "common/err.h"
#include "options/generate.h"
#include "options/opt.h"
#include "options/prompts.h"
#include "options/slice.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --loss-axis (the index in its choices). */
enum melbo_loss_axis { MELBO_LOSS_AXIS_TOKEN = 0, MELBO_LOSS_AXIS_DIM = 1 };

/* --device (the index in its choices); AUTO is resolved where the backend is chosen. */
enum melbo_device { MELBO_DEVICE_AUTO = 0, MELBO_DEVICE_CPU = 1, MELBO_DEVICE_CUDA = 2 };

#define MELBO_TRAIN_BR (MELBO_OPT_BANK | MELBO_OPT_RESULT)

/* X(KIND, field, "name", default, check, flags, metavar, help); G(heading). See options/opt.h. */
#define MELBO_TRAIN_OPTIONS(X, G)                                                                  \
    X(PATH, model, "model", NULL, MELBO_OPT_ANY, MELBO_OPT_REQUIRED, "DIR",                        \
      "the model: a Hugging Face checkpoint directory or a .gguf file")                            \
    G("prompts (at least one; repeatable, kept in order, text prompts before id prompts):")        \
    X(PROMPTS, prompts, NULL, NULL, MELBO_OPT_ANY, 0, NULL, NULL)                                  \
    G("method (defaults as the reference code):")                                                  \
    X(INT, source_layer, "source-layer", "7", MELBO_OPT_GE(0), MELBO_TRAIN_BR, "S",                \
      "add the vector to the output of block S")                                                   \
    X(INT, target_layer, "target-layer", "(L - 8)", MELBO_OPT_GE(0), MELBO_TRAIN_BR, "T",          \
      "the objective at hidden_states[T]; S + 2 <= T <= L - 1")                                    \
    X(REAL_AUTO, radius, "radius", NULL, MELBO_OPT_GT(0), MELBO_TRAIN_BR, "R",                     \
      "norm of every vector (required for vectors), or auto: calibrated so that the target "      \
      "layer's response is lambda-nonlinear (method.md 4.1)")                                     \
    X(INT, calibration_samples, "calibration-samples", "30", MELBO_OPT_GE(1), 0, "N",              \
      "random directions for --radius auto")                                                       \
    X(REAL, calibration_lambda, "calibration-lambda", "0.5", MELBO_OPT_GT(0), 0, "L",              \
      "the nonlinearity ratio --radius auto aims for")                                             \
    X(PATH, calibration_init, "calibration-init", NULL, MELBO_OPT_ANY, 0, "FILE",                  \
      "directions for --radius auto from FILE's tensor 'directions' [n, d]")                       \
    X(REAL, p, "p", "2", MELBO_OPT_GT(0), MELBO_TRAIN_BR, "P", "objective exponent p")             \
    X(REAL, q, "q", "(p)", MELBO_OPT_GT(0), MELBO_TRAIN_BR, "Q", "objective exponent q")           \
    X(CHOICE, loss_axis, "loss-axis", "token", MELBO_OPT_CHOICES("token|dim"), MELBO_TRAIN_BR,     \
      NULL, "token: the post's formula; dim: the reference code's")                                \
    X(SLICE, target_tokens, "target-tokens", ":", MELBO_OPT_ANY, MELBO_TRAIN_BR, "SLICE",          \
      "Python slice of each prompt's positions the objective reads, e.g. -3:")                     \
    X(INT, steps, "steps", "300", MELBO_OPT_GE(0), MELBO_TRAIN_BR, "N",                            \
      "optimiser steps per vector")                                                                \
    X(INT, vectors, "vectors", "32", MELBO_OPT_GE(1), MELBO_TRAIN_BR, "N", "number of vectors")    \
    X(INT, wave, "wave", "(min(vectors, 64))", MELBO_OPT_GE(1), MELBO_TRAIN_BR, "B",               \
      "vectors trained together")                                                                  \
    X(FLAG, orthogonal, "orthogonal", "(on; off for adapters)", MELBO_OPT_ANY, MELBO_TRAIN_BR,     \
      NULL, "keep every vector exactly orthogonal to the others")                                  \
    X(REAL, lr, "lr", "1e-3", MELBO_OPT_GT(0), MELBO_TRAIN_BR, "X", "AMSGrad learning rate")       \
    X(PAIR, betas, "betas", "0.9,0.98", MELBO_OPT_IN_HI_OPEN(0, 1), MELBO_TRAIN_BR, "B1,B2",       \
      "AMSGrad betas")                                                                             \
    X(REAL, eps, "eps", "1e-8", MELBO_OPT_GT(0), MELBO_TRAIN_BR, "E", "AMSGrad epsilon")           \
    X(U64, seed, "seed", "0", MELBO_OPT_ANY, MELBO_TRAIN_BR, "S", "raw draws g_k from (seed, k)")  \
    X(PATH, init, "init", NULL, MELBO_OPT_ANY, 0, "FILE",                                          \
      "raw draws from FILE's tensor 'vectors' [N, d] (adapters: 'lora_A' [N, r, d_mlp] and "      \
      "'lora_B' [N, d, r]) instead")                                                               \
    G("adapters instead of vectors (method.md 3):")                                                \
    X(INT, adapter_rank, "adapter-rank", "0", MELBO_OPT_GE(1), MELBO_OPT_RESULT, "R",              \
      "train --vectors rank-R adapters, (alpha/R) B A added to block S's MLP output projection; "  \
      "0: steering vectors")                                                                       \
    X(REAL, adapter_alpha, "adapter-alpha", "0.35", MELBO_OPT_GT(0), MELBO_OPT_RESULT, "A",        \
      "the adapters' scale alpha (PEFT's lora_alpha)")                                             \
    G("output and restarts:")                                                                      \
    X(PATH, out, "out", NULL, MELBO_OPT_ANY, MELBO_OPT_REQUIRED | MELBO_OPT_LOCAL, "FILE",         \
      "the bank (written atomically)")                                                             \
    X(PATH, checkpoint, "checkpoint", NULL, MELBO_OPT_ANY, MELBO_OPT_LOCAL, "FILE",                \
      "rewritten every --checkpoint-every steps, at the end of every wave and on SIGUSR1")         \
    X(INT, checkpoint_every, "checkpoint-every", "50", MELBO_OPT_GE(0), 0, "N",                    \
      "steps between checkpoints (0: only at wave ends)")                                          \
    X(PATH, resume, "resume", NULL, MELBO_OPT_ANY, MELBO_OPT_LOCAL, "FILE",                        \
      "continue from a checkpoint (same model, prompts and settings)")                             \
    X(FLAG, stop_on_signal, "stop-on-signal", "0", MELBO_OPT_ANY, MELBO_OPT_LOCAL, NULL,           \
      "after the SIGUSR1 checkpoint, stop with exit status 75 (batch jobs near their time "        \
      "limit; resume with --resume)")                                                              \
    X(STR, job_id, "job-id", "", MELBO_OPT_ANY, MELBO_OPT_LOCAL | MELBO_OPT_HIDDEN, "ID",          \
      "recorded in the bank (the coordinator's job)")                                              \
    G("machine:")                                                                                  \
    X(INT, threads, "threads", "(OMP_NUM_THREADS)", MELBO_OPT_GE(1), 0, "N", "CPU threads")        \
    X(CHOICE, device, "device", "auto", MELBO_OPT_CHOICES("auto|cpu|cuda,gpu"), 0, NULL,           \
      "backend; auto: cuda when a GPU is visible")                                                 \
    X(CHOICE, gpu_bf16, "dtype", "bf16", MELBO_OPT_CHOICES("fp32|bf16"), 0, NULL,                  \
      "GPU weights and activations (fp32 matches the CPU backend to ~1e-5)")                       \
    X(INT, tp, "tp", "1", MELBO_OPT_IN(1, 4096), 0, "T",                                           \
      "tensor-parallel ranks (run under mpirun -np T*D)")                                          \
    X(INT, dp, "dp", "1", MELBO_OPT_IN(1, 4096), 0, "D", "data-parallel groups")                   \
    G("completions (after training, written into the bank):")                                      \
    X(FLAG, generate, "generate", "1", MELBO_OPT_ANY, 0, NULL,                                     \
      "generate every prompt's completion under every vector")                                     \
    X(INT, random_baselines, "random-baselines", "4", MELBO_OPT_GE(0), 0, "K",                     \
      "random vectors of norm R, never trained, as controls")                                      \
    G("sweeps (options/sweep.h):")                                                                 \
    X(LIST, sweep, "sweep", NULL, MELBO_OPT_ANY, 0, "NAME=V1,V2,...",                             \
      "one run per combination of the values of every --sweep (numeric options; the model is "     \
      "loaded once, one bank per point, out.pK.bank.safetensors); overrides a plain --NAME")

struct melbo_train_params {
    MELBO_TRAIN_OPTIONS(MELBO_OPT_FIELD, MELBO_OPT_NO_HEADING)
    struct melbo_gen_settings gen;  // decoding settings of the completions (options/generate.h)
    int rank, tp_rank, dp_rank;     // this process's place (set from the communicator)
};

/* The table of struct melbo_train_params (its rows, then the decoding table). */
extern const struct melbo_opt_table melbo_train_table;

/* Defaults. Free with melbo_train_params_free. */
void melbo_train_params_init(struct melbo_train_params *p);
void melbo_train_params_free(struct melbo_train_params *p);
/* dst (uninitialised) becomes an independent copy of src (free both). */
void melbo_train_params_copy(struct melbo_train_params *dst, const struct melbo_train_params *src);

/*
 * Parses `melbo-rank train` options (argv[0] is "train") into p (defaults first). Returns 0,
 * 1 if --help was given (print melbo_train_usage), or a negative code with err naming the bad
 * option or value. Checks everything that needs no model (ranges that depend on the model are
 * checked by melbo_train_params_resolve).
 */
int melbo_train_params_parse(struct melbo_train_params *p, int argc, char **argv,
                             struct melbo_err *err);

/* The checks across options that need no model (at least one prompt); parse runs it. */
int melbo_train_params_check(const struct melbo_train_params *p, struct melbo_err *err);

/*
 * Resolves the defaults that need the model of L layers and width d (target layer, q, wave)
 * and checks the layers and the vector count against it. Writes only into p.
 */
int melbo_train_params_resolve(struct melbo_train_params *p, int n_layers, int d_model, int d_mlp,
                               struct melbo_err *err);

void melbo_train_usage(void);

#ifdef __cplusplus
}
#endif
#endif
