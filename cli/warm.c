/*
 * cli/warm.c - `melbo warm --bank ID | --model NAME [--device D] [--dtype T] [--name N]
 * [--private]`: starts a warm job (coord/warm.h) that loads the model once and serves every
 * later `melbo gen` and `melbo chat` turn of that model without reloading it, until it has been
 * idle for the coordinator's limits.warm_idle_s. Prints the job id (melbo cancel ID ends it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/mem.h"

static const char *const warm_options[] = {"bank", "model", "device", "dtype", "name"};

int melbo_cli_cmd_warm(struct melbo_cli *c, int argc, char **argv) {
    Melbo__Option *opts = melbo_xcalloc((size_t)argc + 1, sizeof *opts), **ptrs =
        melbo_xcalloc((size_t)argc + 1, sizeof *ptrs);
    size_t n = 0;
    int status = MELBO_CLI_OK, have_model = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: melbo warm (--bank ID | --model NAME) [--device auto|cpu|cuda] "
                   "[--dtype bf16|fp32]\n                  [--name TEXT] [--private]\n\n"
                   "Loads the model once on ranks that then serve melbo gen and melbo chat of\n"
                   "that model without reloading it, until idle for the coordinator's\n"
                   "limits.warm_idle_s (coord.conf; default 600 s). Prints the job id; melbo\n"
                   "cancel ID ends it.\n");
            goto out;
        }
        size_t k = 0;
        while (k < sizeof warm_options / sizeof warm_options[0] &&
               (strncmp(a, "--", 2) || strcmp(a + 2, warm_options[k])))
            k++;
        melbo__option__init(&opts[n]);
        if (k < sizeof warm_options / sizeof warm_options[0] && i + 1 < argc) {
            opts[n].name = (char *)warm_options[k];
            opts[n].value = argv[++i];
            have_model |= k < 2;
        } else if (!strcmp(a, "--private")) {
            opts[n].name = "private";
        } else {
            fprintf(stderr, "melbo warm: unknown option or missing value: %s (melbo warm --help)\n",
                    melbo_cli_safe(a, 0));
            status = MELBO_CLI_USAGE;
            goto out;
        }
        ptrs[n] = &opts[n];
        n++;
    }
    if (!have_model) {
        fprintf(stderr, "melbo warm: give --bank ID (its model) or --model NAME\n");
        status = MELBO_CLI_USAGE;
        goto out;
    }
    Melbo__JobSpec spec = MELBO__JOB_SPEC__INIT;
    spec.n_options = n;
    spec.options = ptrs;
    spec.command = "warm";
    Melbo__SubmitRequest sr = MELBO__SUBMIT_REQUEST__INIT;
    sr.spec = &spec;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    env.body_case = MELBO__ENVELOPE__BODY_SUBMIT;
    env.submit = &sr;
    if ((status = melbo_cli_request(c, &env, &rep, MELBO__ENVELOPE__BODY_SUBMITTED)) != 0)
        goto out;
    printf("%llu\n", (unsigned long long)rep->submitted->job_id);
    melbo__envelope__free_unpacked(rep, NULL);
out:
    free(opts);
    free(ptrs);
    return status;
}
