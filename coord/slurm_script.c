/*
 * coord/slurm_script.c - the Slurm batch script (coord/slurm_script.h): site defaults from
 * coord.conf, Slurm time strings, sh quoting and the @FIELD@ substitution of the template.
 */
#include "coord/slurm_script.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "coord/slurm.h" // defines: struct melbo_slurm_conf, melbo_slurm_time_seconds

void melbo_slurm_conf_defaults(struct melbo_slurm_conf *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->time, sizeof c->time, "01:00:00");
    c->signal_lead = 120;
    c->cpus_per_task = 1;
    c->resubmit_max = 5;
    snprintf(c->sbatch, sizeof c->sbatch, "sbatch");
    snprintf(c->squeue, sizeof c->squeue, "squeue");
    snprintf(c->scancel, sizeof c->scancel, "scancel");
}

void melbo_slurm_conf_parse(struct melbo_slurm_conf *c, const char *text) {
    const char *p = text;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char line[1024];
        if (n < sizeof line) {
            memcpy(line, p, n);
            line[n] = '\0';
            char *eq = strchr(line, '=');
            if (!strncmp(line, "slurm.", 6) && eq) {
                *eq = '\0';
                const char *k = line + 6, *v = eq + 1;
#define S(key, field) else if (!strcmp(k, key)) snprintf(c->field, sizeof c->field, "%s", v);
                if (0) {
                }
                S("template", template_path)
                S("partition", partition) S("account", account) S("qos", qos)
                    S("constraint", constraint) S("time", time) S("sbatch", sbatch)
                        S("squeue", squeue) S("scancel", scancel)
#undef S
                            else if (!strcmp(k, "signal_lead")) c->signal_lead = atoi(v);
                else if (!strcmp(k, "cpus_per_task")) c->cpus_per_task = atoi(v);
                else if (!strcmp(k, "resubmit_max")) c->resubmit_max = atoi(v);
            }
        }
        p = eol ? eol + 1 : NULL;
    }
}

long melbo_slurm_time_seconds(const char *t) {
    long d = 0, f[3] = {0, 0, 0};
    int nf = 0;
    const char *p = t, *dash = strchr(t, '-');
    if (dash) {
        char *end;
        d = strtol(t, &end, 10);
        if (end != dash || d < 0)
            return -1;
        p = dash + 1;
    }
    while (*p && nf < 3) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0)
            return -1;
        f[nf++] = v;
        if (*end == ':')
            p = end + 1;
        else if (*end == '\0')
            p = end;
        else
            return -1;
    }
    if (*p || nf == 0)
        return -1;
    if (dash) /* D-HH, D-HH:MM, D-HH:MM:SS */
        return d * 86400 + f[0] * 3600 + f[1] * 60 + f[2];
    if (nf == 1) /* MM */
        return f[0] * 60;
    if (nf == 2) /* MM:SS */
        return f[0] * 60 + f[1];
    return f[0] * 3600 + f[1] * 60 + f[2];
}

/* Appends s single-quoted for sh to *buf (size *cap, length *len). */
static void shq(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t need = *len + 4 * strlen(s) + 4;
    if (need > *cap) {
        *cap = need * 2;
        *buf = melbo_xrealloc(*buf, *cap);
    }
    char *o = *buf + *len;
    *o++ = '\'';
    for (; *s; s++) {
        if (*s == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = *s;
        }
    }
    *o++ = '\'';
    *o++ = ' ';
    *o = '\0';
    *len = (size_t)(o - *buf);
}

char *melbo_slurm_script_args(char *const *v, int n) {
    size_t len = 0, cap = 256;
    char *args = melbo_xmalloc(cap);
    args[0] = '\0';
    for (int i = 0; i < n; i++)
        shq(&args, &len, &cap, v[i]);
    return args;
}

int melbo_slurm_script_check_time(const char *time, int signal_lead, struct melbo_err *err) {
    long limit = melbo_slurm_time_seconds(time);
    if (limit <= 0)
        return melbo_err_set(err, MELBO_EINVAL, "time limit '%s' is not a Slurm time", time);
    if (2L * signal_lead >= limit)
        return melbo_err_set(err, MELBO_EINVAL,
                             "the checkpoint signal comes %d s before the time limit, which must "
                             "be under half the limit (%s = %ld s): ask for more time",
                             signal_lead, time, limit);
    return 0;
}

/* One @FIELD@ and its value (owned by the caller of fill). */
struct field {
    const char *key;
    const char *value;
};

/* Appends "--key=value" (malloc'd) to v (room for it), unless value is NULL or empty. */
static void option(char **v, int *n, const char *key, const char *value) {
    if (value == NULL || value[0] == '\0')
        return;
    size_t len = strlen(key) + strlen(value) + 4;
    v[*n] = melbo_xmalloc(len);
    snprintf(v[(*n)++], len, "--%s=%s", key, value);
}

char **melbo_slurm_sbatch_options(const struct melbo_slurm_script *s) {
    char name[64], nodes[16], tasks[16], cpus[16], gpus[16], sig[32], out[4200];
    char **v = melbo_xmalloc(20 * sizeof *v);
    int n = 0;
    snprintf(name, sizeof name, "melbo-%llu", (unsigned long long)s->job_id);
    snprintf(nodes, sizeof nodes, "%d", s->nodes);
    snprintf(tasks, sizeof tasks, "%d", s->tasks_per_node);
    snprintf(cpus, sizeof cpus, "%d", s->cpus_per_task);
    snprintf(gpus, sizeof gpus, "%d", s->gpus_per_node);
    snprintf(sig, sizeof sig, "B:USR1@%d", s->signal_lead);
    snprintf(out, sizeof out, "%s/slurm-%%j.out", s->job_dir);
    option(v, &n, "job-name", name);
    option(v, &n, "nodes", nodes);
    option(v, &n, "ntasks-per-node", tasks);
    option(v, &n, "cpus-per-task", cpus);
    option(v, &n, "time", s->time);
    option(v, &n, "signal", sig);
    option(v, &n, "output", out);
    option(v, &n, "open-mode", "append");
    if (s->gpus_per_node)
        option(v, &n, "gpus-per-node", gpus);
    option(v, &n, "partition", s->partition);
    option(v, &n, "account", s->account);
    option(v, &n, "qos", s->qos);
    option(v, &n, "constraint", s->constraint);
    v[n] = NULL;
    return v;
}

void melbo_slurm_sbatch_options_free(char **v) {
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

void melbo_slurm_script_fill(char **text, const struct melbo_slurm_script *s) {
    char id[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)s->job_id);
    /* only what the coordinator chose: no user value reaches the script's text */
    const struct field fields[] = {{"JOB_DIR", s->job_dir},
                                   {"COORD_ADDR", s->coord_addr},
                                   {"JOB_ID", id},
                                   {"RANK_BINARY", s->rank_binary},
                                   {"RANK_ARGS", s->rank_args},
                                   {"RANK_COMMAND", s->rank_command ? s->rank_command : "train"}};
    /* one pass over the template: a value is copied, never scanned for @FIELD@s itself (a
     * prompt or a path that contains "@RANK_ARGS@" stays as it is) */
    const char *t = *text;
    size_t len = 0, cap = strlen(t) + 1024;
    char *out = melbo_xmalloc(cap);
    while (*t) {
        const struct field *f = NULL;
        if (*t == '@')
            for (size_t k = 0; k < sizeof fields / sizeof fields[0] && f == NULL; k++) {
                size_t kl = strlen(fields[k].key);
                if (!strncmp(t + 1, fields[k].key, kl) && t[1 + kl] == '@')
                    f = &fields[k];
            }
        const char *piece = f ? (f->value ? f->value : "") : t;
        size_t pl = f ? strlen(piece) : 1;
        if (len + pl + 1 > cap) {
            cap = 2 * (len + pl + 1);
            out = melbo_xrealloc(out, cap);
        }
        memcpy(out + len, piece, pl);
        len += pl;
        t += f ? strlen(f->key) + 2 : 1;
    }
    out[len] = '\0';
    free(*text);
    *text = out;
}
