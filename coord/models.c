/* coord/models.c - model roots and registered models (coord/models.h). */
#include "coord/models.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "options/prompts.h"  // defines: melbo_file_read_capped
#include "rank/model/config.h"

#define MODELS_FILE_MAX (1u << 20)  // bytes of STATE/models and STATE/coord.conf read here

int melbo_model_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.')
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* STATE/name read (at most MODELS_FILE_MAX bytes), or NULL when absent or unreadable. */
static char *state_file(const char *state, const char *name) {
    char path[PATH_MAX], *text = NULL;
    if (melbo_path_join(path, sizeof path, state, name) != 0 ||
        melbo_file_read_capped(path, MODELS_FILE_MAX, name, &text, NULL, NULL) != 0)
        return NULL;
    return text;
}

/* The next line of *p (NUL-terminated in place, '\r' and trailing blanks cut), or NULL. */
static char *next_line(char **p) {
    if (*p == NULL || **p == '\0')
        return NULL;
    char *line = *p, *nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        *p = nl + 1;
    } else {
        *p = line + strlen(line);
    }
    for (char *e = line + strlen(line); e > line && (e[-1] == '\r' || e[-1] == ' ');)
        *--e = '\0';
    return line;
}

/* 1 if real path p is root or lies under it (both real paths). */
static int under(const char *p, const char *root) {
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return 1;
    return strncmp(p, root, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

int melbo_models_add(const char *state, const char *name, const char *path,
                     struct melbo_err *err) {
    char real[PATH_MAX], file[PATH_MAX];
    if (!melbo_model_name_valid(name))
        return melbo_err_set(err, MELBO_EINVAL,
                             "'%.80s' is not a model name (letters, digits, '.', '_', '-'; at "
                             "most 64; not starting with '.')",
                             name);
    if (realpath(path, real) == NULL)
        return melbo_err_set(err, MELBO_ENOENT, "%s: %s", path, strerror(errno));
    if (strchr(real, '\n') || strchr(real, '\t'))
        return melbo_err_set(err, MELBO_EINVAL, "%s: a path with a newline or a tab", path);
    MELBO_TRY(melbo_path_join(file, sizeof file, state, "models"));
    char *old = state_file(state, "models"), *p = old, *line;
    size_t cap = (old ? strlen(old) : 0) + strlen(name) + strlen(real) + 4, len = 0;
    char *text = malloc(cap);
    if (text == NULL) {
        free(old);
        return melbo_err_set(err, MELBO_ENOMEM, "out of memory");
    }
    text[0] = '\0';
    while ((line = next_line(&p)) != NULL) {
        size_t k = strcspn(line, "\t");
        if (*line == '\0' || (k == strlen(name) && !strncmp(line, name, k)))
            continue; /* replaced below */
        len += (size_t)snprintf(text + len, cap - len, "%s\n", line);
    }
    snprintf(text + len, cap - len, "%s\t%s\n", name, real);
    free(old);
    mode_t um = umask(077); /* the temporary file, and so STATE/models, is 0600 */
    int ret = melbo_file_write_atomic(file, text, strlen(text), err);
    umask(um);
    if (ret == 0)
        chmod(file, 0600);
    free(text);
    return ret;
}

/* The registered path of name into out (n bytes). Returns 0, or -1 when not registered. */
static int lookup_name(const char *state, const char *name, char *out, size_t n) {
    char *text = state_file(state, "models"), *p = text, *line;
    int ret = -1;
    while (ret != 0 && (line = next_line(&p)) != NULL) {
        char *tab = strchr(line, '\t');
        if (tab == NULL)
            continue;
        *tab = '\0';
        if (!strcmp(line, name) && strlen(tab + 1) < n) {
            snprintf(out, n, "%s", tab + 1);
            ret = 0;
        }
    }
    free(text);
    return ret;
}

/* The refusal of melbo_models_resolve: the same words whatever the reason. */
static int not_allowed(const char *given, struct melbo_err *err) {
    char shown[201];
    size_t k = 0;
    for (const char *p = given; *p && k < sizeof shown - 1; p++)
        shown[k++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
    shown[k] = '\0';
    return melbo_err_set(err, MELBO_EINVAL,
                         "--model %s%s is not a registered model or under a model root", shown,
                         given[k] ? "..." : "");
}

int melbo_models_resolve(const char *state, const char *given, char *out, char *root, size_t n,
                         struct melbo_err *err) {
    char real[PATH_MAX], reg[PATH_MAX];
    if (given == NULL || *given == '\0')
        return not_allowed("", err);
    if (strchr(given, '/') == NULL) { /* a registered name */
        if (lookup_name(state, given, reg, sizeof reg) != 0 || realpath(reg, real) == NULL ||
            strlen(real) >= n)
            return not_allowed(given, err);
        snprintf(out, n, "%s", real);
        snprintf(root, n, "%s", real); /* its own root: config.json must stay inside it */
        return 0;
    }
    if (given[0] != '/' || realpath(given, real) == NULL || strlen(real) >= n)
        return not_allowed(given, err);
    char *conf = state_file(state, "coord.conf"), *p = conf, *line;
    int ret = -1;
    while (ret != 0 && (line = next_line(&p)) != NULL) {
        while (*line == ' ' || *line == '\t')
            line++;
        if (strncmp(line, "model_root=", 11) != 0)
            continue;
        char rr[PATH_MAX];
        if (realpath(line + 11, rr) != NULL && under(real, rr) && strlen(rr) < n) {
            snprintf(out, n, "%s", real);
            snprintf(root, n, "%s", rr);
            ret = 0;
        }
    }
    free(conf);
    return ret == 0 ? 0 : not_allowed(given, err);
}

int melbo_models_config(const char *path, const char *root, struct melbo_model_config *cfg,
                        struct melbo_err *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return melbo_err_set(err, MELBO_ENOENT, "--model %s: %s", path, strerror(errno));
    if (S_ISREG(st.st_mode)) /* a .gguf file: only its metadata is read */
        return melbo_config_load(cfg, path, err);
    if (!S_ISDIR(st.st_mode))
        return melbo_err_set(err, MELBO_EINVAL, "--model %s: not a directory or a file", path);
    char cj[PATH_MAX], real[PATH_MAX], *text = NULL;
    size_t len = 0;
    MELBO_TRY(melbo_path_join(cj, sizeof cj, path, "config.json"));
    if (realpath(cj, real) == NULL)
        return melbo_err_set(err, MELBO_ENOENT, "%s: %s", cj, strerror(errno));
    if (!under(real, root))
        return melbo_err_set(err, MELBO_EINVAL, "%s: a link out of the model root", cj);
    MELBO_TRY(melbo_file_read_capped(real, MELBO_MODEL_CONFIG_MAX, "--model config.json", &text,
                                     &len, err));
    int ret = melbo_config_parse(cfg, text, len, cj, err);
    free(text);
    return ret;
}
