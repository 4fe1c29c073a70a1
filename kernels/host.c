/* Host (CPU) kernel backend: the same interface as the GPU one, fp32 arithmetic on bf16 data, OpenBLAS GEMMs. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host_internal.h"
#include "host_ll.h"
#include "kernels.h"

#define MOE_HOST_BLOCK 32

struct moe_dev {
	char *flush_buf;
	size_t flush_bytes;
	void *capture; /* the recording in progress (host_graph.c), or NULL: ops run at once */
};

void **moe_host_capture_slot(struct moe_dev *dev)
{
	return &dev->capture;
}

static int host_init(struct moe_dev **dev, int gpu)
{
	(void)gpu;
	struct moe_dev *d = calloc(1, sizeof(*d));
	if (!d)
		return MOE_ERR_NOMEM;
	openblas_set_num_threads(1); /* one rank per core: BLAS threads would fight the other ranks */
	*dev = d;
	return MOE_OK;
}

static void host_fini(struct moe_dev *dev)
{
	if (!dev)
		return;
	free(dev->flush_buf);
	free(dev);
}

static void *host_alloc(struct moe_dev *dev, size_t bytes)
{
	(void)dev;
	void *p = NULL;
	if (posix_memalign(&p, 64, bytes ? bytes : 64))
		return NULL;
	return p;
}

static void host_free(struct moe_dev *dev, void *p)
{
	(void)dev;
	free(p);
}

static int host_copy(struct moe_dev *dev, void *dst, const void *src, size_t bytes)
{
	(void)dev;
	if (bytes)
		memmove(dst, src, bytes);
	return MOE_OK;
}

static int host_memset(struct moe_dev *dev, void *dst, int byte, size_t bytes)
{
	(void)dev;
	memset(dst, byte, bytes);
	return MOE_OK;
}

static int host_sync(struct moe_dev *dev)
{
	(void)dev;
	return MOE_OK;
}

static float *widen_alloc(const moe_bf16 *src, int64_t n)
{
	float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
	if (!f)
		return NULL;
	for (int64_t i = 0; i < n; i++)
		f[i] = moe_bf16_to_f32(src[i]);
	return f;
}

/* Is score a better than b? Higher wins; equal scores go to the lower id. */
static int better(float a, int ia, float b, int ib)
{
	return a > b || (a == b && ia < ib);
}

static int host_route(struct moe_dev *dev, const struct moe_route_cfg *c, const moe_bf16 *x, int64_t n,
		      const moe_bf16 *wg, int32_t *idx, float *w)
{
	(void)dev;
	int64_t H = c->hidden, E = c->experts, K = c->topk;
	if (n == 0)
		return MOE_OK;
	float *xf = widen_alloc(x, n * H), *gf = widen_alloc(wg, E * H);
	float *logits = malloc((size_t)(n * E) * sizeof(float));
	float *sel = malloc((size_t)E * sizeof(float));
	float *gscore = malloc((size_t)c->groups * sizeof(float));
	int rc = MOE_ERR_NOMEM;
	if (!xf || !gf || !logits || !sel || !gscore)
		goto out;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)E, (int)H, 1.0f, xf, (int)H, gf, (int)H,
		    0.0f, logits, (int)E);
	for (int64_t t = 0; t < n; t++) {
		float *p = logits + t * E;
		if (c->sigmoid) {
			for (int64_t e = 0; e < E; e++)
				p[e] = 1.0f / (1.0f + expf(-p[e]));
		} else {
			float mx = p[0], s = 0;
			for (int64_t e = 1; e < E; e++)
				mx = fmaxf(mx, p[e]);
			for (int64_t e = 0; e < E; e++)
				s += (p[e] = expf(p[e] - mx));
			for (int64_t e = 0; e < E; e++)
				p[e] /= s;
		}
		for (int64_t e = 0; e < E; e++)
			sel[e] = p[e] + (c->d_bias ? c->d_bias[e] : 0.0f);
		if (c->groups > 1) {
			int64_t per = E / c->groups;
			for (int64_t g = 0; g < c->groups; g++) {
				float a = -INFINITY, b = -INFINITY;
				for (int64_t e = g * per; e < (g + 1) * per; e++) {
					if (sel[e] > a) {
						b = a;
						a = sel[e];
					} else if (sel[e] > b)
						b = sel[e];
				}
				gscore[g] = a + b;
			}
			/* keep the best topk_groups groups; mask the rest */
			for (int64_t g = 0; g < c->groups; g++) {
				int64_t better_groups = 0;
				for (int64_t h = 0; h < c->groups; h++)
					better_groups += better(gscore[h], (int)h, gscore[g], (int)g);
				if (better_groups >= c->topk_groups)
					for (int64_t e = g * per; e < (g + 1) * per; e++)
						sel[e] = -INFINITY;
			}
		}
		float sum = 0;
		for (int64_t k = 0; k < K; k++) {
			int best = -1;
			for (int64_t e = 0; e < E; e++) {
				if (sel[e] == -INFINITY)
					continue; /* outside the kept groups */
				int taken = 0;
				for (int64_t j = 0; j < k; j++)
					taken |= idx[t * K + j] == e;
				if (taken)
					continue;
				if (best < 0 || better(sel[e], (int)e, sel[best], best))
					best = (int)e;
			}
			idx[t * K + k] = best;
			w[t * K + k] = p[best];
			sum += p[best];
		}
		for (int64_t k = 0; k < K; k++) {
			if (c->norm)
				w[t * K + k] /= sum + 1e-20f;
			w[t * K + k] *= c->scale;
		}
	}
	rc = MOE_OK;
out:
	free(xf);
	free(gf);
	free(logits);
	free(sel);
	free(gscore);
	return rc;
}

static int host_bucket(struct moe_dev *dev, const int32_t *key, int64_t m, int32_t key_off, int32_t key_div,
		       int64_t nb, int64_t *counts, int32_t *pos)
{
	(void)dev;
	int64_t *next = calloc((size_t)nb + 1, sizeof(int64_t));
	if (!next)
		return MOE_ERR_NOMEM;
	memset(counts, 0, (size_t)nb * sizeof(int64_t));
	for (int64_t i = 0; i < m; i++) {
		if (key[i] < key_off || (key[i] - key_off) / key_div >= nb)
			continue;
		counts[(key[i] - key_off) / key_div]++;
	}
	for (int64_t b = 1; b < nb; b++)
		next[b] = next[b - 1] + counts[b - 1];
	for (int64_t i = 0; i < m; i++)
		pos[i] = key[i] < key_off || (key[i] - key_off) / key_div >= nb ? -1
									 : (int32_t)next[(key[i] - key_off) / key_div]++;
	free(next);
	return MOE_OK;
}

static int host_scatter(struct moe_dev *dev, const moe_bf16 *src, const int32_t *pos, int64_t m, int64_t src_div,
			int64_t h, moe_bf16 *dst)
{
	(void)dev;
	for (int64_t i = 0; i < m; i++)
		if (pos[i] >= 0)
			memcpy(dst + (int64_t)pos[i] * h, src + (i / src_div) * h, (size_t)h * sizeof(moe_bf16));
	return MOE_OK;
}

static int host_scatter_i32(struct moe_dev *dev, const int32_t *src, const int32_t *pos, int64_t m, int32_t *dst)
{
	(void)dev;
	for (int64_t i = 0; i < m; i++)
		if (pos[i] >= 0)
			dst[pos[i]] = src[i];
	return MOE_OK;
}

static int host_gather(struct moe_dev *dev, const moe_bf16 *src, const int32_t *idx, int64_t m, int64_t h,
		       moe_bf16 *dst)
{
	(void)dev;
	for (int64_t i = 0; i < m; i++) {
		if (idx[i] >= 0)
			memcpy(dst + i * h, src + (int64_t)idx[i] * h, (size_t)h * sizeof(moe_bf16));
		else
			memset(dst + i * h, 0, (size_t)h * sizeof(moe_bf16));
	}
	return MOE_OK;
}

static int host_ffn(struct moe_dev *dev, const struct moe_ffn_cfg *c, const moe_bf16 *x, const int64_t *counts,
		    const float *scale, moe_bf16 *out)
{
	(void)dev;
	int64_t H = c->hidden, F = c->ffn, row = 0;
	for (int64_t j = 0; j < c->nexperts; j++) {
		int64_t m = counts[j];
		if (m == 0)
			continue;
		const moe_bf16 *xe = x + row * H;
		moe_bf16 *oe = out + row * H;
		if (c->kind != MOE_FFN_SWIGLU && !scale) {
			float f = c->kind == MOE_FFN_SCALE ? (float)(c->first_expert + j + 1) : 1.0f;
			for (int64_t i = 0; i < m * H; i++)
				oe[i] = moe_f32_to_bf16(f * moe_bf16_to_f32(xe[i]));
			row += m;
			continue;
		}
		float *u = malloc((size_t)(m * H) * sizeof(float));
		if (!u)
			return MOE_ERR_NOMEM;
		for (int64_t r = 0; r < m; r++)
			for (int64_t i = 0; i < H; i++) {
				float v = moe_bf16_to_f32(xe[r * H + i]);
				/* the scaled input is stored as bf16 before the expert reads it */
				u[r * H + i] = scale ? moe_bf16_to_f32(moe_f32_to_bf16(scale[row + r] * v)) : v;
			}
		if (c->kind == MOE_FFN_IDENTITY || c->kind == MOE_FFN_SCALE) {
			float f = c->kind == MOE_FFN_SCALE ? (float)(c->first_expert + j + 1) : 1.0f;
			for (int64_t i = 0; i < m * H; i++)
				oe[i] = moe_f32_to_bf16(f * u[i]);
		} else {
			float *w1 = widen_alloc(c->d_w1[j], F * H), *w3 = widen_alloc(c->d_w3[j], F * H);
			float *w2 = widen_alloc(c->d_w2[j], H * F);
			/* GEMMs run on fixed blocks of MOE_HOST_BLOCK rows (the last one zero-padded), so a row's
			 * result never depends on how many other rows share its expert: the same token gives the
			 * same bits whichever strategy grouped it */
			int64_t B = MOE_HOST_BLOCK;
			float *xb = calloc((size_t)(B * H), sizeof(float)), *g = malloc((size_t)(B * F) * sizeof(float));
			float *v = malloc((size_t)(B * F) * sizeof(float)), *o = malloc((size_t)(B * H) * sizeof(float));
			int ok = w1 && w3 && w2 && xb && g && v && o;
			for (int64_t r0 = 0; ok && r0 < m; r0 += B) {
				int64_t rows = MOE_MIN(B, m - r0);
				memcpy(xb, u + r0 * H, (size_t)(rows * H) * sizeof(float));
				if (rows < B)
					memset(xb + rows * H, 0, (size_t)((B - rows) * H) * sizeof(float));
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)F, (int)H, 1.0f, xb, (int)H,
					    w1, (int)H, 0.0f, g, (int)F);
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)F, (int)H, 1.0f, xb, (int)H,
					    w3, (int)H, 0.0f, v, (int)F);
				for (int64_t i = 0; i < B * F; i++) {
					/* the projections and the activation are stored as bf16, as on the GPU */
					float a = moe_bf16_to_f32(moe_f32_to_bf16(g[i]));
					float b = moe_bf16_to_f32(moe_f32_to_bf16(v[i]));
					g[i] = moe_bf16_to_f32(moe_f32_to_bf16(a / (1.0f + expf(-a)) * b));
				}
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)H, (int)F, 1.0f, g, (int)F,
					    w2, (int)F, 0.0f, o, (int)H);
				for (int64_t i = 0; i < rows * H; i++)
					oe[r0 * H + i] = moe_f32_to_bf16(o[i]);
			}
			free(w1);
			free(w3);
			free(w2);
			free(xb);
			free(g);
			free(v);
			free(o);
			if (!ok) {
				free(u);
				return MOE_ERR_NOMEM;
			}
		}
		free(u);
		row += m;
	}
	return MOE_OK;
}

/* fmaf is one instruction with FMA hardware and a slow libm call without: build both, pick at load time.
 * The result is the same either way (fmaf rounds once by definition). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MOE_FMA_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MOE_FMA_CLONES
#endif

MOE_FMA_CLONES
static int host_combine(struct moe_dev *dev, const moe_bf16 *rows, const int32_t *slot, const float *w, int64_t n,
			int64_t k, int64_t h, const float *base, int scaled_before, moe_bf16 *out, float *out_f32)
{
	(void)dev;
	float *acc = malloc((size_t)(h > 0 ? h : 1) * sizeof(float));
	if (!acc)
		return MOE_ERR_NOMEM;
	/* slot-major over one token's accumulator row: each column still sums k = 0..K-1 in order */
	for (int64_t t = 0; t < n; t++) {
		if (base)
			memcpy(acc, base + t * h, (size_t)h * sizeof(float));
		else
			memset(acc, 0, (size_t)h * sizeof(float));
		for (int64_t j = 0; j < k; j++) {
			int32_t s = slot[t * k + j];
			if (s < 0)
				continue;
			const moe_bf16 *r = rows + (int64_t)s * h;
			float wj = w[t * k + j];
			if (scaled_before)
				for (int64_t c = 0; c < h; c++)
					acc[c] = acc[c] + moe_bf16_to_f32(r[c]);
			else
				for (int64_t c = 0; c < h; c++)
					acc[c] = fmaf(wj, moe_bf16_to_f32(r[c]), acc[c]);
		}
		if (out_f32)
			memcpy(out_f32 + t * h, acc, (size_t)h * sizeof(float));
		else
			for (int64_t c = 0; c < h; c++)
				out[t * h + c] = moe_f32_to_bf16(acc[c]);
	}
	free(acc);
	return MOE_OK;
}

static int host_finish(struct moe_dev *dev, const float *s, const float *base, int64_t n, moe_bf16 *out)
{
	(void)dev;
	for (int64_t i = 0; i < n; i++)
		out[i] = moe_f32_to_bf16(base ? base[i] + s[i] : s[i]);
	return MOE_OK;
}

static int host_add(struct moe_dev *dev, const moe_bf16 *a, const moe_bf16 *b, int64_t n, moe_bf16 *out)
{
	(void)dev;
	for (int64_t i = 0; i < n; i++)
		out[i] = moe_f32_to_bf16(moe_bf16_to_f32(a[i]) + moe_bf16_to_f32(b[i]));
	return MOE_OK;
}

static int host_widen(struct moe_dev *dev, const moe_bf16 *src, int64_t n, float *dst)
{
	(void)dev;
	for (int64_t i = 0; i < n; i++)
		dst[i] = moe_bf16_to_f32(src[i]);
	return MOE_OK;
}

/* Touch a buffer larger than the last-level cache so the next iteration starts cold. */
static int host_flush(struct moe_dev *dev)
{
	if (!dev->flush_buf) {
		dev->flush_bytes = 64u << 20;
		dev->flush_buf = malloc(dev->flush_bytes);
		if (!dev->flush_buf)
			return MOE_ERR_NOMEM;
	}
	for (size_t i = 0; i < dev->flush_bytes; i += 64)
		dev->flush_buf[i]++;
	return MOE_OK;
}

static size_t host_mem_total(struct moe_dev *dev)
{
	(void)dev;
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
	return pages > 0 && size > 0 ? (size_t)pages * (size_t)size : 0;
}

int moe_host_ffn(struct moe_dev *dev, const struct moe_ffn_cfg *cfg, const moe_bf16 *d_x, const int64_t *counts,
		 const float *d_scale, moe_bf16 *d_out)
{
	return host_ffn(dev, cfg, d_x, counts, d_scale, d_out);
}

/* The ops as they run; moe_backend_host (host_graph.c) wraps every one to record it while capturing. */
const struct moe_backend_ops moe_host_raw = {
	.abi = MOE_BACKEND_ABI,
	.name = "host",
	.init = host_init,
	.fini = host_fini,
	.alloc = host_alloc,
	.free = host_free,
	.h2d = host_copy,
	.d2h = host_copy,
	.d2d = host_copy,
	.memset = host_memset,
	.sync = host_sync,
	.route = host_route,
	.bucket = host_bucket,
	.scatter_rows = host_scatter,
	.scatter_i32 = host_scatter_i32,
	.gather_rows = host_gather,
	.ffn = host_ffn,
	.combine = host_combine,
	.finish = host_finish,
	.add = host_add,
	.widen = host_widen,
	.flush_cache = host_flush,
	.mem_total = host_mem_total,
	.ffn_dev = moe_host_ffn_dev,
	.ll_dispatch = moe_host_ll_dispatch,
	.ll_receive = moe_host_ll_receive,
	.ll_return = moe_host_ll_return,
	.ll_wait_return = moe_host_ll_wait_return,
};

