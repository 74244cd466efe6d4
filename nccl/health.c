/*
 * nccl/health.c - naming a rank that disappeared, so that no survivor dies silently or hangs.
 *
 * At start every rank learns every other rank's host and pid. When a rank is killed mid-step, its
 * peers block in a collective; the launcher (mpirun, srun --kill-on-bad-exit) then terminates the
 * survivors with SIGTERM. The survivors' handler checks which peers on their host are gone
 * (kill(pid, 0)) and prints, with async-signal-safe writes only, "melbo: rank R: rank K (pid P on
 * HOST) is gone; ending the job", then exits. A watchdog thread covers launchers that do not
 * terminate survivors: when one collective has been waiting for MELBO_COLLECTIVE_TIMEOUT seconds
 * (default 300) and a local peer is gone, it prints the same line and aborts the job.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mem.h"
#include "nccl/comm_impl.h"

#define HOST_LEN 64

static int h_rank = -1, h_size;
static pid_t *h_pids;
static char (*h_hosts)[HOST_LEN];
static char **h_gone_msg; /* preformatted, one per rank */
static char h_host[HOST_LEN];

/* Writes the lines for every local peer that is gone; returns how many. Async-signal-safe. */
static int report_gone(void) {
    int n = 0;
    for (int r = 0; r < h_size; r++) {
        if (r == h_rank || strcmp(h_hosts[r], h_host) != 0)
            continue;
        if (kill(h_pids[r], 0) != 0 && errno == ESRCH) {
            ssize_t w = write(STDERR_FILENO, h_gone_msg[r], strlen(h_gone_msg[r]));
            (void)w;
            n++;
        }
    }
    return n;
}

static void on_term(int sig) {
    if (report_gone() == 0) {
        static const char msg[] = "melbo: rank terminated by the launcher\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void *watchdog(void *arg) {
    (void)arg;
    const char *env = getenv("MELBO_COLLECTIVE_TIMEOUT");
    int timeout = env ? atoi(env) : 300;
    if (timeout <= 0)
        timeout = 300;
    int waited = 0;
    for (;;) {
        sleep(5);
        /* a gone local peer is fatal after the timeout, whatever the job is doing */
        int gone = 0;
        for (int r = 0; r < h_size; r++)
            if (r != h_rank && !strcmp(h_hosts[r], h_host) && kill(h_pids[r], 0) != 0 && errno == ESRCH)
                gone = 1;
        waited = gone ? waited + 5 : 0;
        if (gone && waited >= timeout) {
            report_gone();
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    return NULL;
}

void melbo__health_init(struct melbo_comm *c) {
    h_rank = c->rank;
    h_size = c->size;
    gethostname(h_host, sizeof h_host - 1);
    h_pids = melbo_xcalloc((size_t)h_size, sizeof *h_pids);
    h_hosts = melbo_xcalloc((size_t)h_size, sizeof *h_hosts);
    h_gone_msg = melbo_xcalloc((size_t)h_size, sizeof *h_gone_msg);
    pid_t me = getpid();
    MPI_Allgather(&me, sizeof me, MPI_BYTE, h_pids, sizeof me, MPI_BYTE, MPI_COMM_WORLD);
    MPI_Allgather(h_host, HOST_LEN, MPI_CHAR, h_hosts, HOST_LEN, MPI_CHAR, MPI_COMM_WORLD);
    for (int r = 0; r < h_size; r++) {
        char buf[256];
        snprintf(buf, sizeof buf, "melbo: rank %d: rank %d (pid %ld on %s) is gone; ending the job\n",
                 h_rank, r, (long)h_pids[r], h_hosts[r]);
        h_gone_msg[r] = melbo_xstrdup(buf);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    if (h_size > 1) {
        pthread_t t;
        if (pthread_create(&t, NULL, watchdog, NULL) == 0)
            pthread_detach(t);
    }
}
