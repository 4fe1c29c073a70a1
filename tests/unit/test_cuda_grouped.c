/* The CUTLASS grouped GEMM against a host reference GEMM per group (unequal rows, empty groups, rows not a
 * multiple of the tile, every tile, the same bits from each), and the CUDA backend's ffn_dev (row counts on
 * the device) against the host backend's ffn. Exits 77 without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "gpu_test.h"
#include "rng.h"

#ifdef MOE_HAVE_CUTLASS
int moe_cuda_grouped_gemm(struct moe_dev *d, int experts, int splits, const int64_t *d_starts, const int64_t *h_counts,
			  int64_t avg_rows, int64_t n, int64_t k, const moe_bf16 *a, const moe_bf16 *const *w,
			  moe_bf16 *dd, int64_t ldd);
const char *moe_cuda_gg_tile_name(int tile); /* "?" past the last tile */
#endif

static float rnd(uint64_t i, uint64_t salt) { return (float)(2.0 * moe_rng_unit(77, 21, 0, salt, i) - 1.0); }

static moe_bf16 *random_bf16(int64_t n, uint64_t salt, float scale)
{
	moe_bf16 *p = malloc((size_t)n * 2 + 2);
	for (int64_t i = 0; i < n; i++)
		p[i] = moe_f32_to_bf16(rnd((uint64_t)i, salt) * scale);
	return p;
}

/* Worst relative L2 error over rows r of got against want (width w, row strides lg and lw). */
static double worst_row(const moe_bf16 *got, int64_t lg, const double *want, int64_t lw, int64_t rows, int64_t w)
{
	double worst = 0;
	for (int64_t r = 0; r < rows; r++) {
		double num = 0, den = 0;
		for (int64_t c = 0; c < w; c++) {
			double a = moe_bf16_to_f32(got[r * lg + c]), b = want[r * lw + c];
			num += (a - b) * (a - b);
			den += b * b;
		}
		double rel = sqrt(num) / (sqrt(den) + 1e-30);
		worst = rel > worst || rel != rel ? rel : worst;
	}
	return worst;
}

#ifdef MOE_HAVE_CUTLASS
/* splits weights per expert side by side in D (ldd = splits * n), as the gate and up projections are. Every
 * tile is run; each must match the reference, and all of them the same bits (the fp32 sums run over K in one
 * order whatever the tile), which lets ffn_dev and ffn pick tiles from different row estimates. */
static void test_grouped_gemm(const int64_t *counts, int ne, int splits, int64_t n, int64_t k)
{
	int64_t rows = 0, starts[17];
	starts[0] = 0;
	for (int j = 0; j < ne; j++)
		starts[j + 1] = rows += counts[j];
	int64_t ldd = splits * n, spare = 3; /* rows past the total that must stay untouched */
	moe_bf16 *a = random_bf16(rows * k, 1, 1.0f), *hw[32];
	const moe_bf16 *dw[32];
	for (int g = 0; g < ne * splits; g++) {
		hw[g] = random_bf16(n * k, 10 + (uint64_t)g, 1.0f / sqrtf((float)k));
		dw[g] = up(hw[g], (size_t)(n * k) * 2);
	}
	double *want = calloc((size_t)(rows * ldd) + 1, sizeof(double));
	for (int g = 0; g < ne * splits; g++) {
		int j = g % ne, s = g / ne;
		for (int64_t r = starts[j]; r < starts[j + 1]; r++)
			for (int64_t c = 0; c < n; c++) {
				double acc = 0;
				for (int64_t i = 0; i < k; i++)
					acc += (double)moe_bf16_to_f32(a[r * k + i]) * moe_bf16_to_f32(hw[g][c * k + i]);
				want[r * ldd + s * n + c] = acc;
			}
	}
	void *da = up(a, (size_t)(rows * k) * 2 + 2), *dst = up(starts, (size_t)(ne + 1) * 8);
	size_t dbytes = (size_t)((rows + spare) * ldd) * 2;
	moe_bf16 *dd = C->alloc(cd, dbytes), *first = NULL;
	for (int t = 0; strcmp(moe_cuda_gg_tile_name(t), "?"); t++) { /* every tile grouped_gemm.cu has */
		const char *tile = moe_cuda_gg_tile_name(t);
		C->memset(cd, dd, 0xff, dbytes); /* NaNs: a row or column the GEMM skips cannot pass */
		setenv("MOEBENCH_GG_TILE", tile, 1);
		EXPECT(moe_cuda_grouped_gemm(cd, ne, splits, dst, counts, rows / ne, n, k, da, dw, dd, ldd) == MOE_OK,
		       "grouped GEMM failed (%s)", tile);
		unsetenv("MOEBENCH_GG_TILE");
		moe_bf16 *got = down(dd, dbytes);
		double worst = worst_row(got, ldd, want, ldd, rows, ldd);
		EXPECT(worst < 1e-2, "grouped GEMM (%s, N %lld, K %lld, %d splits) differs from the reference: %.3g",
		       tile, (long long)n, (long long)k, splits, worst);
		int64_t touched = 0, differ = 0;
		for (int64_t i = rows * ldd; i < (rows + spare) * ldd; i++)
			touched += got[i] != 0xffff;
		EXPECT(touched == 0, "grouped GEMM (%s) wrote %lld values past the last group's rows", tile,
		       (long long)touched);
		for (int64_t i = 0; first && i < rows * ldd; i++)
			differ += got[i] != first[i];
		EXPECT(differ == 0, "grouped GEMM: %lld of %lld values differ between tiles %s and %s", (long long)differ,
		       (long long)(rows * ldd), moe_cuda_gg_tile_name(0), tile);
		printf("grouped GEMM %s, %d groups x %d splits, %lld rows, N %lld, K %lld: worst row relative error "
		       "%.3g%s%s\n", tile, ne, splits, (long long)rows, (long long)n, (long long)k, worst,
		       first ? (differ ? ", bits differ from " : ", the same bits as ") : "",
		       first ? moe_cuda_gg_tile_name(0) : "");
		if (first)
			free(got);
		else
			first = got;
	}
	EXPECT(first != NULL, "grouped_gemm.cu names no tile");
	moe_bf16 *got = first;
	for (int g = 0; g < ne * splits; g++) {
		free(hw[g]);
		C->free(cd, (void *)dw[g]);
	}
	free(a); free(want); free(got);
	C->free(cd, da); C->free(cd, dst); C->free(cd, dd);
}
#endif

/* ffn_dev (int32 counts on the device, max_rows past their total) against the host backend's ffn; fused: W3
 * right after W1 in one allocation. */
static void test_ffn_dev(enum moe_ffn_kind kind, int64_t hdim, int64_t f, int ne, const int64_t *counts,
			 int use_scale, int fused)
{
	int64_t rows = 0, max_rows;
	int32_t c32[16];
	for (int j = 0; j < ne; j++) {
		rows += counts[j];
		c32[j] = (int32_t)counts[j];
	}
	max_rows = rows + 5;
	moe_bf16 *x = random_bf16(max_rows * hdim, 5, 1.0f), *hw[3][16], *dw[3][16];
	float *sc = malloc((size_t)max_rows * 4);
	for (int64_t i = 0; i < max_rows; i++)
		sc[i] = rnd((uint64_t)i, 6);
	for (int j = 0; j < ne; j++) {
		moe_bf16 *w13 = random_bf16(2 * f * hdim, 100 + (uint64_t)j, 1.0f / sqrtf((float)hdim));
		hw[0][j] = w13;
		hw[1][j] = w13 + f * hdim;
		hw[2][j] = random_bf16(hdim * f, 200 + (uint64_t)j, 1.0f / sqrtf((float)f));
		dw[0][j] = up(w13, (size_t)(2 * f * hdim) * 2);
		dw[1][j] = fused ? dw[0][j] + f * hdim : up(hw[1][j], (size_t)(f * hdim) * 2);
		dw[2][j] = up(hw[2][j], (size_t)(hdim * f) * 2);
	}
	struct moe_ffn_cfg hc = {kind, hdim, f, ne, 3, (const moe_bf16 *const *)hw[0], (const moe_bf16 *const *)hw[1],
				 (const moe_bf16 *const *)hw[2]};
	struct moe_ffn_cfg cc = hc;
	cc.d_w1 = (const moe_bf16 *const *)dw[0];
	cc.d_w3 = (const moe_bf16 *const *)dw[1];
	cc.d_w2 = (const moe_bf16 *const *)dw[2];
	moe_bf16 *ho = malloc((size_t)(rows * hdim) * 2 + 2);
	H->ffn(hd, &hc, x, counts, use_scale ? sc : NULL, ho);
	void *dx = up(x, (size_t)(max_rows * hdim) * 2), *dsc = up(sc, (size_t)max_rows * 4), *dc = up(c32, (size_t)ne * 4);
	size_t ob = (size_t)(max_rows * hdim) * 2;
	void *dout = C->alloc(cd, ob);
	C->memset(cd, dout, 0xff, ob);
	int rc = C->ffn_dev(cd, &cc, dx, dc, max_rows, use_scale ? dsc : NULL, dout);
	moe_bf16 *co = down(dout, ob);
#ifndef MOE_HAVE_CUTLASS
	if (kind == MOE_FFN_SWIGLU) {
		EXPECT(rc == MOE_ERR_UNSUPPORTED, "ffn_dev swiglu without CUTLASS returned %d", rc);
		goto out;
	}
#endif
	EXPECT(rc == MOE_OK, "ffn_dev failed (kind %d)", kind);
	if (kind != MOE_FFN_SWIGLU) {
		EXPECT(!memcmp(ho, co, (size_t)(rows * hdim) * 2), "exact ffn_dev differs (kind %d, scale %d)", kind, use_scale);
	} else {
		double *want = malloc((size_t)(rows * hdim) * sizeof(double) + 8);
		for (int64_t i = 0; i < rows * hdim; i++)
			want[i] = moe_bf16_to_f32(ho[i]);
		double worst = worst_row(co, hdim, want, hdim, rows, hdim);
		EXPECT(worst < 2e-2, "ffn_dev swiglu differs from the host: worst row relative error %.3g", worst);
		printf("ffn_dev swiglu H=%lld F=%lld %d experts, %s weights, scale %d: worst row relative error %.3g\n",
		       (long long)hdim, (long long)f, ne, fused ? "fused" : "separate", use_scale, worst);
		free(want);
	}
	int64_t touched = 0;
	for (int64_t i = rows * hdim; i < max_rows * hdim; i++)
		touched += co[i] != 0xffff;
	EXPECT(touched == 0, "ffn_dev wrote %lld values past the counts' total", (long long)touched);
#ifndef MOE_HAVE_CUTLASS
out:
#endif
	for (int j = 0; j < ne; j++) {
		free(hw[0][j]);
		free(hw[2][j]);
		C->free(cd, dw[0][j]);
		if (!fused)
			C->free(cd, dw[1][j]);
		C->free(cd, dw[2][j]);
	}
	free(x); free(sc); free(ho); free(co);
	C->free(cd, dx); C->free(cd, dsc); C->free(cd, dc); C->free(cd, dout);
}

int main(void)
{
	if (gpu_test_open())
		return 77;
	const int64_t uneven[6] = {0, 1, 130, 64, 0, 257}, zipf[8] = {300, 150, 100, 75, 0, 50, 43, 2};
#ifdef MOE_HAVE_CUTLASS
	test_grouped_gemm(uneven, 6, 2, 256, 512);
	test_grouped_gemm(zipf, 8, 1, 136, 200);
	const int64_t none[3] = {0, 0, 0};
	test_grouped_gemm(none, 3, 1, 128, 64);
#endif
	test_ffn_dev(MOE_FFN_SWIGLU, 256, 128, 6, uneven, 0, 1);
	test_ffn_dev(MOE_FFN_SWIGLU, 512, 256, 8, zipf, 1, 0);
	test_ffn_dev(MOE_FFN_SCALE, 264, 64, 6, uneven, 1, 1);
	test_ffn_dev(MOE_FFN_IDENTITY, 256, 64, 8, zipf, 0, 1);
	H->fini(hd);
	C->fini(cd);
	printf("%d failures\n", failures);
	return failures ? 1 : 0;
}
