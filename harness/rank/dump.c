/* --dump: a case's tensors as NumPy .npy files (format 1.0), so another framework can cross-check them.
 * bf16 tensors are written as float32 (every bf16 value is exactly representable). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "moe.h"
#include "strategy.h"

/* descr: "<f4" or "<i4"; rows x cols, row-major, 4-byte elements. */
static int npy_write(const char *path, const char *descr, int64_t rows, int64_t cols, const void *data)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr), "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }", descr,
			 (long long)rows, (long long)cols);
	int total = 10 + n + 1, pad = (64 - total % 64) % 64; /* the data starts 64-byte aligned */
	memset(hdr + n, ' ', (size_t)pad);
	hdr[n + pad] = '\n';
	uint16_t hl = (uint16_t)(n + pad + 1);
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int ok = fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 && fwrite(&hl, 2, 1, f) == 1 &&
		 fwrite(hdr, 1, hl, f) == hl && fwrite(data, 4, (size_t)(rows * cols), f) == (size_t)(rows * cols);
	return fclose(f) == 0 && ok ? 0 : -1;
}

static int dump_bf16(struct moe_ctx *ctx, const char *path, const moe_bf16 *d, int64_t rows, int64_t cols)
{
	size_t n = (size_t)(rows * cols);
	moe_bf16 *h = malloc(n * 2 + 2);
	float *f = malloc(n * 4 + 4);
	int rc = !h || !f ? -1 : 0;
	if (!rc && ctx->be->d2h(ctx->dev, h, d, n * 2))
		rc = -1;
	for (size_t i = 0; !rc && i < n; i++)
		f[i] = moe_bf16_to_f32(h[i]);
	if (!rc)
		rc = npy_write(path, "<f4", rows, cols, f);
	free(h);
	free(f);
	return rc;
}

static int dump_raw(struct moe_ctx *ctx, const char *path, const char *descr, const void *d, int64_t rows, int64_t cols)
{
	size_t n = (size_t)(rows * cols) * 4;
	void *h = malloc(n + 4);
	int rc = !h || ctx->be->d2h(ctx->dev, h, d, n) ? -1 : npy_write(path, descr, rows, cols, h);
	free(h);
	return rc;
}

int moe_dump_case(struct moe_ctx *ctx, const char *dir, int64_t T, int64_t n, moe_bf16 *const *X, moe_bf16 *const *Y,
		  int32_t *const *idx, float *const *w, char *err, size_t errlen)
{
	const struct moe_params *p = ctx->p;
	int64_t H = p->hidden, F = p->ffn, K = p->topk, E = p->experts;
	char path[4096];
	if (mkdir(dir, 0755) && errno != EEXIST) {
		snprintf(err, errlen, "--dump %s: %s", dir, strerror(errno));
		return -1;
	}
	int rc = 0;
	for (int64_t l = 0; l < p->layers && !rc; l++) {
#define P(fmt, ...) (snprintf(path, sizeof(path), "%s/rank%d_layer%lld_" fmt ".npy", dir, ctx->rank, (long long)l, ##__VA_ARGS__), path)
		rc |= dump_bf16(ctx, P("x"), X[l], T, H);       /* the DP group's input rows */
		rc |= dump_bf16(ctx, P("y"), Y[l], T, H);       /* its merged output */
		rc |= dump_raw(ctx, P("idx"), "<i4", idx[l], n, K); /* routing of the rows this rank dispatched */
		rc |= dump_raw(ctx, P("w"), "<f4", w[l], n, K);
		rc |= dump_bf16(ctx, P("wg"), ctx->lw[l].wg, E, H);
		for (int64_t e = 0; e < E && p->expert == MOE_EXPERT_SWIGLU; e++) {
			if (!ctx->lw[l].w1[e])
				continue;
			rc |= dump_bf16(ctx, P("expert%lld_w1", (long long)e), ctx->lw[l].w1[e], F, H);
			rc |= dump_bf16(ctx, P("expert%lld_w3", (long long)e), ctx->lw[l].w3[e], F, H);
			rc |= dump_bf16(ctx, P("expert%lld_w2", (long long)e), ctx->lw[l].w2[e], H, F);
		}
#undef P
	}
	if (rc)
		snprintf(err, errlen, "--dump: writing %s failed: %s", path, strerror(errno));
	return rc;
}
