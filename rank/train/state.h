/*
 * rank/train/state.h - what a training run writes: the bank (DESIGN §4) and the checkpoint.
 *
 * Both are safetensors files written atomically. The checkpoint holds the finished vectors, the
 * current wave's theta and AMSGrad state (m, v, v-hat), the objective history, the position
 * (finished vectors, steps done in the wave) and every setting that determines the result; the
 * raw draws are counter-based, so the generator's counter is the index of the next vector.
 * Resuming from it gives a bit-identical bank.
 */
#ifndef MELBO_RANK_TRAIN_STATE_H
#define MELBO_RANK_TRAIN_STATE_H

#include "common/err.h"
#include "rank/model/safetensors_write.h"
#include "rank/method/optim.h"
#include "rank/train/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MELBO_BANK_FORMAT_VERSION "1"
/* 2: one "setting.<key>" per option of the table flagged MELBO_OPT_RESULT (options/train.h);
 * 3: adapters (setting.adapter_rank, setting.adapter_alpha; rows of adapter width). */
#define MELBO_CHECKPOINT_FORMAT_VERSION "3"

/* Writes the bank of a finished run to path. */
int melbo_bank_write(const struct melbo_trainer *tr, const char *path, struct melbo_err *err);

/*
 * DESIGN §4 "Two banks are equal": every tensor bitwise equal (names, dtypes, shapes, bytes) and
 * the metadata equal except created, job_id and melbo_version. Returns 1 if equal, 0 if not
 * (why names the first difference), or a negative code if a file cannot be read.
 */
int melbo_bank_equal(const char *a, const char *b, char *why, size_t why_len, struct melbo_err *err);

/* Adds "setting.<key>" metadata for every setting that determines the result: the options
 * flagged MELBO_OPT_RESULT (round-trip precision), the model's fingerprint, the raw draws
 * (generator or the sha256 of --init) and the sha256 of the prompts' ids. */
void melbo_trainer_settings(const struct melbo_trainer *tr, struct melbo_st_writer *w);

/*
 * Writes the checkpoint of ws (atomically) to path, with the run's settings: the metadata of
 * settings (melbo_trainer_settings' "setting.*" entries) copied in.
 */
int melbo_train_checkpoint_write(const struct melbo_wave_state *ws,
                                 const struct melbo_st_writer *settings, const char *path,
                                 struct melbo_err *err);

/*
 * Reads the checkpoint at path into ws (sized for the same run) after checking that every
 * setting it records equals this run's (settings' metadata); refuses any other checkpoint,
 * naming the first setting that differs.
 */
int melbo_train_checkpoint_read(struct melbo_wave_state *ws, const struct melbo_st_writer *settings,
                                const char *path, struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
