/* a2a strategy: EP all-to-all. Count exchange, token all-to-all, expert-major permute, experts,
 * reverse all-to-all, weighted combine in slot order. */
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "strategy.h"

struct a2a_state {
	int64_t cap_send, cap_recv; /* rows */
	moe_bf16 *send_x;   /* symmetric: rows in destination order */
	int32_t *send_meta; /* symmetric: expert id per row */
	float *send_w;      /* symmetric: weight per row (score_before_experts) */
	moe_bf16 *back_y;   /* symmetric: expert outputs in arrival order, sent back */
	moe_bf16 *recv_x, *sorted_x, *sorted_y, *ret_y;
	int32_t *recv_meta, *pos_send, *pos_exp;
	float *recv_w, *sorted_w;
	int64_t *scount, *rcount, *ecount;
	size_t *sb, *sd, *rb, *rd;
};

static size_t a2a_sym_bytes(const struct moe_params *p, int64_t max_rows, int64_t sum_rows)
{
	size_t send = (size_t)(max_rows * p->topk), recv = (size_t)(sum_rows * p->topk);
	size_t row = (size_t)p->hidden * sizeof(moe_bf16);
	return send * (row + 8) + recv * row + 4 * MOE_WS_SYM_OVERHEAD;
}

static int a2a_setup(struct moe_ctx *ctx)
{
	const struct moe_params *p = ctx->p;
	struct a2a_state *s = calloc(1, sizeof(*s));
	if (!s)
		return MOE_ERR_NOMEM;
	ctx->strategy_state = s;
	int64_t H = p->hidden, K = p->topk, R = ctx->nranks;
	s->cap_send = ctx->max_rows * K;
	s->cap_recv = ctx->sum_rows * K;
	size_t row = (size_t)H * sizeof(moe_bf16);
	s->send_x = MOE_WS(ctx, 1, (size_t)s->cap_send * row);
	s->send_meta = MOE_WS(ctx, 1, (size_t)s->cap_send * 4);
	s->send_w = MOE_WS(ctx, 1, (size_t)s->cap_send * 4);
	s->back_y = MOE_WS(ctx, 1, (size_t)s->cap_recv * row);
	if (!s->send_x || !s->send_meta || !s->send_w || !s->back_y)
		return MOE_ERR_NOMEM;
	size_t rc = (size_t)(s->cap_recv ? s->cap_recv : 1), sc = (size_t)(s->cap_send ? s->cap_send : 1);
	s->recv_x = MOE_WS(ctx, 0, rc * row);
	s->sorted_x = MOE_WS(ctx, 0, rc * row);
	s->sorted_y = MOE_WS(ctx, 0, rc * row);
	s->ret_y = MOE_WS(ctx, 0, sc * row);
	s->recv_meta = MOE_WS(ctx, 0, rc * 4);
	s->recv_w = MOE_WS(ctx, 0, rc * 4);
	s->sorted_w = MOE_WS(ctx, 0, rc * 4);
	s->pos_send = MOE_WS(ctx, 0, sc * 4);
	s->pos_exp = MOE_WS(ctx, 0, rc * 4);
	s->scount = calloc((size_t)R, sizeof(int64_t));
	s->rcount = calloc((size_t)R, sizeof(int64_t));
	s->ecount = calloc((size_t)p->experts, sizeof(int64_t));
	s->sb = calloc((size_t)R, sizeof(size_t));
	s->sd = calloc((size_t)R, sizeof(size_t));
	s->rb = calloc((size_t)R, sizeof(size_t));
	s->rd = calloc((size_t)R, sizeof(size_t));
	if (!s->recv_x || !s->sorted_x || !s->sorted_y || !s->ret_y || !s->recv_meta || !s->recv_w || !s->sorted_w ||
	    !s->pos_send || !s->pos_exp || !s->scount || !s->rcount || !s->ecount || !s->sb || !s->sd || !s->rb || !s->rd)
		return MOE_ERR_NOMEM;
	return MOE_OK;
}

/* Byte counts and displacements for rows of `elem` bytes. */
static void layout(const int64_t *rows, int n, size_t elem, size_t *bytes, size_t *displ)
{
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		bytes[i] = (size_t)rows[i] * elem;
		displ[i] = off;
		off += bytes[i];
	}
}

static int a2a_xchg(struct moe_ctx *ctx, struct a2a_state *s, const void *send, const int64_t *srows,
		    void *recv, const int64_t *rrows, size_t elem, int count_bytes)
{
	int R = ctx->nranks;
	layout(srows, R, elem, s->sb, s->sd);
	layout(rrows, R, elem, s->rb, s->rd);
	if (count_bytes)
		for (int i = 0; i < R; i++) {
			ctx->bytes.logical += (int64_t)s->sb[i];
			if (i != ctx->rank)
				ctx->bytes.wire += (int64_t)s->sb[i];
		}
	double t0;
	MOE_CHECK(moe_xfer_begin(ctx, &t0));
	MOE_CHECK(ctx->xp->alltoallv(ctx->comm, MOE_GROUP_WORLD, send, s->sb, s->sd, recv, s->rb, s->rd));
	return moe_xfer_end(ctx, t0);
}

static int a2a_layer(struct moe_ctx *ctx, int layer, const moe_bf16 *x, int64_t n, const int32_t *idx,
		     const float *w, const float *base, moe_bf16 *y)
{
	const struct moe_params *p = ctx->p;
	struct a2a_state *s = ctx->strategy_state;
	const struct moe_backend_ops *be = ctx->be;
	struct moe_dev *dv = ctx->dev;
	int64_t H = p->hidden, K = p->topk, R = ctx->nranks, epr = p->experts / R;
	size_t row = (size_t)H * sizeof(moe_bf16);

	MOE_CHECK(moe_phase(ctx, MOE_PH_dispatch));
	/* destination of slot (t, k) is the owner of its expert; pos_send is its place in send order */
	MOE_CHECK(be->bucket(dv, idx, n * K, 0, (int32_t)epr, R, s->scount, s->pos_send));
	MOE_CHECK(ctx->xp->exchange(ctx->comm, MOE_GROUP_WORLD, s->scount, s->rcount));
	int64_t nrecv = 0;
	for (int r = 0; r < R; r++)
		nrecv += s->rcount[r];
	if (nrecv > s->cap_recv) {
		moe_err("a2a: %lld rows arrive, workspace holds %lld", (long long)nrecv, (long long)s->cap_recv);
		return MOE_ERR_SYSTEM;
	}
	MOE_CHECK(be->scatter_rows(dv, x, s->pos_send, n * K, K, H, s->send_x));
	MOE_CHECK(be->scatter_i32(dv, idx, s->pos_send, n * K, s->send_meta));
	MOE_CHECK(a2a_xchg(ctx, s, s->send_x, s->scount, s->recv_x, s->rcount, row, 1));
	MOE_CHECK(a2a_xchg(ctx, s, s->send_meta, s->scount, s->recv_meta, s->rcount, 4, 1));
	if (p->score_before_experts) {
		MOE_CHECK(be->scatter_i32(dv, (const int32_t *)w, s->pos_send, n * K, (int32_t *)s->send_w));
		MOE_CHECK(a2a_xchg(ctx, s, s->send_w, s->scount, s->recv_w, s->rcount, 4, 1));
	}

	MOE_CHECK(moe_phase(ctx, MOE_PH_expert));
	int32_t first = (int32_t)(ctx->rank * epr);
	MOE_CHECK(be->bucket(dv, s->recv_meta, nrecv, first, 1, epr, s->ecount, s->pos_exp));
	ctx->slots_sent += n * K;
	for (int64_t e = 0; e < epr; e++)
		ctx->slots_computed += s->ecount[e];
	MOE_CHECK(be->scatter_rows(dv, s->recv_x, s->pos_exp, nrecv, 1, H, s->sorted_x));
	if (p->score_before_experts)
		MOE_CHECK(be->scatter_i32(dv, (const int32_t *)s->recv_w, s->pos_exp, nrecv, (int32_t *)s->sorted_w));
	MOE_CHECK(moe_experts_run(ctx, layer, first, epr, s->ecount, s->sorted_x, s->sorted_w, s->sorted_y));
	MOE_CHECK(be->gather_rows(dv, s->sorted_y, s->pos_exp, nrecv, H, s->back_y));

	MOE_CHECK(moe_phase(ctx, MOE_PH_combine));
	MOE_CHECK(a2a_xchg(ctx, s, s->back_y, s->rcount, s->ret_y, s->scount, row, 1));
	MOE_CHECK(be->combine(dv, s->ret_y, s->pos_send, w, n, K, H, base, p->score_before_experts, y, NULL));
	return MOE_OK;
}

static void a2a_teardown(struct moe_ctx *ctx)
{
	struct a2a_state *s = ctx->strategy_state;
	if (!s)
		return;
	free(s->scount);
	free(s->rcount);
	free(s->ecount);
	free(s->sb);
	free(s->sd);
	free(s->rb);
	free(s->rd);
	free(s);
	ctx->strategy_state = NULL;
}

const struct moe_strategy_ops moe_strategy_a2a = {
	.abi = MOE_STRATEGY_ABI,
	.name = "a2a",
	.sym_bytes = a2a_sym_bytes,
	.setup = a2a_setup,
	.layer = a2a_layer,
	.teardown = a2a_teardown,
	.no_graph = "its layer reads the per-peer row counts back to the host (bucket) and exchanges them through host "
		    "transport calls before the rows move",
};
