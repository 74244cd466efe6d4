/*
 * rank/train/observer.h - what a training run tells whoever watches it.
 *
 * The trainer calls these hooks (any may be NULL) on rank 0: the progress display uses them
 * standalone, and the coordinator link (rank/link/) turns them into protocol events. Calls happen
 * on the training thread between steps; a hook must not block for long (the link buffers).
 * Pointers passed in are valid only during the call.
 */
#ifndef MELBO_RANK_TRAIN_OBSERVER_H
#define MELBO_RANK_TRAIN_OBSERVER_H

#ifdef __cplusplus
extern "C" {
#endif

/* One finished optimiser step of a wave. */
struct melbo_step_event {
    int wave, n_waves;          // 0-based wave index, number of waves
    int step, steps;            // steps done in this wave (1..steps), steps per wave
    int first_vector, n_vectors; // the wave's vectors: [first_vector, first_vector + n_vectors)
    int total_vectors;
    const float *objective;     // (n_vectors) F before this step's update
    double step_seconds;        // wall time of this step
    double vector_steps_per_s;  // throughput so far
    double eta_seconds;         // remaining training time estimate
    double tflops;              // achieved span FLOP rate of this step (1e12 FLOP/s)
};

struct melbo_train_observer {
    void *ctx;
    /* state is one of DESIGN §3's words: STARTING, RUNNING, GENERATING, CHECKPOINTED */
    void (*on_state)(void *ctx, const char *state, const char *detail);
    void (*on_step)(void *ctx, const struct melbo_step_event *ev);
    /* generation progress: sequences done of total, tokens generated, tokens per second */
    void (*on_generate)(void *ctx, int done, int total, long tokens, double tokens_per_s);
    /* a checkpoint was written at path */
    void (*on_checkpoint)(void *ctx, const char *path, int n_done, int wave_step);
    /* a line for the job's log (a checkpoint that could not be written) */
    void (*on_log)(void *ctx, const char *line);
};

#ifdef __cplusplus
}
#endif
#endif
