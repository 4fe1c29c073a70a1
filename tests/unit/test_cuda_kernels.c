/* The CUDA backend against the host backend on random inputs (never zeros): bucketing, row moves, combine,
 * exact experts and elementwise ops must agree bit for bit; swiglu experts and the router within bf16/fp32
 * tolerance. Exits 77 without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "gpu_test.h"
#include "rng.h"

static float rnd(uint64_t i, uint64_t salt) { return (float)(2.0 * moe_rng_unit(99, 20, 0, salt, i) - 1.0); }

static void test_bucket_and_moves(int64_t m, int64_t nb, int64_t h)
{
	int32_t *key = malloc((size_t)m * 4);
	for (int64_t i = 0; i < m; i++)
		key[i] = (int32_t)(moe_rng_u64(5, 21, 0, (uint64_t)m, (uint64_t)i) % (uint64_t)(nb * 4 + 3)) - 3; /* pads, others */
	int64_t *hc = calloc((size_t)nb, 8), *cc = calloc((size_t)nb, 8);
	int32_t *hp = malloc((size_t)m * 4);
	H->bucket(hd, key, m, 2, 4, nb, hc, hp);
	int32_t *dk = up(key, (size_t)m * 4), *dp = C->alloc(cd, (size_t)m * 4);
	EXPECT(C->bucket(cd, dk, m, 2, 4, nb, cc, dp) == MOE_OK, "cuda bucket failed");
	int32_t *cp = down(dp, (size_t)m * 4);
	EXPECT(!memcmp(hc, cc, (size_t)nb * 8), "bucket counts differ (m=%lld nb=%lld)", (long long)m, (long long)nb);
	EXPECT(!memcmp(hp, cp, (size_t)m * 4), "bucket positions differ (m=%lld nb=%lld)", (long long)m, (long long)nb);
	int64_t tot = 0;
	for (int64_t b = 0; b < nb; b++)
		tot += hc[b];
	/* scatter one source row per K = 3 items, then gather back */
	int64_t rows = (m + 2) / 3;
	moe_bf16 *src = malloc((size_t)(rows * h) * 2), *hs = calloc((size_t)(tot * h + 1), 2);
	for (int64_t i = 0; i < rows * h; i++)
		src[i] = moe_f32_to_bf16(rnd((uint64_t)i, 1));
	H->scatter_rows(hd, src, hp, m, 3, h, hs);
	moe_bf16 *ds = up(src, (size_t)(rows * h) * 2), *dd = C->alloc(cd, (size_t)(tot * h + 1) * 2);
	C->memset(cd, dd, 0, (size_t)(tot * h + 1) * 2);
	C->scatter_rows(cd, ds, dp, m, 3, h, dd);
	moe_bf16 *cs = down(dd, (size_t)(tot * h) * 2);
	EXPECT(!memcmp(hs, cs, (size_t)(tot * h) * 2), "scatter_rows differs (h=%lld)", (long long)h);
	moe_bf16 *hg = malloc((size_t)(m * h) * 2 + 2), *dg = C->alloc(cd, (size_t)(m * h) * 2 + 2);
	H->gather_rows(hd, hs, hp, m, h, hg);
	C->gather_rows(cd, dd, dp, m, h, dg);
	moe_bf16 *cg = down(dg, (size_t)(m * h) * 2);
	EXPECT(!memcmp(hg, cg, (size_t)(m * h) * 2), "gather_rows differs (h=%lld)", (long long)h);
	free(key); free(hc); free(cc); free(hp); free(cp); free(src); free(hs); free(cs); free(hg); free(cg);
	C->free(cd, dk); C->free(cd, dp); C->free(cd, ds); C->free(cd, dd); C->free(cd, dg);
}

static void test_combine(int64_t n, int64_t k, int64_t h, int with_base, int scaled)
{
	int64_t nrows = n * k;
	moe_bf16 *rows = malloc((size_t)(nrows * h) * 2);
	for (int64_t i = 0; i < nrows * h; i++)
		rows[i] = moe_f32_to_bf16(rnd((uint64_t)i, 2) * 4);
	int32_t *slot = malloc((size_t)nrows * 4);
	float *w = malloc((size_t)nrows * 4), *base = malloc((size_t)(n * h) * 4);
	for (int64_t i = 0; i < nrows; i++) {
		slot[i] = (i % 7 == 3) ? -1 : (int32_t)((i * 13) % nrows);
		w[i] = rnd((uint64_t)i, 3);
	}
	for (int64_t i = 0; i < n * h; i++)
		base[i] = rnd((uint64_t)i, 4);
	moe_bf16 *ho = malloc((size_t)(n * h) * 2);
	float *hf = malloc((size_t)(n * h) * 4);
	H->combine(hd, rows, slot, w, n, k, h, with_base ? base : NULL, scaled, ho, NULL);
	H->combine(hd, rows, slot, w, n, k, h, with_base ? base : NULL, scaled, NULL, hf);
	void *dr = up(rows, (size_t)(nrows * h) * 2), *ds = up(slot, (size_t)nrows * 4), *dw = up(w, (size_t)nrows * 4);
	void *db = up(base, (size_t)(n * h) * 4), *dout = C->alloc(cd, (size_t)(n * h) * 2), *dof = C->alloc(cd, (size_t)(n * h) * 4);
	C->combine(cd, dr, ds, dw, n, k, h, with_base ? db : NULL, scaled, dout, NULL);
	C->combine(cd, dr, ds, dw, n, k, h, with_base ? db : NULL, scaled, NULL, dof);
	moe_bf16 *co = down(dout, (size_t)(n * h) * 2);
	float *cf = down(dof, (size_t)(n * h) * 4);
	EXPECT(!memcmp(ho, co, (size_t)(n * h) * 2), "combine bf16 differs (n=%lld k=%lld h=%lld base=%d)", (long long)n,
	       (long long)k, (long long)h, with_base);
	EXPECT(!memcmp(hf, cf, (size_t)(n * h) * 4), "combine fp32 differs (h=%lld)", (long long)h);
	free(rows); free(slot); free(w); free(base); free(ho); free(hf); free(co); free(cf);
	C->free(cd, dr); C->free(cd, ds); C->free(cd, dw); C->free(cd, db); C->free(cd, dout); C->free(cd, dof);
}

/* uniform: every expert the same rows (the batched GEMM path); else uneven, one expert with none */
static void test_ffn(enum moe_ffn_kind kind, int64_t hdim, int64_t f, int64_t ne, int use_scale, int uniform)
{
	int64_t counts[8] = {0}, rows = 0;
	for (int64_t j = 0; j < ne; j++)
		rows += counts[j] = uniform ? 24 : (j * 37 + 5) % 50; /* includes a zero when ne is large */
	if (!uniform)
		counts[1 % ne] = 0;
	rows = 0;
	for (int64_t j = 0; j < ne; j++)
		rows += counts[j];
	moe_bf16 *x = malloc((size_t)(rows * hdim) * 2 + 2);
	for (int64_t i = 0; i < rows * hdim; i++)
		x[i] = moe_f32_to_bf16(rnd((uint64_t)i, 5));
	float *sc = malloc((size_t)rows * 4 + 4);
	for (int64_t i = 0; i < rows; i++)
		sc[i] = rnd((uint64_t)i, 6);
	moe_bf16 *hw[3][8], *dw[3][8];
	for (int m = 0; m < 3; m++)
		for (int64_t j = 0; j < ne; j++) {
			int64_t nn = hdim * f;
			hw[m][j] = malloc((size_t)nn * 2);
			for (int64_t i = 0; i < nn; i++)
				hw[m][j][i] = moe_f32_to_bf16(rnd((uint64_t)i, (uint64_t)(100 + m * 8 + j)) / sqrtf((float)(m == 2 ? f : hdim)));
			dw[m][j] = up(hw[m][j], (size_t)nn * 2);
		}
	struct moe_ffn_cfg hc = {kind, hdim, f, ne, 3, (const moe_bf16 *const *)hw[0], (const moe_bf16 *const *)hw[1],
				 (const moe_bf16 *const *)hw[2]};
	struct moe_ffn_cfg cc = {kind, hdim, f, ne, 3, (const moe_bf16 *const *)dw[0], (const moe_bf16 *const *)dw[1],
				 (const moe_bf16 *const *)dw[2]};
	moe_bf16 *ho = malloc((size_t)(rows * hdim) * 2 + 2);
	H->ffn(hd, &hc, x, counts, use_scale ? sc : NULL, ho);
	void *dx = up(x, (size_t)(rows * hdim) * 2 + 2), *dsc = up(sc, (size_t)rows * 4 + 4);
	void *dout = C->alloc(cd, (size_t)(rows * hdim) * 2 + 2);
	/* every way of running the expert GEMMs (the default picks by the counts) */
	const char *modes[] = {NULL, "batched", "grouped", "loop", "cutlass"}; /* cutlass: cuBLAS when not built */
	for (int mi = 0; mi < (kind == MOE_FFN_SWIGLU ? 5 : 1); mi++) {
		if (modes[mi])
			setenv("MOEBENCH_EXPERT_GEMM", modes[mi], 1);
		else
			unsetenv("MOEBENCH_EXPERT_GEMM");
		C->memset(cd, dout, 0xff, (size_t)(rows * hdim) * 2); /* NaNs: rows the GEMMs skip cannot pass */
		EXPECT(C->ffn(cd, &cc, dx, counts, use_scale ? dsc : NULL, dout) == MOE_OK, "cuda ffn failed");
		moe_bf16 *co = down(dout, (size_t)(rows * hdim) * 2);
		if (kind != MOE_FFN_SWIGLU)
			EXPECT(!memcmp(ho, co, (size_t)(rows * hdim) * 2), "exact ffn differs (kind %d, scale %d)", kind, use_scale);
		else {
			double worst = 0;
			for (int64_t r = 0; r < rows; r++) {
				double num = 0, den = 0;
				for (int64_t c = 0; c < hdim; c++) {
					double a = moe_bf16_to_f32(co[r * hdim + c]), b = moe_bf16_to_f32(ho[r * hdim + c]);
					num += (a - b) * (a - b);
					den += b * b;
				}
				double rel = sqrt(num) / (sqrt(den) + 1e-30);
				worst = rel > worst || rel != rel ? rel : worst;
			}
			EXPECT(worst < 2e-2, "swiglu (%s GEMMs) differs from the host: worst row relative error %.3g",
			       modes[mi] ? modes[mi] : "default", worst);
			printf("swiglu H=%lld F=%lld %s GEMMs, %s counts: worst row relative difference cuda vs host %.3g\n",
			       (long long)hdim, (long long)f, modes[mi] ? modes[mi] : "default", uniform ? "uniform" : "uneven", worst);
		}
		free(co);
	}
	unsetenv("MOEBENCH_EXPERT_GEMM");
	for (int m = 0; m < 3; m++)
		for (int64_t j = 0; j < ne; j++) {
			free(hw[m][j]);
			C->free(cd, dw[m][j]);
		}
	free(x); free(sc); free(ho);
	C->free(cd, dx); C->free(cd, dsc); C->free(cd, dout);
}

static void test_route(int64_t n, int64_t hdim, int64_t e, int64_t k, int groups, int sig)
{
	moe_bf16 *x = malloc((size_t)(n * hdim) * 2), *wg = malloc((size_t)(e * hdim) * 2);
	for (int64_t i = 0; i < n * hdim; i++)
		x[i] = moe_f32_to_bf16(rnd((uint64_t)i, 7));
	for (int64_t i = 0; i < e * hdim; i++)
		wg[i] = moe_f32_to_bf16(rnd((uint64_t)i, 8) / sqrtf((float)hdim));
	struct moe_route_cfg rc = {hdim, e, k, groups, groups > 1 ? groups / 2 : 1, sig, 1, 2.5f, NULL};
	int32_t *hi = malloc((size_t)(n * k) * 4);
	float *hw = malloc((size_t)(n * k) * 4);
	H->route(hd, &rc, x, n, wg, hi, hw);
	void *dx = up(x, (size_t)(n * hdim) * 2), *dg = up(wg, (size_t)(e * hdim) * 2);
	void *di = C->alloc(cd, (size_t)(n * k) * 4), *dwt = C->alloc(cd, (size_t)(n * k) * 4);
	EXPECT(C->route(cd, &rc, dx, n, dg, di, dwt) == MOE_OK, "cuda route failed");
	int32_t *ci = down(di, (size_t)(n * k) * 4);
	float *cw = down(dwt, (size_t)(n * k) * 4);
	int64_t differ = 0;
	double werr = 0;
	for (int64_t t = 0; t < n; t++) {
		int same = !memcmp(hi + t * k, ci + t * k, (size_t)k * 4);
		differ += !same;
		for (int64_t j = 0; same && j < k; j++)
			werr = fmax(werr, fabs(hw[t * k + j] - cw[t * k + j]) / (fabs(hw[t * k + j]) + 1e-6));
	}
	/* fp32 logits from two GEMM libraries differ in rounding: near ties may flip, nothing more */
	EXPECT(differ * 100 <= n, "route: %lld of %lld tokens chose other experts", (long long)differ, (long long)n);
	EXPECT(werr < 1e-3, "route weights differ by %.3g relative", werr);
	printf("route n=%lld E=%lld K=%lld groups=%d: %lld tokens differ (near ties), weights within %.2g\n", (long long)n,
	       (long long)e, (long long)k, groups, (long long)differ, werr);
	free(x); free(wg); free(hi); free(hw); free(ci); free(cw);
	C->free(cd, dx); C->free(cd, dg); C->free(cd, di); C->free(cd, dwt);
}

/* Weights made on the GPU are the host generator's, bit for bit. */
static void test_generate(void)
{
	if (!C->generate)
		return;
	int64_t rows = 37, cols = 1001;
	double scale = 1.0 / sqrt(7168.0);
	moe_bf16 *h = malloc((size_t)(rows * cols) * 2);
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++) {
			double u = moe_rng_unit(42, MOE_T_W1, 3, (uint64_t)(1000 + r), (uint64_t)c);
			h[r * cols + c] = moe_f32_to_bf16((float)((2.0 * u - 1.0) * scale));
		}
	void *d = C->alloc(cd, (size_t)(rows * cols) * 2);
	C->generate(cd, 42, MOE_T_W1, 3, 1000, rows, cols, scale, d);
	moe_bf16 *g = down(d, (size_t)(rows * cols) * 2);
	EXPECT(!memcmp(h, g, (size_t)(rows * cols) * 2), "GPU-generated weights differ from the host generator");
	free(h);
	free(g);
	C->free(cd, d);
}

/* Graphs: a captured router (cuBLAS) and elementwise steps run nothing until replayed, then match the same
 * ops run at once, replay after replay on new inputs; a host round trip fails the capture cleanly. */
static void test_graph(int64_t n, int64_t hdim, int64_t e, int64_t k)
{
	size_t xb = (size_t)(n * hdim) * 2, ib = (size_t)(n * k) * 4;
	moe_bf16 *x = malloc(xb), *wg = malloc((size_t)(e * hdim) * 2);
	for (int64_t i = 0; i < n * hdim; i++)
		x[i] = moe_f32_to_bf16(rnd((uint64_t)i, 11));
	for (int64_t i = 0; i < e * hdim; i++)
		wg[i] = moe_f32_to_bf16(rnd((uint64_t)i, 12) / sqrtf((float)hdim));
	struct moe_route_cfg rc = {hdim, e, k, 1, 1, 0, 1, 1.0f, NULL};
	void *dx = up(x, xb), *dg = up(wg, (size_t)(e * hdim) * 2), *dsum = C->alloc(cd, xb), *dcp = C->alloc(cd, xb);
	void *di = C->alloc(cd, ib), *dw = C->alloc(cd, ib), *ei = C->alloc(cd, ib), *ew = C->alloc(cd, ib);
	C->memset(cd, dsum, 0, xb);
	C->memset(cd, di, 0, ib);
	C->sync(cd);
	/* once at once first: the router's scratch grows outside the capture */
	EXPECT(C->route(cd, &rc, dx, n, dg, ei, ew) == MOE_OK, "graph: eager route failed");
	EXPECT(C->capture_begin(cd) == MOE_OK, "graph: capture_begin failed");
	EXPECT(C->route(cd, &rc, dx, n, dg, di, dw) == MOE_OK, "graph: route while capturing failed");
	EXPECT(C->add(cd, dx, dx, n * hdim, dsum) == MOE_OK, "graph: add while capturing failed");
	EXPECT(C->d2d(cd, dcp, dsum, xb) == MOE_OK, "graph: d2d while capturing failed");
	void *g = NULL;
	EXPECT(C->capture_end(cd, &g) == MOE_OK && g, "graph: capture_end failed");
	int32_t *ci = down(di, ib);
	moe_bf16 *cs = down(dsum, xb);
	int untouched = 1;
	for (int64_t i = 0; i < n * k; i++)
		untouched &= ci[i] == 0;
	for (int64_t i = 0; i < n * hdim; i++)
		untouched &= cs[i] == 0;
	EXPECT(untouched, "graph: the capture ran its ops");
	free(ci);
	free(cs);
	for (int rep = 0; rep < 2; rep++) {
		if (rep) { /* new input: the replay reads it, as the ops at once do */
			for (int64_t i = 0; i < n * hdim; i++)
				x[i] = moe_f32_to_bf16(rnd((uint64_t)i, 13));
			C->h2d(cd, dx, x, xb);
			C->route(cd, &rc, dx, n, dg, ei, ew);
		}
		EXPECT(C->replay(cd, g) == MOE_OK && C->sync(cd) == MOE_OK, "graph: replay failed");
		void *a = down(di, ib), *b = down(ei, ib), *sw = down(dw, ib), *ewh = down(ew, ib);
		EXPECT(!memcmp(a, b, ib) && !memcmp(sw, ewh, ib), "graph: replay %d routes differently from the router at once",
		       rep);
		moe_bf16 *sum = down(dsum, xb), *cp = down(dcp, xb);
		int ok = !memcmp(sum, cp, xb);
		for (int64_t i = 0; i < n * hdim; i++)
			ok &= sum[i] == moe_f32_to_bf16(moe_bf16_to_f32(x[i]) * 2.0f);
		EXPECT(ok, "graph: replay %d: add or d2d wrong", rep);
		free(a); free(b); free(sw); free(ewh); free(sum); free(cp);
	}
	C->graph_free(cd, g);
	/* a host round trip while capturing: refused, the capture fails, the stream works on */
	moe_bf16 one;
	EXPECT(C->capture_begin(cd) == MOE_OK, "graph: second capture_begin failed");
	EXPECT(C->add(cd, dx, dx, n * hdim, dsum) == MOE_OK, "graph: add while capturing failed");
	EXPECT(C->d2h(cd, &one, dx, 2) == MOE_ERR_UNSUPPORTED, "graph: d2h while capturing was not refused");
	g = (void *)1;
	EXPECT(C->capture_end(cd, &g) == MOE_ERR_UNSUPPORTED && !g, "graph: a refused capture was not failed");
	EXPECT(C->sync(cd) == MOE_OK && C->d2h(cd, &one, dx, 2) == MOE_OK && one == x[0],
	       "graph: the stream is unusable after a refused capture");
	printf("graph n=%lld H=%lld E=%lld K=%lld: replays match the ops at once; d2h refused while capturing\n",
	       (long long)n, (long long)hdim, (long long)e, (long long)k);
	free(x); free(wg);
	C->free(cd, dx); C->free(cd, dg); C->free(cd, dsum); C->free(cd, dcp);
	C->free(cd, di); C->free(cd, dw); C->free(cd, ei); C->free(cd, ew);
}

int main(void)
{
	if (gpu_test_open())
		return 77;
	test_generate();
	test_bucket_and_moves(1000, 16, 256);
	test_bucket_and_moves(65536 + 17, 256, 7168);
	test_bucket_and_moves(5, 8, 6);
	test_combine(300, 8, 7168, 1, 0);
	test_combine(77, 4, 250, 0, 0);
	test_combine(64, 2, 256, 1, 1);
	test_ffn(MOE_FFN_SCALE, 256, 64, 5, 0, 0);
	test_ffn(MOE_FFN_IDENTITY, 264, 64, 3, 1, 0);
	test_ffn(MOE_FFN_SWIGLU, 256, 128, 4, 0, 0);
	test_ffn(MOE_FFN_SWIGLU, 512, 256, 6, 1, 0);
	test_ffn(MOE_FFN_SWIGLU, 256, 128, 4, 0, 1);
	test_ffn(MOE_FFN_SWIGLU, 512, 256, 6, 1, 1);
	test_route(2048, 512, 256, 8, 8, 1);
	test_route(1000, 256, 16, 4, 1, 0);
	test_graph(512, 256, 64, 4);
	H->fini(hd);
	C->fini(cd);
	printf("%d failures\n", failures);
	printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
	return failures ? 1 : 0;
}
