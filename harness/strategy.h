/* Strategy interface (what moves where) and the rank-side case context it works in. Strategies reach
 * memory, math and peers only through the backend and transport vtables. */
#ifndef MOE_STRATEGY_H
#define MOE_STRATEGY_H

#include <stdint.h>

#include "../kernels/kernels.h"
#include "params.h"
#include "status.h"
#include "transport.h"

#define MOE_STRATEGY_ABI 1

/* Device weights of one layer. Expert pointers are indexed by global expert id; only the experts this
 * rank computes are non-NULL. */
struct moe_layer_weights {
	moe_bf16 *wg;    /* E x H */
	float *bias;     /* E, or NULL */
	moe_bf16 **w1, **w3, **w2;
	moe_bf16 *sw1, *sw3, *sw2; /* shared experts (one of width S*F), or NULL */
};

/* Bytes moved in one iteration by this rank. */
struct moe_bytes {
	int64_t logical; /* everything handed to the transport, self-sends included */
	int64_t wire;    /* what left this rank */
};

struct moe_ctx {
	const struct moe_params *p;
	int rank, nranks, d, t; /* world rank, DP group, TP rank */
	const struct moe_backend_ops *be;
	struct moe_dev *dev;
	const struct moe_transport_ops *xp;
	struct moe_comm *comm;
	struct moe_status_area *status;
	int64_t *tokens;      /* per DP group */
	int64_t max_rows;     /* the most rows any rank dispatches in one layer */
	int64_t sum_rows;     /* rows dispatched by all ranks together in one layer */
	struct moe_layer_weights *lw; /* layers entries */
	/* timing of the current iteration */
	int cur_phase;
	double phase_t0;
	double phase_us[MOE_PH_COUNT];
	struct moe_bytes bytes;
	double xfer_us;       /* time inside transport data calls this iteration (a part of the phases) */
	const char *inject_phase; /* fault injection: phase name */
	int inject_kind;
	void *strategy_state;
};

/* Enter a phase: closes the running one (its time is accumulated) and publishes the phase. */
int moe_phase(struct moe_ctx *ctx, int ph);

struct moe_strategy_ops {
	int abi;
	const char *name;
	/* Symmetric heap bytes per rank this strategy needs for a case (the launcher sizes the segment). */
	size_t (*sym_bytes)(const struct moe_params *p, int64_t max_rows, int64_t sum_rows);
	/* Allocate workspaces once per case. */
	int (*setup)(struct moe_ctx *ctx);
	/* One layer over the n rows this rank dispatches: routing given (d_idx, d_w: n x K), output y (n x H).
	 * Runs the dispatch, expert and combine phases. base (n x H fp32) is added to the result, or NULL. */
	int (*layer)(struct moe_ctx *ctx, int layer, const moe_bf16 *d_x, int64_t n, const int32_t *d_idx,
		     const float *d_w, const float *d_base, moe_bf16 *d_y);
	void (*teardown)(struct moe_ctx *ctx);
};

#define MOE_STRATEGY(name) extern const struct moe_strategy_ops moe_strategy_##name;
#include "strategies.def"
#undef MOE_STRATEGY

const struct moe_strategy_ops *moe_strategy_find(const char *name);

/* Rows rank (d, t) dispatches in one layer under the case's partition. */
int64_t moe_rows_dispatched(const struct moe_params *p, const int64_t *tokens, int rank);

#endif
