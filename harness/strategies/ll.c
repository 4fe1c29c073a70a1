/* ll strategy (low latency, GPU-initiated): kernels write rows, counts and a signal straight into every
 * peer's symmetric receive buffers (fixed capacity per source), the owner packs them expert-major once every
 * source has signalled, runs its experts with device counts, writes the outputs back into the sources'
 * buffers and signals; each source combines in slot order. No transport data call and no host count inside
 * a layer, so the layer can be captured into a graph. Rows past the capacity are dropped on the device and
 * counted; collect() refuses the case after the iteration (the overflow policy: refuse, never silent). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "strategy.h"

enum { LL_X, LL_E, LL_W, LL_CNT, LL_SIGD, LL_Y, LL_SIGR, LL_NBUF };

struct ll_state {
	struct moe_ll_plan plan;
	int64_t cap, nstats;
	void *mine[LL_NBUF];  /* this rank's symmetric buffers */
	void **d_peers[LL_NBUF]; /* backend memory: every rank's copy of each, as this process addresses it */
	moe_bf16 *px, *py;    /* packed rows, expert-major: R * cap */
	float *pw;
	int32_t *cnt, *src, *slot;
	int64_t *now, *prev;  /* d_stats and d_epoch (last entry) as last read, and the read before */
};

/* The rows one source may send one destination in a layer. A token's slots name distinct experts, so a
 * destination gets at most min(K, epr) of them; a trace may repeat an id, and mask/buffer pads send all K
 * slots to expert 0: there the bound is K. */
static int64_t ll_cap(const struct moe_params *p, int64_t max_rows)
{
	if (p->ll_capacity)
		return p->ll_capacity;
	int64_t R = p->dp * p->tp, K = p->topk, epr = p->experts / R;
	int all_k = p->routing.kind == MOE_ROUTE_TRACE || (p->partition == MOE_PART_SP && p->pad != MOE_PAD_ZERO_TOKEN);
	return max_rows * (all_k ? K : MOE_MIN(K, epr));
}

/* Bytes of each symmetric buffer, in LL_* order. */
static void ll_sizes(const struct moe_params *p, int64_t cap, size_t *b)
{
	size_t R = (size_t)(p->dp * p->tp), slots = R * (size_t)cap, row = (size_t)p->hidden * sizeof(moe_bf16);
	b[LL_X] = slots * row;
	b[LL_E] = slots * 4;
	b[LL_W] = slots * 4;
	b[LL_CNT] = R * (size_t)(p->experts / (int64_t)R) * 4;
	b[LL_SIGD] = R * 8;
	b[LL_Y] = slots * row;
	b[LL_SIGR] = R * 8;
}

static size_t ll_sym_bytes(const struct moe_params *p, int64_t max_rows, int64_t sum_rows)
{
	(void)sum_rows;
	size_t b[LL_NBUF], total = 0;
	ll_sizes(p, ll_cap(p, max_rows), b);
	for (int i = 0; i < LL_NBUF; i++)
		total += b[i] + MOE_WS_SYM_OVERHEAD;
	return total;
}

/* Symmetric buffers (zeroed: signals start at epoch 0 and an ipc heap is not zeroed), one at a time so
 * that a canary names its own. */
static int ll_sym_alloc(struct moe_ctx *ctx, struct ll_state *s)
{
	size_t b[LL_NBUF];
	ll_sizes(ctx->p, s->cap, b);
	s->mine[LL_X] = MOE_WS(ctx, 1, b[LL_X]);
	s->mine[LL_E] = MOE_WS(ctx, 1, b[LL_E]);
	s->mine[LL_W] = MOE_WS(ctx, 1, b[LL_W]);
	s->mine[LL_CNT] = MOE_WS(ctx, 1, b[LL_CNT]);
	s->mine[LL_SIGD] = MOE_WS(ctx, 1, b[LL_SIGD]);
	s->mine[LL_Y] = MOE_WS(ctx, 1, b[LL_Y]);
	s->mine[LL_SIGR] = MOE_WS(ctx, 1, b[LL_SIGR]);
	for (int i = 0; i < LL_NBUF; i++) {
		if (!s->mine[i])
			return MOE_ERR_NOMEM;
		MOE_CHECK(ctx->be->memset(ctx->dev, s->mine[i], 0, b[i]));
	}
	return MOE_OK;
}

/* Every rank's copy of each symmetric buffer, as this process addresses it, into backend memory. */
static int ll_peer_tables(struct moe_ctx *ctx, struct ll_state *s)
{
	int R = ctx->nranks;
	void **host = calloc((size_t)R, sizeof(void *));
	if (!host)
		return MOE_ERR_NOMEM;
	int rc = MOE_OK;
	for (int i = 0; i < LL_NBUF && rc == MOE_OK; i++) {
		for (int q = 0; q < R && rc == MOE_OK; q++)
			if (!(host[q] = ctx->xp->peer_ptr(ctx->comm, q, s->mine[i]))) {
				moe_err("ll: transport %s does not map rank %d's buffer", ctx->xp->name, q);
				rc = MOE_ERR_SYSTEM;
			}
		s->d_peers[i] = MOE_WS(ctx, 0, (size_t)R * sizeof(void *));
		if (rc == MOE_OK && !s->d_peers[i])
			rc = MOE_ERR_NOMEM;
		if (rc == MOE_OK)
			rc = ctx->be->h2d(ctx->dev, s->d_peers[i], host, (size_t)R * sizeof(void *));
	}
	free(host);
	return rc;
}

/* The case cannot run here: say why as a scenario error (the launcher refuses these first; this is the
 * rank's own guard). */
static int ll_refuse_setup(struct moe_ctx *ctx)
{
	const struct moe_backend_ops *be = ctx->be;
	if (!ctx->xp->peer_ptr)
		snprintf(ctx->refused, sizeof(ctx->refused),
			 "ll needs a transport that maps peers' memory: shm or ipc (transport %s does not)", ctx->xp->name);
	else if (!be->ffn_dev || !be->ll_dispatch || !be->ll_receive || !be->ll_return || !be->ll_wait_return)
		snprintf(ctx->refused, sizeof(ctx->refused), "backend %s does not implement ll's device-initiated ops",
			 be->name);
	return ctx->refused[0] ? MOE_ERR_USAGE : MOE_OK;
}

static int ll_setup(struct moe_ctx *ctx)
{
	const struct moe_params *p = ctx->p;
	MOE_CHECK(ll_refuse_setup(ctx));
	struct ll_state *s = calloc(1, sizeof(*s));
	if (!s)
		return MOE_ERR_NOMEM;
	ctx->strategy_state = s;
	int64_t R = ctx->nranks, epr = p->experts / R, H = p->hidden, K = p->topk;
	s->cap = ll_cap(p, ctx->max_rows);
	MOE_CHECK(ll_sym_alloc(ctx, s));
	MOE_CHECK(ll_peer_tables(ctx, s));
	size_t slots = (size_t)MOE_MAX(R * s->cap, 1), row = (size_t)H * sizeof(moe_bf16);
	s->px = MOE_WS(ctx, 0, slots * row);
	s->py = MOE_WS(ctx, 0, slots * row);
	s->pw = MOE_WS(ctx, 0, slots * 4);
	s->src = MOE_WS(ctx, 0, slots * 4);
	s->cnt = MOE_WS(ctx, 0, (size_t)MOE_MAX(epr, 1) * 4);
	s->slot = MOE_WS(ctx, 0, (size_t)MOE_MAX(ctx->max_rows * K, 1) * 4);
	s->nstats = MOE_LL_STAT_EXPERT0 + epr;
	int64_t *d_state = MOE_WS(ctx, 0, (size_t)(s->nstats + 1) * 8); /* the stats, then the epoch */
	s->now = calloc((size_t)(s->nstats + 1), sizeof(int64_t));
	s->prev = calloc((size_t)(s->nstats + 1), sizeof(int64_t));
	if (!s->px || !s->py || !s->pw || !s->src || !s->cnt || !s->slot || !d_state || !s->now || !s->prev)
		return MOE_ERR_NOMEM;
	MOE_CHECK(ctx->be->memset(ctx->dev, d_state, 0, (size_t)(s->nstats + 1) * 8));
	s->plan = (struct moe_ll_plan){
		.rank = ctx->rank, .nranks = (int)R, .hidden = H, .topk = K, .experts = p->experts, .epr = epr,
		.cap = s->cap, .scaled = p->score_before_experts,
		.recv_x = (moe_bf16 *const *)s->d_peers[LL_X], .recv_e = (int32_t *const *)s->d_peers[LL_E],
		.recv_w = (float *const *)s->d_peers[LL_W], .recv_cnt = (int32_t *const *)s->d_peers[LL_CNT],
		.sig_disp = (uint64_t *const *)s->d_peers[LL_SIGD], .ret_y = (moe_bf16 *const *)s->d_peers[LL_Y],
		.sig_ret = (uint64_t *const *)s->d_peers[LL_SIGR],
		.d_epoch = (uint64_t *)(d_state + s->nstats), .d_stats = d_state,
	};
	/* the zeroed signals must be in place before any peer can pass the first iteration's barrier */
	return ctx->be->sync(ctx->dev);
}

static int ll_layer(struct moe_ctx *ctx, int layer, const moe_bf16 *x, int64_t n, const int32_t *idx,
		    const float *w, const float *base, moe_bf16 *y)
{
	const struct moe_params *p = ctx->p;
	struct ll_state *s = ctx->strategy_state;
	const struct moe_backend_ops *be = ctx->be;
	struct moe_dev *dv = ctx->dev;
	const struct moe_ll_plan *pl = &s->plan;
	int64_t first = ctx->rank * pl->epr;
	const struct moe_layer_weights *lw = &ctx->lw[layer];

	MOE_CHECK(moe_phase(ctx, MOE_PH_dispatch));
	MOE_CHECK(be->ll_dispatch(dv, pl, x, n, idx, w, s->slot));
	MOE_CHECK(be->ll_receive(dv, pl, s->px, s->pw, s->cnt, s->src));

	MOE_CHECK(moe_phase(ctx, MOE_PH_expert));
	struct moe_ffn_cfg fc = {
		.kind = (enum moe_ffn_kind)p->expert, .hidden = p->hidden, .ffn = p->ffn, .nexperts = pl->epr,
		.first_expert = first, .d_w1 = (const moe_bf16 *const *)lw->w1 + first,
		.d_w3 = (const moe_bf16 *const *)lw->w3 + first, .d_w2 = (const moe_bf16 *const *)lw->w2 + first,
	};
	MOE_CHECK(be->ffn_dev(dv, &fc, s->px, s->cnt, pl->nranks * pl->cap, pl->scaled ? s->pw : NULL, s->py));

	MOE_CHECK(moe_phase(ctx, MOE_PH_combine));
	MOE_CHECK(be->ll_return(dv, pl, s->py, s->src, s->cnt));
	MOE_CHECK(be->ll_wait_return(dv, pl));
	/* my slot (t, k) came back at ret_y[owner * cap + j] = d_slot: summed in slot order */
	return be->combine(dv, s->mine[LL_Y], s->slot, w, n, pl->topk, pl->hidden, base, pl->scaled, y, NULL);
}

/* After an iteration: what the layers counted on the device since the last read. Bytes are what the kernels
 * wrote into ranks' buffers: per slot its row, its local expert id and (scaled) its weight; per computed
 * row its output back; per layer to every rank the counts (epr int32) and a signal, and a signal back.
 * Self-writes are logical, not wire (the rows a rank sent itself are the rows it computed for itself). */
static int ll_collect(struct moe_ctx *ctx)
{
	const struct moe_params *p = ctx->p;
	struct ll_state *s = ctx->strategy_state;
	const struct moe_ll_plan *pl = &s->plan;
	int64_t nst = s->nstats + 1, *d = s->now;
	memcpy(s->prev, s->now, (size_t)nst * 8);
	MOE_CHECK(ctx->be->d2h(ctx->dev, s->now, pl->d_stats, (size_t)nst * 8));
	int64_t dd[MOE_LL_STAT_EXPERT0], layers = d[s->nstats] - s->prev[s->nstats], computed = 0;
	for (int i = 0; i < MOE_LL_STAT_EXPERT0; i++)
		dd[i] = d[i] - s->prev[i];
	if (dd[MOE_LL_STAT_DROPPED] > 0) {
		snprintf(ctx->refused, sizeof(ctx->refused),
			 "ll: rank %d dropped %lld token rows over its capacity of %lld rows per destination and layer "
			 "(scenario key ll_capacity = %lld); raise ll_capacity, or set it to 0 for the worst case, which "
			 "never overflows",
			 ctx->rank, (long long)dd[MOE_LL_STAT_DROPPED], (long long)pl->cap, (long long)p->ll_capacity);
		return MOE_ERR_USAGE;
	}
	for (int64_t e = 0; e < pl->epr; e++) {
		int64_t c = d[MOE_LL_STAT_EXPERT0 + e] - s->prev[MOE_LL_STAT_EXPERT0 + e];
		computed += c;
		if (ctx->expert_rows)
			ctx->expert_rows[ctx->rank * pl->epr + e] += c;
	}
	ctx->slots_sent += dd[MOE_LL_STAT_SENT];
	ctx->slots_computed += computed;
	int64_t row = pl->hidden * 2, elem = row + 4 + (pl->scaled ? 4 : 0), R = pl->nranks;
	int64_t ctrl = layers * (pl->epr * 4 + 16), self = dd[MOE_LL_STAT_SENT] - dd[MOE_LL_STAT_SENT_REMOTE];
	ctx->bytes.logical += dd[MOE_LL_STAT_SENT] * elem + computed * row + R * ctrl;
	ctx->bytes.wire += dd[MOE_LL_STAT_SENT_REMOTE] * elem + (computed - self) * row + (R - 1) * ctrl;
	return MOE_OK;
}

static void ll_teardown(struct moe_ctx *ctx)
{
	struct ll_state *s = ctx->strategy_state;
	if (!s)
		return;
	free(s->now);
	free(s->prev);
	free(s);
	ctx->strategy_state = NULL;
}

const struct moe_strategy_ops moe_strategy_ll = {
	.abi = MOE_STRATEGY_ABI,
	.name = "ll",
	.sym_bytes = ll_sym_bytes,
	.setup = ll_setup,
	.layer = ll_layer,
	.teardown = ll_teardown,
	.collect = ll_collect,
	.no_graph = NULL,
};
