/* agrs strategy: all-gather dispatch (every rank sees every rank's rows and routing), local experts on
 * the slots they own, reduce-scatter combine of fp32 partial sums in rank order (deterministic). */
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "strategy.h"

struct agrs_state {
	moe_bf16 *send_x;  /* symmetric: my rows */
	int32_t *send_idx; /* symmetric: my routing */
	float *send_w;
	float *partial;    /* symmetric: fp32 partial output for every gathered row */
	moe_bf16 *all_x, *sorted_x, *sorted_y;
	int32_t *all_idx, *pos;
	float *all_w, *sorted_w, *sum;
	int64_t *rows, *ecount;
	size_t *cnt, *dis;
};

static size_t agrs_sym_bytes(const struct moe_params *p, int64_t max_rows, int64_t sum_rows)
{
	size_t H = (size_t)p->hidden, K = (size_t)p->topk;
	return (size_t)max_rows * (H * 2 + K * 8) + (size_t)sum_rows * H * 4 + 4 * MOE_WS_SYM_OVERHEAD;
}

static int agrs_setup(struct moe_ctx *ctx)
{
	const struct moe_params *p = ctx->p;
	struct agrs_state *s = calloc(1, sizeof(*s));
	if (!s)
		return MOE_ERR_NOMEM;
	ctx->strategy_state = s;
	int64_t H = p->hidden, K = p->topk, R = ctx->nranks, mr = ctx->max_rows, sr = ctx->sum_rows;
	s->send_x = MOE_WS(ctx, 1, (size_t)(mr * H) * 2);
	s->send_idx = MOE_WS(ctx, 1, (size_t)(mr * K) * 4);
	s->send_w = MOE_WS(ctx, 1, (size_t)(mr * K) * 4);
	s->partial = MOE_WS(ctx, 1, (size_t)(sr * H) * 4);
	if (!s->send_x || !s->send_idx || !s->send_w || !s->partial)
		return MOE_ERR_NOMEM;
	size_t srk = (size_t)(sr * K > 0 ? sr * K : 1), srh = (size_t)(sr * H > 0 ? sr * H : 1);
	s->all_x = MOE_WS(ctx, 0, srh * 2);
	s->sorted_x = MOE_WS(ctx, 0, srk * (size_t)H * 2);
	s->sorted_y = MOE_WS(ctx, 0, srk * (size_t)H * 2);
	s->all_idx = MOE_WS(ctx, 0, srk * 4);
	s->pos = MOE_WS(ctx, 0, srk * 4);
	s->all_w = MOE_WS(ctx, 0, srk * 4);
	s->sorted_w = MOE_WS(ctx, 0, srk * 4);
	s->sum = MOE_WS(ctx, 0, (size_t)(mr * H > 0 ? mr * H : 1) * 4);
	s->rows = calloc((size_t)R, sizeof(int64_t));
	s->ecount = calloc((size_t)p->experts, sizeof(int64_t));
	s->cnt = calloc((size_t)R, sizeof(size_t));
	s->dis = calloc((size_t)R, sizeof(size_t));
	if (!s->all_x || !s->sorted_x || !s->sorted_y || !s->all_idx || !s->pos || !s->all_w || !s->sorted_w ||
	    !s->sum || !s->rows || !s->ecount || !s->cnt || !s->dis)
		return MOE_ERR_NOMEM;
	for (int r = 0; r < R; r++)
		s->rows[r] = moe_rows_dispatched(p, ctx->tokens, r);
	return MOE_OK;
}

/* All-gather `elem` bytes per row of every rank's rows; counts the bytes; times the transport. */
static int gather(struct moe_ctx *ctx, struct agrs_state *s, const void *send, void *recv, size_t elem)
{
	int R = ctx->nranks;
	size_t off = 0;
	for (int r = 0; r < R; r++) {
		s->cnt[r] = (size_t)s->rows[r] * elem;
		s->dis[r] = off;
		off += s->cnt[r];
	}
	int64_t mine = (int64_t)s->cnt[ctx->rank];
	ctx->bytes.logical += mine * R;
	ctx->bytes.wire += mine * (R - 1);
	double t0;
	MOE_CHECK(moe_xfer_begin(ctx, &t0));
	MOE_CHECK(ctx->xp->allgatherv(ctx->comm, MOE_GROUP_WORLD, send, s->cnt[ctx->rank], recv, s->cnt, s->dis));
	return moe_xfer_end(ctx, t0);
}

static int agrs_layer(struct moe_ctx *ctx, int layer, const moe_bf16 *x, int64_t n, const int32_t *idx,
		      const float *w, const float *base, moe_bf16 *y)
{
	const struct moe_params *p = ctx->p;
	struct agrs_state *s = ctx->strategy_state;
	const struct moe_backend_ops *be = ctx->be;
	struct moe_dev *dv = ctx->dev;
	int64_t H = p->hidden, K = p->topk, R = ctx->nranks, epr = p->experts / R, sr = ctx->sum_rows;

	MOE_CHECK(moe_phase(ctx, MOE_PH_dispatch));
	MOE_CHECK(be->d2d(dv, s->send_x, x, (size_t)(n * H) * 2));
	MOE_CHECK(be->d2d(dv, s->send_idx, idx, (size_t)(n * K) * 4));
	MOE_CHECK(be->d2d(dv, s->send_w, w, (size_t)(n * K) * 4));
	MOE_CHECK(gather(ctx, s, s->send_x, s->all_x, (size_t)H * 2));
	MOE_CHECK(gather(ctx, s, s->send_idx, s->all_idx, (size_t)K * 4));
	MOE_CHECK(gather(ctx, s, s->send_w, s->all_w, (size_t)K * 4));

	MOE_CHECK(moe_phase(ctx, MOE_PH_expert));
	int32_t first = (int32_t)(ctx->rank * epr);
	/* the slots this rank owns, in expert-major order; the rest are dropped (pos = -1) */
	MOE_CHECK(be->bucket(dv, s->all_idx, sr * K, first, 1, epr, s->ecount, s->pos));
	int64_t mine = 0;
	for (int64_t e = 0; e < epr; e++)
		mine += s->ecount[e];
	MOE_CHECK(be->scatter_rows(dv, s->all_x, s->pos, sr * K, K, H, s->sorted_x));
	if (p->score_before_experts)
		MOE_CHECK(be->scatter_i32(dv, (const int32_t *)s->all_w, s->pos, sr * K, (int32_t *)s->sorted_w));
	ctx->slots_sent += n * K;
	ctx->slots_computed += mine;
	MOE_CHECK(moe_experts_run(ctx, layer, first, epr, s->ecount, s->sorted_x, s->sorted_w, s->sorted_y));
	/* partial sums over the owned slots of every gathered row, slot order, from zero */
	MOE_CHECK(be->combine(dv, s->sorted_y, s->pos, s->all_w, sr, K, H, NULL, p->score_before_experts, NULL,
			      s->partial));

	MOE_CHECK(moe_phase(ctx, MOE_PH_combine));
	size_t off = 0;
	for (int r = 0; r < R; r++) {
		s->cnt[r] = (size_t)(s->rows[r] * H);
		s->dis[r] = off;
		off += s->cnt[r];
	}
	int64_t all = sr * H * 4;
	ctx->bytes.logical += all;
	ctx->bytes.wire += all - (int64_t)s->cnt[ctx->rank] * 4;
	double t0;
	MOE_CHECK(moe_xfer_begin(ctx, &t0));
	MOE_CHECK(ctx->xp->reduce_scatterv_f32(ctx->comm, MOE_GROUP_WORLD, s->partial, s->cnt, s->dis, s->sum));
	MOE_CHECK(moe_xfer_end(ctx, t0));
	return be->finish(dv, s->sum, base, n * H, y);
}

static void agrs_teardown(struct moe_ctx *ctx)
{
	struct agrs_state *s = ctx->strategy_state;
	if (!s)
		return;
	free(s->rows);
	free(s->ecount);
	free(s->cnt);
	free(s->dis);
	free(s);
	ctx->strategy_state = NULL;
}

const struct moe_strategy_ops moe_strategy_agrs = {
	.abi = MOE_STRATEGY_ABI,
	.name = "agrs",
	.sym_bytes = agrs_sym_bytes,
	.setup = agrs_setup,
	.layer = agrs_layer,
	.teardown = agrs_teardown,
	.no_graph = "its layer buckets rows with host counts (a device-to-host copy) and moves them through "
		    "host-driven transport calls",
};
