/*
 * rank/train/trainer.h - MELBO training in waves on the CPU backend (DESIGN §3-§4).
 *
 *   prefix  blocks 0..s once per prompt -> X (hidden_states[s+1]); blocks s+1..t-1 on X -> Y
 *   wave    B vectors; every step runs blocks s+1..t-1 on X + theta_b for every (vector, prompt)
 *           pair as one packed batch, the objective at hidden_states[t], the input-gradient
 *           backward to X, the sum over positions, and the update of rank/train/optim.h
 *
 * Nothing above block t-1 and no LM head is computed. The trainer owns the model, the cached
 * prefix, the optimiser state and the results; melbo_trainer_run fills vectors and objective.
 */
#ifndef MELBO_RANK_TRAIN_TRAINER_H
#define MELBO_RANK_TRAIN_TRAINER_H

#include <signal.h>
#include <stdint.h>

#include "common/err.h"
#include "nccl/comm.h"
#include "rank/cpu/span.h"
#include "rank/model/model.h"
#include "rank/tokenizer/tokenizer.h"
#include "rank/train/calibrate.h"
#include "rank/train/observer.h"
#include "rank/train/params.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_trainer {
    struct melbo_train_params *p;   // borrowed
    struct melbo_comm *comm;        // borrowed; NULL standalone (one process)
    int rank0;                      // 1 on the rank that prints and writes files
    struct melbo_model model;       // blocks [0, t) and the embedding
    char fingerprint[65];           // DESIGN §4 model_fingerprint
    char model_name[256];
    int L, d, s, t, N, B, steps;

    /* prompts */
    int P;                          // number of prompts
    int *lens;                      // (P)
    int32_t **ids;                  // (P) each (lens[p]), owned
    char **texts;                   // (P) rendered text, "" for id prompts, owned
    char chat_format[32];           // format used for text prompts, or "none"
    int **idx;                      // (P) target positions, owned
    int *n_idx;                     // (P)
    struct melbo_seqs pseqs;        // the P prompts packed
    float *X;                       // (n_ptok, d) hidden_states[s+1], unsteered
    float *Y;                       // (n_ptok, d) hidden_states[t], unsteered

    /* raw draws from --init, or NULL for the generator */
    float *init_draws;              // (N, d)

    /* results and optimiser state */
    float *vectors;                 // (N, d); rows [0, n_done) finished
    float *objective;               // (N, steps) F before each update, summed over prompts
    int n_done;                     // finished vectors
    int wave_step;                  // steps done in the current wave
    int wave_B;                     // size of the current wave
    float *theta, *m, *v, *vhat;    // (B, d) the current wave
    float *grad;                    // (B, d) dLoss/dtheta of the last step

    /* step buffers, sized for B * sum(lens) tokens; this DP rank's pairs [k0, k1) of a wave */
    int pair_B, pair_k0, pair_k1;   // what wseqs was built for
    struct melbo_seqs wseqs;
    struct melbo_cpu_span span;
    float *buf;                     // (wave tokens, d) activations
    float *dbuf;                    // (wave tokens, d) gradients
    double *scratch;                // (d)
    double t_load;                  // seconds spent loading and on the prefix

    /* completions (melbo_trainer_generate) */
    struct melbo_tokenizer *tok;    // for decoding text, or NULL when the model has none
    int32_t end_of_turn;            // chat format's end-of-turn id, or -1
    int K;                          // random baselines
    float *random;                  // (K, d) random vectors of norm R
    char *completions_json;         // DESIGN §4 "completions", owned ("{}" before generation)
    char *generation_json;          // DESIGN §4 "generation", owned

    struct melbo_train_observer obs; // hooks (all NULL standalone); set before melbo_trainer_run
    struct melbo_calibration cal;   // --radius auto's result (cal.samples = 0 otherwise)
    struct melbo_train_gpu *gpu;    // the CUDA backend (rank/train/backend_gpu.h), NULL on CPU
};

/* Loads the model (this rank's tensor-parallel share), renders and tokenizes the prompts, checks
 * every setting against the model and the output paths, computes the prefix. Everything the run
 * would fail on is found here. comm may be NULL (one process). */
int melbo_trainer_init(struct melbo_trainer *tr, struct melbo_train_params *p,
                       struct melbo_comm *comm, struct melbo_err *err);
void melbo_trainer_free(struct melbo_trainer *tr);

/* Restores a checkpoint written by the same settings; refuses any other. */
int melbo_trainer_resume(struct melbo_trainer *tr, const char *path, struct melbo_err *err);

/* Runs the remaining waves; writes checkpoints as configured. */
int melbo_trainer_run(struct melbo_trainer *tr, struct melbo_err *err);

/*
 * After training: draws the K random baselines (raw draws N.., orthogonalised like initial
 * vectors, never trained) and generates, for every prompt, the completion under every learned
 * vector, the unsteered completion and the completions under the random baselines.
 */
int melbo_trainer_generate(struct melbo_trainer *tr, struct melbo_err *err);

/* Writes the checkpoint (atomically) to path. */
int melbo_trainer_checkpoint(const struct melbo_trainer *tr, const char *path, struct melbo_err *err);

/* Set by SIGUSR1: checkpoint at the next step boundary (all ranks agree there), and stop when
 * --stop-on-signal. Install the handler before anything slow (a USR1 without a handler kills). */
extern volatile sig_atomic_t melbo_train_checkpoint_requested;
void melbo_train_install_signal(void);

/*
 * F_out[Bw] = F(theta_b) summed over prompts and grad (Bw, d) = d(-F)/dtheta_b for the vectors
 * theta (Bw, d), Bw <= B: one forward and backward of the span, no update. With data
 * parallelism each DP group computes its share of the (vector, prompt) pairs and one all-reduce
 * of grad and F gives every rank the whole result.
 */
void melbo_trainer_objective(struct melbo_trainer *tr, const float *theta, int Bw, float *F_out,
                             float *grad);

/* Raw draw g_k (d doubles): row k of --init when k < N and --init was given, else Philox(seed, k)
 * normals (the random baselines use k = N, N+1, ...). */
void melbo_trainer_raw_draw(const struct melbo_trainer *tr, int k, double *g);

#ifdef __cplusplus
}
#endif
#endif
