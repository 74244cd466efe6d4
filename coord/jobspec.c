/*
 * coord/jobspec.c - job specs by name, their validation and their ranks' command line
 * (coord/jobspec.h).
 *
 * A spec carries its options as (name, value) pairs. A protocol-1 spec (an 0.1 client, or a job
 * stored by an 0.1 coordinator) has one field per option instead; read_legacy walks its fields
 * through protobuf-c's descriptor and names each one as the option it was: field source_layer is
 * --source-layer, a bool false is --no-X. Four fields were spelled differently and are turned
 * over by hand: text_prompts, id_prompts, radius_auto, beta1/beta2.
 */
#include "coord/jobspec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mem.h"
#include "coord/models.h"  // defines: melbo_models_resolve, melbo_models_config
#include "rank/model/config.h"
#include "options/sweep.h"

/* A spec's options, and the strings made for them (protocol 1). */
struct spec_options {
    struct melbo_job_option *v;
    size_t n;
    char **owned;
    size_t n_owned;
};

static void spec_options_free(struct spec_options *so) {
    for (size_t i = 0; i < so->n_owned; i++)
        free(so->owned[i]);
    free(so->owned);
    free(so->v);
    memset(so, 0, sizeof *so);
}

/* Keeps s (NULL allowed) until so is freed; returns it. */
static char *own(struct spec_options *so, char *s) {
    if (s) {
        so->owned = melbo_xrealloc(so->owned, sizeof *so->owned * (so->n_owned + 1));
        so->owned[so->n_owned++] = s;
    }
    return s;
}

/* Appends an option; name and value (may be NULL) must outlive so. */
static void add(struct spec_options *so, const char *name, const char *value) {
    so->v = melbo_xrealloc(so->v, sizeof *so->v * (so->n + 1));
    so->v[so->n].name = name;
    so->v[so->n++].value = value;
}

static char *printed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *printed(const char *fmt, ...) {
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return melbo_xstrdup(buf);
}

/* The option a protocol-1 field was: its name with '-' for '_', "no-" before a false flag. */
static char *field_option(const ProtobufCFieldDescriptor *f, int negated) {
    char *name = printed("%s%s", negated ? "no-" : "", f->name);
    for (char *p = name; *p; p++)
        if (*p == '_')
            *p = '-';
    return name;
}

static void legacy_prompts(const Melbo__JobSpec *s, struct spec_options *so) {
    for (size_t i = 0; i < s->n_text_prompts; i++) {
        const Melbo__TextPrompt *tp = s->text_prompts[i];
        const char *name = tp->kind == MELBO__TEXT_PROMPT__KIND__FILE  ? "prompts"
                           : tp->kind == MELBO__TEXT_PROMPT__KIND__RAW ? "raw-prompt"
                                                                      : "prompt";
        add(so, name, tp->text ? tp->text : "");
    }
    for (size_t i = 0; i < s->n_id_prompts; i++) {
        const Melbo__IdPrompt *ip = s->id_prompts[i];
        size_t cap = ip->n_ids * 12 + 1, len = 0;
        char *b = melbo_xmalloc(cap);
        b[0] = '\0';
        for (size_t k = 0; k < ip->n_ids; k++)
            len += (size_t)snprintf(b + len, cap - len, "%s%d", k ? "," : "", ip->ids[k]);
        add(so, "prompt-ids", own(so, b));
    }
}

/* One scalar field of a protocol-1 spec as an option, when present. */
static void legacy_field(const Melbo__JobSpec *s, const ProtobufCFieldDescriptor *f,
                         struct spec_options *so) {
    const char *base = (const char *)s;
    int has = f->quantifier_offset ? *(const protobuf_c_boolean *)(base + f->quantifier_offset)
                                   : 1;
    const void *v = base + f->offset;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        if (*(char *const *)v)
            add(so, own(so, field_option(f, 0)), *(char *const *)v);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        if (has)
            add(so, own(so, field_option(f, !*(const protobuf_c_boolean *)v)), NULL);
        break;
    case PROTOBUF_C_TYPE_INT32:
        if (has)
            add(so, own(so, field_option(f, 0)), own(so, printed("%d", *(const int32_t *)v)));
        break;
    case PROTOBUF_C_TYPE_UINT64:
        if (has)
            add(so, own(so, field_option(f, 0)),
                own(so, printed("%llu", (unsigned long long)*(const uint64_t *)v)));
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (has)
            add(so, own(so, field_option(f, 0)), own(so, printed("%.17g", *(const double *)v)));
        break;
    default:
        break;
    }
}

static void read_legacy(const Melbo__JobSpec *s, struct spec_options *so) {
    legacy_prompts(s, so);
    if (s->has_radius_auto && s->radius_auto)
        add(so, "radius", "auto");
    if (s->has_beta1 || s->has_beta2)
        add(so, "betas",
            own(so, printed("%.17g,%.17g", s->has_beta1 ? s->beta1 : 0.9,
                            s->has_beta2 ? s->beta2 : 0.98)));
    const ProtobufCMessageDescriptor *d = &melbo__job_spec__descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *by_hand[] = {"options", "text_prompts", "id_prompts", "radius_auto", "beta1",
                                 "beta2"};
        int skip = f->label == PROTOBUF_C_LABEL_REPEATED;
        for (size_t k = 0; k < MELBO_ARRAY_SIZE(by_hand); k++)
            skip |= !strcmp(f->name, by_hand[k]);
        if (!skip && !(s->has_radius_auto && s->radius_auto && !strcmp(f->name, "radius")))
            legacy_field(s, f, so);
    }
}

/* The options of spec, by name (borrowed from spec or owned by so). */
static void read_options(const Melbo__JobSpec *s, struct spec_options *so) {
    memset(so, 0, sizeof *so);
    if (s->n_options == 0) {
        read_legacy(s, so);
        return;
    }
    for (size_t i = 0; i < s->n_options; i++)
        add(so, s->options[i]->name ? s->options[i]->name : "", s->options[i]->value);
}

/* 1 if option name is one a file is uploaded for. */
static int upload_option(const char *name) {
    return !strcmp(name, "init") || !strcmp(name, "calibration-init");
}

/* Non-blank lines of text (the prompts of a prompts-jsonl value). */
static long long jsonl_lines(const char *text) {
    long long n = 0;
    for (const char *p = text; *p;) {
        size_t k = strcspn(p, "\n");
        for (size_t i = 0; i < k; i++)
            if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') {
                n++;
                break;
            }
        p += k + (p[k] == '\n');
    }
    return n;
}

int melbo_jobspec_check_inputs(const Melbo__JobSpec *spec, const struct melbo_coord_limits *lim,
                               struct melbo_err *err) {
    unsigned long long bytes = 0;
    long long count = 0;
    if (spec->n_options == 0) { /* protocol 1 */
        for (size_t i = 0; i < spec->n_text_prompts; i++) {
            const Melbo__TextPrompt *tp = spec->text_prompts[i];
            if (tp->kind == MELBO__TEXT_PROMPT__KIND__FILE)
                return melbo_err_set(err, MELBO_EINVAL,
                                     "--prompts FILE is read by melbo submit and sent as text; the "
                                     "coordinator opens no file a user names");
            if (tp->kind != MELBO__TEXT_PROMPT__KIND__USER &&
                tp->kind != MELBO__TEXT_PROMPT__KIND__RAW)
                return melbo_err_set(err, MELBO_EINVAL, "text prompt %zu: unknown kind %d", i + 1,
                                     (int)tp->kind);
            bytes += tp->text ? strlen(tp->text) : 0;
            count++;
        }
        for (size_t i = 0; i < spec->n_id_prompts; i++)
            bytes += spec->id_prompts[i]->n_ids * 4ull, count++;
        bytes += spec->system ? strlen(spec->system) : 0;
        if (spec->init && *spec->init)
            return melbo_err_set(err, MELBO_EINVAL,
                                 "--init must be uploaded (melbo submit does it); the coordinator "
                                 "opens no file a user names");
    }
    for (size_t i = 0; i < spec->n_options; i++) {
        const char *name = spec->options[i]->name ? spec->options[i]->name : "";
        const char *val = spec->options[i]->value ? spec->options[i]->value : "";
        if (!strcmp(name, "prompts"))
            return melbo_err_set(err, MELBO_EINVAL,
                                 "--prompts FILE is read by melbo submit and sent as text; the "
                                 "coordinator opens no file a user names (upgrade melbo)");
        if (upload_option(name)) {
            size_t k = strlen(MELBO_JOBSPEC_UPLOAD);
            if (strncmp(val, MELBO_JOBSPEC_UPLOAD, k) != 0 || strcmp(val + k, name) != 0)
                return melbo_err_set(err, MELBO_EINVAL,
                                     "--%s must be uploaded (melbo submit does it); the "
                                     "coordinator opens no file a user names",
                                     name);
        }
        if (!strcmp(name, "prompts-jsonl"))
            count += jsonl_lines(val), bytes += strlen(val);
        else if (!strcmp(name, "prompt") || !strcmp(name, "raw-prompt") ||
                 !strcmp(name, "prompt-ids"))
            count++, bytes += strlen(val);
        else if (!strcmp(name, "system"))
            bytes += strlen(val);
    }
    if (count > lim->max_prompts)
        return melbo_err_set(err, MELBO_ERANGE, "%lld prompts: over %s = %lld", count,
                             MELBO_COORD_LIMIT_KEY(max_prompts), (long long)lim->max_prompts);
    if (bytes > (unsigned long long)lim->max_prompt_bytes)
        return melbo_err_set(err, MELBO_ERANGE,
                             "%llu bytes of prompts and system prompt: over %s = %lld", bytes,
                             MELBO_COORD_LIMIT_KEY(max_prompt_bytes),
                             (long long)lim->max_prompt_bytes);
    return 0;
}

int melbo_jobspec_parse(const Melbo__JobSpec *spec, struct melbo_job_params *jp,
                        struct melbo_err *err) {
    struct spec_options so;
    read_options(spec, &so);
    /* uploads are files of the job's directory, not paths to check */
    size_t k = 0;
    for (size_t i = 0; i < so.n; i++)
        if (!(upload_option(so.v[i].name) && so.v[i].value &&
              !strncmp(so.v[i].value, MELBO_JOBSPEC_UPLOAD, strlen(MELBO_JOBSPEC_UPLOAD))))
            so.v[k++] = so.v[i];
    so.n = k;
    int ret = melbo_job_parse(jp, so.v, so.n, err);
    spec_options_free(&so);
    return ret;
}

/* A sweep's points (options/sweep.h), each resolved against the model as the ranks will: a
 * point the ranks would refuse is refused now, naming it; at most max_points of them. */
static int check_sweep(const struct melbo_train_params *p, const struct melbo_model_config *cfg,
                       long long max_points, struct melbo_err *err) {
    struct melbo_sweep sw;
    int ret = melbo_sweep_parse(&sw, p, err);
    if (ret == 0 && sw.n_points > max_points)
        ret = melbo_err_set(err, MELBO_ERANGE,
                            "the sweep has %lld points: more than %lld",
                            sw.n_points, max_points);
    for (long long k = 0; ret == 0 && k < (sw.n_axes ? sw.n_points : 0); k++) {
        struct melbo_train_params q;
        melbo_train_params_copy(&q, p);
        ret = melbo_sweep_apply(&sw, k, &q, err);
        if (ret == 0)
            ret = melbo_train_params_check(&q, err);
        if (ret == 0)
            ret = melbo_train_params_resolve(&q, cfg->n_layers, cfg->d_model, cfg->d_ff, err);
        if (ret) {
            char label[256];
            melbo_sweep_label(&sw, k, label, sizeof label);
            melbo_err_prefix(err, "sweep point %lld (%s)", k, label);
        }
        melbo_train_params_free(&q);
    }
    melbo_sweep_free(&sw);
    return ret;
}

int melbo_jobspec_validate(const Melbo__JobSpec *spec, const char *state_dir,
                           struct melbo_job_params *jp, char *model, size_t n,
                           struct melbo_err *err) {
    struct melbo_model_config cfg;
    char root[PATH_MAX];
    MELBO_TRY(melbo_jobspec_parse(spec, jp, err));
    if (n > sizeof root)
        n = sizeof root;
    MELBO_TRY(melbo_models_resolve(state_dir, jp->train.model, model, root, n, err));
    MELBO_TRY(melbo_models_config(model, root, &cfg, err));
    MELBO_TRY(check_sweep(&jp->train, &cfg, MELBO_JOBSPEC_MAX_SWEEP, err));
    if (jp->train.sweep.n > 0) { /* the base alone never runs: jp holds point 0 resolved */
        struct melbo_sweep sw;
        int ret = melbo_sweep_parse(&sw, &jp->train, err);
        if (ret == 0)
            ret = melbo_sweep_apply(&sw, 0, &jp->train, err);
        melbo_sweep_free(&sw);
        MELBO_TRY(ret);
    }
    MELBO_TRY(melbo_train_params_resolve(&jp->train, cfg.n_layers, cfg.d_model, cfg.d_ff, err));
    MELBO_TRY(melbo_tp_check(&cfg, jp->train.tp, err));
    /* the layout must fill what is asked of Slurm: one rank per GPU, or per CPU task */
    int ranks = melbo_job_ranks(jp), nodes = jp->job.nodes, gpus = jp->job.gpus;
    if (gpus > 0 && ranks != nodes * gpus)
        return melbo_err_set(err, MELBO_EINVAL,
                             "--tp x --dp = %d ranks, but --nodes %d x --gpus %d = %d GPUs (one "
                             "rank per GPU)",
                             ranks, nodes, gpus, nodes * gpus);
    if (ranks % nodes != 0)
        return melbo_err_set(err, MELBO_EINVAL,
                             "--tp x --dp = %d ranks cannot be spread evenly over --nodes %d",
                             ranks, nodes);
    return 0;
}

/* Writes text to path (created 0600, replaced if there). Returns 0 or -1 (logged). */
static int write_private(const char *path, const char *text) {
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    size_t n = strlen(text), off = 0;
    while (fd >= 0 && off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (fd < 0 || off < n || close(fd) != 0) {
        melbo_log(MELBO_LOG_WARN, "coord: cannot write %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return 0;
}

void melbo_jobspec_to_argv(const Melbo__JobSpec *spec, const char *out, const char *ckpt,
                           const char *resume, const char *job_id, struct melbo_argv *av) {
    struct spec_options so;
    const char *tail[][2] = {{"--out", out}, {"--checkpoint", ckpt}, {"--resume", resume},
                             {"--job-id", job_id}};
    char dir[PATH_MAX];
    const char *slash = strrchr(out, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - out) : 1, slash ? out : ".");
    read_options(spec, &so);
    /* prompts sent as text and uploaded files become files of the job's directory */
    int k_prompts = 0;
    for (size_t i = 0; i < so.n; i++) {
        const char *name = so.v[i].name, *val = so.v[i].value ? so.v[i].value : "";
        size_t up = strlen(MELBO_JOBSPEC_UPLOAD);
        char path[PATH_MAX + 64];
        if (!strcmp(name, "prompts-jsonl")) {
            snprintf(path, sizeof path, "%s/prompts-%d.jsonl", dir, ++k_prompts);
            write_private(path, val);
            so.v[i].name = "prompts";
            so.v[i].value = own(&so, melbo_xstrdup(path));
        } else if (upload_option(name) && !strncmp(val, MELBO_JOBSPEC_UPLOAD, up)) {
            snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
            so.v[i].value = own(&so, melbo_xstrdup(path));
        }
    }
    melbo_job_rank_argv(so.v, so.n, av);
    for (size_t i = 0; i < MELBO_ARRAY_SIZE(tail); i++) {
        if (tail[i][1] == NULL)
            continue;
        melbo_argv_push(av, tail[i][0]);
        melbo_argv_push(av, tail[i][1]);
    }
    if (ckpt) /* near a time limit the ranks checkpoint, stop, and the job is resubmitted */
        melbo_argv_push(av, "--stop-on-signal");
    spec_options_free(&so);
}
