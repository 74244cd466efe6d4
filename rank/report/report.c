/* rank/report/report.c - a bank as one HTML page (rank/report/report.h). */
#include "rank/report/report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/mem.h"
#include "rank/method/adapter.h"
#include "rank/report/diff.h"
#include "rank/report/html.h"

/* Cosines cost r^2 (d + d_mlp) per pair of adapters: above this many multiply-adds in all the
 * heat map is left out (with a note) rather than keep a user waiting. */
#define COSINE_BUDGET 2e10

static const char *const setting_keys[] = {
    "model_name", "architecture", "kind", "d_model", "n_layers", "source_layer", "target_layer",
    "radius", "adapter_rank", "adapter_alpha", "adapter_module", "p", "q", "loss_axis",
    "target_tokens", "steps", "vectors", "wave", "orthogonal", "lr", "seed", "chat_format",
    "generation", "created", "job_id", "melbo_version", "model_fingerprint"};

static const char style[] =
    "body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
    "vertical-align:top;font-size:13px;text-align:left}th{background:#f4f4f4}"
    ".text{white-space:pre-wrap;font-family:monospace;font-size:12px;max-width:520px}"
    "mark{background:#ffe08a}.degenerate{color:#a00;font-weight:bold}"
    ".note{color:#666;font-style:italic}svg{background:#fff;border:1px solid #ddd}"
    "h2{border-bottom:1px solid #ddd;padding-bottom:2px}";

/* What the page is built from, besides the bank's tensors. */
struct page {
    const struct melbo_bank *b;
    int adapters;                 // an adapter bank
    const char *noun;             // "vector" or "adapter"
    cJSON *completions, *prompts; // parsed metadata, or NULL
    cJSON *triage;                // parsed "triage", NULL when absent or null
    const cJSON *items;           // triage items, or NULL
    int *order;                   // (N) indices by novelty z (descending), else 0..N-1
    double *cos;                  // (N, N) cosines, or NULL when skipped
};

static cJSON *parse_meta(const struct melbo_bank *b, const char *key) {
    const char *v = melbo_bank_meta(b, key);
    cJSON *o = v ? cJSON_Parse(v) : NULL;
    if (o && cJSON_IsNull(o)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ---------------------------------------------------------------------------------------------
 * Numbers: the order by novelty and the cosines.
 */

static const double *z_of; // qsort's context (the page is built on one thread)

static int by_z(const void *a, const void *b) {
    double za = z_of[*(const int *)a], zb = z_of[*(const int *)b];
    return za < zb ? 1 : za > zb ? -1 : *(const int *)a - *(const int *)b;
}

static void make_order(struct page *pg) {
    int N = pg->b->N;
    pg->order = melbo_xmalloc(sizeof(int) * (size_t)(N ? N : 1));
    for (int k = 0; k < N; k++)
        pg->order[k] = k;
    if (!pg->items || cJSON_GetArraySize(pg->items) != N)
        return;
    double *z = melbo_xcalloc((size_t)N, sizeof *z);
    for (int k = 0; k < N; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(pg->items, k), "z");
        z[k] = cJSON_IsNumber(v) ? v->valuedouble : 0.0;
    }
    z_of = z;
    qsort(pg->order, (size_t)N, sizeof(int), by_z);
    free(z);
}

static void make_cosines(struct page *pg) {
    const struct melbo_bank *b = pg->b;
    int N = b->N;
    if (N == 0)
        return;
    struct melbo_adapter_shape s = {b->rank, b->d, b->d_mlp, b->alpha};
    if (pg->adapters &&
        (double)N * N / 2 * (double)s.r * s.r * (double)(s.d + s.ff) > COSINE_BUDGET)
        return;
    double *dot = melbo_xcalloc((size_t)N * N, sizeof *dot);
    for (int i = 0; i < N; i++)
        for (int j = i; j < N; j++) {
            double x = 0;
            if (pg->adapters) {
                x = melbo_adapter_dot(melbo_bank_lora_A(b, i, 0), melbo_bank_lora_B(b, i, 0),
                                      melbo_bank_lora_A(b, j, 0), melbo_bank_lora_B(b, j, 0), &s);
            } else {
                const float *u = b->vectors + (size_t)i * b->d, *v = b->vectors + (size_t)j * b->d;
                for (int c = 0; c < b->d; c++)
                    x += (double)u[c] * v[c];
            }
            dot[(size_t)i * N + j] = dot[(size_t)j * N + i] = x;
        }
    pg->cos = melbo_xcalloc((size_t)N * N, sizeof *pg->cos);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double den = sqrt(dot[(size_t)i * N + i] * dot[(size_t)j * N + j]);
            pg->cos[(size_t)i * N + j] = den > 0 ? dot[(size_t)i * N + j] / den : 0.0;
        }
    free(dot);
}

/* ---------------------------------------------------------------------------------------------
 * Sections.
 */

static void section_settings(struct melbo_html *h, const struct page *pg) {
    melbo_html_printf(h, "<section id=\"settings\"><h2>Settings</h2><table>");
    for (size_t k = 0; k < sizeof setting_keys / sizeof setting_keys[0]; k++) {
        const char *v = melbo_bank_meta(pg->b, setting_keys[k]);
        if (!v)
            continue;
        melbo_html_printf(h, "<tr><th>%s</th><td>", setting_keys[k]);
        melbo_html_text(h, v, strlen(v));
        melbo_html_printf(h, "</td></tr>");
    }
    melbo_html_printf(h, "</table></section>\n");
}

static void section_curves(struct melbo_html *h, const struct page *pg) {
    const struct melbo_bank *b = pg->b;
    int N = b->N, S = b->steps, W = 900, H = 320, L = 70, B = 30;
    melbo_html_printf(h, "<section id=\"curves\"><h2>Objective curves</h2>");
    if (N == 0 || S < 2) {
        melbo_html_printf(h, "<p class=\"note\">%d step(s): no curve to draw.</p></section>\n", S);
        return;
    }
    double lo = INFINITY, hi = -INFINITY;
    for (size_t k = 0; k < (size_t)N * S; k++) {
        lo = b->objective[k] < lo ? b->objective[k] : lo;
        hi = b->objective[k] > hi ? b->objective[k] : hi;
    }
    if (!(hi > lo))
        hi = lo + 1;
    melbo_html_printf(h,
                      "<p>F (to maximise) before each step, one line per %s (hover for its "
                      "index).</p><svg id=\"curves-svg\" width=\"%d\" height=\"%d\" "
                      "xmlns=\"http://www.w3.org/2000/svg\">",
                      pg->noun, W, H);
    melbo_html_printf(h,
                      "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>"
                      "<line x1=\"%d\" y1=\"10\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>"
                      "<text x=\"4\" y=\"16\" font-size=\"11\">%.4g</text>"
                      "<text x=\"4\" y=\"%d\" font-size=\"11\">%.4g</text>"
                      "<text x=\"%d\" y=\"%d\" font-size=\"11\">step %d</text>",
                      L, H - B, W - 10, H - B, L, L, H - B, hi, H - B, lo, W - 70, H - 8, S - 1);
    for (int k = 0; k < N; k++) {
        melbo_html_printf(h, "<polyline fill=\"none\" stroke-width=\"1.2\" "
                             "stroke=\"hsl(%d,70%%,45%%)\" points=\"",
                          (int)(360.0 * k / N));
        for (int t = 0; t < S; t++) {
            double x = L + (double)(W - 10 - L) * t / (S - 1);
            double y = (H - B) - (double)(H - B - 10) * (b->objective[(size_t)k * S + t] - lo) /
                                     (hi - lo);
            melbo_html_printf(h, "%.1f,%.1f ", x, y);
        }
        melbo_html_printf(h, "\"><title>%s %d: %.6g -> %.6g</title></polyline>", pg->noun, k,
                          b->objective[(size_t)k * S], b->objective[(size_t)k * S + S - 1]);
    }
    melbo_html_printf(h, "</svg></section>\n");
}

/* blue (-1) - white (0) - red (+1) */
static void heat_color(double c, int rgb[3]) {
    c = c < -1 ? -1 : c > 1 ? 1 : c;
    int fade = (int)(255 * (1 - fabs(c)));
    rgb[0] = c > 0 ? 255 : fade;
    rgb[2] = c < 0 ? 255 : fade;
    rgb[1] = fade;
}

static void section_cosines(struct melbo_html *h, const struct page *pg) {
    int N = pg->b->N;
    melbo_html_printf(h, "<section id=\"cosines\"><h2>Cosine matrix</h2>");
    if (!pg->cos) {
        melbo_html_printf(h, "<p class=\"note\">left out: the cosines of %d adapters of rank %d "
                             "would take too long here.</p></section>\n",
                          N, pg->b->rank);
        return;
    }
    int cell = N > 0 ? 600 / N : 1;
    cell = cell < 2 ? 2 : cell > 24 ? 24 : cell;
    melbo_html_printf(h,
                      "<p>cos(%s i, %s j)%s: blue -1, white 0, red +1 (hover a cell).</p>"
                      "<svg id=\"heatmap\" width=\"%d\" height=\"%d\" "
                      "xmlns=\"http://www.w3.org/2000/svg\">",
                      pg->noun, pg->noun, pg->adapters ? " of the weight changes B A" : "",
                      cell * N + 2, cell * N + 2);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            int rgb[3];
            double c = pg->cos[(size_t)i * N + j];
            heat_color(c, rgb);
            melbo_html_printf(h,
                              "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                              "fill=\"rgb(%d,%d,%d)\"><title>%d, %d: %.4f</title></rect>",
                              1 + j * cell, 1 + i * cell, cell, cell, rgb[0], rgb[1], rgb[2], i,
                              j, c);
        }
    melbo_html_printf(h, "</svg></section>\n");
}

/* The text of completion (row, prompt i) from the completions JSON ("" when absent). */
static const char *completion(const struct page *pg, const char *key, int row, int i) {
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(pg->completions, key);
    const cJSON *r = row < 0 ? rows : cJSON_GetArrayItem(rows, row);
    const cJSON *t = cJSON_GetArrayItem(r, i);
    return cJSON_IsString(t) ? t->valuestring : "";
}

/* The first line of text, escaped, at most 100 bytes. */
static void first_line(struct melbo_html *h, const char *text) {
    while (*text == '\n' || *text == ' ')
        text++;
    size_t n = strcspn(text, "\n");
    n = n > 100 ? 100 : n;
    while (n > 0 && (text[n] & 0xC0) == 0x80) /* not in the middle of a UTF-8 character */
        n--;
    melbo_html_text(h, text, n);
}

static double item_num(const struct page *pg, int k, const char *key) {
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(pg->items, k), key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int item_degenerate(const struct page *pg, int k) {
    return pg->items &&
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(pg->items, k),
                                                         "degenerate"));
}

static void section_triage(struct melbo_html *h, const struct page *pg) {
    const struct melbo_bank *b = pg->b;
    const char *key = pg->adapters ? "adapters" : "vectors";
    melbo_html_printf(h, "<section id=\"triage\"><h2>%s by novelty</h2>",
                      pg->adapters ? "Adapters" : "Vectors");
    if (!pg->items)
        melbo_html_printf(h, "<p class=\"note\">no triage: the bank has no completions or no "
                             "random baselines to compare with; listed by index.</p>");
    else
        melbo_html_printf(h, "<p>z: how much further the first completion moved from the "
                             "unsteered one (token edit distance) than the random baselines "
                             "did. Degenerate: repeated word 3-grams or a high zlib "
                             "compression ratio.</p>");
    melbo_html_printf(h, "<table><tr><th>%s</th><th>z</th><th>d</th><th>cluster</th>"
                         "<th>final F</th><th>first line of its first completion</th></tr>",
                      pg->noun);
    for (int r = 0; r < b->N; r++) {
        int k = pg->order[r];
        melbo_html_printf(h, "<tr><td>%d</td>", k);
        if (pg->items)
            melbo_html_printf(h, "<td>%.2f</td><td>%.0f</td><td>%.0f</td>", item_num(pg, k, "z"),
                              item_num(pg, k, "d"), item_num(pg, k, "cluster"));
        else
            melbo_html_printf(h, "<td></td><td></td><td></td>");
        melbo_html_printf(h, "<td>%.6g</td><td class=\"text%s\">",
                          b->steps ? b->objective[(size_t)k * b->steps + b->steps - 1] : 0.0,
                          item_degenerate(pg, k) ? " degenerate" : "");
        if (item_degenerate(pg, k))
            melbo_html_printf(h, "[degenerate] ");
        first_line(h, completion(pg, key, k, 0));
        melbo_html_printf(h, "</td></tr>");
    }
    melbo_html_printf(h, "</table>");
    const cJSON *clusters = pg->triage ? cJSON_GetObjectItemCaseSensitive(pg->triage, "clusters")
                                       : NULL;
    melbo_html_printf(h, "<h3 id=\"clusters\">Clusters</h3>");
    if (cJSON_GetArraySize(clusters) == 0)
        melbo_html_printf(h, "<p class=\"note\">no two %ss' completions share half their word "
                             "3-grams.</p>",
                          pg->noun);
    const cJSON *c;
    cJSON_ArrayForEach(c, clusters) {
        const cJSON *m, *id = cJSON_GetObjectItemCaseSensitive(c, "id"),
                        *lo = cJSON_GetObjectItemCaseSensitive(c, "min_cosine"),
                        *hi = cJSON_GetObjectItemCaseSensitive(c, "max_cosine");
        melbo_html_printf(h, "<p>cluster %d: %ss", cJSON_IsNumber(id) ? id->valueint : -1,
                          pg->noun);
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(c, "members"))
            melbo_html_printf(h, " %d", m->valueint);
        if (cJSON_IsNumber(lo) && cJSON_IsNumber(hi))
            melbo_html_printf(h, "; cosine between members %.3f to %.3f", lo->valuedouble,
                              hi->valuedouble);
        melbo_html_printf(h, "</p>");
    }
    melbo_html_printf(h, "</section>\n");
}

/* text with the words that are not in the unsteered text marked. */
static void marked_text(struct melbo_html *h, const char *text, const char *base) {
    struct melbo_words wt, wb;
    melbo_words_split(text, &wt);
    melbo_words_split(base, &wb);
    unsigned char *changed = melbo_xmalloc((size_t)(wt.n ? wt.n : 1));
    melbo_words_changed(text, &wt, base, &wb, changed);
    size_t pos = 0;
    for (int k = 0; k < wt.n; k++) {
        melbo_html_text(h, text + pos, wt.off[k] - pos); /* the white space before */
        if (changed[k])
            melbo_html_printf(h, "<mark>");
        melbo_html_text(h, text + wt.off[k], wt.len[k]);
        if (changed[k])
            melbo_html_printf(h, "</mark>");
        pos = wt.off[k] + wt.len[k];
    }
    melbo_html_text(h, text + pos, strlen(text + pos));
    free(changed);
    melbo_words_free(&wt);
    melbo_words_free(&wb);
}

static void section_completions(struct melbo_html *h, const struct page *pg) {
    const struct melbo_bank *b = pg->b;
    const char *key = pg->adapters ? "adapters" : "vectors";
    int P = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(pg->completions, "unsteered"));
    melbo_html_printf(h, "<section id=\"completions\"><h2>Completions</h2>");
    if (P == 0) {
        melbo_html_printf(h, "<p class=\"note\">the bank has no completions (trained with "
                             "--no-generate or --max-new-tokens 0).</p></section>\n");
        return;
    }
    int K = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(pg->completions, "random"));
    for (int i = 0; i < P; i++) {
        const char *base = completion(pg, "unsteered", -1, i);
        const cJSON *pt = cJSON_GetArrayItem(pg->prompts, i);
        melbo_html_printf(h, "<h3>prompt %d</h3><p class=\"text\">", i);
        if (cJSON_IsString(pt) && pt->valuestring[0])
            melbo_html_text(h, pt->valuestring, strlen(pt->valuestring));
        else
            melbo_html_printf(h, "(given as token ids)");
        melbo_html_printf(h, "</p><table class=\"side\"><tr><th></th><th>completion (words "
                             "not in the unsteered one marked)</th><th>unsteered</th></tr>");
        for (int r = -1; r < b->N + K; r++) {
            char label[64];
            const char *text;
            int degenerate = 0;
            if (r < 0) {
                snprintf(label, sizeof label, "unsteered");
                text = base;
            } else if (r < b->N) {
                int k = pg->order[r];
                snprintf(label, sizeof label, "%s %d", pg->noun, k);
                text = completion(pg, key, k, i);
                degenerate = item_degenerate(pg, k);
            } else {
                snprintf(label, sizeof label, "random r%d", r - b->N);
                text = completion(pg, "random", r - b->N, i);
            }
            melbo_html_printf(h, "<tr class=\"%s\"><th>%s%s</th><td class=\"text\">",
                              r < 0 ? "unsteered" : r < b->N ? "learned" : "random", label,
                              degenerate ? " <span class=\"degenerate\">degenerate</span>" : "");
            marked_text(h, text, base);
            melbo_html_printf(h, "</td><td class=\"text\">");
            melbo_html_text(h, base, strlen(base));
            melbo_html_printf(h, "</td></tr>");
        }
        melbo_html_printf(h, "</table>");
    }
    melbo_html_printf(h, "</section>\n");
}

/* ---------------------------------------------------------------------------------------------
 * The page.
 */

int melbo_report_write(const struct melbo_bank *b, const char *path, struct melbo_err *err) {
    struct page pg;
    memset(&pg, 0, sizeof pg);
    pg.b = b;
    pg.adapters = b->kind == MELBO_BANK_KIND_ADAPTER;
    pg.noun = pg.adapters ? "adapter" : "vector";
    pg.completions = parse_meta(b, "completions");
    pg.prompts = parse_meta(b, "prompts");
    pg.triage = parse_meta(b, "triage");
    pg.items = pg.triage ? cJSON_GetObjectItemCaseSensitive(pg.triage, "items") : NULL;
    if (!pg.completions)
        pg.completions = cJSON_CreateObject();
    make_order(&pg);
    make_cosines(&pg);
    struct melbo_html h;
    melbo_html_init(&h);
    const char *model = melbo_bank_meta(b, "model_name");
    melbo_html_printf(&h, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                          "<title>melbo bank: ");
    melbo_html_text(&h, model ? model : "", model ? strlen(model) : 0);
    melbo_html_printf(&h, "</title><style>%s</style></head><body>\n<h1>melbo bank: %d %ss of ",
                      style, b->N, pg.noun);
    melbo_html_text(&h, model ? model : "", model ? strlen(model) : 0);
    melbo_html_printf(&h, "</h1>\n");
    section_settings(&h, &pg);
    section_triage(&h, &pg);
    section_curves(&h, &pg);
    section_cosines(&h, &pg);
    section_completions(&h, &pg);
    melbo_html_printf(&h, "</body></html>\n");
    int ret = melbo_file_write_atomic(path, h.s, h.n, err);
    melbo_html_free(&h);
    cJSON_Delete(pg.completions);
    cJSON_Delete(pg.prompts);
    cJSON_Delete(pg.triage);
    free(pg.order);
    free(pg.cos);
    return ret;
}
