/* Strategy interface (what moves where) and the rank-side case context it works in. Strategies reach
 * memory, math and peers only through the backend and transport vtables. */
#ifndef MOE_STRATEGY_H
#define MOE_STRATEGY_H

#include <stdint.h>

#include "kernels.h"
#include "params.h"
#include "rng.h"
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
	int64_t fetched; /* weights pulled from peers (dwdp) */
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
	/* timing of the current iteration: host clock after a sync, or device timestamps (marks) */
	int cur_phase;
	double phase_t0;
	int nmarks;
	int mark_phase[MOE_MAX_MARKS]; /* the phase that starts at each mark (-1: none) */
	double phase_us[MOE_PH_COUNT];
	struct moe_bytes bytes;
	double xfer_us;       /* time inside transport data calls this iteration (a part of the phases) */
	double fetch_us;      /* dwdp: time the helper spent fetching weights this iteration (overlapped) */
	int64_t slots_sent;   /* token slots this rank handed to experts (its rows x K), this iteration */
	int64_t slots_computed; /* token slots this rank's experts computed, this iteration */
	int64_t rows_dispatched, pad_dispatched; /* rows (of which pads) handed to the strategy, this iteration */
	int64_t *expert_rows; /* per global expert: rows moe_experts_run computed this iteration, or NULL */
	const char *inject_phase; /* fault injection: phase name */
	int inject_kind;
	void *strategy_state;
	struct moe_ws_buf *ws; /* every workspace of the case, guarded */
	int nws;
	size_t ws_bytes;
	char refused[512]; /* why a strategy refuses the case (its setup or collect returned MOE_ERR_USAGE) */
};

/* Weights: the router, bias and shared experts of layer l (replicated on every rank; expert pointer
 * arrays allocated, empty); the default loader adds the DP-to-EP experts; upload generates one block. */
int moe_weights_replicated(struct moe_ctx *ctx, int64_t l, struct moe_layer_weights *lw);
int moe_weights_default(struct moe_ctx *ctx);
/* Experts [first, first + n) of layer `layer` over rows already in expert-major order (counts[j] rows for
 * expert first + j); w (per row) scales the input first when score_before_experts, else it is ignored. */
int moe_experts_run(struct moe_ctx *ctx, int layer, int64_t first, int64_t n, const int64_t *counts,
		    const moe_bf16 *x, const float *w, moe_bf16 *y);
/* Lower bound of the bytes one rank's weights take in backend memory outside the symmetric heap (the
 * memory preflight adds the heap and the activations). */
size_t moe_weights_bytes(const struct moe_params *p, int nranks);
/* Free ctx->lw: the replicated weights, and with own_experts the expert matrices moe_weights_default
 * allocated (a strategy with its own load_weights keeps them in its buffers). */
void moe_weights_free(struct moe_ctx *ctx, int own_experts);
int moe_weights_upload(struct moe_ctx *ctx, enum moe_tensor t, uint32_t layer, uint64_t row0, int64_t rows,
		       int64_t cols, void *d_dst);

/* --dump: every layer's x, y (T rows), routing (n rows) and weights of this rank into dir as .npy. */
int moe_dump_case(struct moe_ctx *ctx, const char *dir, int64_t T, int64_t n, moe_bf16 *const *X, moe_bf16 *const *Y,
		  int32_t *const *idx, float *const *w, char *err, size_t errlen);

/* Workspaces, allocated once per case between canaries: sym = 1 from the transport's symmetric heap
 * (each costs MOE_WS_SYM_OVERHEAD bytes of it beyond its size), else from the backend. */
#define MOE_WS_SYM_OVERHEAD 512
#define MOE_WS_STR2(x) #x
#define MOE_WS_STR(x) MOE_WS_STR2(x)
#define MOE_WS(ctx, sym, bytes) moe_ws_alloc_at((ctx), (sym), (bytes), __FILE__ ":" MOE_WS_STR(__LINE__))
void *moe_ws_alloc_at(struct moe_ctx *ctx, int sym, size_t bytes, const char *where);
/* MOE_OK, or MOE_ERR_MISMATCH with the overwritten buffer named in why. */
int moe_ws_check(struct moe_ctx *ctx, char *why, size_t len);
void moe_ws_release(struct moe_ctx *ctx);

/* Enter a phase: closes the running one (its time is accumulated) and publishes the phase. */
int moe_phase(struct moe_ctx *ctx, int ph);
/* Bracket a transport data call to time it (ctx->xfer_us): the device is synchronised on both sides,
 * because transports such as NCCL only enqueue work when called. */
int moe_xfer_begin(struct moe_ctx *ctx, double *t0);
int moe_xfer_end(struct moe_ctx *ctx, double t0);

struct moe_strategy_ops {
	int abi;
	const char *name;
	/* Symmetric heap bytes per rank this strategy needs for a case (the launcher sizes the segment). */
	size_t (*sym_bytes)(const struct moe_params *p, int64_t max_rows, int64_t sum_rows);
	/* Allocate workspaces once per case. */
	int (*setup)(struct moe_ctx *ctx);
	/* Build this rank's expert weights into ctx->lw (optional: NULL keeps the default, where rank r holds
	 * experts [r*E/ep, (r+1)*E/ep) in backend memory). Called before setup. */
	int (*load_weights)(struct moe_ctx *ctx);
	/* One layer over the n rows this rank dispatches: routing given (d_idx, d_w: n x K), output y (n x H).
	 * Runs the dispatch, expert and combine phases. base (n x H fp32) is added to the result, or NULL. */
	int (*layer)(struct moe_ctx *ctx, int layer, const moe_bf16 *d_x, int64_t n, const int32_t *d_idx,
		     const float *d_w, const float *d_base, moe_bf16 *d_y);
	void (*teardown)(struct moe_ctx *ctx);
	/* Optional: after every iteration, once the backend is synchronised and outside any capture: read back
	 * what the layers counted on the device into ctx (bytes, slots, expert rows) and refuse what must be
	 * refused (ll's rows over capacity). */
	int (*collect)(struct moe_ctx *ctx);
	/* NULL when every layer can be captured into a graph (no host round trip inside); else why not, for
	 * the error that refuses graph = on. */
	const char *no_graph;
};

#define MOE_STRATEGY(name) extern const struct moe_strategy_ops moe_strategy_##name;
#include "strategies.def"
#undef MOE_STRATEGY

const struct moe_strategy_ops *moe_strategy_find(const char *name);

/* The rows of its DP group a rank dispatches: padded rows [s0, s0 + n) of T + pad; the first nreal are
 * real tokens, the rest pads (sp only). */
struct moe_slice {
	int64_t T, pad, L, s0, n, nreal;
};
void moe_slice_of(const struct moe_params *p, const int64_t *tokens, int rank, struct moe_slice *s);
int64_t moe_rows_dispatched(const struct moe_params *p, const int64_t *tokens, int rank);
/* Symmetric bytes the partition's TP merge needs per rank. */
size_t moe_partition_sym_bytes(const struct moe_params *p, const int64_t *tokens);

#define MOE_GID_PAD_MASKED (-1) /* mask/buffer pad: routed to expert 0 with weight 0 */
#define MOE_GID_PAD_ROUTED (-2) /* zero_token pad under the router */
/* Global id of slice row i (what its synthetic routing is drawn from), or one of the pad markers. */
int64_t moe_slice_gid(const struct moe_params *p, const int64_t *tokens, int rank, const struct moe_slice *s,
		      int64_t i);
/* Slice input: real rows copied from the group's full input, pad rows zero. */
int moe_slice_input(struct moe_ctx *ctx, const struct moe_slice *s, const moe_bf16 *d_full, moe_bf16 *d_xs);
/* Overwrite the routing of mask/buffer pad rows (expert 0, weight 0). */
int moe_pad_routing(struct moe_ctx *ctx, const struct moe_slice *s, int32_t *d_idx, float *d_w);
/* Rebuild the group's T output rows d_y from every TP rank's slice output d_ys (tp_merge phase).
 * sym: the partition's symmetric staging buffer; d_pad: T + pad rows for sp buffer/zero_token. */
int moe_tp_merge(struct moe_ctx *ctx, const struct moe_slice *s, const moe_bf16 *d_ys, void *sym, moe_bf16 *d_pad,
		 moe_bf16 *d_y);

#endif
