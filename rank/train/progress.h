/*
 * rank/train/progress.h - training progress on stderr: a live bar on a terminal (wave i/n, step,
 * best and median objective, steps/s, ETA), plain lines otherwise (at most one every
 * MELBO_PROGRESS_SECONDS, default 2, plus one at the end of every wave).
 */
#ifndef MELBO_RANK_TRAIN_PROGRESS_H
#define MELBO_RANK_TRAIN_PROGRESS_H

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_progress {
    int tty;
    int quiet;            // print nothing (ranks other than 0)
    double interval;      // seconds between plain lines
    double t_start, t_last;
    long total, done;     // vector-steps
    long done_at_start;
    char last[256];       // the last line shown
};

double melbo_now(void);
void melbo_progress_init(struct melbo_progress *pr, long total_vector_steps, long already_done);
/* After a step of a wave of B vectors with objective values F[B]. */
void melbo_progress_step(struct melbo_progress *pr, int wave, int n_waves, int step, int steps,
                         const float *F, int B);
void melbo_progress_wave_done(struct melbo_progress *pr, int wave, int n_waves);
void melbo_progress_finish(struct melbo_progress *pr);

#ifdef __cplusplus
}
#endif
#endif
