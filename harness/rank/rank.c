/* The rank process: receive the case, build weights and inputs, run warm-up and timed iterations
 * phase by phase, verify the last iteration against the oracle, report samples and verdict as JSON. */
#include "rank.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "accounting.h"
#include "boot.h"
#ifdef MOE_HAVE_CUDA_BACKEND
#include "cuda_iface.h"
#endif
#include "counters.h"
#include "moe.h"
#include "oracle.h"
#include "params.h"
#include "rng.h"
#include "status.h"
#include "strategy.h"
#include "transport.h"
#include "workload.h"

enum inject_kind { INJ_NONE, INJ_CRASH, INJ_HANG, INJ_EXIT, INJ_OOM };

struct rank_run {
	struct moe_params p;
	struct moe_ctx ctx;
	int boot_fd;
	double mem_estimate; /* the preflight's lower bound of this rank's backend memory, bytes */
	char name[MOE_NAME_MAX];
	int inject_phase;
	enum inject_kind inject;
	int64_t corrupt_token, corrupt_col;
	char dump[MOE_PATH_MAX];
	int delay_phase;  /* test aid: --inject-delay PHASE:US */
	double delay_us;
	struct moe_counters ctr;
	long long ctr_phase[MOE_PH_COUNT][MOE_MAX_EVENTS];
	/* per timed iteration, per phase */
	double *samples[MOE_PH_COUNT];
	double *xfer;     /* per timed iteration: time inside transport data calls */
	double *fetch;    /* per timed iteration: dwdp weight fetch time (helper thread) */
	struct moe_slice sl; /* the rows this rank dispatches */
	int64_t n;        /* = sl.n */
	int64_t T, g0;    /* tokens of its DP group and the global id of the first */
	int64_t *gid;     /* per slice row: global id or a pad marker */
	struct moe_trace trace;
	/* device buffers per layer, kept for verification: the group's full input X and merged output Y
	 * (T rows, the same on every TP rank), the slice xs/ys (n rows) and its routing */
	moe_bf16 **X, **Y, **xs, **ys;
	int32_t **idx;
	float **w;
	float *base;      /* n x H fp32 shared-expert term */
	moe_bf16 *shared_y;
	void *merge_sym;  /* the partition's symmetric staging buffer */
	moe_bf16 *ypad;   /* T + pad rows (sp buffer / zero_token) */
	uint64_t digest_first; /* output digest after the first timed iteration */
	void *shm;        /* the case segment, shm_bytes long */
	size_t shm_bytes;
	int done;         /* the case ran to its end and the result was sent */
};

static struct rank_run *the_run; /* for moe_phase's fault injection and counters */

static void inject_fault(enum inject_kind k)
{
	switch (k) {
	case INJ_CRASH: raise(SIGSEGV); break;
	case INJ_HANG:
		for (;;)
			pause();
	case INJ_EXIT: _exit(9);
	case INJ_OOM: {
		/* run out of memory for real, but only of the little this process is allowed: a cap just above
		 * what it has keeps the planted fault from pushing the machine itself into the OOM killer */
		long pages = 0, page = sysconf(_SC_PAGESIZE);
		FILE *f = fopen("/proc/self/statm", "r");
		if (f) {
			if (fscanf(f, "%ld", &pages) != 1)
				pages = 0;
			fclose(f);
		}
		struct rlimit rl = {(rlim_t)pages * (rlim_t)page + (64u << 20), (rlim_t)pages * (rlim_t)page + (64u << 20)};
		setrlimit(RLIMIT_AS, &rl);
		for (;;) {
			char *p = malloc(4u << 20);
			if (!p) {
				moe_err("out of memory (planted by --inject-fault)");
				abort();
			}
			memset(p, 1, 4u << 20);
		}
	}
	default: break;
	}
}

/* Test aid (--inject-delay): a planted slowdown, spent inside the phase that starts now. */
static void planted_delay(int ph)
{
	if (the_run && ph >= 0 && the_run->delay_phase == ph)
		for (double until = moe_now_us() + the_run->delay_us; moe_now_us() < until;)
			;
}

int moe_phase(struct moe_ctx *ctx, int ph)
{
	if (ctx->be && ctx->be->mark && ctx->nmarks >= 0) {
		/* device timestamps: no sync on the hot path; durations are read at the end of the iteration */
		if (ctx->nmarks < MOE_MAX_MARKS) {
			MOE_CHECK(ctx->be->mark(ctx->dev, ctx->nmarks));
			ctx->mark_phase[ctx->nmarks++] = ph;
		}
		ctx->cur_phase = ph;
		if (ph >= 0 && ctx->status)
			atomic_store(&ctx->status->phase[ctx->rank], ph);
		if (ph >= 0 && the_run && the_run->inject != INJ_NONE && the_run->inject_phase == ph)
			inject_fault(the_run->inject);
		if (ph >= 0 && the_run && the_run->delay_phase == ph) {
			if (ctx->be->spin) /* on the device's timeline, right after the phase's start mark */
				MOE_CHECK(ctx->be->spin(ctx->dev, the_run->delay_us));
			else { /* the device reaches the start mark, then idles for the delay */
				MOE_CHECK(ctx->be->sync(ctx->dev));
				planted_delay(ph);
			}
		}
		return MOE_OK;
	}
	if (ctx->be)
		MOE_CHECK(ctx->be->sync(ctx->dev));
	double now = moe_now_us();
	if (ctx->cur_phase >= 0) {
		ctx->phase_us[ctx->cur_phase] += now - ctx->phase_t0;
		if (the_run) {
			long long v[MOE_MAX_EVENTS];
			moe_counters_delta(&the_run->ctr, v);
			for (int i = 0; i < MOE_MAX_EVENTS; i++)
				the_run->ctr_phase[ctx->cur_phase][i] += v[i];
		}
	} else if (the_run)
		moe_counters_delta(&the_run->ctr, (long long[MOE_MAX_EVENTS]){0});
	ctx->cur_phase = ph;
	ctx->phase_t0 = now;
	if (ph < 0)
		return MOE_OK;
	if (ctx->status)
		atomic_store(&ctx->status->phase[ctx->rank], ph);
	if (the_run && the_run->inject != INJ_NONE && the_run->inject_phase == ph)
		inject_fault(the_run->inject);
	planted_delay(ph);
	return MOE_OK;
}

int moe_xfer_begin(struct moe_ctx *ctx, double *t0)
{
	MOE_CHECK(ctx->be->sync(ctx->dev));
	*t0 = moe_now_us();
	return MOE_OK;
}

int moe_xfer_end(struct moe_ctx *ctx, double t0)
{
	MOE_CHECK(ctx->be->sync(ctx->dev));
	ctx->xfer_us += moe_now_us() - t0;
	return MOE_OK;
}

static void phase_end(struct moe_ctx *ctx)
{
	moe_phase(ctx, -1);
	ctx->cur_phase = -1;
}

static int parse_case(struct rank_run *r, char *text)
{
	char err[512];
	moe_params_defaults(&r->p);
	r->inject_phase = -1;
	r->delay_phase = -1;
	r->corrupt_token = -1;
	for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '@') {
			char *eq = strchr(line, '=');
			if (!eq)
				continue;
			*eq = 0;
			const char *k = line + 1, *v = eq + 1;
			moe_line_unescape(eq + 1);
			if (!strcmp(k, "name"))
				snprintf(r->name, sizeof(r->name), "%s", v);
			else if (!strcmp(k, "base_dir"))
				snprintf(r->p.base_dir, sizeof(r->p.base_dir), "%s", v);
			else if (!strcmp(k, "inject")) {
				char ph[64], kind[16];
				if (sscanf(v, "%63[^:]:%15s", ph, kind) == 2) {
					for (int i = 0; i < MOE_PH_COUNT; i++)
						if (!strcmp(moe_phase_name(i), ph))
							r->inject_phase = i;
					r->inject = !strcmp(kind, "crash")  ? INJ_CRASH
						    : !strcmp(kind, "hang") ? INJ_HANG
						    : !strcmp(kind, "oom")  ? INJ_OOM
									    : INJ_EXIT;
				}
			} else if (!strcmp(k, "delay")) {
				char ph[64];
				if (sscanf(v, "%63[^:]:%lf", ph, &r->delay_us) == 2)
					for (int i = 0; i < MOE_PH_COUNT; i++)
						if (!strcmp(moe_phase_name(i), ph))
							r->delay_phase = i;
			} else if (!strcmp(k, "dump"))
				snprintf(r->dump, sizeof(r->dump), "%s", v);
			else if (!strcmp(k, "corrupt"))
				sscanf(v, "%lld:%lld", (long long *)&r->corrupt_token, (long long *)&r->corrupt_col);
			continue;
		}
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = 0;
		char key[128];
		snprintf(key, sizeof(key), "%s", line);
		for (char *e = key + strlen(key); e > key && (e[-1] == ' ' || e[-1] == '\t');)
			*--e = 0;
		moe_line_unescape(eq + 1);
		if (moe_param_set(&r->p, key, eq + 1, err, sizeof(err))) {
			moe_err("case text: %s: %s", key, err);
			return MOE_ERR_USAGE;
		}
	}
	return MOE_OK;
}

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

static int run_iteration(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	const struct moe_strategy_ops *st = moe_strategy_find(moe_strategy_name(p->strategy));
	int64_t H = p->hidden, n = r->n;
	memset(ctx->phase_us, 0, sizeof(ctx->phase_us));
	memset(&ctx->bytes, 0, sizeof(ctx->bytes));
	ctx->xfer_us = 0;
	ctx->fetch_us = 0;
	ctx->slots_sent = ctx->slots_computed = 0;
	ctx->rows_dispatched = ctx->pad_dispatched = 0;
	memset(ctx->expert_rows, 0, (size_t)p->experts * sizeof(int64_t));
	MOE_CHECK(ctx->xp->barrier(ctx->comm, MOE_GROUP_WORLD));
	if (p->l2_flush)
		MOE_CHECK(ctx->be->flush_cache(ctx->dev));
	double t0 = moe_now_us();
	int marks = ctx->be->mark != NULL;
	ctx->nmarks = marks ? 0 : -1;
	if (marks) /* mark 0: the iteration starts */
		MOE_CHECK(moe_phase(ctx, -1));
	for (int l = 0; l < p->layers; l++) {
		MOE_CHECK(moe_phase(ctx, MOE_PH_route));
		if (r->xs[l] != r->X[l])
			MOE_CHECK(moe_slice_input(ctx, &r->sl, r->X[l], r->xs[l]));
		MOE_CHECK(route(r, l, r->xs[l], r->idx[l], r->w[l]));
		MOE_CHECK(moe_pad_routing(ctx, &r->sl, r->idx[l], r->w[l]));
		const float *base = NULL;
		if (p->shared_experts && n) {
			/* shared experts are local work on the rank's own rows, counted with the experts */
			MOE_CHECK(moe_phase(ctx, MOE_PH_expert));
			const moe_bf16 *s1 = ctx->lw[l].sw1, *s3 = ctx->lw[l].sw3, *s2 = ctx->lw[l].sw2;
			int64_t cnt = n;
			struct moe_ffn_cfg fc = {
				.kind = (enum moe_ffn_kind)p->expert, .hidden = H, .ffn = p->ffn * p->shared_experts,
				.nexperts = 1, .first_expert = p->experts, .d_w1 = &s1, .d_w3 = &s3, .d_w2 = &s2,
			};
			MOE_CHECK(ctx->be->ffn(ctx->dev, &fc, r->xs[l], &cnt, NULL, r->shared_y));
			MOE_CHECK(ctx->be->widen(ctx->dev, r->shared_y, n * H, r->base));
			base = r->base;
		}
		ctx->rows_dispatched += n;
		ctx->pad_dispatched += n - r->sl.nreal;
		MOE_CHECK(st->layer(ctx, l, r->xs[l], n, r->idx[l], r->w[l], base, r->ys[l]));
		if (p->partition != MOE_PART_REPLICATE) {
			MOE_CHECK(moe_phase(ctx, MOE_PH_tp_merge));
			MOE_CHECK(moe_tp_merge(ctx, &r->sl, r->ys[l], r->merge_sym, r->ypad, r->Y[l]));
		}
		phase_end(ctx);
		if (l + 1 < p->layers) /* residual on the group's full rows: x_{l+1} = x_l + y_l */
			MOE_CHECK(ctx->be->add(ctx->dev, r->X[l], r->Y[l], r->T * H, r->X[l + 1]));
	}
	if (marks)
		MOE_CHECK(moe_phase(ctx, -1));
	MOE_CHECK(ctx->be->sync(ctx->dev));
	ctx->phase_us[MOE_PH_done] = moe_now_us() - t0; /* 'done' slot carries the iteration total */
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

/* FNV-1a over every layer's merged output: equal digests mean bit-identical outputs. */
static uint64_t output_digest(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	size_t bytes = (size_t)(r->T * r->p.hidden) * sizeof(moe_bf16);
	unsigned char *h = malloc(bytes + 1);
	uint64_t d = 0xcbf29ce484222325ull;
	for (int l = 0; l < r->p.layers && h; l++) {
		ctx->be->d2h(ctx->dev, h, r->Y[l], bytes);
		for (size_t i = 0; i < bytes; i++)
			d = (d ^ h[i]) * 0x100000001b3ull;
	}
	free(h);
	return d;
}

static json_t *verify(struct rank_run *r, int *mismatch)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	int64_t H = p->hidden, K = p->topk, n = r->n;
	json_t *jv = json_object();
	*mismatch = 0;
	if (p->check.kind == MOE_CHECK_OFF) {
		json_object_set_new(jv, "verdict", json_string("ok"));
		json_object_set_new(jv, "checked", json_integer(0));
		json_object_set_new(jv, "note", json_string("check = off: not verified"));
		return jv;
	}
	moe_bf16 *x = malloc((size_t)(n * H + 1) * 2), *y = malloc((size_t)(n * H + 1) * 2);
	moe_bf16 *yfull = malloc((size_t)(r->T * H + 1) * 2);
	int32_t *idx = malloc((size_t)(n * K + 1) * 4);
	float *w = malloc((size_t)(n * K + 1) * 4);
	int64_t *rows = NULL, nrows = n;
	/* the oracle derives the slice from the layout itself and carries each token's input across layers */
	struct moe_oracle *orc = moe_oracle_open(p, ctx->tokens, ctx->rank,
						 p->routing.kind == MOE_ROUTE_TRACE ? &r->trace : NULL);
	if (p->check.kind == MOE_CHECK_SAMPLE && p->check.sample < n) {
		/* a seeded choice of distinct rows, the same on every run */
		nrows = p->check.sample;
		rows = malloc((size_t)nrows * 8);
		for (int64_t j = 0, i = 0; i < n && j < nrows; i++) {
			double u = moe_rng_unit((uint64_t)p->seed, MOE_T_SAMPLE, 0, (uint64_t)(r->g0 + r->sl.s0 + i), 0);
			if (u * (double)(n - i) < (double)(nrows - j))
				rows[j++] = i;
		}
	}
	double max_err = 0;
	int64_t checked = 0;
	for (int l = 0; l < p->layers && !*mismatch; l++) {
		ctx->be->d2h(ctx->dev, x, r->xs[l], (size_t)(n * H) * 2);
		ctx->be->d2h(ctx->dev, y, r->ys[l], (size_t)(n * H) * 2);
		ctx->be->d2h(ctx->dev, yfull, r->Y[l], (size_t)(r->T * H) * 2);
		ctx->be->d2h(ctx->dev, idx, r->idx[l], (size_t)(n * K) * 4);
		ctx->be->d2h(ctx->dev, w, r->w[l], (size_t)(n * K) * 4);
		if (l == p->layers - 1 && r->corrupt_token >= 0 && r->corrupt_token < n && r->corrupt_col < H) {
			/* test aid: flip one output element so the checker must catch it */
			y[r->corrupt_token * H + r->corrupt_col] ^= 0x0100;
		}
		struct moe_verdict v;
		int rc = orc ? moe_oracle_check(orc, (uint32_t)l, n, x, idx, w, y, rows, nrows, &v) : MOE_ERR_NOMEM;
		/* the merged output must carry this rank's real rows unchanged */
		for (int64_t i = 0; rc == MOE_OK && !v.bad && i < r->sl.nreal; i++)
			for (int64_t c = 0; c < H; c++)
				if (yfull[(r->sl.s0 + i) * H + c] != y[i * H + c]) {
					v.bad = 1;
					v.token = i;
					v.gid = moe_oracle_gid(orc, i);
					v.col = c;
					v.mismatched = 1;
					snprintf(v.what, sizeof(v.what), "tp_merge: row %lld of the merged output differs from the slice",
						 (long long)(r->sl.s0 + i));
					break;
				}
		if (rc != MOE_OK) {
			json_object_set_new(jv, "verdict", json_string("error"));
			json_object_set_new(jv, "reason", json_string("oracle failed (out of memory?)"));
			*mismatch = 2;
			break;
		}
		checked += v.checked;
		if (v.max_err > max_err)
			max_err = v.max_err;
		if (v.bad) {
			*mismatch = 1;
			json_t *fb = json_object();
			json_object_set_new(fb, "rank", json_integer(ctx->rank));
			json_object_set_new(fb, "layer", json_integer(l));
			json_object_set_new(fb, "token", json_integer(v.token));
			json_object_set_new(fb, "global_token", json_integer(v.gid));
			json_object_set_new(fb, "column", json_integer(v.col));
			json_object_set_new(fb, "what", json_string(v.what));
			json_object_set_new(fb, "mismatched_tokens", json_integer(v.mismatched));
			json_object_set_new(jv, "first_bad", fb);
		}
	}
	if (*mismatch != 2)
		json_object_set_new(jv, "verdict", json_string(*mismatch ? "mismatch" : "ok"));
	json_object_set_new(jv, "checked", json_integer(checked));
	json_object_set_new(jv, "max_err", json_real(max_err));
	free(x);
	free(y);
	free(yfull);
	free(idx);
	free(w);
	free(rows);
	moe_oracle_close(orc);
	return jv;
}

static int send_error(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int send_error(int fd, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	moe_msg_send(fd, MOE_MSG_ERROR, buf, strlen(buf));
	return MOE_ERR_SYSTEM;
}

#define dalloc(ctx, elems, size) MOE_WS((ctx), 0, (size_t)((elems) > 0 ? (elems) : 1) * (size))

/* Refuse, before anything is allocated, a case whose lower-bound footprint (weights, the symmetric heap,
 * each layer's input and output) times the ranks sharing this memory exceeds the memory itself. What slips
 * past the estimate is still caught when an allocation fails during setup. */
/* OpenBLAS (when it is the BLAS) takes a working buffer of about 128 MiB per thread on first use and, when
 * that allocation fails, retries forever instead of failing: under an address-space limit (ulimit -v) a rank
 * would spin until the case timeout. The room is reserved once here, without touching it, so the case fails
 * at once with the reason. */
#define MOE_BLAS_BUFFER_BYTES ((size_t)129 << 20)
int openblas_get_num_threads(void) __attribute__((weak));

static int blas_room(struct rank_run *r)
{
	int threads = openblas_get_num_threads ? openblas_get_num_threads() : 0;
	if (threads <= 0)
		return MOE_OK; /* another BLAS: it reports its own failures */
	size_t need = (size_t)threads * MOE_BLAS_BUFFER_BYTES;
	void *m = mmap(NULL, need, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m != MAP_FAILED) {
		munmap(m, need);
		return MOE_OK;
	}
	struct rlimit rl = {0};
	getrlimit(RLIMIT_AS, &rl);
	char lim[64] = "unlimited";
	if (rl.rlim_cur != RLIM_INFINITY)
		snprintf(lim, sizeof(lim), "%llu KiB", (unsigned long long)rl.rlim_cur >> 10);
	send_error(r->boot_fd,
		   "resource limit: cannot reserve %zu MiB for OpenBLAS's working buffers (%d thread%s): %s (address-space "
		   "limit, ulimit -v: %s); raise the limit%s",
		   need >> 20, threads, threads == 1 ? "" : "s", strerror(errno), lim,
		   threads > 1 ? " or set OPENBLAS_NUM_THREADS=1" : "");
	return MOE_EXIT_RANK;
}

static int preflight(struct rank_run *r, size_t heap)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	if (!ctx->be->mem_total)
		return MOE_OK;
	size_t total = ctx->be->mem_total(ctx->dev);
	const char *e = getenv("MOEBENCH_GPU_RANKS");
	int sharers = !strcmp(ctx->be->name, "host") ? ctx->nranks : e && atoi(e) > 0 ? atoi(e) : 1;
	double w = (double)moe_weights_bytes(p, ctx->nranks), act = 2.0 * 2 * (double)p->layers * (double)r->T * (double)p->hidden;
	double need = w + (double)heap + act;
	r->mem_estimate = need;
	if (!total || need * sharers <= (double)total)
		return MOE_OK;
	const double g = 1024.0 * 1024 * 1024;
	send_error(r->boot_fd,
		   "the case cannot fit in %s memory: it needs at least %.2f GiB per rank (weights %.2f, symmetric heap %.2f, "
		   "activations %.2f) x %d rank%s sharing %.2f GiB; use fewer tokens, layers, experts per rank or a smaller model",
		   ctx->be->name, need / g, w / g, (double)heap / g, act / g, sharers, sharers == 1 ? "" : "s", total / g);
	return MOE_EXIT_USAGE;
}

static int alloc_layers(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	int64_t L = p->layers, n = r->n, T = r->T, H = p->hidden, K = p->topk;
	r->X = calloc((size_t)L, sizeof(*r->X));
	r->Y = calloc((size_t)L, sizeof(*r->Y));
	r->xs = calloc((size_t)L, sizeof(*r->xs));
	r->ys = calloc((size_t)L, sizeof(*r->ys));
	r->idx = calloc((size_t)L, sizeof(*r->idx));
	r->w = calloc((size_t)L, sizeof(*r->w));
	if (!r->X || !r->Y || !r->xs || !r->ys || !r->idx || !r->w)
		return MOE_ERR_NOMEM;
	for (int64_t l = 0; l < L; l++) {
		r->X[l] = dalloc(ctx, T * H, 2);
		r->Y[l] = dalloc(ctx, T * H, 2);
		/* replicate and leader dispatch the group's rows in place; sp builds a padded slice */
		r->xs[l] = p->partition == MOE_PART_SP ? dalloc(ctx, n * H, 2) : r->X[l];
		r->ys[l] = p->partition == MOE_PART_REPLICATE ? r->Y[l] : dalloc(ctx, n * H, 2);
		r->idx[l] = dalloc(ctx, n * K, 4);
		r->w[l] = dalloc(ctx, n * K, 4);
		if (!r->X[l] || !r->Y[l] || !r->xs[l] || !r->ys[l] || !r->idx[l] || !r->w[l])
			return MOE_ERR_NOMEM;
	}
	r->base = dalloc(ctx, n * H, 4);
	r->shared_y = dalloc(ctx, n * H, 2);
	r->ypad = dalloc(ctx, (T + r->sl.pad) * H, 2);
	size_t ms = moe_partition_sym_bytes(p, ctx->tokens);
	r->merge_sym = ms ? MOE_WS(ctx, 1, ms - MOE_WS_SYM_OVERHEAD) : NULL;
	if (!r->base || !r->shared_y || !r->ypad || (ms && !r->merge_sym))
		return MOE_ERR_NOMEM;
	/* layer 0 input: the DP group's tokens, rows g0.. of the global token tensor */
	moe_bf16 *h = malloc((size_t)(T * H) * 2 + 2);
	if (!h)
		return MOE_ERR_NOMEM;
	moe_gen_block(p, MOE_T_X, 0, (uint64_t)r->g0, T, H, h);
	int rc = ctx->be->h2d(ctx->dev, r->X[0], h, (size_t)(T * H) * 2);
	free(h);
	return rc;
}

static json_t *samples_json(struct rank_run *r, int iters)
{
	json_t *s = json_object();
	for (int ph = 0; ph < MOE_PH_COUNT; ph++) {
		if (!r->samples[ph])
			continue;
		json_t *a = json_array();
		for (int i = 0; i < iters; i++)
			json_array_append_new(a, json_real(r->samples[ph][i]));
		json_object_set_new(s, ph == MOE_PH_done ? "total" : moe_phase_name(ph), a);
	}
	json_t *a = json_array();
	for (int i = 0; i < iters; i++)
		json_array_append_new(a, json_real(r->xfer[i]));
	json_object_set_new(s, "xfer", a);
	a = json_array();
	for (int i = 0; i < iters; i++)
		json_array_append_new(a, json_real(r->fetch[i]));
	json_object_set_new(s, "fetch", a);
	return s;
}

/* Everything the rank holds, in the reverse order of run_case: the strategy, weights, workspaces,
 * transport and backend, then its own buffers. */
static void rank_free(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_strategy_ops *st = moe_strategy_find(moe_strategy_name(r->p.strategy));
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
	ctx->cur_phase = -1;
	r->boot_fd = atoi(e_boot);
	moe_log_rank = ctx->rank;
	int rc = run_case(r, atoi(e_shm));
	/* A case that failed once the transport was up exits without tearing it down: that waits on peers
	 * (ipc's closing barrier, NCCL) which may be gone, and the launcher judges a rank when it exits.
	 * Its state stays reachable through the_run until the exit. */
	if (r->done || !ctx->comm) {
		the_run = NULL;
		rank_free(r);
		free(r);
	}
	return rc;
}

/* The case, from its text to the result sent to the launcher. Returns the rank's exit status. */
static int run_case(struct rank_run *r, int shm_fd)
{
	struct moe_ctx *ctx = &r->ctx;
	uint32_t type;
	char *text;
	size_t len;
	if (moe_msg_recv(r->boot_fd, &type, &text, &len) || type != MOE_MSG_CASE) {
		moe_err("no case from the launcher: %s", strerror(errno));
		return MOE_EXIT_RANK;
	}
	int rc = parse_case(r, text);
	free(text);
	if (rc)
		return send_error(r->boot_fd, "bad case text"), MOE_EXIT_USAGE;
	const struct moe_params *p = &r->p;
	ctx->p = p;
	ctx->d = ctx->rank / (int)p->tp;
	ctx->t = ctx->rank % (int)p->tp;

	off_t shm_bytes = lseek(shm_fd, 0, SEEK_END);
	void *shm = mmap(NULL, (size_t)shm_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
	if (shm == MAP_FAILED)
		return send_error(r->boot_fd, "mmap of the case segment (%lld bytes): %s", (long long)shm_bytes, strerror(errno)),
		       MOE_EXIT_RANK;
	r->shm = shm;
	r->shm_bytes = (size_t)shm_bytes;
	ctx->status = shm;
	the_run = r;
	moe_phase(ctx, MOE_PH_setup);

	ctx->tokens = calloc((size_t)p->dp, sizeof(int64_t));
	ctx->expert_rows = calloc((size_t)p->experts, sizeof(int64_t));
	if (!ctx->tokens || !ctx->expert_rows)
		return send_error(r->boot_fd, "out of memory"), MOE_EXIT_RANK;
	moe_tokens_resolve(p, ctx->tokens);
	for (int i = 0; i < ctx->nranks; i++) {
		int64_t rows = moe_rows_dispatched(p, ctx->tokens, i);
		ctx->max_rows = MOE_MAX(ctx->max_rows, rows);
		ctx->sum_rows += rows;
	}
	r->T = ctx->tokens[ctx->d];
	for (int d = 0; d < ctx->d; d++)
		r->g0 += ctx->tokens[d];
	moe_slice_of(p, ctx->tokens, ctx->rank, &r->sl);
	r->n = r->sl.n;
	r->gid = calloc((size_t)(r->n + 1), sizeof(int64_t));
	for (int64_t i = 0; i < r->n; i++)
		r->gid[i] = moe_slice_gid(p, ctx->tokens, ctx->rank, &r->sl, i);
	if (p->routing.kind == MOE_ROUTE_TRACE) {
		char err[512], path[2 * MOE_PATH_MAX + 2];
		if (p->routing.trace[0] == '/')
			snprintf(path, sizeof(path), "%s", p->routing.trace);
		else
			snprintf(path, sizeof(path), "%s/%s", p->base_dir[0] ? p->base_dir : ".", p->routing.trace);
		if (moe_trace_load(path, p->experts, &r->trace, err, sizeof(err)))
			return send_error(r->boot_fd, "%s", err), MOE_EXIT_USAGE;
		if (r->trace.topk != p->topk)
			return send_error(r->boot_fd, "%s: %lld ids per token, but topk = %lld", path,
					  (long long)r->trace.topk, (long long)p->topk),
			       MOE_EXIT_USAGE;
	}

	const struct moe_strategy_ops *st = moe_strategy_find(moe_strategy_name(p->strategy));
	ctx->be = moe_backend_find(moe_backend_name(p->backend));
	ctx->xp = moe_transport_find(moe_transport_name(p->transport));
	if (!st || !ctx->be || !ctx->xp)
		return send_error(r->boot_fd, "strategy %s, backend %s or transport %s is not built in",
				  moe_strategy_name(p->strategy), moe_backend_name(p->backend),
				  moe_transport_name(p->transport)),
		       MOE_EXIT_SKIP;
	const char *e_gpu = getenv("MOEBENCH_GPU");
	if ((rc = ctx->be->init(&ctx->dev, e_gpu ? atoi(e_gpu) : -1)) != MOE_OK)
		return send_error(r->boot_fd, "backend %s init failed (status %d)", ctx->be->name, rc),
		       rc == MOE_ERR_UNSUPPORTED ? MOE_EXIT_SKIP : MOE_EXIT_RANK;
	size_t ctl = MOE_STATUS_BYTES;
	struct moe_comm_info ci = {
		.rank = ctx->rank, .nranks = ctx->nranks, .dp = (int)p->dp, .tp = (int)p->tp, .boot_fd = r->boot_fd,
		.shm = (char *)shm + ctl, .shm_bytes = (size_t)shm_bytes - ctl,
		.heap_per_rank = st->sym_bytes(p, ctx->max_rows, ctx->sum_rows) + moe_partition_sym_bytes(p, ctx->tokens),
		.be = ctx->be, .dev = ctx->dev,
	};
	if ((rc = preflight(r, ci.heap_per_rank)) != MOE_OK || (rc = blas_room(r)) != MOE_OK)
		return rc;
	if ((rc = ctx->xp->init(&ctx->comm, &ci)) != MOE_OK)
		return send_error(r->boot_fd, "transport %s init failed (status %d)", ctx->xp->name, rc), MOE_EXIT_RANK;
	if ((rc = st->load_weights ? st->load_weights(ctx) : moe_weights_default(ctx)) || (rc = alloc_layers(r)) ||
	    (rc = st->setup(ctx))) {
		/* a case that does not fit is a scenario problem, reported before any iteration runs */
		if (rc == MOE_ERR_NOMEM)
			return send_error(r->boot_fd, "the case does not fit in %s memory (weights and workspaces, %zu bytes "
					  "of workspace allocated before the failure); use fewer tokens, layers or a smaller model",
					  ctx->be->name, ctx->ws_bytes),
			       MOE_EXIT_USAGE;
		return send_error(r->boot_fd, "setup failed (status %d)", rc), MOE_EXIT_RANK;
	}

	moe_counters_start(&r->ctr);
	int iters = (int)p->iters, warm = (int)p->warmup;
	for (int ph = 0; ph < MOE_PH_COUNT; ph++)
		if (ph == MOE_PH_route || ph == MOE_PH_dispatch || ph == MOE_PH_expert || ph == MOE_PH_combine ||
		    ph == MOE_PH_tp_merge || ph == MOE_PH_fetch_wait || ph == MOE_PH_done)
			r->samples[ph] = calloc((size_t)iters, sizeof(double));
	r->xfer = calloc((size_t)iters, sizeof(double));
	r->fetch = calloc((size_t)iters, sizeof(double));
	struct moe_bytes bytes = {0, 0, 0};
	for (int it = 0; it < warm + iters; it++) {
		if (it == warm)
			memset(r->ctr_phase, 0, sizeof(r->ctr_phase));
		atomic_store(&ctx->status->iter[ctx->rank], it);
		if ((rc = run_iteration(r)) != MOE_OK)
			return send_error(r->boot_fd, "iteration %d failed in phase %s (status %d)", it,
					  moe_phase_name(atomic_load(&ctx->status->phase[ctx->rank])), rc),
			       MOE_EXIT_RANK;
		if (it >= warm) {
			r->xfer[it - warm] = ctx->xfer_us;
			r->fetch[it - warm] = ctx->fetch_us;
		}
		if (it == warm)
			r->digest_first = output_digest(r);
		if (it >= warm)
			for (int ph = 0; ph < MOE_PH_COUNT; ph++)
				if (r->samples[ph])
					r->samples[ph][it - warm] = ctx->phase_us[ph];
		bytes = ctx->bytes;
	}
	moe_counters_stop(&r->ctr);

	moe_phase(ctx, MOE_PH_verify);
	int mismatch;
	json_t *res = verify(r, &mismatch);
	char why[512];
	int wrc = moe_ws_check(ctx, why, sizeof(why));
	json_object_set_new(res, "workspace", json_pack("{s:I,s:i,s:s}", "bytes", (json_int_t)ctx->ws_bytes, "buffers",
							 ctx->nws, "canaries", wrc == MOE_OK ? "intact" : why));
	if (wrc != MOE_OK) {
		mismatch = 1;
		json_object_set_new(res, "verdict", json_string("mismatch"));
		json_object_set_new(res, "first_bad", json_pack("{s:i,s:i,s:i,s:i,s:s}", "rank", ctx->rank, "layer", -1,
							      "token", -1, "column", -1, "what", why));
	}
	if (r->dump[0]) {
		char derr[512];
		if (moe_dump_case(ctx, r->dump, r->T, r->n, r->X, r->Y, r->idx, r->w, derr, sizeof(derr))) {
			json_decref(res);
			return send_error(r->boot_fd, "%s", derr), MOE_EXIT_USAGE;
		}
	}
	moe_phase(ctx, MOE_PH_report);
	/* every timed iteration computes the same thing: the first and last outputs must be bit-identical */
	uint64_t dg = output_digest(r);
	char hex[17];
	snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)dg);
	json_object_set_new(res, "digest", json_string(hex));
	json_object_set_new(res, "repeat_identical", json_boolean(dg == r->digest_first));
	if (dg != r->digest_first && !mismatch) {
		mismatch = 1;
		json_object_set_new(res, "verdict", json_string("mismatch"));
		json_object_set_new(res, "first_bad", json_pack("{s:i,s:i,s:i,s:i,s:s}", "rank", ctx->rank, "layer", -1,
							      "token", -1, "column", -1, "what",
							      "repeat: the last timed iteration's output differs from the first"));
	}
	json_object_set_new(res, "rank", json_integer(ctx->rank));
	json_object_set_new(res, "dp_group", json_integer(ctx->d));
	json_object_set_new(res, "pid", json_integer(getpid()));
	json_object_set_new(res, "rows", json_integer(r->n));
	json_object_set_new(res, "pad_rows", json_integer(r->n - r->sl.nreal));
	json_object_set_new(res, "slots", json_pack("{s:I,s:I}", "sent", (json_int_t)ctx->slots_sent, "computed",
						     (json_int_t)ctx->slots_computed));
	json_object_set_new(res, "tokens", json_integer(r->T));
	json_object_set_new(res, "samples_us", samples_json(r, iters));
	json_t *jb = json_object();
	json_object_set_new(jb, "logical", json_integer(bytes.logical));
	json_object_set_new(jb, "wire", json_integer(bytes.wire));
	json_object_set_new(jb, "fetched", json_integer(bytes.fetched));
	json_object_set_new(res, "bytes", jb);
	json_t *acct = moe_accounting_report(ctx, r->n, r->idx);
	if (!acct)
		return send_error(r->boot_fd, "accounting report: out of memory or a failed copy"), MOE_EXIT_RANK;
	json_object_set_new(res, "accounting", acct);
	json_t *jc = json_object();
	json_object_set_new(jc, "available", json_boolean(r->ctr.available));
	if (r->ctr.why[0])
		json_object_set_new(jc, "note", json_string(r->ctr.why));
	json_t *evs = json_array(), *per = json_object();
	for (int i = 0; i < r->ctr.nevents; i++)
		json_array_append_new(evs, json_string(r->ctr.names[i]));
	for (int ph = 0; ph < MOE_PH_COUNT && r->ctr.nevents; ph++) {
		if (!r->samples[ph] || ph == MOE_PH_done)
			continue;
		json_t *o = json_object();
		for (int i = 0; i < r->ctr.nevents; i++)
			json_object_set_new(o, r->ctr.names[i], json_real((double)r->ctr_phase[ph][i] / iters));
		json_object_set_new(per, moe_phase_name(ph), o);
	}
	json_object_set_new(jc, "events", evs);
	json_object_set_new(jc, "per_iteration", per);
	json_object_set_new(res, "counters", jc);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	json_object_set_new(res, "peak_rss_kib", json_integer(ru.ru_maxrss));
	json_object_set_new(res, "memory_estimate_bytes", json_integer((json_int_t)r->mem_estimate));
#ifdef MOE_HAVE_CUDA_BACKEND
	if (!strcmp(ctx->be->name, "cuda"))
		json_object_set_new(res, "peak_device_bytes", json_integer((json_int_t)moe_cuda_peak_bytes(ctx->dev)));
#endif
	char *out = json_dumps(res, JSON_COMPACT);
	json_decref(res);
	if (!out || moe_msg_send(r->boot_fd, MOE_MSG_RESULT, out, strlen(out))) {
		free(out);
		return MOE_EXIT_RANK;
	}
	free(out);
	moe_phase(ctx, MOE_PH_done);
	r->done = 1;
	return mismatch == 1 ? MOE_EXIT_FAIL : MOE_EXIT_OK;
}
