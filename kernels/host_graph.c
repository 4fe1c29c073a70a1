/* Host backend graphs: the exported op table wraps host.c's, and between capture_begin and capture_end every
 * op is recorded (arguments by value, host arrays copied) instead of run; replay runs the recording in order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host_internal.h"
#include "kernels.h"
#include "moe.h"

#define RAW moe_host_raw

enum hop {
	OP_H2D, OP_D2D, OP_MEMSET, OP_ROUTE, OP_SCATTER, OP_SCATTER_I32, OP_GATHER, OP_FFN, OP_COMBINE, OP_FINISH,
	OP_ADD, OP_WIDEN, OP_FLUSH, OP_FFN_DEV, OP_LL_DISPATCH, OP_LL_RECEIVE, OP_LL_RETURN, OP_LL_WAIT_RETURN
};

/* One recorded op: pointers and integers in argument order, the config it was given copied, and what the
 * record owns (a snapshot of host memory, copied pointer arrays and counts). */
struct hrec {
	enum hop op;
	void *p[7];
	int64_t i[5];
	union {
		struct moe_route_cfg route;
		struct moe_ffn_cfg ffn;
		struct moe_ll_plan ll;
	} cfg;
	void *owned;
};

struct hgraph {
	struct hrec *r;
	size_t n, cap;
	int failed; /* a host round trip was asked for: capture_end refuses the recording */
};

static struct hgraph *capturing(struct moe_dev *dev)
{
	return dev ? *moe_host_capture_slot(dev) : NULL;
}

#define P(x) ((void *)(uintptr_t)(x)) /* records keep pointers without their const */

static struct hrec *push(struct hgraph *g, enum hop op)
{
	if (g->n == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 64;
		struct hrec *r = realloc(g->r, cap * sizeof(*r));
		if (!r) {
			g->failed = 1;
			return NULL;
		}
		g->r = r;
		g->cap = cap;
	}
	struct hrec *r = &g->r[g->n++];
	memset(r, 0, sizeof(*r));
	r->op = op;
	return r;
}

/* A host round trip inside a capture: the graph could not give the host its answer at replay. */
static int refuse(struct hgraph *g, const char *op)
{
	g->failed = 1;
	moe_err("graph capture: %s is a host round trip (the host waits for the device's answer), which a graph "
		"cannot replay", op);
	return MOE_ERR_UNSUPPORTED;
}

static int missing(const char *op)
{
	moe_err("the host backend has no %s", op);
	return MOE_ERR_UNSUPPORTED;
}

static void graph_free(struct moe_dev *dev, void *graph)
{
	(void)dev;
	struct hgraph *g = graph;
	if (!g)
		return;
	for (size_t i = 0; i < g->n; i++)
		free(g->r[i].owned);
	free(g->r);
	free(g);
}

static int g_init(struct moe_dev **dev, int gpu)
{
	return RAW.init(dev, gpu);
}

static void g_fini(struct moe_dev *dev)
{
	if (dev)
		graph_free(dev, capturing(dev));
	RAW.fini(dev);
}

static void *g_alloc(struct moe_dev *dev, size_t bytes)
{
	return RAW.alloc(dev, bytes); /* memory, not stream work: allocated at once even while capturing */
}

static void g_free(struct moe_dev *dev, void *p)
{
	RAW.free(dev, p);
}

/* h2d is recorded with a snapshot of the source: the caller's host array may be gone at replay. */
static int g_h2d(struct moe_dev *dev, void *dst, const void *src, size_t bytes)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.h2d(dev, dst, src, bytes);
	struct hrec *r = push(g, OP_H2D);
	if (!r || !(r->owned = malloc(bytes ? bytes : 1)))
		return MOE_ERR_NOMEM;
	memcpy(r->owned, src, bytes);
	r->p[0] = dst;
	r->i[0] = (int64_t)bytes;
	return MOE_OK;
}

static int g_d2h(struct moe_dev *dev, void *dst, const void *src, size_t bytes)
{
	struct hgraph *g = capturing(dev);
	return g ? refuse(g, "d2h") : RAW.d2h(dev, dst, src, bytes);
}

static int g_d2d(struct moe_dev *dev, void *dst, const void *src, size_t bytes)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.d2d(dev, dst, src, bytes);
	struct hrec *r = push(g, OP_D2D);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = dst, r->p[1] = P(src), r->i[0] = (int64_t)bytes;
	return MOE_OK;
}

static int g_memset(struct moe_dev *dev, void *dst, int byte, size_t bytes)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.memset(dev, dst, byte, bytes);
	struct hrec *r = push(g, OP_MEMSET);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = dst, r->i[0] = byte, r->i[1] = (int64_t)bytes;
	return MOE_OK;
}

static int g_sync(struct moe_dev *dev)
{
	struct hgraph *g = capturing(dev);
	return g ? refuse(g, "sync") : RAW.sync(dev);
}

static int g_route(struct moe_dev *dev, const struct moe_route_cfg *cfg, const moe_bf16 *x, int64_t n,
		   const moe_bf16 *wg, int32_t *idx, float *w)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.route(dev, cfg, x, n, wg, idx, w);
	struct hrec *r = push(g, OP_ROUTE);
	if (!r)
		return MOE_ERR_NOMEM;
	r->cfg.route = *cfg;
	r->p[0] = P(x), r->p[1] = P(wg), r->p[2] = idx, r->p[3] = w, r->i[0] = n;
	return MOE_OK;
}

static int g_bucket(struct moe_dev *dev, const int32_t *key, int64_t m, int32_t off, int32_t div, int64_t nb,
		    int64_t *counts, int32_t *pos)
{
	struct hgraph *g = capturing(dev);
	return g ? refuse(g, "bucket (its counts go to the host)") : RAW.bucket(dev, key, m, off, div, nb, counts, pos);
}

static int g_scatter(struct moe_dev *dev, const moe_bf16 *src, const int32_t *pos, int64_t m, int64_t src_div,
		     int64_t h, moe_bf16 *dst)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.scatter_rows(dev, src, pos, m, src_div, h, dst);
	struct hrec *r = push(g, OP_SCATTER);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = P(src), r->p[1] = P(pos), r->p[2] = dst, r->i[0] = m, r->i[1] = src_div, r->i[2] = h;
	return MOE_OK;
}

static int g_scatter_i32(struct moe_dev *dev, const int32_t *src, const int32_t *pos, int64_t m, int32_t *dst)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.scatter_i32(dev, src, pos, m, dst);
	struct hrec *r = push(g, OP_SCATTER_I32);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = P(src), r->p[1] = P(pos), r->p[2] = dst, r->i[0] = m;
	return MOE_OK;
}

static int g_gather(struct moe_dev *dev, const moe_bf16 *src, const int32_t *idx, int64_t m, int64_t h, moe_bf16 *dst)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.gather_rows(dev, src, idx, m, h, dst);
	struct hrec *r = push(g, OP_GATHER);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = P(src), r->p[1] = P(idx), r->p[2] = dst, r->i[0] = m, r->i[1] = h;
	return MOE_OK;
}

/* The ffn config with its per-expert pointer arrays (and the host counts, when given) copied into the
 * record: the caller's arrays may live on its stack. */
static int keep_ffn(struct hrec *r, const struct moe_ffn_cfg *cfg, const int64_t *counts)
{
	size_t ne = (size_t)(cfg->nexperts > 0 ? cfg->nexperts : 0);
	char *o = malloc(3 * ne * sizeof(void *) + ne * sizeof(int64_t) + 1);
	if (!(r->owned = o))
		return MOE_ERR_NOMEM;
	const moe_bf16 **w = (const moe_bf16 **)(void *)o;
	memcpy(w, cfg->d_w1, ne * sizeof(void *));
	memcpy(w + ne, cfg->d_w3, ne * sizeof(void *));
	memcpy(w + 2 * ne, cfg->d_w2, ne * sizeof(void *));
	r->cfg.ffn = *cfg;
	r->cfg.ffn.d_w1 = w, r->cfg.ffn.d_w3 = w + ne, r->cfg.ffn.d_w2 = w + 2 * ne;
	if (counts) {
		memcpy(o + 3 * ne * sizeof(void *), counts, ne * sizeof(int64_t));
		r->p[4] = o + 3 * ne * sizeof(void *);
	}
	return MOE_OK;
}

static int g_ffn(struct moe_dev *dev, const struct moe_ffn_cfg *cfg, const moe_bf16 *x, const int64_t *counts,
		 const float *scale, moe_bf16 *out)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.ffn(dev, cfg, x, counts, scale, out);
	struct hrec *r = push(g, OP_FFN);
	if (!r)
		return MOE_ERR_NOMEM;
	MOE_CHECK(keep_ffn(r, cfg, counts));
	r->p[0] = P(x), r->p[1] = P(scale), r->p[2] = out;
	return MOE_OK;
}

static int g_combine(struct moe_dev *dev, const moe_bf16 *rows, const int32_t *slot, const float *w, int64_t n,
		     int64_t k, int64_t h, const float *base, int scaled_before, moe_bf16 *out, float *out_f32)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.combine(dev, rows, slot, w, n, k, h, base, scaled_before, out, out_f32);
	struct hrec *r = push(g, OP_COMBINE);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = P(rows), r->p[1] = P(slot), r->p[2] = P(w), r->p[3] = P(base), r->p[4] = out, r->p[5] = out_f32;
	r->i[0] = n, r->i[1] = k, r->i[2] = h, r->i[3] = scaled_before;
	return MOE_OK;
}

static int g_finish(struct moe_dev *dev, const float *s, const float *base, int64_t n, moe_bf16 *out)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.finish(dev, s, base, n, out);
	struct hrec *r = push(g, OP_FINISH);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = P(s), r->p[1] = P(base), r->p[2] = out, r->i[0] = n;
	return MOE_OK;
}

static int g_add(struct moe_dev *dev, const moe_bf16 *a, const moe_bf16 *b, int64_t n, moe_bf16 *out)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.add(dev, a, b, n, out);
	struct hrec *r = push(g, OP_ADD);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = P(a), r->p[1] = P(b), r->p[2] = out, r->i[0] = n;
	return MOE_OK;
}

static int g_widen(struct moe_dev *dev, const moe_bf16 *src, int64_t n, float *dst)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.widen(dev, src, n, dst);
	struct hrec *r = push(g, OP_WIDEN);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = P(src), r->p[1] = dst, r->i[0] = n;
	return MOE_OK;
}

static int g_flush(struct moe_dev *dev)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return RAW.flush_cache(dev);
	return push(g, OP_FLUSH) ? MOE_OK : MOE_ERR_NOMEM;
}

static size_t g_mem_total(struct moe_dev *dev)
{
	return RAW.mem_total(dev);
}

/* --- the optional device-counted ops (host_ll.c fills them in host.c's table) --- */

/* ffn_dev: host.c's when it has one; else ffn over the counts read when it runs (backend memory is the
 * host's here), which is what ffn_dev promises. */
static int ffn_dev_run(struct moe_dev *dev, const struct moe_ffn_cfg *cfg, const moe_bf16 *x, const int32_t *d_counts,
		       int64_t max_rows, const float *scale, moe_bf16 *out)
{
	if (RAW.ffn_dev)
		return RAW.ffn_dev(dev, cfg, x, d_counts, max_rows, scale, out);
	int64_t *c = malloc((size_t)(cfg->nexperts > 0 ? cfg->nexperts : 1) * sizeof(int64_t));
	if (!c)
		return MOE_ERR_NOMEM;
	for (int64_t j = 0; j < cfg->nexperts; j++)
		c[j] = d_counts[j];
	int rc = RAW.ffn(dev, cfg, x, c, scale, out);
	free(c);
	return rc;
}

static int g_ffn_dev(struct moe_dev *dev, const struct moe_ffn_cfg *cfg, const moe_bf16 *x, const int32_t *d_counts,
		     int64_t max_rows, const float *scale, moe_bf16 *out)
{
	struct hgraph *g = capturing(dev);
	if (!g)
		return ffn_dev_run(dev, cfg, x, d_counts, max_rows, scale, out);
	struct hrec *r = push(g, OP_FFN_DEV);
	if (!r)
		return MOE_ERR_NOMEM;
	MOE_CHECK(keep_ffn(r, cfg, NULL));
	r->p[0] = P(x), r->p[1] = P(scale), r->p[2] = out, r->p[3] = P(d_counts), r->i[0] = max_rows;
	return MOE_OK;
}

/* The ll ops take the plan by pointer: the record keeps a copy (its arrays are backend memory, kept for
 * the case). */
static struct hrec *push_ll(struct moe_dev *dev, enum hop op, const struct moe_ll_plan *pl)
{
	struct hrec *r = push(capturing(dev), op);
	if (r)
		r->cfg.ll = *pl;
	return r;
}

static int g_ll_dispatch(struct moe_dev *dev, const struct moe_ll_plan *pl, const moe_bf16 *x, int64_t n,
			 const int32_t *idx, const float *w, int32_t *slot)
{
	if (!RAW.ll_dispatch)
		return missing("ll_dispatch");
	if (!capturing(dev))
		return RAW.ll_dispatch(dev, pl, x, n, idx, w, slot);
	struct hrec *r = push_ll(dev, OP_LL_DISPATCH, pl);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = P(x), r->p[1] = P(idx), r->p[2] = P(w), r->p[3] = slot, r->i[0] = n;
	return MOE_OK;
}

static int g_ll_receive(struct moe_dev *dev, const struct moe_ll_plan *pl, moe_bf16 *x, float *w, int32_t *counts,
			int32_t *src)
{
	if (!RAW.ll_receive)
		return missing("ll_receive");
	if (!capturing(dev))
		return RAW.ll_receive(dev, pl, x, w, counts, src);
	struct hrec *r = push_ll(dev, OP_LL_RECEIVE, pl);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = x, r->p[1] = w, r->p[2] = counts, r->p[3] = src;
	return MOE_OK;
}

static int g_ll_return(struct moe_dev *dev, const struct moe_ll_plan *pl, const moe_bf16 *y, const int32_t *src,
		       const int32_t *counts)
{
	if (!RAW.ll_return)
		return missing("ll_return");
	if (!capturing(dev))
		return RAW.ll_return(dev, pl, y, src, counts);
	struct hrec *r = push_ll(dev, OP_LL_RETURN, pl);
	if (!r)
		return MOE_ERR_NOMEM;
	r->p[0] = P(y), r->p[1] = P(src), r->p[2] = P(counts);
	return MOE_OK;
}

static int g_ll_wait_return(struct moe_dev *dev, const struct moe_ll_plan *pl)
{
	if (!RAW.ll_wait_return)
		return missing("ll_wait_return");
	if (!capturing(dev))
		return RAW.ll_wait_return(dev, pl);
	return push_ll(dev, OP_LL_WAIT_RETURN, pl) ? MOE_OK : MOE_ERR_NOMEM;
}

/* --- capture and replay --- */

static int capture_begin(struct moe_dev *dev)
{
	void **slot = moe_host_capture_slot(dev);
	if (*slot) {
		moe_err("graph capture: a capture is already in progress");
		return MOE_ERR_SYSTEM;
	}
	struct hgraph *g = calloc(1, sizeof(*g));
	if (!g)
		return MOE_ERR_NOMEM;
	*slot = g;
	return MOE_OK;
}

static int capture_end(struct moe_dev *dev, void **graph)
{
	void **slot = moe_host_capture_slot(dev);
	struct hgraph *g = *slot;
	*slot = NULL;
	*graph = NULL;
	if (!g) {
		moe_err("graph capture: capture_end without capture_begin");
		return MOE_ERR_SYSTEM;
	}
	if (g->failed) { /* the op that failed said why */
		graph_free(dev, g);
		return MOE_ERR_UNSUPPORTED;
	}
	*graph = g;
	return MOE_OK;
}

static int run_rec(struct moe_dev *dev, const struct hrec *r)
{
	void *const *p = r->p;
	const int64_t *i = r->i;
	switch (r->op) {
	case OP_H2D: return RAW.h2d(dev, p[0], r->owned, (size_t)i[0]);
	case OP_D2D: return RAW.d2d(dev, p[0], p[1], (size_t)i[0]);
	case OP_MEMSET: return RAW.memset(dev, p[0], (int)i[0], (size_t)i[1]);
	case OP_ROUTE: return RAW.route(dev, &r->cfg.route, p[0], i[0], p[1], p[2], p[3]);
	case OP_SCATTER: return RAW.scatter_rows(dev, p[0], p[1], i[0], i[1], i[2], p[2]);
	case OP_SCATTER_I32: return RAW.scatter_i32(dev, p[0], p[1], i[0], p[2]);
	case OP_GATHER: return RAW.gather_rows(dev, p[0], p[1], i[0], i[1], p[2]);
	case OP_FFN: return RAW.ffn(dev, &r->cfg.ffn, p[0], p[4], p[1], p[2]);
	case OP_COMBINE: return RAW.combine(dev, p[0], p[1], p[2], i[0], i[1], i[2], p[3], (int)i[3], p[4], p[5]);
	case OP_FINISH: return RAW.finish(dev, p[0], p[1], i[0], p[2]);
	case OP_ADD: return RAW.add(dev, p[0], p[1], i[0], p[2]);
	case OP_WIDEN: return RAW.widen(dev, p[0], i[0], p[1]);
	case OP_FLUSH: return RAW.flush_cache(dev);
	case OP_FFN_DEV: return ffn_dev_run(dev, &r->cfg.ffn, p[0], p[3], i[0], p[1], p[2]);
	case OP_LL_DISPATCH: return RAW.ll_dispatch(dev, &r->cfg.ll, p[0], i[0], p[1], p[2], p[3]);
	case OP_LL_RECEIVE: return RAW.ll_receive(dev, &r->cfg.ll, p[0], p[1], p[2], p[3]);
	case OP_LL_RETURN: return RAW.ll_return(dev, &r->cfg.ll, p[0], p[1], p[2]);
	case OP_LL_WAIT_RETURN: return RAW.ll_wait_return(dev, &r->cfg.ll);
	}
	return MOE_ERR_SYSTEM;
}

static int replay(struct moe_dev *dev, void *graph)
{
	const struct hgraph *g = graph;
	if (capturing(dev)) {
		moe_err("graph capture: replay inside a capture");
		return MOE_ERR_UNSUPPORTED;
	}
	for (size_t k = 0; k < g->n; k++)
		MOE_CHECK(run_rec(dev, &g->r[k]));
	return MOE_OK;
}

const struct moe_backend_ops moe_backend_host = {
	.abi = MOE_BACKEND_ABI,
	.name = "host",
	.init = g_init,
	.fini = g_fini,
	.alloc = g_alloc,
	.free = g_free,
	.h2d = g_h2d,
	.d2h = g_d2h,
	.d2d = g_d2d,
	.memset = g_memset,
	.sync = g_sync,
	.route = g_route,
	.bucket = g_bucket,
	.scatter_rows = g_scatter,
	.scatter_i32 = g_scatter_i32,
	.gather_rows = g_gather,
	.ffn = g_ffn,
	.combine = g_combine,
	.finish = g_finish,
	.add = g_add,
	.widen = g_widen,
	.flush_cache = g_flush,
	.mem_total = g_mem_total,
	.ffn_dev = g_ffn_dev,
	.ll_dispatch = g_ll_dispatch,
	.ll_receive = g_ll_receive,
	.ll_return = g_ll_return,
	.ll_wait_return = g_ll_wait_return,
	.capture_begin = capture_begin,
	.capture_end = capture_end,
	.replay = replay,
	.graph_free = graph_free,
};
