/* CUDA backend, experts: the expert FFN over rows in expert-major order; the exact modes (scale, identity) as
 * one kernel, SwiGLU as CUTLASS's Hopper grouped GEMM with the row counts on the device where it is built
 * (ffn_dev, and host counts too), else as cuBLAS bf16 GEMMs dispatched batched, grouped or one per expert over
 * side streams. */
#include "cuda_internal.h"

/* Rows a kernel touches: all of them, or the valid ones (*d_total, within the bound) when the counts live on
 * the device. */
__device__ static inline int64_t live_rows(int64_t rows, const int64_t *d_total)
{
	if (!d_total)
		return rows;
	int64_t t = *d_total;
	return t < rows ? t : rows;
}

/* u = bf16(scale[row] * x) (score_before_experts), or x itself. */
__global__ void scale_rows_kernel(const moe_bf16 *x, const float *scale, int64_t rows, int64_t h,
				  const int64_t *d_total, moe_bf16 *out)
{
	int64_t n = live_rows(rows, d_total) * h;
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
		out[i] = tobf(scale[i / h] * bf(x[i]));
}

/* scale / identity experts: out = bf16(f * u) with f = e + 1 or 1 */
__global__ void exact_ffn_kernel(const moe_bf16 *x, const int64_t *row_expert_start, int nexp, int64_t first, int scale,
				 int64_t rows, int64_t h, const int64_t *d_total, moe_bf16 *out)
{
	int64_t n = live_rows(rows, d_total) * h;
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
		int64_t r = i / h;
		int lo = 0, hi = nexp - 1; /* the last expert whose first row is <= r */
		while (lo < hi) {
			int mid = (lo + hi + 1) / 2;
			if (row_expert_start[mid] <= r)
				lo = mid;
			else
				hi = mid - 1;
		}
		int j = lo;
		float f = scale ? (float)(first + j + 1) : 1.0f;
		out[i] = tobf(f * bf(x[i]));
	}
}

/* act = bf16(silu(g) * u); g and u are the two projections, stored bf16 by the GEMMs (cuBLAS's grouped GEMM
 * has no bf16-in, fp32-out mode) */
__device__ static inline float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

__global__ void swiglu_act_kernel(const moe_bf16 *gu, int64_t rows, int64_t f, const int64_t *d_total, moe_bf16 *act)
{
	int64_t n = live_rows(rows, d_total) * f;
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
		int64_t r = i / f, c = i % f;
		act[i] = tobf(silu_mul(bf(gu[r * 2 * f + c]), bf(gu[r * 2 * f + f + c])));
	}
}

/* The same over 8 columns (16 bytes) a thread: f a multiple of 8, gu and act 16-byte aligned. The activation
 * reads 2 and writes 1 bf16 per value; one 16-byte access each keeps it at copy bandwidth (the scalar kernel
 * above, 2-byte accesses and a 64-bit division per value, took about twice as long). Index arithmetic in I:
 * 32 bits whenever rows * f / 8 fits. */
template <class I>
__global__ void swiglu_act8_kernel(const moe_bf16 *gu, int64_t rows, I f8, const int64_t *d_total, moe_bf16 *act)
{
	I n = (I)live_rows(rows, d_total) * f8;
	const uint4 *g4 = (const uint4 *)gu;
	uint4 *a4 = (uint4 *)act;
	for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
		I r = i / f8, c = i - r * f8;
		uint4 g = g4[r * 2 * f8 + c], u = g4[r * 2 * f8 + f8 + c], o;
		const __nv_bfloat162 *gv = (const __nv_bfloat162 *)&g, *uv = (const __nv_bfloat162 *)&u;
		__nv_bfloat162 *ov = (__nv_bfloat162 *)&o;
		for (int j = 0; j < 4; j++) {
			float2 gf = __bfloat1622float2(gv[j]), uf = __bfloat1622float2(uv[j]);
			ov[j] = __floats2bfloat162_rn(silu_mul(gf.x, uf.x), silu_mul(gf.y, uf.y));
		}
		a4[i] = o;
	}
}

/* The activation over rows x f (at most *d_total rows when d_total is set). */
static void swiglu_act(struct moe_dev *d, const moe_bf16 *gu, int64_t rows, int64_t f, const int64_t *d_total,
		       moe_bf16 *act)
{
	if (f % 8 || ((uintptr_t)gu | (uintptr_t)act) & 15)
		swiglu_act_kernel<<<ew_grid(rows * f), 256, 0, d->stream>>>(gu, rows, f, d_total, act);
	else if (rows * 2 * (f / 8) < INT32_MAX)
		swiglu_act8_kernel<uint32_t><<<ew_grid(rows * f / 8), 256, 0, d->stream>>>(gu, rows, (uint32_t)(f / 8),
											   d_total, act);
	else
		swiglu_act8_kernel<int64_t><<<ew_grid(rows * f / 8), 256, 0, d->stream>>>(gu, rows, f / 8, d_total, act);
}

/* The device pointer arrays [W | A | C] of a batched or grouped GEMM over ng experts. */
static int stage_ptrs(struct moe_dev *d, int ng, const void *const *hA, const void *const *hW, void *const *hC)
{
	size_t need = (size_t)ng * 3 * sizeof(void *);
	MOE_CHECK(cuda_grow((void **)&d->ptrs, &d->ptrs_cap, need));
	if (!d->hptrs)
		CU(cudaMallocHost((void **)&d->hptrs, 3 * 4096 * sizeof(void *)));
	if (ng > 4096)
		return MOE_ERR_UNSUPPORTED;
	CU(cudaStreamSynchronize(d->stream)); /* the pinned staging may still feed a previous copy */
	for (int i = 0; i < ng; i++) {
		d->hptrs[i] = (void *)hW[i];
		d->hptrs[ng + i] = (void *)hA[i];
		d->hptrs[2 * ng + i] = hC[i];
	}
	CU(cudaMemcpyAsync(d->ptrs, d->hptrs, need, cudaMemcpyHostToDevice, d->stream));
	return MOE_OK;
}

/* Every expert has the same rows (balanced routing): one batched GEMM, which cuBLAS tiles like a dense one. */
static int batched(struct moe_dev *d, int ng, int rows, int N, int Kd, int ldc, const void *const *hA,
		   const void *const *hW, void *const *hC)
{
	const float one = 1.0f, zero = 0.0f;
	MOE_CHECK(stage_ptrs(d, ng, hA, hW, hC));
	cublasStatus_t st = cublasGemmBatchedEx(d->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, rows, Kd, &one,
						(const void *const *)d->ptrs, CUDA_R_16BF, Kd,
						(const void *const *)(d->ptrs + ng), CUDA_R_16BF, Kd, &zero,
						d->ptrs + 2 * ng, CUDA_R_16BF, ldc, ng, CUBLAS_COMPUTE_32F,
						CUBLAS_GEMM_DEFAULT);
	if (st != CUBLAS_STATUS_SUCCESS) {
		fprintf(stderr, "moebench: cublasGemmBatchedEx failed: status %d\n", (int)st);
		return MOE_ERR_SYSTEM;
	}
	return MOE_OK;
}

/* One grouped GEMM over the experts with rows: C_j (rows_j x N) = A_j (rows_j x Kd) . W_j^T, W_j row-major N x Kd. */
static int grouped(struct moe_dev *d, int ng, const int *rows, int N, int Kd, int ldcv, const void *const *hA,
		   const void *const *hW, void *const *hC)
{
	cudaDataType_t ctype = CUDA_R_16BF;
	if (!ng)
		return MOE_OK;
	MOE_CHECK(stage_ptrs(d, ng, hA, hW, hC));
	cublasOperation_t *ta = (cublasOperation_t *)malloc(ng * sizeof(cublasOperation_t));
	cublasOperation_t *tb = (cublasOperation_t *)malloc(ng * sizeof(cublasOperation_t));
	int *mm = (int *)malloc(ng * sizeof(int)), *nn = (int *)malloc(ng * sizeof(int)), *kk = (int *)malloc(ng * sizeof(int));
	int *lda = (int *)malloc(ng * sizeof(int)), *ldb = (int *)malloc(ng * sizeof(int)), *ldc = (int *)malloc(ng * sizeof(int));
	int *gsz = (int *)malloc(ng * sizeof(int));
	float *al = (float *)malloc(ng * sizeof(float)), *be = (float *)malloc(ng * sizeof(float));
	for (int i = 0; i < ng; i++) {
		ta[i] = CUBLAS_OP_T;
		tb[i] = CUBLAS_OP_N;
		mm[i] = N;
		nn[i] = rows[i];
		kk[i] = Kd;
		lda[i] = Kd;
		ldb[i] = Kd;
		ldc[i] = ldcv;
		gsz[i] = 1;
		al[i] = 1.0f;
		be[i] = 0.0f;
	}
	cublasStatus_t st = cublasGemmGroupedBatchedEx(d->blas, ta, tb, mm, nn, kk, al, (const void *const *)d->ptrs,
							CUDA_R_16BF, lda, (const void *const *)(d->ptrs + ng), CUDA_R_16BF,
							ldb, be, d->ptrs + 2 * ng, ctype, ldc, ng, gsz, CUBLAS_COMPUTE_32F);
	free(ta); free(tb); free(mm); free(nn); free(kk); free(lda); free(ldb); free(ldc); free(gsz); free(al); free(be);
	if (st != CUBLAS_STATUS_SUCCESS) {
		fprintf(stderr, "moebench: cublasGemmGroupedBatchedEx failed: status %d\n", (int)st);
		return MOE_ERR_SYSTEM;
	}
	return MOE_OK;
}

/* The cuBLAS expert GEMMs (builds without CUTLASS, or MOEBENCH_EXPERT_GEMM): one cublasGemmEx per expert over
 * side streams once experts have about a thousand rows or more (GPU-HOST.md; calibrate measures it at 94-99 %
 * of a dense layer of the same FLOPs, within 5 % of the batched GEMM); below that, one batched GEMM when every
 * expert has the same rows (1.25-1.9x the others there), else cuBLAS's grouped GEMM.
 * MOEBENCH_EXPERT_GEMM=batched|grouped|loop forces one (batched falls back when rows differ). */
static int expert_gemms(struct moe_dev *d, int ng, const int *rows, int N, int Kd, int ldc, const void *const *A,
			const void *const *W, void *const *C, int64_t avg_rows)
{
	const char *mode = getenv("MOEBENCH_EXPERT_GEMM");
	int uniform = ng > 1;
	for (int i = 1; i < ng; i++)
		uniform &= rows[i] == rows[0];
	if (uniform && (mode ? !strcmp(mode, "batched") : avg_rows < 1024))
		return batched(d, ng, rows[0], N, Kd, ldc, A, W, C);
	int loop = mode && !strcmp(mode, "loop") ? 1 : mode && !strcmp(mode, "grouped") ? 0 : avg_rows >= 1024;
	if (!loop)
		return grouped(d, ng, rows, N, Kd, ldc, A, W, C);
	const float one = 1.0f, zero = 0.0f;
	/* experts are independent: spread them over side streams so that small GEMMs fill the GPU together */
	int ns = ng < 4 ? ng : 4;
	CU(cudaEventRecord(d->fork, d->stream));
	for (int i = 0; i < ns; i++)
		CU(cudaStreamWaitEvent(d->side[i], d->fork, 0));
	int rc = MOE_OK;
	for (int i = 0; i < ng && rc == MOE_OK; i++) {
		if (cuda_blas_stream(d, i % ns) != MOE_OK)
			rc = MOE_ERR_SYSTEM;
		if (cublasGemmEx(d->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, rows[i], Kd, &one, W[i], CUDA_R_16BF, Kd, A[i],
				 CUDA_R_16BF, Kd, &zero, C[i], CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F,
				 CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
			rc = MOE_ERR_SYSTEM;
	}
	if (cuda_blas_stream(d, -1) != MOE_OK)
		rc = MOE_ERR_SYSTEM;
	for (int i = 0; i < ns; i++) {
		CU(cudaEventRecord(d->join[i], d->side[i]));
		CU(cudaStreamWaitEvent(d->stream, d->join[i], 0));
	}
	if (rc != MOE_OK)
		fprintf(stderr, "moebench: cublasGemmEx (per-expert loop) failed\n");
	return rc;
}

/* Scale and identity experts: the first row of each expert to the device (at d_starts), then one kernel. */
static int exact_experts(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *u, const int64_t *counts,
			 int64_t rows, char *d_starts, size_t ss, moe_bf16 *out)
{
	int64_t H = c->hidden;
	int64_t *hs = (int64_t *)malloc(ss);
	hs[0] = 0;
	for (int64_t j = 0; j < c->nexperts; j++)
		hs[j + 1] = hs[j] + counts[j];
	int rc = cudaMemcpyAsync(d_starts, hs, ss, cudaMemcpyHostToDevice, d->stream) == cudaSuccess &&
			 cudaStreamSynchronize(d->stream) == cudaSuccess
		 ? MOE_OK
		 : MOE_ERR_SYSTEM;
	free(hs);
	MOE_CHECK(rc);
	exact_ffn_kernel<<<ew_grid(rows * H), 256, 0, d->stream>>>(u, (const int64_t *)d_starts, (int)c->nexperts,
								  c->first_expert, c->kind == MOE_FFN_SCALE, rows, H,
								  NULL, out);
	LAUNCHED();
	return MOE_OK;
}

/* One GEMM pass's operands for the experts with rows: pass 0 gate (or gate|up when fused), 1 up, 2 down.
 * Returns how many experts have rows (the GEMMs of the pass). */
static int pass_operands(const struct moe_ffn_cfg *c, const int64_t *counts, int pass, const moe_bf16 *u,
			 const moe_bf16 *act, moe_bf16 *gu, moe_bf16 *out, int *rw, const void **A, const void **W,
			 void **C)
{
	int64_t H = c->hidden, F = c->ffn, r0 = 0;
	int ng = 0;
	for (int64_t j = 0; j < c->nexperts; j++) {
		if (counts[j]) {
			rw[ng] = (int)counts[j];
			A[ng] = pass < 2 ? (const void *)(u + r0 * H) : (const void *)(act + r0 * F);
			W[ng] = pass == 0 ? c->d_w1[j] : pass == 1 ? c->d_w3[j] : c->d_w2[j];
			C[ng] = pass == 2 ? (void *)(out + r0 * H) : (void *)(gu + r0 * 2 * F + (pass == 1 ? F : 0));
			ng++;
		}
		r0 += counts[j];
	}
	return ng;
}

/* SwiGLU experts: the gate and up projections into gu ([gate | up] per row), the activation into act, then
 * the down projection into out. */
static int swiglu_experts(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *u, const int64_t *counts,
			  int64_t rows, moe_bf16 *gu, moe_bf16 *act, moe_bf16 *out)
{
	int64_t H = c->hidden, F = c->ffn;
	/* W1 and W3 stored back to back make one projection of width 2F: [gate | up] per row */
	int fused = 1;
	for (int64_t j = 0; j < c->nexperts; j++)
		fused &= counts[j] == 0 || c->d_w3[j] == c->d_w1[j] + F * H;
	int *rw = (int *)malloc(c->nexperts * sizeof(int));
	const void **A = (const void **)malloc(c->nexperts * sizeof(void *)), **W = (const void **)malloc(c->nexperts * sizeof(void *));
	void **C = (void **)malloc(c->nexperts * sizeof(void *));
	int rc = MOE_OK;
	/* passes: 0 gate (or gate|up when fused), 1 up, 2 down; every GEMM stores bf16 */
	for (int pass = 0; pass < 3 && rc == MOE_OK; pass++) {
		if (pass == 1 && fused)
			continue;
		int ng = pass_operands(c, counts, pass, u, act, gu, out, rw, A, W, C);
		int N = pass == 2 ? (int)H : fused ? (int)(2 * F) : (int)F, Kd = pass == 2 ? (int)F : (int)H;
		int ldc = pass == 2 ? (int)H : (int)(2 * F);
		rc = expert_gemms(d, ng, rw, N, Kd, ldc, A, W, C, rows / (c->nexperts ? c->nexperts : 1));
		if (rc == MOE_OK && pass == (fused ? 0 : 1)) { /* both projections are done */
			swiglu_act(d, gu, rows, F, NULL, act);
			if (cudaGetLastError() != cudaSuccess)
				rc = MOE_ERR_SYSTEM;
		}
	}
	free(rw);
	free(A);
	free(W);
	free(C);
	return rc;
}

static int ffn_counted(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *x, const int32_t *d_counts,
		       const int64_t *h_counts, int64_t max_rows, const float *scale, moe_bf16 *out, void **buf,
		       size_t *cap);
#ifdef MOE_HAVE_CUTLASS
static int gg_usable(const struct moe_ffn_cfg *c);

/* Host counts through CUTLASS's grouped GEMM: always where it is built and the operands suit it (unless
 * MOEBENCH_EXPERT_GEMM names another mode). With its tiles picked per GEMM it leads torch._grouped_mm on every
 * calibrate shape on the H200 and cuBLAS on unequal rows of few hundred an expert; cuBLAS's loop or batched
 * GEMM is up to 5 % faster on equal rows and on thousands of rows an expert (docs/PERFORMANCE.md), but its
 * split-K sums differ in the last bit, and ffn and ffn_dev (CUTLASS only) must compute the same bits for
 * ll == a2a. Every CUTLASS tile computes the same bits. */
static int cutlass_wanted(const struct moe_ffn_cfg *c)
{
	const char *mode = getenv("MOEBENCH_EXPERT_GEMM");
	if (c->kind != MOE_FFN_SWIGLU || !gg_usable(c))
		return 0;
	return !mode || !strcmp(mode, "cutlass");
}
#endif

int cuda_ffn(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *x, const int64_t *counts,
	     const float *scale, moe_bf16 *out)
{
	int64_t H = c->hidden, F = c->ffn, rows = 0;
	/* host counts: the pointer staging and the row starts wait on the host (ffn_dev is the capturable one) */
	MOE_CHECK(cuda_refuse_in_capture(d, "ffn with host counts"));
	for (int64_t j = 0; j < c->nexperts; j++)
		rows += counts[j];
	if (rows == 0)
		return MOE_OK;
#ifdef MOE_HAVE_CUTLASS
	if (cutlass_wanted(c))
		return ffn_counted(d, c, x, NULL, counts, rows, scale, out, &d->scratch, &d->scratch_bytes);
#endif
	/* scratch: scaled input (bf16), starts per expert, g and u (fp32), act (bf16) */
	size_t su = scale ? (size_t)rows * H * 2 : 0, ss = ((size_t)c->nexperts + 1) * 8;
	size_t sg = c->kind == MOE_FFN_SWIGLU ? (size_t)rows * F * 2 : 0;
	size_t need = su + ss + 3 * sg + 1024; /* [gate | up] (2 sg) and the activation (sg) */
	MOE_CHECK(cuda_grow(&d->scratch, &d->scratch_bytes, need));
	char *sp = (char *)d->scratch;
	const moe_bf16 *u = x;
	if (scale) {
		scale_rows_kernel<<<ew_grid(rows * H), 256, 0, d->stream>>>(x, scale, rows, H, NULL, (moe_bf16 *)sp);
		LAUNCHED();
		u = (const moe_bf16 *)sp;
	}
	sp += (su + 255) & ~(size_t)255;
	if (c->kind != MOE_FFN_SWIGLU)
		return exact_experts(d, c, u, counts, rows, sp, ss, out);
	sp += (ss + 255) & ~(size_t)255;
	moe_bf16 *gu = (moe_bf16 *)sp, *act = gu + rows * 2 * F;
	return swiglu_experts(d, c, u, counts, rows, gu, act, out);
}

/* ---- experts with row counts on the device (ffn_dev; host counts take it too where CUTLASS is built) ---- */

/* starts[0] = 0, starts[j + 1] = min(counts[0] + ... + counts[j], max_rows): one block of 1024 threads scans
 * 1024 experts at a time. starts[n] is the valid rows' total, which the elementwise kernels read. */
__global__ void count_starts_kernel(const int32_t *counts, int n, int64_t max_rows, int64_t *starts)
{
	__shared__ int64_t s[1024];
	int t = threadIdx.x;
	int64_t carry = 0;
	if (t == 0)
		starts[0] = 0;
	for (int base = 0; base < n; base += 1024) {
		s[t] = base + t < n && counts[base + t] > 0 ? counts[base + t] : 0;
		__syncthreads();
		for (int off = 1; off < 1024; off <<= 1) {
			int64_t add = t >= off ? s[t - off] : 0;
			__syncthreads();
			s[t] += add;
			__syncthreads();
		}
		if (base + t < n)
			starts[base + t + 1] = carry + s[t] < max_rows ? carry + s[t] : max_rows;
		carry += s[1023];
		__syncthreads();
	}
}

static size_t up256(size_t n) { return (n + 255) & ~(size_t)255; }

/* Host counts reach the device inside a launch's parameters (no copy to wait for, no pinned staging). */
enum { COUNTS_BY_VALUE = 512 };
struct counts_arg {
	int32_t c[COUNTS_BY_VALUE];
};

__global__ void put_counts_kernel(struct counts_arg a, int n, int32_t *dst)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		dst[i] = a.c[i];
}

static int put_counts(struct moe_dev *d, const int64_t *counts, int64_t n, int32_t *dst)
{
	struct counts_arg a;
	for (int64_t j0 = 0; j0 < n; j0 += COUNTS_BY_VALUE) {
		int m = (int)(n - j0 < COUNTS_BY_VALUE ? n - j0 : COUNTS_BY_VALUE);
		for (int j = 0; j < m; j++)
			a.c[j] = (int32_t)counts[j0 + j];
		put_counts_kernel<<<(m + 255) / 256, 256, 0, d->stream>>>(a, m, dst + j0);
		LAUNCHED();
	}
	return MOE_OK;
}

#ifdef MOE_HAVE_CUTLASS
/* The grouped GEMM's operands are 16-byte aligned (TMA): H, F multiples of 8 and aligned weights. */
static int gg_usable(const struct moe_ffn_cfg *c)
{
	int ok = c->hidden % 8 == 0 && c->ffn % 8 == 0;
	for (int64_t j = 0; ok && j < c->nexperts; j++)
		ok = !(((uintptr_t)c->d_w1[j] | (uintptr_t)c->d_w3[j] | (uintptr_t)c->d_w2[j]) & 15);
	return ok;
}

/* SwiGLU with two grouped GEMM launches: gate and up together (one problem of width 2F per expert when W1 and
 * W3 sit back to back, else 2n problems), the activation over the valid rows, then down. */
static int swiglu_dev(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *u, const int64_t *starts,
		      const int64_t *h_counts, int64_t max_rows, moe_bf16 *gu, moe_bf16 *act, moe_bf16 *out)
{
	int64_t H = c->hidden, F = c->ffn, n = c->nexperts, avg = max_rows / n;
	int fused = 1;
	for (int64_t j = 0; j < n; j++)
		fused &= c->d_w3[j] == c->d_w1[j] + F * H;
	const moe_bf16 **w = (const moe_bf16 **)malloc(2 * n * sizeof(void *));
	for (int64_t j = 0; j < n; j++) {
		w[j] = c->d_w1[j];
		w[n + j] = c->d_w3[j];
	}
	int rc = moe_cuda_grouped_gemm(d, (int)n, fused ? 1 : 2, starts, h_counts, avg, fused ? 2 * F : F, H, u, w, gu,
				       2 * F);
	free(w);
	MOE_CHECK(rc);
	swiglu_act(d, gu, max_rows, F, starts + n, act);
	LAUNCHED();
	return moe_cuda_grouped_gemm(d, (int)n, 1, starts, h_counts, avg, H, F, act, c->d_w2, out, H);
}
#endif

/* The experts over at most max_rows rows with d_counts (int32, device) rows per expert, or h_counts (host) when
 * d_counts is NULL. Scratch comes from *buf: [starts | counts | scaled input | gate|up | act]. Rows past the
 * counts' total are not written. */
static int ffn_counted(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *x, const int32_t *d_counts,
		       const int64_t *h_counts, int64_t max_rows, const float *scale, moe_bf16 *out, void **buf,
		       size_t *cap)
{
	int64_t H = c->hidden, F = c->ffn, n = c->nexperts;
	if (n <= 0 || max_rows <= 0)
		return MOE_OK;
	int swiglu = c->kind == MOE_FFN_SWIGLU;
#ifdef MOE_HAVE_CUTLASS
	if (swiglu && !gg_usable(c))
		return MOE_ERR_UNSUPPORTED;
#else
	if (swiglu)
		return MOE_ERR_UNSUPPORTED; /* no GEMM reads its sizes on the device without CUTLASS */
#endif
	size_t ss = up256((size_t)(n + 1) * 8) + up256((size_t)n * 4), su = scale ? up256((size_t)(max_rows * H) * 2) : 0;
	size_t sg = swiglu ? up256((size_t)(max_rows * F) * 2) : 0;
	MOE_CHECK(cuda_grow(buf, cap, ss + su + 3 * sg));
	char *sp = (char *)*buf;
	int64_t *starts = (int64_t *)sp;
	if (!d_counts) {
		int32_t *dc = (int32_t *)(sp + up256((size_t)(n + 1) * 8));
		MOE_CHECK(put_counts(d, h_counts, n, dc));
		d_counts = dc;
	}
	count_starts_kernel<<<1, 1024, 0, d->stream>>>(d_counts, (int)n, max_rows, starts);
	LAUNCHED();
	const moe_bf16 *u = x;
	if (scale) {
		scale_rows_kernel<<<ew_grid(max_rows * H), 256, 0, d->stream>>>(x, scale, max_rows, H, starts + n,
										 (moe_bf16 *)(sp + ss));
		LAUNCHED();
		u = (const moe_bf16 *)(sp + ss);
	}
	if (!swiglu) {
		exact_ffn_kernel<<<ew_grid(max_rows * H), 256, 0, d->stream>>>(u, starts, (int)n, c->first_expert,
									      c->kind == MOE_FFN_SCALE, max_rows, H,
									      starts + n, out);
		LAUNCHED();
		return MOE_OK;
	}
#ifdef MOE_HAVE_CUTLASS
	moe_bf16 *gu = (moe_bf16 *)(sp + ss + su), *act = (moe_bf16 *)(sp + ss + su + 2 * sg);
	return swiglu_dev(d, c, u, starts, h_counts, max_rows, gu, act, out); /* h_counts: NULL with device counts */
#else
	return MOE_ERR_UNSUPPORTED;
#endif
}

extern "C" int moe_cuda_ffn_dev(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *x,
				const int32_t *d_counts, int64_t max_rows, const float *d_scale, moe_bf16 *d_out)
{
	return ffn_counted(d, c, x, d_counts, NULL, max_rows, d_scale, d_out, &d->ffd, &d->ffd_cap);
}

/* SwiGLU experts read the counts on the host for now (cuBLAS takes host problem sizes): a layer using them
 * cannot be captured until a grouped GEMM that reads its sizes on the device replaces this. */
static int swiglu_host_counts(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *x, const int32_t *counts,
			      int64_t max_rows, const float *scale, moe_bf16 *out)
{
	cudaStreamCaptureStatus cs;
	CU(cudaStreamIsCapturing(d->stream, &cs));
	if (cs != cudaStreamCaptureStatusNone) {
		moe_err("cuda ffn_dev: SwiGLU experts still read their row counts on the host; graph capture needs the "
			"device-count grouped GEMM");
		return MOE_ERR_UNSUPPORTED;
	}
	int64_t ne = c->nexperts;
	if (d->hcounts_cap < ne) {
		cudaFreeHost(d->hcounts);
		d->hcounts = NULL;
		d->hcounts_cap = 0;
		CU(cudaMallocHost((void **)&d->hcounts, (size_t)ne * sizeof(int64_t)));
		d->hcounts_cap = ne;
	}
	CU(cudaMemcpyAsync(d->hcounts, counts, (size_t)ne * 4, cudaMemcpyDeviceToHost, d->stream));
	CU(cudaStreamSynchronize(d->stream));
	int64_t *hc = (int64_t *)malloc((size_t)ne * sizeof(int64_t)), rows = 0;
	if (!hc)
		return MOE_ERR_NOMEM;
	for (int64_t j = 0; j < ne; j++)
		rows += hc[j] = ((const int32_t *)d->hcounts)[j];
	int rc = MOE_OK;
	if (rows > max_rows) {
		moe_err("cuda ffn_dev: the counts add up to %lld rows, more than the %lld the caller has", (long long)rows,
			(long long)max_rows);
		rc = MOE_ERR_SYSTEM;
	} else
		rc = cuda_ffn(d, c, x, hc, scale, out);
	free(hc);
	return rc;
}

/* Experts with device counts: the grouped GEMM's path (device scan of the counts; SwiGLU through CUTLASS where
 * built), else SwiGLU with the counts read back on the host (not capturable). */
int cuda_ffn_dev(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *x, const int32_t *counts,
		 int64_t max_rows, const float *scale, moe_bf16 *out)
{
	int rc = moe_cuda_ffn_dev(d, c, x, counts, max_rows, scale, out);
	if (rc == MOE_ERR_UNSUPPORTED && c->kind == MOE_FFN_SWIGLU)
		return swiglu_host_counts(d, c, x, counts, max_rows, scale, out);
	return rc;
}
