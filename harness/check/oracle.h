/* The CPU oracle: float64 reference of one dense MoE layer per token, independent of strategies and kernels. */
#ifndef MOE_ORACLE_H
#define MOE_ORACLE_H

#include <stdint.h>

#include "moe.h"
#include "params.h"
#include "workload.h"

struct moe_verdict {
	int bad;            /* 0 ok, 1 mismatch */
	int64_t token;      /* first bad token (row index as given), -1 when none */
	int64_t col;        /* its worst column */
	int64_t gid;        /* its global token id (-1 for pad rows) */
	double max_err;     /* largest error seen (relative for swiglu, absolute for exact modes) */
	int64_t checked;    /* tokens checked */
	int64_t mismatched; /* tokens that failed */
	char what[256];     /* which check failed: routing or output, and why */
};

#define MOE_ORACLE_PAD_MASKED (-1) /* a mask/buffer pad row: expert 0, weight 0, output zero */
#define MOE_ORACLE_PAD_ROUTED (-2) /* a zero-token pad under the router: routed like a token, output zero */

/* The rows to check: x, routing and output of n tokens as the rank had them. gid[i] is the global
 * token id (what synthetic routing is drawn from) or a pad marker above. check lists the rows to check
 * (NULL: all). trace may be NULL unless routing = trace. nranks is ep, for the owner of an expert: with
 * strategy agrs the exact modes sum per-rank partials in rank order (DESIGN §3), which is mirrored.
 * Returns MOE_OK (verdict in v) or an error. */
int moe_oracle_check(const struct moe_params *p, uint32_t layer, int64_t n, const moe_bf16 *x, const int64_t *gid,
		     const int32_t *idx, const float *w, const moe_bf16 *y, const int64_t *check, int64_t ncheck,
		     const struct moe_trace *trace, int nranks, struct moe_verdict *v);

/* Reference routing of one token in float64: top-K ids (ties to the lower id) and weights. */
void moe_oracle_route(const struct moe_params *p, uint32_t layer, const moe_bf16 *x, int32_t *idx, double *w,
		      double *sel_out /* E entries or NULL */);

#endif
