/*
 * rank/train/trainer.h - MELBO training in waves (DESIGN §3-§4) on any backend (rank/backend.h).
 *
 *   prefix  blocks 0..s once per prompt -> X (hidden_states[s+1]); blocks s+1..t-1 on X -> Y
 *   wave    B vectors; every step runs blocks s+1..t-1 on X + theta_b for this rank's
 *           (vector, prompt) pairs as one packed batch, the objective at hidden_states[t], the
 *           input-gradient backward to X and the sum over positions (the backend's
 *           wave_objective), one data-parallel all-reduce of the [B, d] gradient and the [B]
 *           objective (here, for every backend), and the update of rank/method/optim.h (the
 *           backend's update)
 *
 * Nothing above block t-1 and no LM head is computed while training. The trainer owns the host
 * model, the backend opened on it, the prompts, the prefix, the optimiser state and the results;
 * melbo_trainer_run fills ws.vectors and ws.objective. It reaches rank/cpu/ and rank/gpu/ only
 * through rank/backend.h.
 */
#ifndef MELBO_RANK_TRAIN_TRAINER_H
#define MELBO_RANK_TRAIN_TRAINER_H

#include <signal.h>
#include <stdint.h>

#include "common/err.h"
#include "nccl/comm.h"
#include "rank/backend.h"
#include "rank/model/model.h"
#include "rank/tokenizer/tokenizer.h"
#include "rank/train/calibrate.h"
#include "rank/train/observer.h"
#include "rank/method/adapter.h"
#include "rank/method/optim.h"
#include "options/train.h"
#include "rank/method/prompts.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_trainer {
    struct melbo_train_params set; // the run's settings: a copy of the caller's, resolved here
                                   // (layers, q, wave, device, R of --radius auto, stop ids);
                                   // banks and checkpoints record these. Owned.
    struct melbo_comm *comm;      // borrowed; NULL standalone (one process)
    int rank0;                    // 1 on the rank that prints and writes files
    struct melbo_model model;     // host: blocks [0, t) (all with completions), the embedding
    int model_borrowed;           // 1: model is the caller's (melbo_trainer_init_shared)
    struct melbo_backend be;      // where the prefix, the steps, the update and decoding run
    char fingerprint[65];         // DESIGN §4 model_fingerprint
    char model_name[256];
    int L, d, s, t, N, B, steps;
    int adapters;                        // 1: training adapters (--adapter-rank), 0: vectors
    struct melbo_adapter_shape adapter;  // their shape (the full model's widths)
    int W;                               // floats per vector or adapter (ws.d): d or the
                                         // adapter's width

    struct melbo_prompts pr;    // the prompts, their target positions, packed
    struct melbo_prefix pre;    // X and Y of the packed prompts, owned
    float *init_draws;          // (N, W) raw draws from --init, or NULL for the generator
    struct melbo_wave_state ws; // results and optimiser state (what a checkpoint holds)

    /* this data-parallel rank's pairs [pair_k0, pair_k1) of a wave of pair_B vectors, packed
     * (the FLOP count of a step) */
    int pair_B, pair_k0, pair_k1;
    struct melbo_seqs pairs;
    double t_load; // seconds spent loading and on the prefix

    /* completions (melbo_trainer_generate) */
    struct melbo_tokenizer *tok; // for decoding text, or NULL when the model has none
    int K;                       // random baselines
    float *random;               // (K, W) random vectors of norm R, or random adapters
    char *completions_json;      // DESIGN §4 "completions", owned ("{}" before generation)
    char *generation_json;       // DESIGN §4 "generation", owned
    char *triage_json;           // DESIGN §4 "triage" (rank/method/triage.h), owned ("null"
                                 // without completions or random baselines)

    struct melbo_train_observer obs; // hooks (all NULL standalone); set before melbo_trainer_run
    int ckpt_failing;                // checkpoints refused in a row (a full disk): warned once
    struct melbo_calibration cal;    // --radius auto's result (cal.samples = 0 otherwise)
};

/* Copies p (only read; the caller keeps it) into tr->set, loads the model (this rank's
 * tensor-parallel share), renders and tokenizes the prompts, checks every setting against the
 * model and the output paths, opens the backend the settings name and computes the prefix (and
 * R, with --radius auto). Everything the run would fail on is found here. comm may be NULL (one
 * process). On failure, melbo_trainer_free what was built. */
int melbo_trainer_init(struct melbo_trainer *tr, const struct melbo_train_params *p,
                       struct melbo_comm *comm, struct melbo_err *err);
/* As melbo_trainer_init, but on a model loaded by the caller (all of this rank's blocks, the
 * embedding and the head: melbo_trainer_load_shared), borrowed until melbo_trainer_free: a sweep
 * (options/sweep.h) trains every point on one load. */
int melbo_trainer_init_shared(struct melbo_trainer *tr, const struct melbo_train_params *p,
                              struct melbo_comm *comm, const struct melbo_model *shared,
                              struct melbo_err *err);
/* Loads the model a sweep's points share (this rank's tensor-parallel slice of every block). */
int melbo_trainer_load_shared(struct melbo_model *m, const struct melbo_train_params *p,
                              struct melbo_err *err);
void melbo_trainer_free(struct melbo_trainer *tr);

/* Restores a checkpoint written by the same settings; refuses any other. */
int melbo_trainer_resume(struct melbo_trainer *tr, const char *path, struct melbo_err *err);

/* Runs the remaining waves; writes checkpoints as configured. Returns MELBO_ESTATE when it
 * stopped after a SIGUSR1 checkpoint with --stop-on-signal. */
int melbo_trainer_run(struct melbo_trainer *tr, struct melbo_err *err);

/*
 * After training: draws the K random baselines (raw draws N.., orthogonalised like initial
 * vectors, never trained) and generates, for every prompt, the completion under every learned
 * vector, the unsteered completion and the completions under the random baselines.
 */
int melbo_trainer_generate(struct melbo_trainer *tr, struct melbo_err *err);

/* Writes the checkpoint (atomically) to path. */
int melbo_trainer_checkpoint(const struct melbo_trainer *tr, const char *path,
                             struct melbo_err *err);

/* Set by SIGUSR1: checkpoint at the next step boundary (all ranks agree there), and stop when
 * --stop-on-signal. melbo_train_install_signal installs the handler; `melbo-rank train` calls it
 * once, first thing (a USR1 without a handler kills). melbo_trainer_run only reads the flag. */
extern volatile sig_atomic_t melbo_train_checkpoint_requested;
void melbo_train_install_signal(void);

/*
 * F_out[Bw] = F(theta_b) summed over prompts and grad (Bw, W) = d(-F)/dtheta_b for the vectors
 * (or adapters) theta (Bw, W), Bw <= B: one forward and backward of the span, no update. With
 * data parallelism each DP group computes its share of the (vector, prompt) pairs and one
 * all-reduce of grad and F gives every rank the whole result (for adapters under tensor
 * parallelism, after one all-reduce of A's column slices over the tensor-parallel group).
 */
void melbo_trainer_objective(struct melbo_trainer *tr, const float *theta, int Bw, float *F_out,
                             float *grad);

/* Raw draw g_k (W doubles): row k of --init when k < N and --init was given, else Philox(seed, k)
 * normals (the random baselines use k = N, N+1, ...). */
void melbo_trainer_raw_draw(const struct melbo_trainer *tr, int k, double *g);

#ifdef __cplusplus
}
#endif
#endif
