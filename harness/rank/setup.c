/* The rank's setup: the case text, the case's layout on this rank, and the checks that refuse a case
 * before it runs (memory, BLAS buffers), then each layer's buffers. */
#include "rank_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "boot.h"
#include "status.h"

/* The case text: "key = value" parameters, then "@key=value" lines for the name and the test aids. */
int moe_rank_parse_case(struct rank_run *r, char *text)
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

/* The case's layout on this rank: every DP group's tokens, this rank's slice of its group and the global
 * id of each slice row, and the routing trace when the case replays one. */
int moe_rank_layout(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	ctx->tokens = calloc((size_t)p->dp, sizeof(int64_t));
	ctx->expert_rows = calloc((size_t)p->experts, sizeof(int64_t));
	if (!ctx->tokens || !ctx->expert_rows)
		return moe_rank_send_error(r->boot_fd, "out of memory"), MOE_EXIT_RANK;
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
			return moe_rank_send_error(r->boot_fd, "%s", err), MOE_EXIT_USAGE;
		if (r->trace.topk != p->topk)
			return moe_rank_send_error(r->boot_fd, "%s: %lld ids per token, but topk = %lld", path,
					  (long long)r->trace.topk, (long long)p->topk),
			       MOE_EXIT_USAGE;
	}
	return MOE_EXIT_OK;
}

int moe_rank_send_error(int fd, const char *fmt, ...)
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

/* OpenBLAS (when it is the BLAS) takes a working buffer of about 128 MiB per thread on first use and, when
 * that allocation fails, retries forever instead of failing: under an address-space limit (ulimit -v) a rank
 * would spin until the case timeout. The room is reserved once here, without touching it, so the case fails
 * at once with the reason. */
#define MOE_BLAS_BUFFER_BYTES ((size_t)129 << 20)
int openblas_get_num_threads(void) __attribute__((weak));

int moe_rank_blas_room(struct rank_run *r)
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
	moe_rank_send_error(r->boot_fd,
		   "resource limit: cannot reserve %zu MiB for OpenBLAS's working buffers (%d thread%s): %s (address-space "
		   "limit, ulimit -v: %s); raise the limit%s",
		   need >> 20, threads, threads == 1 ? "" : "s", strerror(errno), lim,
		   threads > 1 ? " or set OPENBLAS_NUM_THREADS=1" : "");
	return MOE_EXIT_RANK;
}

/* Refuse, before anything is allocated, a case whose lower-bound footprint (weights, the symmetric heap,
 * each layer's input and output) times the ranks sharing this memory exceeds the memory itself. What slips
 * past the estimate is still caught when an allocation fails during setup. */
int moe_rank_preflight(struct rank_run *r, size_t heap)
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
	moe_rank_send_error(r->boot_fd,
		   "the case cannot fit in %s memory: it needs at least %.2f GiB per rank (weights %.2f, symmetric heap %.2f, "
		   "activations %.2f) x %d rank%s sharing %.2f GiB; use fewer tokens, layers, experts per rank or a smaller model",
		   ctx->be->name, need / g, w / g, (double)heap / g, act / g, sharers, sharers == 1 ? "" : "s", total / g);
	return MOE_EXIT_USAGE;
}

/* Each layer's device buffers (kept for verification), and layer 0's input. */
int moe_rank_alloc_layers(struct rank_run *r)
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
