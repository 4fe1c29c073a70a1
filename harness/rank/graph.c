/* graph = on: the rank captures its whole iteration once and replays it; and in both modes the steady-state
 * period, iterations back to back without the ranks meeting in between. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rank_internal.h"
#include "status.h"
#include "transport.h"

void moe_rank_acct_save(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	struct moe_rank_acct *a = &r->acct;
	a->bytes = ctx->bytes;
	a->xfer_us = ctx->xfer_us, a->fetch_us = ctx->fetch_us;
	a->slots_sent = ctx->slots_sent, a->slots_computed = ctx->slots_computed;
	a->rows_dispatched = ctx->rows_dispatched, a->pad_dispatched = ctx->pad_dispatched;
	if (a->expert_rows)
		memcpy(a->expert_rows, ctx->expert_rows, (size_t)r->p.experts * sizeof(int64_t));
}

void moe_rank_acct_restore(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_rank_acct *a = &r->acct;
	ctx->bytes = a->bytes;
	ctx->xfer_us = a->xfer_us, ctx->fetch_us = a->fetch_us;
	ctx->slots_sent = a->slots_sent, ctx->slots_computed = a->slots_computed;
	ctx->rows_dispatched = a->rows_dispatched, ctx->pad_dispatched = a->pad_dispatched;
	if (a->expert_rows)
		memcpy(ctx->expert_rows, a->expert_rows, (size_t)r->p.experts * sizeof(int64_t));
}

/* Synthetic routing is a host workload: drawn once per layer into device buffers before the capture, so
 * that the captured route step is a device-to-device copy. The router runs on the device: nothing to do. */
static int draw_routing(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	size_t nk = (size_t)(r->n * p->topk);
	if (p->routing.kind == MOE_ROUTE_ROUTER)
		return MOE_OK;
	r->g_idx = calloc((size_t)p->layers, sizeof(*r->g_idx));
	r->g_w = calloc((size_t)p->layers, sizeof(*r->g_w));
	if (!r->g_idx || !r->g_w)
		return MOE_ERR_NOMEM;
	for (int l = 0; l < p->layers; l++) {
		r->g_idx[l] = MOE_WS(ctx, 0, nk * sizeof(int32_t) + 4);
		r->g_w[l] = MOE_WS(ctx, 0, nk * sizeof(float) + 4);
		if (!r->g_idx[l] || !r->g_w[l])
			return MOE_ERR_NOMEM;
		MOE_CHECK(moe_rank_route_host(r, l, r->g_idx[l], r->g_w[l]));
	}
	return ctx->be->sync(ctx->dev);
}

/* The capture itself: every layer recorded between capture_begin and capture_end, with moe_phase quiet. */
static int capture(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	void *g = NULL;
	moe_rank_iter_reset(ctx);
	MOE_CHECK(ctx->be->capture_begin(ctx->dev));
	r->capturing = 1;
	ctx->nmarks = -1;
	int rc = moe_rank_layers(r);
	r->capturing = 0;
	int rc2 = ctx->be->capture_end(ctx->dev, &g);
	if (rc == MOE_OK && rc2 == MOE_OK) {
		r->graph = g;
		moe_rank_acct_save(r);
		return MOE_OK;
	}
	if (g)
		ctx->be->graph_free(ctx->dev, g);
	return rc != MOE_OK ? rc : rc2;
}

/* Draw the routing, run one eager iteration (every buffer the backend grows on first use is then grown
 * outside the capture), capture. MOE_EXIT_OK, or the rank's exit status once the launcher has been told. */
int moe_rank_graph_open(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_backend_ops *be = ctx->be;
	int rc;
	if (!be->capture_begin || !be->capture_end || !be->replay || !be->graph_free)
		return moe_rank_send_error(r->boot_fd, "graph = on: backend %s cannot capture graphs", be->name),
		       MOE_EXIT_USAGE;
	r->acct.expert_rows = calloc((size_t)r->p.experts + 1, sizeof(int64_t));
	if (!r->acct.expert_rows)
		return moe_rank_send_error(r->boot_fd, "graph = on: out of memory"), MOE_EXIT_RANK;
	if (r->p.shared_experts) {
		int32_t n32 = (int32_t)r->n;
		r->shared_cnt = MOE_WS(ctx, 0, sizeof(int32_t));
		if (!r->shared_cnt || be->h2d(ctx->dev, r->shared_cnt, &n32, sizeof(n32)) != MOE_OK)
			return moe_rank_send_error(r->boot_fd, "graph = on: the shared experts' row count"), MOE_EXIT_RANK;
	}
	if ((rc = draw_routing(r)) != MOE_OK)
		return moe_rank_send_error(r->boot_fd, "graph = on: drawing the routing failed (status %d)", rc),
		       MOE_EXIT_RANK;
	if ((rc = moe_rank_iteration(r)) != MOE_OK)
		return moe_rank_send_error(r->boot_fd, "graph = on: the iteration before the capture failed in phase %s "
					   "(status %d)", moe_phase_name(atomic_load(&ctx->status->phase[ctx->rank])), rc),
		       MOE_EXIT_RANK;
	if ((rc = capture(r)) != MOE_OK) /* the backend said which step cannot be captured */
		return moe_rank_send_error(r->boot_fd, "graph = on: capturing the iteration failed in phase %s (status %d): "
					   "a step of it waits on the host (see the rank's log)",
					   moe_phase_name(atomic_load(&ctx->status->phase[ctx->rank])), rc),
		       rc == MOE_ERR_UNSUPPORTED ? MOE_EXIT_USAGE : MOE_EXIT_RANK;
	return MOE_EXIT_OK;
}

/* The steady-state period: after the timed iterations, `iters` more back to back (no barrier, no flush,
 * one sync at the end). The strategy collects once at the end, to drain what its device counted; what
 * the report reads of the host's accounting is the last timed iteration's, restored. */
int moe_rank_steady(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_strategy_ops *st = moe_strategy_find(moe_strategy_name(r->p.strategy));
	int iters = (int)r->p.iters, marks = ctx->be->mark != NULL && !r->graph;
	struct moe_rank_acct keep = r->acct;
	int64_t *rows = calloc((size_t)r->p.experts + 1, sizeof(int64_t));
	if (!rows)
		return MOE_ERR_NOMEM;
	r->acct.expert_rows = rows;
	moe_rank_acct_save(r);
	r->period_us = NAN;
	int rc = ctx->xp->barrier(ctx->comm, MOE_GROUP_WORLD); /* start together, then never meet again */
	double t0 = moe_now_us();
	for (int it = 0; it < iters && rc == MOE_OK; it++) {
		ctx->nmarks = marks ? 0 : -1; /* device marks keep phases off the host; they are not read */
		rc = r->graph ? ctx->be->replay(ctx->dev, r->graph) : moe_rank_layers(r);
	}
	ctx->nmarks = -1;
	if (rc == MOE_OK)
		rc = ctx->be->sync(ctx->dev);
	if (rc == MOE_OK)
		r->period_us = (moe_now_us() - t0) / iters;
	if (rc == MOE_OK && st->collect)
		rc = st->collect(ctx);
	moe_rank_acct_restore(r);
	free(rows);
	r->acct = keep;
	return rc;
}

void moe_rank_graph_free(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	if (r->graph && ctx->be && ctx->dev)
		ctx->be->graph_free(ctx->dev, r->graph);
	r->graph = NULL;
	free(r->g_idx);
	free(r->g_w);
	free(r->acct.expert_rows);
	r->g_idx = NULL;
	r->g_w = NULL;
	r->acct.expert_rows = NULL;
}
