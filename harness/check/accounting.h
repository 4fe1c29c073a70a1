/* What is timed, checked: rows, pad rows, rows per expert and bytes each rank counted, against closed forms
 * derived from the layout and the routing. */
#ifndef MOE_ACCOUNTING_H
#define MOE_ACCOUNTING_H

#include <jansson.h>
#include <stdint.h>

#include "params.h"
#include "strategy.h"

/* Rank side, after the timed iterations: this rank's counters of its last iteration and the histogram of
 * its routing (slots per destination expert over every layer, read back from d_idx[l], n x topk), as the
 * JSON object the launcher's check reads. NULL when out of memory. */
json_t *moe_accounting_report(struct moe_ctx *ctx, int64_t n, int32_t *const *d_idx);

/* Launcher side: every rank's "accounting", "bytes" and "slots" in `ranks` (the case's per-rank results,
 * rank order) against what the strategy and partition require for `tokens` (per DP group). Returns NULL
 * when every rank counted exactly that, else a first_bad object naming the rank, the quantity, expected
 * and counted. A rank without a report makes the case fail too. */
json_t *moe_accounting_check(const struct moe_params *p, const int64_t *tokens, json_t *ranks);

#endif
