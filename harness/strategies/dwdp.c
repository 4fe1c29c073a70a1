/* dwdp strategy: no token exchange. Rank q of a group of D holds experts [P*q, P*q + W) in symmetric memory;
 * it pulls P experts from every peer (the head of the peer's range when the peer comes first, the tail
 * otherwise) into two alternating buffers (layer l uses buffer l % 2) on a helper thread. Layer l waits
 * only for its own fetch; the fetch for layer l + 2 starts once layer l has released the buffer. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "rng.h"
#include "strategy.h"
#include "workload.h"

struct dwdp_fetch {
	int peer;           /* world rank */
	int64_t expert;     /* global id */
	int64_t peer_local; /* its index in the peer's range */
};

struct dwdp_state {
	int64_t D, W, P, q, F, H;
	size_t mat;          /* bytes of one F x H matrix */
	char *sym_w;         /* symmetric: layers x W x {W1, W3, W2} */
	char *buf[2];        /* fetched experts of the layer in flight, one per parity */
	struct dwdp_fetch *fx;
	int nfx;
	/* helper thread */
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int queue[4], qh, qn; /* layers to fetch, FIFO */
	int done_layer[2];    /* the layer whose fetch completed in each buffer, -1 none */
	int stop, failed;
	double fetch_us;      /* helper time spent copying, this iteration */
	int64_t fetched;      /* bytes, this iteration */
	int next_layer;       /* next layer the main thread will request */
	/* compute */
	int64_t *ecount;
	int32_t *pos;
	moe_bf16 *sorted_x, *sorted_y;
	float *sorted_w;
};

static int64_t dsize(const struct moe_params *p, int nranks)
{
	return p->dwdp_size ? p->dwdp_size : nranks;
}

static char *wptr(struct dwdp_state *s, int64_t layer, int64_t j, int m)
{
	return s->sym_w + ((size_t)((layer * s->W + j) * 3 + m)) * s->mat;
}

static size_t dwdp_sym_bytes(const struct moe_params *p, int64_t max_rows, int64_t sum_rows)
{
	(void)max_rows;
	(void)sum_rows;
	return (size_t)(p->layers * p->experts_per_worker * 3) * (size_t)(p->ffn * p->hidden) * 2 + MOE_WS_SYM_OVERHEAD;
}

static void *helper(void *arg)
{
	struct moe_ctx *ctx = arg;
	struct dwdp_state *s = ctx->strategy_state;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->qn && !s->stop)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->stop)
			break;
		int l = s->queue[s->qh];
		pthread_mutex_unlock(&s->mu);
		double t0 = moe_now_us();
		int rc = MOE_OK;
		char *dst = s->buf[l % 2];
		for (int i = 0; i < s->nfx && rc == MOE_OK; i++)
			for (int m = 0; m < 3 && rc == MOE_OK; m++)
				rc = ctx->xp->read_peer(ctx->comm, s->fx[i].peer, dst + ((size_t)i * 3 + (size_t)m) * s->mat,
							wptr(s, l, s->fx[i].peer_local, m), s->mat);
		if (rc == MOE_OK) /* every copy of the layer in flight together, then one wait */
			rc = ctx->xp->read_fence(ctx->comm);
		double us = moe_now_us() - t0;
		pthread_mutex_lock(&s->mu);
		s->qh = (s->qh + 1) % 4;
		s->qn--;
		s->fetch_us += us;
		s->fetched += (int64_t)s->nfx * 3 * (int64_t)s->mat;
		s->done_layer[l % 2] = l;
		s->failed |= rc != MOE_OK;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static void request(struct dwdp_state *s, int layer)
{
	pthread_mutex_lock(&s->mu);
	s->done_layer[layer % 2] = -1;
	s->queue[(s->qh + s->qn) % 4] = layer;
	s->qn++;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Local weights into symmetric memory; fetched experts point into the parity buffers. */
static int dwdp_load_weights(struct moe_ctx *ctx)
{
	const struct moe_params *p = ctx->p;
	struct dwdp_state *s = calloc(1, sizeof(*s));
	if (!s)
		return MOE_ERR_NOMEM;
	ctx->strategy_state = s;
	s->D = dsize(p, ctx->nranks);
	s->W = p->experts_per_worker;
	s->P = p->prefetch_experts;
	s->q = ctx->rank % s->D;
	s->F = p->ffn;
	s->H = p->hidden;
	s->mat = (size_t)(s->F * s->H) * sizeof(moe_bf16);
	int64_t L = p->layers, g0 = ctx->rank - s->q;
	s->sym_w = MOE_WS(ctx, 1, (size_t)(L * s->W * 3) * s->mat);
	s->fx = calloc((size_t)MOE_MAX(1, (s->D - 1) * s->P + 1), sizeof(*s->fx));
	if (!s->sym_w || !s->fx)
		return MOE_ERR_NOMEM;
	for (int64_t q = 0; q < s->D; q++) {
		if (q == s->q)
			continue;
		int64_t first = q < s->q ? 0 : s->W - s->P; /* head of an earlier peer's range, tail of a later one's */
		for (int64_t j = first; j < first + s->P; j++)
			s->fx[s->nfx++] = (struct dwdp_fetch){(int)(g0 + q), s->P * q + j, j};
	}
	for (int b = 0; b < 2 && b < L; b++) {
		s->buf[b] = MOE_WS(ctx, 0, (size_t)s->nfx * 3 * s->mat + 1);
		if (!s->buf[b])
			return MOE_ERR_NOMEM;
	}
	ctx->lw = calloc((size_t)MOE_MAX(L, 1), sizeof(*ctx->lw));
	if (!ctx->lw)
		return MOE_ERR_NOMEM;
	for (int64_t l = 0; l < L; l++) {
		struct moe_layer_weights *lw = &ctx->lw[l];
		MOE_CHECK(moe_weights_replicated(ctx, l, lw));
		/* local experts in symmetric memory, where peers read them */
		for (int64_t j = 0; j < s->W; j++) {
			int64_t e = s->P * s->q + j;
			MOE_CHECK(moe_weights_upload(ctx, MOE_T_W1, (uint32_t)l, (uint64_t)(e * s->F), s->F, s->H, wptr(s, l, j, 0)));
			MOE_CHECK(moe_weights_upload(ctx, MOE_T_W3, (uint32_t)l, (uint64_t)(e * s->F), s->F, s->H, wptr(s, l, j, 1)));
			MOE_CHECK(moe_weights_upload(ctx, MOE_T_W2, (uint32_t)l, (uint64_t)(e * s->H), s->H, s->F, wptr(s, l, j, 2)));
			lw->w1[e] = (moe_bf16 *)wptr(s, l, j, 0);
			lw->w3[e] = (moe_bf16 *)wptr(s, l, j, 1);
			lw->w2[e] = (moe_bf16 *)wptr(s, l, j, 2);
		}
		/* fetched experts are read in place from the buffer of the layer's parity */
		for (int i = 0; i < s->nfx; i++) {
			char *b = s->buf[l % 2] + (size_t)i * 3 * s->mat;
			lw->w1[s->fx[i].expert] = (moe_bf16 *)b;
			lw->w3[s->fx[i].expert] = (moe_bf16 *)(b + s->mat);
			lw->w2[s->fx[i].expert] = (moe_bf16 *)(b + 2 * s->mat);
		}
	}
	return MOE_OK;
}

static int dwdp_setup(struct moe_ctx *ctx)
{
	const struct moe_params *p = ctx->p;
	struct dwdp_state *s = ctx->strategy_state;
	int64_t m = ctx->max_rows * p->topk, H = p->hidden;
	s->ecount = calloc((size_t)p->experts, sizeof(int64_t));
	s->pos = MOE_WS(ctx, 0, (size_t)(m > 0 ? m : 1) * 4);
	s->sorted_x = MOE_WS(ctx, 0, (size_t)(m > 0 ? m * H : 1) * 2);
	s->sorted_y = MOE_WS(ctx, 0, (size_t)(m > 0 ? m * H : 1) * 2);
	s->sorted_w = MOE_WS(ctx, 0, (size_t)(m > 0 ? m : 1) * 4);
	if (!s->ecount || !s->pos || !s->sorted_x || !s->sorted_y || !s->sorted_w)
		return MOE_ERR_NOMEM;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->done_layer[0] = s->done_layer[1] = -1;
	if (pthread_create(&s->thr, NULL, helper, ctx))
		return MOE_ERR_SYSTEM;
	return MOE_OK;
}

/* Experts [a, b) over their contiguous rows of the expert-major buffers. */
static int ffn_range(struct moe_ctx *ctx, struct dwdp_state *s, int layer, int64_t a, int64_t b, int64_t row0)
{
	if (a >= b)
		return MOE_OK;
	return moe_experts_run(ctx, layer, a, b - a, s->ecount + a, s->sorted_x + row0 * s->H, s->sorted_w + row0,
			       s->sorted_y + row0 * s->H);
}

static int dwdp_layer(struct moe_ctx *ctx, int layer, const moe_bf16 *x, int64_t n, const int32_t *idx,
		      const float *w, const float *base, moe_bf16 *y)
{
	const struct moe_params *p = ctx->p;
	struct dwdp_state *s = ctx->strategy_state;
	const struct moe_backend_ops *be = ctx->be;
	int64_t K = p->topk, E = p->experts, L = p->layers;
	if (layer == 0) { /* a new forward pass: fetch the first two layers */
		pthread_mutex_lock(&s->mu);
		s->fetch_us = 0;
		s->fetched = 0;
		pthread_mutex_unlock(&s->mu);
		for (int l = 0; l < 2 && l < L; l++)
			request(s, l);
	}
	MOE_CHECK(moe_phase(ctx, MOE_PH_expert));
	MOE_CHECK(be->bucket(ctx->dev, idx, n * K, 0, 1, E, s->ecount, s->pos));
	MOE_CHECK(be->scatter_rows(ctx->dev, x, s->pos, n * K, K, s->H, s->sorted_x));
	if (p->score_before_experts)
		MOE_CHECK(be->scatter_i32(ctx->dev, (const int32_t *)w, s->pos, n * K, (int32_t *)s->sorted_w));
	int64_t lo = s->P * s->q, hi = lo + s->W, r_lo = 0, r_hi = 0;
	ctx->slots_sent += n * K;
	for (int64_t e = 0; e < E; e++) {
		ctx->slots_computed += s->ecount[e];
		if (e < lo)
			r_lo += s->ecount[e];
		if (e < hi)
			r_hi += s->ecount[e];
	}
	/* local experts first: they overlap the fetch still in flight */
	MOE_CHECK(ffn_range(ctx, s, layer, lo, hi, r_lo));
	MOE_CHECK(moe_phase(ctx, MOE_PH_fetch_wait));
	pthread_mutex_lock(&s->mu);
	while (s->done_layer[layer % 2] != layer && !s->failed)
		pthread_cond_wait(&s->cv, &s->mu);
	int failed = s->failed;
	pthread_mutex_unlock(&s->mu);
	if (failed) {
		moe_err("dwdp: a weight fetch failed");
		return MOE_ERR_SYSTEM;
	}
	MOE_CHECK(moe_phase(ctx, MOE_PH_expert));
	MOE_CHECK(ffn_range(ctx, s, layer, 0, lo, 0));
	MOE_CHECK(ffn_range(ctx, s, layer, hi, E, r_hi));
	MOE_CHECK(be->sync(ctx->dev));
	/* this layer no longer reads its buffer: the fetch for layer + 2 may overwrite it */
	if (layer + 2 < L)
		request(s, layer + 2);
	MOE_CHECK(moe_phase(ctx, MOE_PH_combine));
	MOE_CHECK(be->combine(ctx->dev, s->sorted_y, s->pos, w, n, K, s->H, base, p->score_before_experts, y, NULL));
	if (layer == L - 1) { /* the pass is over: account the fetches */
		pthread_mutex_lock(&s->mu);
		while (s->qn && !s->failed)
			pthread_cond_wait(&s->cv, &s->mu);
		ctx->fetch_us = s->fetch_us;
		ctx->bytes.fetched = s->fetched; /* reported on its own: no tokens move in dwdp */
		pthread_mutex_unlock(&s->mu);
	}
	return MOE_OK;
}

static void dwdp_teardown(struct moe_ctx *ctx)
{
	struct dwdp_state *s = ctx->strategy_state;
	if (!s)
		return;
	if (s->ecount) { /* setup ran: the helper exists */
		pthread_mutex_lock(&s->mu);
		s->stop = 1;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->thr, NULL);
	}
	free(s->ecount);
	free(s->fx);
	free(s);
	ctx->strategy_state = NULL;
}

const struct moe_strategy_ops moe_strategy_dwdp = {
	.abi = MOE_STRATEGY_ABI,
	.name = "dwdp",
	.sym_bytes = dwdp_sym_bytes,
	.setup = dwdp_setup,
	.load_weights = dwdp_load_weights,
	.layer = dwdp_layer,
	.teardown = dwdp_teardown,
	.no_graph = "its layer waits on the host thread that fetches peer weights, and sizes its expert calls "
		    "with host counts",
};
