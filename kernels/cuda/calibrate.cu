/* CUDA backend, calibrate: the rooflines (copy bandwidth, dense bf16 GEMM), and the backend's own kernels
 * measured against them. */
#include "calib_shapes.h"
#include "cuda_internal.h"
#include "rng.h"

struct timer {
	cudaEvent_t a, b;
};

/* ms per call of fn: warm-up calls for at least 20 ms of GPU time (2 at least), then reps calls or more, so
 * that the timed block lasts 50 ms at least. A short block timed right after another kernel inherits the
 * clocks that kernel left (the H200's GEMMs run at its power limit): the same path measured 3-4 % apart
 * depending on which mode ran before it. The PyTorch anchors time the same way (scripts/torch_anchor.py). */
enum { WARM_MS = 20, BLOCK_MS = 50 };

static float median3(const float *v)
{
	return v[0] > v[1] ? (v[1] > v[2] ? v[1] : v[0] > v[2] ? v[2] : v[0]) : (v[0] > v[2] ? v[0] : v[1] > v[2] ? v[2] : v[1]);
}

static float time_ms(cudaStream_t s, struct timer *t, int reps, int (*fn)(void *), void *arg)
{
	float probe = 0;
	cudaEventRecord(t->a, s);
	if (fn(arg))
		return -1;
	cudaEventRecord(t->b, s);
	cudaEventSynchronize(t->b);
	cudaEventElapsedTime(&probe, t->a, t->b);
	probe = probe > 1e-3f ? probe : 1e-3f;
	int warm = (int)(WARM_MS / probe) + 1, n = (int)(BLOCK_MS / probe) + 1;
	warm = warm < 2 ? 2 : warm > 1000 ? 1000 : warm;
	reps = n > reps ? (n > 1000 ? 1000 : n) : reps;
	for (int i = 0; i < warm; i++)
		if (fn(arg))
			return -1;
	cudaEventRecord(t->a, s);
	for (int i = 0; i < reps; i++)
		if (fn(arg))
			return -1;
	cudaEventRecord(t->b, s);
	cudaEventSynchronize(t->b);
	float ms = 0;
	cudaEventElapsedTime(&ms, t->a, t->b);
	return ms / reps;
}

struct bench {
	struct moe_dev *d;
	void *a, *b, *c, *e, *f;
	int64_t m, n, k, h, nb;
	int64_t *counts;
	const int32_t *d_counts; /* the same counts on the device (ffn_dev) */
	struct moe_ffn_cfg *fc;
	struct moe_route_cfg *rc;
};

static int b_copy(void *p)
{
	struct bench *x = (struct bench *)p;
	return cudaMemcpyAsync(x->b, x->a, (size_t)x->m, cudaMemcpyDeviceToDevice, x->d->stream) == cudaSuccess ? 0 : 1;
}

static int b_gemm(void *p)
{
	struct bench *x = (struct bench *)p;
	const float one = 1.0f, zero = 0.0f;
	return cublasGemmEx(x->d->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)x->n, (int)x->m, (int)x->k, &one, x->b,
			    CUDA_R_16BF, (int)x->k, x->a, CUDA_R_16BF, (int)x->k, &zero, x->c, CUDA_R_16BF, (int)x->n,
			    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS;
}

/* permute as the expert phase does it: bucket by expert, then the stable scatter of the rows */
static int b_permute(void *p)
{
	struct bench *x = (struct bench *)p;
	int64_t counts[4096];
	if (cuda_bucket(x->d, (const int32_t *)x->c, x->m, 0, 1, x->nb, counts, (int32_t *)x->e))
		return 1;
	return cuda_scatter_rows(x->d, (const moe_bf16 *)x->a, (const int32_t *)x->e, x->m, 1, x->h, (moe_bf16 *)x->b);
}

static int b_scatter(void *p)
{
	struct bench *x = (struct bench *)p;
	return cuda_scatter_rows(x->d, (const moe_bf16 *)x->a, (const int32_t *)x->e, x->m, 1, x->h, (moe_bf16 *)x->b);
}

static int b_combine(void *p)
{
	struct bench *x = (struct bench *)p;
	return cuda_combine(x->d, (const moe_bf16 *)x->a, (const int32_t *)x->e, (const float *)x->f, x->n, x->k, x->h,
			    NULL, 0, (moe_bf16 *)x->b, NULL);
}

static int b_ffn(void *p)
{
	struct bench *x = (struct bench *)p;
	return cuda_ffn(x->d, x->fc, (const moe_bf16 *)x->a, x->counts, NULL, (moe_bf16 *)x->b);
}

static int b_ffn_dev(void *p)
{
	struct bench *x = (struct bench *)p;
	return moe_cuda_ffn_dev(x->d, x->fc, (const moe_bf16 *)x->a, x->d_counts, x->m, NULL, (moe_bf16 *)x->b);
}

static int b_route(void *p)
{
	struct bench *x = (struct bench *)p;
	return cuda_route(x->d, x->rc, (const moe_bf16 *)x->a, x->m, (const moe_bf16 *)x->b, (int32_t *)x->c, (float *)x->e);
}

static void fill(struct moe_dev *d, void *p, int64_t elems, uint32_t tensor, double scale)
{
	cuda_generate(d, 7, tensor, 0, 0, 1, elems, scale, (moe_bf16 *)p);
}

/* The rooflines: copy bandwidth over 2 GiB and a dense 8192^3 bf16 GEMM. Leaves x->a, x->b (random bf16) and
 * x->c allocated for the steps after. */
static int calib_rooflines(struct moe_dev *d, struct timer *t, struct bench *x, FILE *out, double *copy_out,
			   double *dense_out)
{
	/* copy roofline: 2 GiB device to device */
	x->m = (int64_t)2 << 30;
	CU(cudaMalloc(&x->a, (size_t)x->m));
	CU(cudaMalloc(&x->b, (size_t)x->m));
	cudaMemsetAsync(x->a, 1, (size_t)x->m, d->stream);
	float ms = time_ms(d->stream, t, 10, b_copy, x);
	double copy = 2.0 * (double)x->m / (ms * 1e-3) / 1e9; /* read + write */
	fprintf(out, "copy_GBps\t%.1f\t# cudaMemcpy D2D of 2 GiB, bytes read + written per second\n", copy);
	/* dense GEMM roofline: 8192^3 bf16, fp32 accumulate */
	x->m = x->n = x->k = 8192;
	fill(d, x->a, 8192 * 8192, 3, 0.01);
	fill(d, x->b, 8192 * 8192, 4, 0.01);
	CU(cudaMalloc(&x->c, (size_t)8192 * 8192 * 2));
	ms = time_ms(d->stream, t, 10, b_gemm, x);
	double dense = 2.0 * 8192.0 * 8192 * 8192 / (ms * 1e-3) / 1e12;
	fprintf(out, "gemm_TFLOPs\t%.1f\t# cublasGemmEx 8192x8192x8192 bf16 in/out, fp32 compute, random data\n", dense);
	*copy_out = copy;
	*dense_out = dense;
	return MOE_OK;
}

/* Permute and combine at 4096 tokens x H 7168, top-8 (32768 slots), 32 local experts, against copy_GBps.
 * Leaves x->c the slots' expert ids, x->e their positions, x->f their weights. */
static int calib_layout(struct moe_dev *d, struct timer *t, struct bench *x, FILE *out, double copy)
{
	int64_t T = 4096, K = 8, H = 7168, S = T * K;
	int32_t *hk = (int32_t *)malloc(S * 4);
	for (int64_t i = 0; i < S; i++)
		hk[i] = (int32_t)(moe_rng_u64(3, 30, 0, 0, (uint64_t)i) % 32);
	CU(cudaMemcpy(x->c, hk, S * 4, cudaMemcpyHostToDevice));
	free(hk);
	CU(cudaMalloc(&x->e, S * 4));
	CU(cudaMalloc(&x->f, S * 4));
	fill(d, x->a, S * H, 5, 1.0);
	x->m = S;
	x->h = H;
	x->nb = 32;
	float ms = time_ms(d->stream, t, 20, b_permute, x);
	double bytes = 2.0 * S * H * 2;
	fprintf(out, "permute_GBps\t%.1f\t%.0f%%\t# bucket 32768 slots by expert + scatter 32768 rows of 7168 bf16 (%.2f ms)\n",
		bytes / (ms * 1e-3) / 1e9, 100 * bytes / (ms * 1e-3) / 1e9 / copy, ms);
	ms = time_ms(d->stream, t, 20, b_scatter, x);
	fprintf(out, "scatter_GBps\t%.1f\t%.0f%%\t# the row scatter alone (%.2f ms)\n", bytes / (ms * 1e-3) / 1e9,
		100 * bytes / (ms * 1e-3) / 1e9 / copy, ms);
	/* combine: slots of token t at rows permuted by the bucket above */
	x->n = T;
	x->k = K;
	fill(d, x->f, S * 2, 6, 1.0); /* weights: any finite values */
	ms = time_ms(d->stream, t, 20, b_combine, x);
	bytes = (double)(S + T) * H * 2;
	fprintf(out, "combine_GBps\t%.1f\t%.0f%%\t# 4096 tokens x 8 slots x 7168: K rows read + 1 written (%.2f ms)\n",
		bytes / (ms * 1e-3) / 1e9, 100 * bytes / (ms * 1e-3) / 1e9 / copy, ms);
	return MOE_OK;
}

/* The router: 8192 tokens x 256 experts x 7168, sigmoid, 8 groups keep 4, top-8. */
static void calib_router(struct moe_dev *d, struct timer *t, struct bench *x, FILE *out)
{
	struct moe_route_cfg rc = {7168, 256, 8, 8, 4, 1, 1, 2.5f, NULL};
	x->rc = &rc;
	x->m = 8192;
	float ms = time_ms(d->stream, t, 20, b_route, x); /* a, b: bf16 x and Wg, already random */
	fprintf(out, "route_ms\t%.3f\t# 8192 tokens, 256 experts, H 7168: gate GEMM + top-k (deepseek-v3 router)\n", ms);
	x->rc = NULL; /* rc lives on this stack frame */
}

/* One shape's experts: W1 | W3 | W2 in one allocation per expert, random; expert j gets counts[j] rows
 * (moe_calib_counts: sh->rows each, or spread unequally around it). */
struct expert_set {
	moe_bf16 **w1, **w3, **w2;
	int64_t *counts;
	void *xin, *xo;
};

static int experts_alloc(struct moe_dev *d, const struct moe_calib_shape *sh, struct expert_set *s)
{
	int64_t R = sh->ne * sh->rows;
	s->w1 = (moe_bf16 **)malloc(sh->ne * sizeof(void *));
	s->w3 = (moe_bf16 **)malloc(sh->ne * sizeof(void *));
	s->w2 = (moe_bf16 **)malloc(sh->ne * sizeof(void *));
	s->counts = (int64_t *)malloc(sh->ne * 8);
	for (int64_t j = 0; j < sh->ne; j++) {
		CU(cudaMalloc((void **)&s->w1[j], (size_t)(3 * sh->f * sh->h) * 2));
		s->w3[j] = s->w1[j] + sh->f * sh->h;
		s->w2[j] = s->w3[j] + sh->f * sh->h;
		fill(d, s->w1[j], 3 * sh->f * sh->h, 10 + (uint32_t)j, 0.02);
	}
	moe_calib_counts(sh, s->counts);
	CU(cudaMalloc(&s->xin, (size_t)(R * sh->h) * 2));
	CU(cudaMalloc(&s->xo, (size_t)(R * sh->h) * 2));
	fill(d, s->xin, R * sh->h, 9, 1.0);
	return MOE_OK;
}

static void experts_free(const struct moe_calib_shape *sh, struct expert_set *s)
{
	for (int64_t j = 0; j < sh->ne; j++)
		cudaFree(s->w1[j]);
	cudaFree(s->xin);
	cudaFree(s->xo);
	free(s->w1);
	free(s->w3);
	free(s->w2);
	free(s->counts);
}

/* The same shape's rows split unevenly (moe_calib_zipf_counts), as the shape "<name>-zipf" (the PyTorch anchors
 * time it too): cuBLAS's grouped GEMM, what the expert phase picks by itself (auto), and with CUTLASS the
 * grouped GEMM from device counts (dev: ffn_dev, what a captured layer runs). */
static int calib_uneven(struct moe_dev *d, struct timer *t, struct bench *y, const struct moe_calib_shape *sh, double dense,
			double flops, FILE *out)
{
	int64_t R = sh->ne * sh->rows, *zc = (int64_t *)malloc(sh->ne * 8), hot = 0, empty = 0;
	int32_t *z32 = (int32_t *)malloc(sh->ne * 4);
	moe_calib_zipf_counts(sh->ne, R, zc);
	for (int64_t j = 0; j < sh->ne; j++) {
		hot = zc[j] > hot ? zc[j] : hot;
		empty += zc[j] == 0;
		z32[j] = (int32_t)zc[j];
	}
	int32_t *dz = NULL;
	CU(cudaMalloc((void **)&dz, sh->ne * 4));
	CU(cudaMemcpy(dz, z32, sh->ne * 4, cudaMemcpyHostToDevice));
	struct bench z = *y;
	z.counts = zc;
	z.d_counts = dz;
	z.m = R;
	const char *names[] = {"grouped", "auto", "dev"};
#ifdef MOE_HAVE_CUTLASS
	int n = 3;
#else
	int n = 2;
#endif
	for (int mi = 0; mi < n; mi++) {
		if (mi == 0)
			setenv("MOEBENCH_EXPERT_GEMM", "grouped", 1);
		else
			unsetenv("MOEBENCH_EXPERT_GEMM");
		float ms = time_ms(d->stream, t, 10, mi == 2 ? b_ffn_dev : b_ffn, &z);
		if (ms <= 0)
			continue;
		double tf = flops / (ms * 1e-3) / 1e12;
		fprintf(out, "experts_%s-zipf_%s_TFLOPs\t%.1f\t%.0f%%\t# %lld rows over %lld experts, zipf 0.8 (hottest %lld rows, %lld empty), H %lld, F %lld: gate|up + act + down%s (%.2f ms; %% of gemm_TFLOPs)\n",
			sh->name, names[mi], tf, 100 * tf / dense, (long long)R, (long long)sh->ne, (long long)hot,
			(long long)empty, (long long)sh->h, (long long)sh->f,
			mi == 2 ? ", row counts read on the device" : "", ms);
	}
	unsetenv("MOEBENCH_EXPERT_GEMM");
	cudaFree(dz);
	free(zc);
	free(z32);
	return MOE_OK;
}

#ifdef MOE_HAVE_CUTLASS
/* MOEBENCH_CALIB_TILES=1: each grouped GEMM of the shape (gate|up, down) in every CUTLASS tile, the evidence
 * for moe_cuda_gg_pick's rule. */
struct gg_bench {
	struct moe_dev *d;
	int ne;
	const int64_t *starts;
	int64_t n, k, avg;
	const moe_bf16 *a;
	const moe_bf16 *const *w;
	moe_bf16 *dd;
};

static int b_gg(void *p)
{
	struct gg_bench *g = (struct gg_bench *)p;
	return moe_cuda_grouped_gemm(g->d, g->ne, 1, g->starts, NULL, g->avg, g->n, g->k, g->a, g->w, g->dd, g->n);
}

static int calib_tiles(struct moe_dev *d, struct timer *t, const struct moe_calib_shape *sh, const int64_t *counts,
		       moe_bf16 *const *w1, moe_bf16 *const *w2, const moe_bf16 *xin, moe_bf16 *xo, FILE *out)
{
	int64_t R = sh->ne * sh->rows, *hs = (int64_t *)malloc((sh->ne + 1) * 8), *ds = NULL;
	moe_bf16 *act = NULL;
	hs[0] = 0;
	for (int64_t j = 0; j < sh->ne; j++)
		hs[j + 1] = hs[j] + counts[j];
	CU(cudaMalloc((void **)&ds, (sh->ne + 1) * 8));
	CU(cudaMemcpy(ds, hs, (sh->ne + 1) * 8, cudaMemcpyHostToDevice));
	CU(cudaMalloc((void **)&act, (size_t)(R * 2 * sh->f) * 2));
	fill(d, act, R * 2 * sh->f, 8, 1.0); /* the down GEMM's input: random, as an activation is */
	for (int pass = 0; pass < 2; pass++) {
		struct gg_bench g = {d, (int)sh->ne, ds, pass ? sh->h : 2 * sh->f, pass ? sh->f : sh->h, R / sh->ne,
				     pass ? act : xin, (const moe_bf16 *const *)(pass ? w2 : w1), pass ? xo : act};
		float r_ms[MOE_GG_NTILES][3];
		for (int round = 0; round < 3; round++)
			for (int ti = 0; ti < MOE_GG_NTILES; ti++) {
				setenv("MOEBENCH_GG_TILE", moe_cuda_gg_tile_name(ti), 1);
				r_ms[ti][round] = time_ms(d->stream, t, 10, b_gg, &g);
			}
		unsetenv("MOEBENCH_GG_TILE");
		int pick = moe_cuda_gg_pick((int)sh->ne, counts, R / sh->ne, g.n, g.k);
		for (int ti = 0; ti < MOE_GG_NTILES; ti++) {
			float ms = median3(r_ms[ti]);
			fprintf(out, "experts_%s_%s_%s_TFLOPs\t%.1f\t# %s, N %lld, K %lld (%.3f ms, the median of 3 rounds)%s\n",
				sh->name, pass ? "down" : "gateup", moe_cuda_gg_tile_name(ti),
				2.0 * R * g.n * g.k / (ms * 1e-3) / 1e12, pass ? "down" : "gate|up", (long long)g.n,
				(long long)g.k, ms, ti == pick ? "; the tile the expert phase picks" : "");
		}
	}
	cudaFree(ds);
	cudaFree(act);
	free(hs);
	return MOE_OK;
}
#endif

/* Grouped experts of one shape, in each GEMM mode, against one dense GEMM of the same FLOPs and against
 * gemm_TFLOPs (dense). */
static int calib_experts(struct moe_dev *d, struct timer *t, const struct bench *x, const struct moe_calib_shape *sh,
			 double dense, FILE *out)
{
	struct expert_set s;
	int rc = experts_alloc(d, sh, &s);
	if (rc != MOE_OK)
		return rc;
	int64_t R = sh->ne * sh->rows;
	struct moe_ffn_cfg fc = {MOE_FFN_SWIGLU, sh->h, sh->f, sh->ne, 0, (const moe_bf16 *const *)s.w1,
				 (const moe_bf16 *const *)s.w3, (const moe_bf16 *const *)s.w2};
	struct bench y = *x;
	y.fc = &fc;
	y.counts = s.counts;
	y.a = s.xin;
	y.b = s.xo;
	double flops = 2.0 * R * sh->h * sh->f * 3;
	/* the same FLOPs as one dense layer: every row through a single expert (one GEMM per projection) */
	int64_t all_rows = R;
	struct moe_ffn_cfg fd = fc;
	fd.nexperts = 1;
	struct bench yd = y;
	yd.fc = &fd;
	yd.counts = &all_rows;
	float ms = time_ms(d->stream, t, 10, b_ffn, &yd);
	double same = flops / (ms * 1e-3) / 1e12;
	fprintf(out, "experts_%s_dense_TFLOPs\t%.1f\t%.0f%%\t# the same FLOPs as one dense layer: %lld rows through one expert, cublasGemmEx per projection + act (%.2f ms)\n",
		sh->name, same, 100 * same / dense, (long long)R, ms);
	/* auto: what a run's expert phase picks by itself (MOEBENCH_EXPERT_GEMM unset) */
	/* the modes take turns, round after round, and each reports its median round: a mode timed right after
	 * another (or first, or last) no longer inherits what the clocks did then; auto is what a run picks */
#ifdef MOE_HAVE_CUTLASS
	const char *modes[] = {"grouped", "loop", "batched", "cutlass", "auto"};
	enum { NMODES = 5 };
#else
	const char *modes[] = {"grouped", "loop", "batched", "auto"};
	enum { NMODES = 4 };
#endif
	enum { ROUNDS = 3 };
	float r_ms[NMODES][ROUNDS];
	for (int round = 0; round < ROUNDS; round++)
		for (int mi = 0; mi < NMODES; mi++) {
			if (!strcmp(modes[mi], "auto"))
				unsetenv("MOEBENCH_EXPERT_GEMM");
			else
				setenv("MOEBENCH_EXPERT_GEMM", modes[mi], 1);
			r_ms[mi][round] = time_ms(d->stream, t, 10, b_ffn, &y);
		}
	for (int mi = 0; mi < NMODES; mi++) {
		ms = median3(r_ms[mi]);
		double tf = flops / (ms * 1e-3) / 1e12;
		fprintf(out, "experts_%s_%s_TFLOPs\t%.1f\t%.0f%%\t%.0f%%\t# %lld experts x %lld rows%s, H %lld, F %lld: gate|up + act + down (%.2f ms, the median of %d rounds taken in turn with the other modes; %% of gemm_TFLOPs, then of the same-FLOPs dense layer)\n",
			sh->name, modes[mi], tf, 100 * tf / dense, 100 * tf / same, (long long)sh->ne,
			(long long)sh->rows, sh->unequal ? " on average (unequal)" : "", (long long)sh->h,
			(long long)sh->f, ms, ROUNDS);
	}
	unsetenv("MOEBENCH_EXPERT_GEMM");
#ifdef MOE_HAVE_CUTLASS
	if (getenv("MOEBENCH_CALIB_TILES") && rc == MOE_OK)
		rc = calib_tiles(d, t, sh, s.counts, s.w1, s.w2, (const moe_bf16 *)s.xin, (moe_bf16 *)s.xo, out);
#endif
	if (rc == MOE_OK && !sh->unequal) /* the unequal shapes are another split of the same rows */
		rc = calib_uneven(d, t, &y, sh, dense, flops, out);
	experts_free(sh, &s);
	return rc;
}

extern "C" int moe_cuda_calibrate(int gpu, FILE *out, double *copy_out, double *gemm_out)
{
	struct moe_dev *d;
	if (cuda_init(&d, gpu) != MOE_OK)
		return MOE_ERR_UNSUPPORTED;
	cudaDeviceProp prop;
	cudaGetDeviceProperties(&prop, d->gpu);
	fprintf(out, "# %s, %d SMs, %.0f MiB; every figure is the mean of a timed block (10 calls or more, 50 ms at "
		     "least) after 20 ms of warm-up, CUDA events\n",
		prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1048576.0);
#ifndef MOE_HAVE_CUTLASS
	if (getenv("MOEBENCH_CALIB_TILES"))
		fprintf(out, "# MOEBENCH_CALIB_TILES: this build has no CUTLASS grouped GEMM, so no tiles to time\n");
#endif
	struct timer t;
	cudaEventCreate(&t.a);
	cudaEventCreate(&t.b);
	struct bench x;
	memset(&x, 0, sizeof(x));
	x.d = d;
	double copy = 0, dense = 0;
	int rc = calib_rooflines(d, &t, &x, out, &copy, &dense);
	if (rc == MOE_OK)
		rc = calib_layout(d, &t, &x, out, copy);
	if (rc != MOE_OK)
		return rc;
	calib_router(d, &t, &x, out);
	/* grouped experts vs one dense GEMM of the same FLOPs, on the shapes the PyTorch anchors time too */
	for (int si = 0; si < MOE_CALIB_NSHAPES; si++)
		if ((rc = calib_experts(d, &t, &x, &moe_calib_shapes[si], dense, out)) != MOE_OK)
			return rc;
	fprintf(out, "# percentages: of copy_GBps for memory-bound kernels, of gemm_TFLOPs for the experts\n");
	*copy_out = copy;
	*gemm_out = dense;
	cudaFree(x.a);
	cudaFree(x.b);
	cudaFree(x.c);
	cudaFree(x.e);
	cudaFree(x.f);
	cuda_fini(d);
	return MOE_OK;
}
