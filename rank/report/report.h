/*
 * rank/report/report.h - `melbo-rank bank report FILE -o report.html`: one self-contained HTML
 * page about a bank (no network access, no script, no external font or style):
 *
 *   settings     the bank's settings as a table
 *   curves       the objective curve of every vector or adapter (inline SVG)
 *   cosines      the cosine matrix as a heat map (inline SVG; adapters: of their weight changes)
 *   triage       every vector ranked by novelty z (rank/method/triage.h), degenerate ones flagged,
 *                and its cluster; the clusters with their members' cosines
 *   completions  for every prompt, each completion side by side with the unsteered one and the
 *                random baselines', the words that differ from the unsteered text highlighted
 *                (rank/report/diff.h)
 *
 * A bank without completions or triage gets the sections it can have and a note saying why the
 * others are empty.
 */
#ifndef MELBO_RANK_REPORT_REPORT_H
#define MELBO_RANK_REPORT_REPORT_H

#include "common/err.h"
#include "rank/bank/bank.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the report of the open bank b to path (atomically). Returns 0 or an error (the bank's
 * JSON metadata malformed, the file not writable). */
int melbo_report_write(const struct melbo_bank *b, const char *path, struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
