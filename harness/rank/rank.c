/* The rank process: receive the case, set it up (setup.c), run warm-up and timed iterations phase by
 * phase (phases.c times them), then hand the last iteration to verification, which reports (verify.c). */
#include "rank.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "boot.h"
#include "rank_internal.h"
#include "status.h"
#include "transport.h"

/* Routing of the n dispatched rows of one layer into d_idx / d_w. */
static int route(struct rank_run *r, int layer, const moe_bf16 *d_x, int32_t *d_idx, float *d_w)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	int64_t K = p->topk, n = r->n;
	if (p->routing.kind == MOE_ROUTE_ROUTER) {
		struct moe_route_cfg rc = {
			.hidden = p->hidden, .experts = p->experts, .topk = K, .groups = p->groups,
			.topk_groups = p->topk_groups, .sigmoid = p->score == MOE_SCORE_SIGMOID, .norm = p->route_norm,
			.scale = (float)p->route_scale, .d_bias = ctx->lw[layer].bias,
		};
		return ctx->be->route(ctx->dev, &rc, d_x, n, ctx->lw[layer].wg, d_idx, d_w);
	}
	if (r->g_idx) { /* graph = on: drawn once before the capture (graph.c), copied on the device */
		MOE_CHECK(ctx->be->d2d(ctx->dev, d_idx, r->g_idx[layer], (size_t)(n * K) * sizeof(int32_t)));
		return ctx->be->d2d(ctx->dev, d_w, r->g_w[layer], (size_t)(n * K) * sizeof(float));
	}
	return moe_rank_route_host(r, layer, d_idx, d_w);
}

int moe_rank_route_host(struct rank_run *r, int layer, int32_t *d_idx, float *d_w)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	int64_t K = p->topk, n = r->n;
	/* synthetic routing is drawn on the host (it is a workload, not a kernel) and uploaded */
	int32_t *hi = calloc((size_t)(n * K + 1), sizeof(int32_t));
	float *hw = calloc((size_t)(n * K + 1), sizeof(float));
	if (!hi || !hw) {
		free(hi);
		free(hw);
		return MOE_ERR_NOMEM;
	}
	for (int64_t i = 0; i < n; i++) {
		if (r->gid[i] < 0) /* pad rows: moe_pad_routing sets them */
			continue;
		uint64_t g = (uint64_t)r->gid[i];
		moe_route_synth(p, (uint32_t)layer, g, hi + i * K, hw + i * K);
		if (p->routing.kind == MOE_ROUTE_TRACE)
			for (int64_t k = 0; k < K; k++)
				hi[i * K + k] = r->trace.ids[(int64_t)(g % (uint64_t)r->trace.ntokens) * r->trace.topk + k];
	}
	int rc = ctx->be->h2d(ctx->dev, d_idx, hi, (size_t)(n * K) * sizeof(int32_t));
	if (rc == MOE_OK)
		rc = ctx->be->h2d(ctx->dev, d_w, hw, (size_t)(n * K) * sizeof(float));
	free(hi);
	free(hw);
	return rc;
}

void moe_rank_iter_reset(struct moe_ctx *ctx)
{
	memset(ctx->phase_us, 0, sizeof(ctx->phase_us));
	memset(&ctx->bytes, 0, sizeof(ctx->bytes));
	ctx->xfer_us = 0;
	ctx->fetch_us = 0;
	ctx->slots_sent = ctx->slots_computed = 0;
	ctx->rows_dispatched = ctx->pad_dispatched = 0;
	memset(ctx->expert_rows, 0, (size_t)ctx->p->experts * sizeof(int64_t));
}

/* Shared experts: local work on the rank's own rows, counted with the experts. In graph mode the row count
 * is read on the device (ffn_dev), so that a backend which must upload host counts is not asked to. */
static int shared_experts(struct rank_run *r, int l)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	const moe_bf16 *s1 = ctx->lw[l].sw1, *s3 = ctx->lw[l].sw3, *s2 = ctx->lw[l].sw2;
	int64_t cnt = r->n;
	struct moe_ffn_cfg fc = {
		.kind = (enum moe_ffn_kind)p->expert, .hidden = p->hidden, .ffn = p->ffn * p->shared_experts,
		.nexperts = 1, .first_expert = p->experts, .d_w1 = &s1, .d_w3 = &s3, .d_w2 = &s2,
	};
	MOE_CHECK(moe_phase(ctx, MOE_PH_expert));
	if (r->shared_cnt && ctx->be->ffn_dev)
		MOE_CHECK(ctx->be->ffn_dev(ctx->dev, &fc, r->xs[l], r->shared_cnt, r->n, NULL, r->shared_y));
	else
		MOE_CHECK(ctx->be->ffn(ctx->dev, &fc, r->xs[l], &cnt, NULL, r->shared_y));
	return ctx->be->widen(ctx->dev, r->shared_y, r->n * p->hidden, r->base);
}

int moe_rank_layers(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	const struct moe_strategy_ops *st = moe_strategy_find(moe_strategy_name(p->strategy));
	int64_t H = p->hidden, n = r->n;
	for (int l = 0; l < p->layers; l++) {
		MOE_CHECK(moe_phase(ctx, MOE_PH_route));
		if (r->xs[l] != r->X[l])
			MOE_CHECK(moe_slice_input(ctx, &r->sl, r->X[l], r->xs[l]));
		MOE_CHECK(route(r, l, r->xs[l], r->idx[l], r->w[l]));
		MOE_CHECK(moe_pad_routing(ctx, &r->sl, r->idx[l], r->w[l]));
		const float *base = NULL;
		if (p->shared_experts && n) {
			MOE_CHECK(shared_experts(r, l));
			base = r->base;
		}
		ctx->rows_dispatched += n;
		ctx->pad_dispatched += n - r->sl.nreal;
		MOE_CHECK(st->layer(ctx, l, r->xs[l], n, r->idx[l], r->w[l], base, r->ys[l]));
		if (p->partition != MOE_PART_REPLICATE) {
			MOE_CHECK(moe_phase(ctx, MOE_PH_tp_merge));
			MOE_CHECK(moe_tp_merge(ctx, &r->sl, r->ys[l], r->merge_sym, r->ypad, r->Y[l]));
		}
		moe_rank_phase_end(ctx);
		if (l + 1 < p->layers) /* residual on the group's full rows: x_{l+1} = x_l + y_l */
			MOE_CHECK(ctx->be->add(ctx->dev, r->X[l], r->Y[l], r->T * H, r->X[l + 1]));
	}
	return MOE_OK;
}

/* One timed iteration: the ranks meet, then every layer runs (or the captured graph replays), then the
 * device is synchronised and the strategy collects what the device counted. */
int moe_rank_iteration(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	const struct moe_strategy_ops *st = moe_strategy_find(moe_strategy_name(p->strategy));
	if (r->graph) /* what the host counted while capturing is what every replay does */
		moe_rank_acct_restore(r);
	else
		moe_rank_iter_reset(ctx);
	MOE_CHECK(ctx->xp->barrier(ctx->comm, MOE_GROUP_WORLD));
	if (p->l2_flush)
		MOE_CHECK(ctx->be->flush_cache(ctx->dev));
	double t0 = moe_now_us();
	int marks = ctx->be->mark != NULL;
	ctx->nmarks = marks ? 0 : -1;
	if (marks) /* mark 0: the iteration starts */
		MOE_CHECK(moe_phase(ctx, -1));
	if (r->graph)
		MOE_CHECK(ctx->be->replay(ctx->dev, r->graph));
	else
		MOE_CHECK(moe_rank_layers(r));
	if (marks)
		MOE_CHECK(moe_phase(ctx, -1));
	MOE_CHECK(ctx->be->sync(ctx->dev));
	ctx->phase_us[MOE_PH_done] = moe_now_us() - t0; /* 'done' slot carries the iteration total */
	int rc = st->collect ? st->collect(ctx) : MOE_OK; /* what the layers counted on the device, untimed */
	if (rc != MOE_OK)
		return rc; /* a refusal (MOE_ERR_USAGE) says why in ctx->refused */
	if (marks) {
		/* each segment between marks belongs to the phase its first mark opened */
		for (int i = 0; i + 1 < ctx->nmarks; i++)
			if (ctx->mark_phase[i] >= 0)
				ctx->phase_us[ctx->mark_phase[i]] += ctx->be->elapsed_us(ctx->dev, i, i + 1);
		ctx->phase_us[MOE_PH_done] = ctx->be->elapsed_us(ctx->dev, 0, ctx->nmarks - 1);
		ctx->nmarks = -1;
	}
	return MOE_OK;
}

/* Everything the rank holds, in the reverse order of run_case: the strategy, weights, workspaces,
 * transport and backend, then its own buffers. */
static void rank_free(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_strategy_ops *st = moe_strategy_find(moe_strategy_name(r->p.strategy));
	moe_rank_graph_free(r);
	if (st)
		st->teardown(ctx);
	if (ctx->be) {
		/* a strategy with its own load_weights keeps the expert matrices in its buffers */
		moe_weights_free(ctx, !(st && st->load_weights));
		moe_ws_release(ctx);
	}
	if (ctx->comm)
		ctx->xp->fini(ctx->comm);
	if (ctx->dev)
		ctx->be->fini(ctx->dev);
	free(r->X);
	free(r->Y);
	free(r->xs);
	free(r->ys);
	free(r->idx);
	free(r->w);
	for (int ph = 0; ph < MOE_PH_COUNT; ph++)
		free(r->samples[ph]);
	free(r->xfer);
	free(r->fetch);
	moe_trace_free(&r->trace);
	free(r->gid);
	free(ctx->tokens);
	free(ctx->expert_rows);
	if (r->shm)
		munmap(r->shm, r->shm_bytes);
}

static int run_case(struct rank_run *r, int shm_fd);

int moe_rank_main(void)
{
	const char *e_rank = getenv("MOEBENCH_RANK"), *e_n = getenv("MOEBENCH_NRANKS");
	const char *e_boot = getenv("MOEBENCH_BOOT_FD"), *e_shm = getenv("MOEBENCH_SHM_FD");
	if (!e_rank || !e_n || !e_boot || !e_shm) {
		fprintf(stderr, "moebench __rank is started by the launcher (moebench run), not by hand\n");
		return MOE_EXIT_USAGE;
	}
	struct rank_run *r = moe_xcalloc(1, sizeof(*r));
	struct moe_ctx *ctx = &r->ctx;
	ctx->rank = atoi(e_rank);
	ctx->nranks = atoi(e_n);
	r->period_us = NAN;
	ctx->cur_phase = -1;
	r->boot_fd = atoi(e_boot);
	moe_log_rank = ctx->rank;
	int rc = run_case(r, atoi(e_shm));
	/* A case that failed once the transport was up exits without tearing it down: that waits on peers
	 * (ipc's closing barrier, NCCL) which may be gone, and the launcher judges a rank when it exits.
	 * Its state stays reachable through moe_rank_current until the exit. */
	if (r->done || !ctx->comm) {
		moe_rank_current = NULL;
		rank_free(r);
		free(r);
	}
	return rc;
}

/* The case text from the launcher, parsed; this rank's place in the DP x TP grid. */
static int receive_case(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	uint32_t type;
	char *text;
	size_t len;
	if (moe_msg_recv(r->boot_fd, &type, &text, &len) || type != MOE_MSG_CASE) {
		moe_err("no case from the launcher: %s", strerror(errno));
		return MOE_EXIT_RANK;
	}
	int rc = moe_rank_parse_case(r, text);
	free(text);
	if (rc)
		return moe_rank_send_error(r->boot_fd, "bad case text"), MOE_EXIT_USAGE;
	ctx->p = &r->p;
	ctx->d = ctx->rank / (int)r->p.tp;
	ctx->t = ctx->rank % (int)r->p.tp;
	return MOE_EXIT_OK;
}

/* The case segment the launcher made: the status area this rank reports its phase in, then the rest. */
static int map_segment(struct rank_run *r, int shm_fd)
{
	off_t shm_bytes = lseek(shm_fd, 0, SEEK_END);
	void *shm = mmap(NULL, (size_t)shm_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
	if (shm == MAP_FAILED)
		return moe_rank_send_error(r->boot_fd, "mmap of the case segment (%lld bytes): %s", (long long)shm_bytes,
					   strerror(errno)),
		       MOE_EXIT_RANK;
	r->shm = shm;
	r->shm_bytes = (size_t)shm_bytes;
	r->ctx.status = shm;
	moe_rank_current = r;
	moe_phase(&r->ctx, MOE_PH_setup);
	return MOE_EXIT_OK;
}

/* Backend, transport, weights, each layer's buffers and the strategy, after the checks that refuse a case
 * which cannot fit. */
static int open_case(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	int rc;
	const struct moe_strategy_ops *st = moe_strategy_find(moe_strategy_name(p->strategy));
	ctx->be = moe_backend_find(moe_backend_name(p->backend));
	ctx->xp = moe_transport_find(moe_transport_name(p->transport));
	if (!st || !ctx->be || !ctx->xp)
		return moe_rank_send_error(r->boot_fd, "strategy %s, backend %s or transport %s is not built in",
					   moe_strategy_name(p->strategy), moe_backend_name(p->backend),
					   moe_transport_name(p->transport)),
		       MOE_EXIT_SKIP;
	const char *e_gpu = getenv("MOEBENCH_GPU");
	if ((rc = ctx->be->init(&ctx->dev, e_gpu ? atoi(e_gpu) : -1)) != MOE_OK)
		return moe_rank_send_error(r->boot_fd, "backend %s init failed (status %d)", ctx->be->name, rc),
		       rc == MOE_ERR_UNSUPPORTED ? MOE_EXIT_SKIP : MOE_EXIT_RANK;
	size_t ctl = MOE_STATUS_BYTES;
	struct moe_comm_info ci = {
		.rank = ctx->rank, .nranks = ctx->nranks, .dp = (int)p->dp, .tp = (int)p->tp, .boot_fd = r->boot_fd,
		.shm = (char *)r->shm + ctl, .shm_bytes = r->shm_bytes - ctl,
		.heap_per_rank = st->sym_bytes(p, ctx->max_rows, ctx->sum_rows) + moe_partition_sym_bytes(p, ctx->tokens),
		.be = ctx->be, .dev = ctx->dev,
	};
	if ((rc = moe_rank_preflight(r, ci.heap_per_rank)) != MOE_OK || (rc = moe_rank_blas_room(r)) != MOE_OK)
		return rc;
	if ((rc = ctx->xp->init(&ctx->comm, &ci)) != MOE_OK)
		return moe_rank_send_error(r->boot_fd, "transport %s init failed (status %d)", ctx->xp->name, rc),
		       MOE_EXIT_RANK;
	if ((rc = st->load_weights ? st->load_weights(ctx) : moe_weights_default(ctx)) ||
	    (rc = moe_rank_alloc_layers(r)) || (rc = st->setup(ctx))) {
		/* a case that does not fit is a scenario problem, reported before any iteration runs */
		if (rc == MOE_ERR_USAGE && ctx->refused[0])
			return moe_rank_send_error(r->boot_fd, "%s", ctx->refused), MOE_EXIT_USAGE;
		if (rc == MOE_ERR_NOMEM)
			return moe_rank_send_error(r->boot_fd, "the case does not fit in %s memory (weights and workspaces, %zu "
						   "bytes of workspace allocated before the failure); use fewer tokens, layers or a "
						   "smaller model",
						   ctx->be->name, ctx->ws_bytes),
			       MOE_EXIT_USAGE;
		return moe_rank_send_error(r->boot_fd, "setup failed (status %d)", rc), MOE_EXIT_RANK;
	}
	return MOE_EXIT_OK;
}

/* Warm-up, then the timed iterations: each phase's time, the transport's and the fetch's, per iteration. */
static int timed_iterations(struct rank_run *r, struct moe_bytes *bytes)
{
	struct moe_ctx *ctx = &r->ctx;
	int rc, iters = (int)r->p.iters, warm = (int)r->p.warmup;
	if (r->p.graph && (rc = moe_rank_graph_open(r)) != MOE_EXIT_OK)
		return rc;
	moe_counters_start(&r->ctr);
	/* a replayed graph has no phase boundaries: only the total is timed */
	for (int ph = 0; ph < MOE_PH_COUNT; ph++)
		if (r->p.graph ? ph == MOE_PH_done : ph == MOE_PH_route || ph == MOE_PH_dispatch || ph == MOE_PH_expert || ph == MOE_PH_combine ||
		    ph == MOE_PH_tp_merge || ph == MOE_PH_fetch_wait || ph == MOE_PH_done)
			r->samples[ph] = calloc((size_t)iters, sizeof(double));
	r->xfer = calloc((size_t)iters, sizeof(double));
	r->fetch = calloc((size_t)iters, sizeof(double));
	for (int it = 0; it < warm + iters; it++) {
		if (it == warm)
			memset(r->ctr_phase, 0, sizeof(r->ctr_phase));
		atomic_store(&ctx->status->iter[ctx->rank], it);
		if ((rc = moe_rank_iteration(r)) == MOE_ERR_USAGE && ctx->refused[0])
			return moe_rank_send_error(r->boot_fd, "iteration %d: %s", it, ctx->refused), MOE_EXIT_USAGE;
		if (rc != MOE_OK)
			return moe_rank_send_error(r->boot_fd, "iteration %d failed in phase %s (status %d)", it,
						   moe_phase_name(atomic_load(&ctx->status->phase[ctx->rank])), rc),
			       MOE_EXIT_RANK;
		if (it >= warm) {
			r->xfer[it - warm] = ctx->xfer_us;
			r->fetch[it - warm] = ctx->fetch_us;
		}
		if (it == warm)
			r->digest_first = moe_rank_output_digest(r);
		if (it >= warm)
			for (int ph = 0; ph < MOE_PH_COUNT; ph++)
				if (r->samples[ph])
					r->samples[ph][it - warm] = ctx->phase_us[ph];
		*bytes = ctx->bytes;
	}
	moe_counters_stop(&r->ctr);
	if ((rc = moe_rank_steady(r)) != MOE_OK)
		return moe_rank_send_error(r->boot_fd, "the steady-state iterations failed (status %d)", rc), MOE_EXIT_RANK;
	return MOE_EXIT_OK;
}

/* The case, from its text to the result sent to the launcher. Returns the rank's exit status. */
static int run_case(struct rank_run *r, int shm_fd)
{
	struct moe_bytes bytes = {0, 0, 0};
	int rc;
	if ((rc = receive_case(r)) || (rc = map_segment(r, shm_fd)) || (rc = moe_rank_layout(r)) ||
	    (rc = open_case(r)) || (rc = timed_iterations(r, &bytes)))
		return rc;
	return moe_rank_report(r, &bytes);
}
