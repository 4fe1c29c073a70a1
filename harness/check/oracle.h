/* The CPU oracle: float64 reference of one dense MoE layer per token, independent of strategies and kernels. */
#ifndef MOE_ORACLE_H
#define MOE_ORACLE_H

#include <stdint.h>

#include "moe.h"
#include "params.h"
#include "workload.h" /* struct moe_trace only: the oracle does its own lookups */

struct moe_verdict {
	int bad;            /* 0 ok, 1 mismatch */
	int64_t token;      /* first bad row of the rank's slice, -1 when none */
	int64_t col;        /* its first bad column (-1: the row as a whole) */
	int64_t gid;        /* its global token id as the oracle derives it (-1 for pad rows) */
	double max_err;     /* exact modes: largest absolute error; swiglu: largest error / its bound (ok <= 1) */
	int64_t checked;    /* rows checked */
	int64_t mismatched; /* rows that failed */
	char what[256];     /* which check failed (input, routing, output) and why */
};

/* One case on one rank. The oracle derives the rows the rank must hold from the layout alone (tokens per DP
 * group, the rank, partition and pad mode), rebuilds each row's input (the generator at layer 0, its own
 * verified output at l - 1 after), and carries that per-token state from layer to layer. trace: the
 * loaded routing trace when routing = trace, else NULL. Returns NULL when out of memory. */
struct moe_oracle *moe_oracle_open(const struct moe_params *p, const int64_t *tokens, int rank,
				   const struct moe_trace *trace);
void moe_oracle_close(struct moe_oracle *o);
/* Rows the rank's slice has, and the global id of row i (-1: a masked pad, -2: a zero-token pad). */
int64_t moe_oracle_rows(const struct moe_oracle *o);
int64_t moe_oracle_gid(const struct moe_oracle *o, int64_t i);

/* Check layer `layer` (0, 1, ... in order) as the rank reports it: its n slice rows' input x, routing idx/w and
 * output y. check lists the rows to check (NULL: all; the same list every layer). The input is checked bit for
 * bit first, then the routing, then the output. Returns MOE_OK (verdict in v) or an error. */
int moe_oracle_check(struct moe_oracle *o, uint32_t layer, int64_t n, const moe_bf16 *x, const int32_t *idx,
		     const float *w, const moe_bf16 *y, const int64_t *check, int64_t ncheck, struct moe_verdict *v);

/* For tests: the reference of n router-routed rows with the routing given: weights and their bounds (n x K,
 * may be NULL), swiglu outputs and their bounds (n x H, may be NULL). */
int moe_oracle_reference(const struct moe_params *p, uint32_t layer, int64_t n, const moe_bf16 *x,
			 const int32_t *idx, const float *w, double *wref, double *wbound, double *yref, double *ybound);

#endif
