/* CUDA kernel backend: bf16 data, fp32 accumulation; cuBLAS for the gate GEMM and the grouped expert GEMMs;
 * hand-written kernels for top-k routing, stable bucketing, row moves and the slot-order combine. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "cuda_iface.h"
#include "kernels.h"
}
#include "rng.h"

struct moe_dev {
	int gpu;
	cudaStream_t stream;
	cublasHandle_t blas;
	/* scratch, grown on demand (allocated outside timed regions after the first iteration) */
	void *scratch;
	size_t scratch_bytes;
	float *logits;
	size_t logits_bytes;
	int64_t *hcounts; /* pinned */
	int64_t hcounts_cap;
	void **ptrs; /* device pointer arrays for grouped GEMMs */
	size_t ptrs_cap;
	void **hptrs; /* pinned staging */
	char *flush;
	size_t flush_bytes;
	cudaStream_t side[4]; /* per-expert GEMMs run spread over these, joined back with events */
	cudaEvent_t marks[MOE_MAX_MARKS];
	cudaEvent_t fork, join[4];
	size_t base_used, peak_used; /* device memory in use at init, and the most seen since */
};

static void note_usage(struct moe_dev *d)
{
	size_t fr = 0, tot = 0;
	if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot - fr > d->peak_used)
		d->peak_used = tot - fr;
}

#define CU(call)                                                                                   \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess) {                                                           \
			fprintf(stderr, "moebench: %s failed: %s (%s:%d)\n", #call, cudaGetErrorString(e_), \
				__FILE__, __LINE__);                                               \
			return MOE_ERR_SYSTEM;                                                     \
		}                                                                                  \
	} while (0)
#define CB(call)                                                                                   \
	do {                                                                                       \
		cublasStatus_t s_ = (call);                                                        \
		if (s_ != CUBLAS_STATUS_SUCCESS) {                                                 \
			fprintf(stderr, "moebench: %s failed: cuBLAS status %d (%s:%d)\n", #call, (int)s_, __FILE__, \
				__LINE__);                                                         \
			return MOE_ERR_SYSTEM;                                                     \
		}                                                                                  \
	} while (0)
#define LAUNCHED() CU(cudaGetLastError())

static int grow(void **p, size_t *cap, size_t need)
{
	if (*cap >= need)
		return MOE_OK;
	if (*p)
		CU(cudaFree(*p));
	*p = NULL;
	CU(cudaMalloc(p, need));
	*cap = need;
	return MOE_OK;
}

static void cuda_fini(struct moe_dev *d);

/* The device's streams, cuBLAS handle and events; on a failure cuda_init releases what was made. */
static int cuda_setup(struct moe_dev *d, int n)
{
	CU(cudaSetDevice(d->gpu % n));
	CU(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking));
	CB(cublasCreate(&d->blas));
	CB(cublasSetStream(d->blas, d->stream));
	for (int i = 0; i < 4; i++) {
		CU(cudaStreamCreateWithFlags(&d->side[i], cudaStreamNonBlocking));
		CU(cudaEventCreateWithFlags(&d->join[i], cudaEventDisableTiming));
	}
	CU(cudaEventCreateWithFlags(&d->fork, cudaEventDisableTiming));
	for (int i = 0; i < MOE_MAX_MARKS; i++)
		CU(cudaEventCreate(&d->marks[i]));
	size_t fr = 0, tot = 0;
	CU(cudaMemGetInfo(&fr, &tot));
	d->base_used = d->peak_used = tot - fr;
	return MOE_OK;
}

static int cuda_init(struct moe_dev **out, int gpu)
{
	struct moe_dev *d = (struct moe_dev *)calloc(1, sizeof(*d));
	if (!d)
		return MOE_ERR_NOMEM;
	d->gpu = gpu < 0 ? 0 : gpu;
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
		free(d);
		return MOE_ERR_UNSUPPORTED;
	}
	int rc = cuda_setup(d, n);
	if (rc != MOE_OK) {
		cuda_fini(d);
		return rc;
	}
	*out = d;
	return MOE_OK;
}

static void cuda_fini(struct moe_dev *d)
{
	if (!d)
		return;
	cudaStreamSynchronize(d->stream);
	cudaFree(d->scratch);
	cudaFree(d->logits);
	cudaFree(d->ptrs);
	cudaFree(d->flush);
	cudaFreeHost(d->hcounts);
	cudaFreeHost(d->hptrs);
	cublasDestroy(d->blas);
	for (int i = 0; i < 4; i++) {
		cudaStreamDestroy(d->side[i]);
		cudaEventDestroy(d->join[i]);
	}
	cudaEventDestroy(d->fork);
	for (int i = 0; i < MOE_MAX_MARKS; i++)
		cudaEventDestroy(d->marks[i]);
	cudaStreamDestroy(d->stream);
	free(d);
}

static void *cuda_alloc(struct moe_dev *d, size_t bytes)
{
	void *p = NULL;
	if (cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess)
		return NULL;
	note_usage(d);
	return p;
}

static void cuda_free(struct moe_dev *d, void *p)
{
	(void)d;
	cudaFree(p);
}

static int cuda_h2d(struct moe_dev *d, void *dst, const void *src, size_t n)
{
	if (n) {
		CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, d->stream));
		CU(cudaStreamSynchronize(d->stream)); /* src may be freed by the caller right after */
	}
	return MOE_OK;
}

static int cuda_d2h(struct moe_dev *d, void *dst, const void *src, size_t n)
{
	if (n) {
		CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, d->stream));
		CU(cudaStreamSynchronize(d->stream));
	}
	return MOE_OK;
}

static int cuda_d2d(struct moe_dev *d, void *dst, const void *src, size_t n)
{
	if (n)
		CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, d->stream));
	return MOE_OK;
}

static int cuda_memset(struct moe_dev *d, void *dst, int byte, size_t n)
{
	if (n)
		CU(cudaMemsetAsync(dst, byte, n, d->stream));
	return MOE_OK;
}

static int cuda_sync(struct moe_dev *d)
{
	CU(cudaStreamSynchronize(d->stream));
	return MOE_OK;
}

/* ---- router ---- */

__device__ static bool better(float a, int ia, float b, int ib)
{
	return a > b || (a == b && ia < ib);
}

/* One block per token: scores in shared memory, group limit, K rounds of a block-wide argmax. */
__global__ void route_kernel(const float *logits, int64_t n, int E, int K, int groups, int topk_groups, int sigmoid,
			     int norm, float scale, const float *bias, int32_t *idx, float *w)
{
	extern __shared__ float sh[];
	float *p = sh, *sel = sh + E;
	__shared__ float rv[32];
	__shared__ int ri[32];
	__shared__ float gs[256];
	int64_t t = blockIdx.x;
	if (t >= n)
		return;
	const float *l = logits + t * E;
	if (sigmoid) {
		for (int e = threadIdx.x; e < E; e += blockDim.x)
			p[e] = 1.0f / (1.0f + expf(-l[e]));
	} else {
		float mx = -INFINITY;
		for (int e = threadIdx.x; e < E; e += blockDim.x)
			mx = fmaxf(mx, l[e]);
		for (int o = 16; o; o >>= 1)
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, o));
		if ((threadIdx.x & 31) == 0)
			rv[threadIdx.x >> 5] = mx;
		__syncthreads();
		if (threadIdx.x == 0) {
			float m = rv[0];
			for (int i = 1; i < (int)(blockDim.x + 31) / 32; i++)
				m = fmaxf(m, rv[i]);
			rv[0] = m;
		}
		__syncthreads();
		mx = rv[0];
		__syncthreads();
		for (int e = threadIdx.x; e < E; e += blockDim.x)
			p[e] = expf(l[e] - mx);
		__syncthreads();
		if (threadIdx.x == 0) { /* serial sum: the order is fixed, so results are reproducible */
			float s = 0;
			for (int e = 0; e < E; e++)
				s += p[e];
			rv[0] = s;
		}
		__syncthreads();
		float s = rv[0];
		for (int e = threadIdx.x; e < E; e += blockDim.x)
			p[e] /= s;
	}
	__syncthreads();
	for (int e = threadIdx.x; e < E; e += blockDim.x)
		sel[e] = p[e] + (bias ? bias[e] : 0.0f);
	__syncthreads();
	if (groups > 1) {
		int per = E / groups;
		for (int g = threadIdx.x; g < groups; g += blockDim.x) {
			float a = -INFINITY, b = -INFINITY;
			for (int e = g * per; e < (g + 1) * per; e++) {
				float v = sel[e];
				if (v > a) {
					b = a;
					a = v;
				} else if (v > b)
					b = v;
			}
			gs[g] = a + b;
		}
		__syncthreads();
		for (int g = threadIdx.x; g < groups; g += blockDim.x) {
			int ahead = 0;
			for (int h = 0; h < groups; h++)
				ahead += better(gs[h], h, gs[g], g);
			if (ahead >= topk_groups)
				for (int e = g * per; e < (g + 1) * per; e++)
					sel[e] = -INFINITY;
		}
		__syncthreads();
	}
	float sum = 0;
	for (int k = 0; k < K; k++) {
		float bv = -INFINITY;
		int bi = 0x7fffffff;
		for (int e = threadIdx.x; e < E; e += blockDim.x)
			if (sel[e] != -INFINITY && better(sel[e], e, bv, bi)) {
				bv = sel[e];
				bi = e;
			}
		for (int o = 16; o; o >>= 1) {
			float ov = __shfl_xor_sync(0xffffffff, bv, o);
			int oi = __shfl_xor_sync(0xffffffff, bi, o);
			if (better(ov, oi, bv, bi)) {
				bv = ov;
				bi = oi;
			}
		}
		if ((threadIdx.x & 31) == 0) {
			rv[threadIdx.x >> 5] = bv;
			ri[threadIdx.x >> 5] = bi;
		}
		__syncthreads();
		if (threadIdx.x == 0) {
			for (int i = 1; i < (int)(blockDim.x + 31) / 32; i++)
				if (better(rv[i], ri[i], rv[0], ri[0])) {
					rv[0] = rv[i];
					ri[0] = ri[i];
				}
			int b = ri[0];
			idx[t * K + k] = b;
			w[t * K + k] = p[b];
			sum += p[b];
			sel[b] = -INFINITY;
		}
		__syncthreads();
	}
	if (threadIdx.x == 0)
		for (int k = 0; k < K; k++) {
			float v = w[t * K + k];
			if (norm)
				v = v / (sum + 1e-20f);
			w[t * K + k] = v * scale;
		}
}

static int cuda_route(struct moe_dev *d, const struct moe_route_cfg *c, const moe_bf16 *x, int64_t n,
		      const moe_bf16 *wg, int32_t *idx, float *w)
{
	if (n == 0)
		return MOE_OK;
	int E = (int)c->experts, H = (int)c->hidden;
	MOE_CHECK(grow((void **)&d->logits, &d->logits_bytes, (size_t)n * E * sizeof(float)));
	const float one = 1.0f, zero = 0.0f;
	/* logits (col-major E x n) = Wg (row-major E x H)^T-as-col-major . x */
	CB(cublasGemmEx(d->blas, CUBLAS_OP_T, CUBLAS_OP_N, E, (int)n, H, &one, wg, CUDA_R_16BF, H, x, CUDA_R_16BF, H,
			&zero, d->logits, CUDA_R_32F, E, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	route_kernel<<<(unsigned)n, 128, 2 * E * sizeof(float), d->stream>>>(d->logits, n, E, (int)c->topk,
									       (int)c->groups, (int)c->topk_groups,
									       c->sigmoid, c->norm, c->scale, c->d_bias,
									       idx, w);
	LAUNCHED();
	return MOE_OK;
}

/* ---- stable bucketing ---- */

#define BK_CHUNK 256

__device__ static int bucket_of(int32_t key, int32_t off, int32_t div, int64_t nb)
{
	if (key < off)
		return -1;
	int b = (key - off) / div;
	return b < nb ? b : -1;
}

/* Per chunk: each item's rank among same-bucket items before it in the chunk, and per-bucket counts. */
__global__ void bucket_count(const int32_t *key, int64_t m, int32_t off, int32_t div, int64_t nb, int32_t *cnt,
			     int32_t *rank_in)
{
	__shared__ int32_t b[BK_CHUNK];
	int64_t base = (int64_t)blockIdx.x * BK_CHUNK;
	int i = threadIdx.x;
	b[i] = base + i < m ? bucket_of(key[base + i], off, div, nb) : -1;
	__syncthreads();
	if (base + i < m) {
		int r = 0;
		for (int j = 0; j < i; j++)
			r += b[j] == b[i];
		rank_in[base + i] = r;
	}
	for (int64_t q = i; q < nb; q += blockDim.x) {
		int c = 0;
		for (int j = 0; j < BK_CHUNK; j++)
			c += b[j] == q;
		cnt[q * gridDim.x + blockIdx.x] = c;
	}
}

/* Exclusive scan of cnt in bucket-major order (one block): per-bucket running sums in parallel, then the
 * bucket bases; totals per bucket. */
__global__ void bucket_scan(int32_t *cnt, int64_t nb, int nchunks, int64_t *total)
{
	extern __shared__ int64_t bbase[];
	for (int64_t q = threadIdx.x; q < nb; q += blockDim.x) {
		int64_t s = 0;
		for (int c = 0; c < nchunks; c++) {
			int32_t v = cnt[q * nchunks + c];
			cnt[q * nchunks + c] = (int32_t)s;
			s += v;
		}
		total[q] = s;
		bbase[q] = s;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		int64_t run = 0;
		for (int64_t q = 0; q < nb; q++) {
			int64_t v = bbase[q];
			bbase[q] = run;
			run += v;
		}
	}
	__syncthreads();
	for (int64_t q = threadIdx.x; q < nb; q += blockDim.x)
		for (int c = 0; c < nchunks; c++)
			cnt[q * nchunks + c] += (int32_t)bbase[q];
}

__global__ void bucket_place(const int32_t *key, int64_t m, int32_t off, int32_t div, int64_t nb, const int32_t *cnt,
			     const int32_t *rank_in, int32_t *pos)
{
	int64_t i = (int64_t)blockIdx.x * BK_CHUNK + threadIdx.x;
	if (i >= m)
		return;
	int b = bucket_of(key[i], off, div, nb);
	pos[i] = b < 0 ? -1 : cnt[(int64_t)b * gridDim.x + blockIdx.x] + rank_in[i];
}

static int cuda_bucket(struct moe_dev *d, const int32_t *key, int64_t m, int32_t off, int32_t div, int64_t nb,
		       int64_t *counts, int32_t *pos)
{
	int chunks = (int)((m + BK_CHUNK - 1) / BK_CHUNK);
	if (chunks == 0) {
		memset(counts, 0, (size_t)nb * sizeof(int64_t));
		return MOE_OK;
	}
	size_t need = (size_t)nb * chunks * 4 + (size_t)m * 4 + (size_t)nb * 8 + 64;
	MOE_CHECK(grow(&d->scratch, &d->scratch_bytes, need));
	int32_t *cnt = (int32_t *)d->scratch, *rank_in = cnt + (size_t)nb * chunks;
	int64_t *total = (int64_t *)(((uintptr_t)(rank_in + m) + 15) & ~(uintptr_t)15);
	bucket_count<<<chunks, BK_CHUNK, 0, d->stream>>>(key, m, off, div, nb, cnt, rank_in);
	LAUNCHED();
	bucket_scan<<<1, 1024, (size_t)nb * sizeof(int64_t), d->stream>>>(cnt, nb, chunks, total);
	LAUNCHED();
	bucket_place<<<chunks, BK_CHUNK, 0, d->stream>>>(key, m, off, div, nb, cnt, rank_in, pos);
	LAUNCHED();
	if (d->hcounts_cap < nb) {
		cudaFreeHost(d->hcounts);
		CU(cudaMallocHost((void **)&d->hcounts, (size_t)nb * sizeof(int64_t)));
		d->hcounts_cap = nb;
	}
	CU(cudaMemcpyAsync(d->hcounts, total, (size_t)nb * sizeof(int64_t), cudaMemcpyDeviceToHost, d->stream));
	CU(cudaStreamSynchronize(d->stream)); /* the host needs the split sizes */
	memcpy(counts, d->hcounts, (size_t)nb * sizeof(int64_t));
	return MOE_OK;
}

/* ---- row moves: 16-byte vectors when rows allow, one block of threads per row ---- */

template <typename V>
__global__ void scatter_kernel(const V *src, const int32_t *pos, int64_t m, int64_t src_div, int64_t vrow, V *dst)
{
	for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
		int32_t p = pos[i];
		if (p < 0)
			continue;
		const V *s = src + (i / src_div) * vrow;
		V *o = dst + (int64_t)p * vrow;
		for (int64_t c = threadIdx.x; c < vrow; c += blockDim.x)
			o[c] = s[c];
	}
}

template <typename V>
__global__ void gather_kernel(const V *src, const int32_t *idx, int64_t m, int64_t vrow, V *dst)
{
	for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
		int32_t p = idx[i];
		V *o = dst + i * vrow;
		if (p < 0) {
			for (int64_t c = threadIdx.x; c < vrow; c += blockDim.x)
				o[c] = V{};
			continue;
		}
		const V *s = src + (int64_t)p * vrow;
		for (int64_t c = threadIdx.x; c < vrow; c += blockDim.x)
			o[c] = s[c];
	}
}

static unsigned grid_for(int64_t m)
{
	return (unsigned)(m < 65535 * 4 ? (m > 0 ? m : 1) : 65535 * 4);
}

static int cuda_scatter_rows(struct moe_dev *d, const moe_bf16 *src, const int32_t *pos, int64_t m, int64_t src_div,
			     int64_t h, moe_bf16 *dst)
{
	if (m == 0)
		return MOE_OK;
	if ((h * 2) % 16 == 0 && ((uintptr_t)src | (uintptr_t)dst) % 16 == 0) {
		int64_t v = h * 2 / 16;
		scatter_kernel<uint4><<<grid_for(m), v < 256 ? (unsigned)((v + 31) / 32 * 32) : 256, 0, d->stream>>>(
			(const uint4 *)src, pos, m, src_div, v, (uint4 *)dst);
	} else
		scatter_kernel<uint16_t><<<grid_for(m), 128, 0, d->stream>>>((const uint16_t *)src, pos, m, src_div, h,
									     (uint16_t *)dst);
	LAUNCHED();
	return MOE_OK;
}

static int cuda_gather_rows(struct moe_dev *d, const moe_bf16 *src, const int32_t *idx, int64_t m, int64_t h,
			    moe_bf16 *dst)
{
	if (m == 0)
		return MOE_OK;
	if ((h * 2) % 16 == 0 && ((uintptr_t)src | (uintptr_t)dst) % 16 == 0) {
		int64_t v = h * 2 / 16;
		gather_kernel<uint4><<<grid_for(m), v < 256 ? (unsigned)((v + 31) / 32 * 32) : 256, 0, d->stream>>>(
			(const uint4 *)src, idx, m, v, (uint4 *)dst);
	} else
		gather_kernel<uint16_t><<<grid_for(m), 128, 0, d->stream>>>((const uint16_t *)src, idx, m, h,
									    (uint16_t *)dst);
	LAUNCHED();
	return MOE_OK;
}

__global__ void scatter_i32_kernel(const int32_t *src, const int32_t *pos, int64_t m, int32_t *dst)
{
	int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < m && pos[i] >= 0)
		dst[pos[i]] = src[i];
}

static int cuda_scatter_i32(struct moe_dev *d, const int32_t *src, const int32_t *pos, int64_t m, int32_t *dst)
{
	if (m == 0)
		return MOE_OK;
	scatter_i32_kernel<<<(unsigned)((m + 255) / 256), 256, 0, d->stream>>>(src, pos, m, dst);
	LAUNCHED();
	return MOE_OK;
}

/* ---- experts ---- */

__device__ static float bf(moe_bf16 v)
{
	return __uint_as_float((uint32_t)v << 16);
}

__device__ static moe_bf16 tobf(float f)
{
	__nv_bfloat16 b = __float2bfloat16_rn(f);
	return *(moe_bf16 *)&b;
}

/* u = bf16(scale[row] * x) (score_before_experts), or x itself. */
__global__ void scale_rows_kernel(const moe_bf16 *x, const float *scale, int64_t rows, int64_t h, moe_bf16 *out)
{
	int64_t n = rows * h;
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
		out[i] = tobf(scale[i / h] * bf(x[i]));
}

/* scale / identity experts: out = bf16(f * u) with f = e + 1 or 1 */
__global__ void exact_ffn_kernel(const moe_bf16 *x, const int64_t *row_expert_start, int nexp, int64_t first, int scale,
				 int64_t rows, int64_t h, moe_bf16 *out)
{
	int64_t n = rows * h;
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
__global__ void swiglu_act_kernel(const moe_bf16 *gu, int64_t rows, int64_t f, moe_bf16 *act)
{
	int64_t n = rows * f;
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
		int64_t r = i / f, c = i % f;
		float a = bf(gu[r * 2 * f + c]);
		act[i] = tobf(a / (1.0f + expf(-a)) * bf(gu[r * 2 * f + f + c]));
	}
}

static unsigned ew_grid(int64_t n)
{
	int64_t b = (n + 255) / 256;
	return (unsigned)(b < 1 ? 1 : b > 65535 * 8 ? 65535 * 8 : b);
}

/* The device pointer arrays [W | A | C] of a batched or grouped GEMM over ng experts. */
static int stage_ptrs(struct moe_dev *d, int ng, const void *const *hA, const void *const *hW, void *const *hC)
{
	size_t need = (size_t)ng * 3 * sizeof(void *);
	MOE_CHECK(grow((void **)&d->ptrs, &d->ptrs_cap, need));
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

/* The expert GEMMs: one cublasGemmEx per expert over side streams once experts have about a thousand rows or
 * more (GPU-HOST.md; calibrate measures it at 94-99 % of a dense layer of the same FLOPs, within 5 % of the
 * batched GEMM); below that, one batched GEMM when every expert has the same rows (1.25-1.9x the others
 * there), else cuBLAS's grouped GEMM. MOEBENCH_EXPERT_GEMM=batched|grouped|loop forces one (batched falls back when rows differ). */
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
		cublasSetStream(d->blas, d->side[i % ns]);
		if (cublasGemmEx(d->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, rows[i], Kd, &one, W[i], CUDA_R_16BF, Kd, A[i],
				 CUDA_R_16BF, Kd, &zero, C[i], CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F,
				 CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
			rc = MOE_ERR_SYSTEM;
	}
	cublasSetStream(d->blas, d->stream);
	for (int i = 0; i < ns; i++) {
		CU(cudaEventRecord(d->join[i], d->side[i]));
		CU(cudaStreamWaitEvent(d->stream, d->join[i], 0));
	}
	if (rc != MOE_OK)
		fprintf(stderr, "moebench: cublasGemmEx (per-expert loop) failed\n");
	return rc;
}

static int cuda_ffn(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *x, const int64_t *counts,
		    const float *scale, moe_bf16 *out)
{
	int64_t H = c->hidden, F = c->ffn, rows = 0;
	for (int64_t j = 0; j < c->nexperts; j++)
		rows += counts[j];
	if (rows == 0)
		return MOE_OK;
	/* scratch: scaled input (bf16), starts per expert, g and u (fp32), act (bf16) */
	size_t su = scale ? (size_t)rows * H * 2 : 0, ss = ((size_t)c->nexperts + 1) * 8;
	size_t sg = c->kind == MOE_FFN_SWIGLU ? (size_t)rows * F * 2 : 0;
	size_t need = su + ss + 3 * sg + 1024; /* [gate | up] (2 sg) and the activation (sg) */
	MOE_CHECK(grow(&d->scratch, &d->scratch_bytes, need));
	char *sp = (char *)d->scratch;
	const moe_bf16 *u = x;
	if (scale) {
		scale_rows_kernel<<<ew_grid(rows * H), 256, 0, d->stream>>>(x, scale, rows, H, (moe_bf16 *)sp);
		LAUNCHED();
		u = (const moe_bf16 *)sp;
	}
	sp += (su + 255) & ~(size_t)255;
	if (c->kind != MOE_FFN_SWIGLU) {
		int64_t *hs = (int64_t *)malloc(ss);
		hs[0] = 0;
		for (int64_t j = 0; j < c->nexperts; j++)
			hs[j + 1] = hs[j] + counts[j];
		int rc = cudaMemcpyAsync(sp, hs, ss, cudaMemcpyHostToDevice, d->stream) == cudaSuccess &&
				 cudaStreamSynchronize(d->stream) == cudaSuccess
			 ? MOE_OK
			 : MOE_ERR_SYSTEM;
		free(hs);
		MOE_CHECK(rc);
		exact_ffn_kernel<<<ew_grid(rows * H), 256, 0, d->stream>>>(u, (const int64_t *)sp, (int)c->nexperts,
									  c->first_expert, c->kind == MOE_FFN_SCALE,
									  rows, H, out);
		LAUNCHED();
		return MOE_OK;
	}
	sp += (ss + 255) & ~(size_t)255;
	moe_bf16 *gu = (moe_bf16 *)sp, *act = gu + rows * 2 * F;
	/* W1 and W3 stored back to back make one projection of width 2F: [gate | up] per row */
	int fused = 1;
	for (int64_t j = 0; j < c->nexperts; j++)
		fused &= counts[j] == 0 || c->d_w3[j] == c->d_w1[j] + F * H;
	int ng = 0;
	int *rw = (int *)malloc(c->nexperts * sizeof(int));
	const void **A = (const void **)malloc(c->nexperts * sizeof(void *)), **W = (const void **)malloc(c->nexperts * sizeof(void *));
	void **C = (void **)malloc(c->nexperts * sizeof(void *));
	int rc = MOE_OK;
	/* passes: 0 gate (or gate|up when fused), 1 up, 2 down; every GEMM stores bf16 */
	for (int pass = 0; pass < 3 && rc == MOE_OK; pass++) {
		if (pass == 1 && fused)
			continue;
		ng = 0;
		int64_t r0 = 0;
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
		int N = pass == 2 ? (int)H : fused ? (int)(2 * F) : (int)F, Kd = pass == 2 ? (int)F : (int)H;
		int ldc = pass == 2 ? (int)H : (int)(2 * F);
		rc = expert_gemms(d, ng, rw, N, Kd, ldc, A, W, C, rows / (c->nexperts ? c->nexperts : 1));
		if (rc == MOE_OK && pass == (fused ? 0 : 1)) { /* both projections are done */
			swiglu_act_kernel<<<ew_grid(rows * F), 256, 0, d->stream>>>(gu, rows, F, act);
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

/* ---- combine: one block per token, 8 columns per thread (16-byte loads), slots in order ---- */

__global__ void combine_kernel(const moe_bf16 *rows, const int32_t *slot, const float *w, int64_t n, int K, int64_t h,
			       const float *base, int scaled_before, moe_bf16 *out, float *out_f32)
{
	int64_t t = blockIdx.x;
	if (t >= n)
		return;
	__shared__ int32_t ss[64];
	__shared__ float sw[64];
	for (int k = threadIdx.x; k < K && k < 64; k += blockDim.x) {
		ss[k] = slot[t * K + k];
		sw[k] = w[t * K + k];
	}
	__syncthreads();
	for (int64_t c0 = (int64_t)threadIdx.x * 8; c0 < h; c0 += (int64_t)blockDim.x * 8) {
		float acc[8];
		int vec = c0 + 8 <= h && (h % 8) == 0;
		for (int q = 0; q < 8; q++)
			acc[q] = base && c0 + q < h ? base[t * h + c0 + q] : 0.0f;
		if (vec && K <= 8) {
			/* every slot's 16 bytes in flight at once, then the sums in slot order */
			uint4 v[8];
#pragma unroll
			for (int k = 0; k < 8; k++)
				if (k < K && ss[k] >= 0)
					v[k] = __ldg((const uint4 *)(rows + (int64_t)ss[k] * h + c0));
#pragma unroll
			for (int k = 0; k < 8; k++) {
				if (k >= K || ss[k] < 0)
					continue;
				const moe_bf16 *e = (const moe_bf16 *)&v[k];
#pragma unroll
				for (int q = 0; q < 8; q++)
					acc[q] = scaled_before ? acc[q] + bf(e[q]) : fmaf(sw[k], bf(e[q]), acc[q]);
			}
		} else {
			for (int k = 0; k < K; k++) {
				int32_t s = k < 64 ? ss[k] : slot[t * K + k];
				float wk = k < 64 ? sw[k] : w[t * K + k];
				if (s < 0)
					continue;
				const moe_bf16 *r = rows + (int64_t)s * h + c0;
				for (int q = 0; q < 8 && c0 + q < h; q++)
					acc[q] = scaled_before ? acc[q] + bf(r[q]) : fmaf(wk, bf(r[q]), acc[q]);
			}
		}
		if (out_f32) {
			for (int q = 0; q < 8 && c0 + q < h; q++)
				out_f32[t * h + c0 + q] = acc[q];
		} else if (vec) {
			moe_bf16 o[8];
			for (int q = 0; q < 8; q++)
				o[q] = tobf(acc[q]);
			*(uint4 *)(out + t * h + c0) = *(uint4 *)o;
		} else
			for (int q = 0; q < 8 && c0 + q < h; q++)
				out[t * h + c0 + q] = tobf(acc[q]);
	}
}

static int cuda_combine(struct moe_dev *d, const moe_bf16 *rows, const int32_t *slot, const float *w, int64_t n,
			int64_t k, int64_t h, const float *base, int scaled_before, moe_bf16 *out, float *out_f32)
{
	if (n == 0)
		return MOE_OK;
	int64_t threads = (h + 7) / 8;
	combine_kernel<<<(unsigned)n, (unsigned)(threads < 128 ? (threads + 31) / 32 * 32 : 128), 0, d->stream>>>(
		rows, slot, w, n, (int)k, h, base, scaled_before, out, out_f32);
	LAUNCHED();
	return MOE_OK;
}

__global__ void finish_kernel(const float *s, const float *base, int64_t n, moe_bf16 *out)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
		out[i] = tobf(base ? base[i] + s[i] : s[i]);
}

__global__ void add_kernel(const moe_bf16 *a, const moe_bf16 *b, int64_t n, moe_bf16 *out)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
		out[i] = tobf(bf(a[i]) + bf(b[i]));
}

__global__ void widen_kernel(const moe_bf16 *a, int64_t n, float *out)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
		out[i] = bf(a[i]);
}

static int cuda_finish(struct moe_dev *d, const float *s, const float *base, int64_t n, moe_bf16 *out)
{
	if (n) {
		finish_kernel<<<ew_grid(n), 256, 0, d->stream>>>(s, base, n, out);
		LAUNCHED();
	}
	return MOE_OK;
}

static int cuda_add(struct moe_dev *d, const moe_bf16 *a, const moe_bf16 *b, int64_t n, moe_bf16 *out)
{
	if (n) {
		add_kernel<<<ew_grid(n), 256, 0, d->stream>>>(a, b, n, out);
		LAUNCHED();
	}
	return MOE_OK;
}

static int cuda_widen(struct moe_dev *d, const moe_bf16 *a, int64_t n, float *out)
{
	if (n) {
		widen_kernel<<<ew_grid(n), 256, 0, d->stream>>>(a, n, out);
		LAUNCHED();
	}
	return MOE_OK;
}

static int cuda_flush(struct moe_dev *d)
{
	if (!d->flush) {
		d->flush_bytes = 256u << 20; /* several times any Hopper L2 */
		CU(cudaMalloc((void **)&d->flush, d->flush_bytes));
	}
	CU(cudaMemsetAsync(d->flush, 0, d->flush_bytes, d->stream));
	return MOE_OK;
}

__global__ void generate_kernel(uint64_t seed, uint32_t tensor, uint32_t layer, uint64_t row0, int64_t rows, int64_t cols,
				double scale, moe_bf16 *dst)
{
	int64_t n = rows * cols;
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
		double u = moe_rng_unit(seed, tensor, layer, row0 + (uint64_t)(i / cols), (uint64_t)(i % cols));
		double v = 2.0 * u - 1.0; /* exact: no contraction can change it */
		dst[i] = tobf((float)(v * scale));
	}
}

static int cuda_generate(struct moe_dev *d, uint64_t seed, uint32_t tensor, uint32_t layer, uint64_t row0, int64_t rows,
			 int64_t cols, double scale, moe_bf16 *dst)
{
	if (rows * cols > 0) {
		generate_kernel<<<ew_grid(rows * cols), 256, 0, d->stream>>>(seed, tensor, layer, row0, rows, cols, scale, dst);
		LAUNCHED();
	}
	return MOE_OK;
}

static int cuda_mark(struct moe_dev *d, int slot)
{
	CU(cudaEventRecord(d->marks[slot], d->stream));
	return MOE_OK;
}

static double cuda_elapsed_us(struct moe_dev *d, int from, int to)
{
	float ms = 0;
	if (cudaEventElapsedTime(&ms, d->marks[from], d->marks[to]) != cudaSuccess)
		return -1;
	return ms * 1e3;
}

/* One thread reads the global nanosecond timer until ns have passed: a planted slowdown on the device's own
 * timeline, which the phase's events measure exactly (a host-side wait would add a synchronisation). */
__global__ void spin_kernel(long long ns)
{
	unsigned long long t0, t;
	asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
	do
		asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
	while ((long long)(t - t0) < ns);
}

static int cuda_spin(struct moe_dev *d, double us)
{
	spin_kernel<<<1, 1, 0, d->stream>>>((long long)(us * 1000.0));
	LAUNCHED();
	return MOE_OK;
}

static size_t cuda_mem_total(struct moe_dev *d)
{
	size_t free_b = 0, total = 0;
	cudaSetDevice(d->gpu);
	return cudaMemGetInfo(&free_b, &total) == cudaSuccess ? total : 0;
}

extern "C" const struct moe_backend_ops moe_backend_cuda = {
	MOE_BACKEND_ABI,
	"cuda",
	cuda_init,
	cuda_fini,
	cuda_alloc,
	cuda_free,
	cuda_h2d,
	cuda_d2h,
	cuda_d2d,
	cuda_memset,
	cuda_sync,
	cuda_route,
	cuda_bucket,
	cuda_scatter_rows,
	cuda_scatter_i32,
	cuda_gather_rows,
	cuda_ffn,
	cuda_combine,
	cuda_finish,
	cuda_add,
	cuda_widen,
	cuda_flush,
	cuda_generate,
	cuda_mark,
	cuda_elapsed_us,
	cuda_mem_total,
	cuda_spin,
};

/* ---- for the CUDA transports ---- */

__global__ void accumulate_kernel(float *dst, const float *src, int64_t n)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
		dst[i] += src[i];
}

extern "C" void *moe_cuda_stream(struct moe_dev *d)
{
	return (void *)d->stream;
}

extern "C" size_t moe_cuda_peak_bytes(struct moe_dev *d)
{
	note_usage(d);
	return d->peak_used - d->base_used;
}

extern "C" int moe_cuda_device(struct moe_dev *d)
{
	return d->gpu;
}

extern "C" int moe_cuda_accumulate_f32(struct moe_dev *d, float *dst, const float *src, int64_t n)
{
	if (n) {
		accumulate_kernel<<<ew_grid(n), 256, 0, d->stream>>>(dst, src, n);
		LAUNCHED();
	}
	return MOE_OK;
}

/* ---- calibrate: the rooflines, and the backend's own kernels measured against them ---- */

struct timer {
	cudaEvent_t a, b;
};

static float time_ms(cudaStream_t s, struct timer *t, int reps, int (*fn)(void *), void *arg)
{
	for (int i = 0; i < 2; i++) /* warm-up */
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

static int b_route(void *p)
{
	struct bench *x = (struct bench *)p;
	return cuda_route(x->d, x->rc, (const moe_bf16 *)x->a, x->m, (const moe_bf16 *)x->b, (int32_t *)x->c, (float *)x->e);
}

static void fill(struct moe_dev *d, void *p, int64_t elems, uint32_t tensor, double scale)
{
	cuda_generate(d, 7, tensor, 0, 0, 1, elems, scale, (moe_bf16 *)p);
}

extern "C" int moe_cuda_calibrate(int gpu, FILE *out, double *copy_out, double *gemm_out)
{
	struct moe_dev *d;
	if (cuda_init(&d, gpu) != MOE_OK)
		return MOE_ERR_UNSUPPORTED;
	cudaDeviceProp prop;
	cudaGetDeviceProperties(&prop, d->gpu);
	fprintf(out, "# %s, %d SMs, %.0f MiB; every figure is the mean of timed repetitions after 2 warm-ups, CUDA events\n",
		prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1048576.0);
	struct timer t;
	cudaEventCreate(&t.a);
	cudaEventCreate(&t.b);
	struct bench x;
	memset(&x, 0, sizeof(x));
	x.d = d;
	/* copy roofline: 2 GiB device to device */
	x.m = (int64_t)2 << 30;
	CU(cudaMalloc(&x.a, (size_t)x.m));
	CU(cudaMalloc(&x.b, (size_t)x.m));
	cudaMemsetAsync(x.a, 1, (size_t)x.m, d->stream);
	float ms = time_ms(d->stream, &t, 10, b_copy, &x);
	double copy = 2.0 * (double)x.m / (ms * 1e-3) / 1e9; /* read + write */
	fprintf(out, "copy_GBps\t%.1f\t# cudaMemcpy D2D of 2 GiB, bytes read + written per second\n", copy);
	/* dense GEMM roofline: 8192^3 bf16, fp32 accumulate */
	x.m = x.n = x.k = 8192;
	fill(d, x.a, 8192 * 8192, 3, 0.01);
	fill(d, x.b, 8192 * 8192, 4, 0.01);
	CU(cudaMalloc(&x.c, (size_t)8192 * 8192 * 2));
	ms = time_ms(d->stream, &t, 10, b_gemm, &x);
	double dense = 2.0 * 8192.0 * 8192 * 8192 / (ms * 1e-3) / 1e12;
	fprintf(out, "gemm_TFLOPs\t%.1f\t# cublasGemmEx 8192x8192x8192 bf16 in/out, fp32 compute, random data\n", dense);

	/* permute and combine at 4096 tokens x H 7168, top-8 (32768 slots), 32 local experts */
	int64_t T = 4096, K = 8, H = 7168, S = T * K;
	int32_t *hk = (int32_t *)malloc(S * 4);
	for (int64_t i = 0; i < S; i++)
		hk[i] = (int32_t)(moe_rng_u64(3, 30, 0, 0, (uint64_t)i) % 32);
	CU(cudaMemcpy(x.c, hk, S * 4, cudaMemcpyHostToDevice));
	free(hk);
	CU(cudaMalloc(&x.e, S * 4));
	CU(cudaMalloc(&x.f, S * 4));
	fill(d, x.a, S * H, 5, 1.0);
	x.m = S;
	x.h = H;
	x.nb = 32;
	ms = time_ms(d->stream, &t, 20, b_permute, &x);
	double bytes = 2.0 * S * H * 2;
	fprintf(out, "permute_GBps\t%.1f\t%.0f%%\t# bucket 32768 slots by expert + scatter 32768 rows of 7168 bf16 (%.2f ms)\n",
		bytes / (ms * 1e-3) / 1e9, 100 * bytes / (ms * 1e-3) / 1e9 / copy, ms);
	ms = time_ms(d->stream, &t, 20, b_scatter, &x);
	fprintf(out, "scatter_GBps\t%.1f\t%.0f%%\t# the row scatter alone (%.2f ms)\n", bytes / (ms * 1e-3) / 1e9,
		100 * bytes / (ms * 1e-3) / 1e9 / copy, ms);
	/* combine: slots of token t at rows permuted by the bucket above */
	x.n = T;
	x.k = K;
	fill(d, x.f, S * 2, 6, 1.0); /* weights: any finite values */
	ms = time_ms(d->stream, &t, 20, b_combine, &x);
	bytes = (double)(S + T) * H * 2;
	fprintf(out, "combine_GBps\t%.1f\t%.0f%%\t# 4096 tokens x 8 slots x 7168: K rows read + 1 written (%.2f ms)\n",
		bytes / (ms * 1e-3) / 1e9, 100 * bytes / (ms * 1e-3) / 1e9 / copy, ms);

	/* router: 8192 tokens x 256 experts x 7168, sigmoid, 8 groups keep 4, top-8 */
	struct moe_route_cfg rc = {7168, 256, 8, 8, 4, 1, 1, 2.5f, NULL};
	x.rc = &rc;
	x.m = 8192;
	ms = time_ms(d->stream, &t, 20, b_route, &x); /* a, b: bf16 x and Wg, already random */
	fprintf(out, "route_ms\t%.3f\t# 8192 tokens, 256 experts, H 7168: gate GEMM + top-k (deepseek-v3 router)\n", ms);

	/* grouped experts vs one dense GEMM of the same FLOPs (ep = 8 shapes, balanced routing: 8192 tokens per rank,
	 * then 1024, where every expert has fewer rows than the per-expert loop needs) */
	struct shape {
		const char *name;
		int64_t ne, rows, h, f;
	} shapes[] = {{"qwen3-30b-a3b", 16, 4096, 2048, 768}, {"deepseek-v3", 32, 2048, 7168, 2048},
		      {"qwen3-30b-a3b-512rows", 16, 512, 2048, 768}, {"deepseek-v3-256rows", 32, 256, 7168, 2048}};
	for (int si = 0; si < 4; si++) {
		struct shape *sh = &shapes[si];
		int64_t R = sh->ne * sh->rows;
		moe_bf16 **w1 = (moe_bf16 **)malloc(sh->ne * sizeof(void *)), **w3 = (moe_bf16 **)malloc(sh->ne * sizeof(void *));
		moe_bf16 **w2 = (moe_bf16 **)malloc(sh->ne * sizeof(void *));
		int64_t *counts = (int64_t *)malloc(sh->ne * 8);
		for (int64_t j = 0; j < sh->ne; j++) {
			CU(cudaMalloc((void **)&w1[j], (size_t)(3 * sh->f * sh->h) * 2));
			w3[j] = w1[j] + sh->f * sh->h;
			w2[j] = w3[j] + sh->f * sh->h;
			fill(d, w1[j], 3 * sh->f * sh->h, 10 + (uint32_t)j, 0.02);
			counts[j] = sh->rows;
		}
		void *xin, *xo;
		CU(cudaMalloc(&xin, (size_t)(R * sh->h) * 2));
		CU(cudaMalloc(&xo, (size_t)(R * sh->h) * 2));
		fill(d, xin, R * sh->h, 9, 1.0);
		struct moe_ffn_cfg fc = {MOE_FFN_SWIGLU, sh->h, sh->f, sh->ne, 0, (const moe_bf16 *const *)w1,
					 (const moe_bf16 *const *)w3, (const moe_bf16 *const *)w2};
		struct bench y = x;
		y.fc = &fc;
		y.counts = counts;
		y.a = xin;
		y.b = xo;
		double flops = 2.0 * R * sh->h * sh->f * 3;
		/* the same FLOPs as one dense layer: every row through a single expert (one GEMM per projection) */
		int64_t all_rows = R;
		struct moe_ffn_cfg fd = fc;
		fd.nexperts = 1;
		struct bench yd = y;
		yd.fc = &fd;
		yd.counts = &all_rows;
		ms = time_ms(d->stream, &t, 10, b_ffn, &yd);
		double same = flops / (ms * 1e-3) / 1e12;
		fprintf(out, "experts_%s_dense_TFLOPs\t%.1f\t%.0f%%\t# the same FLOPs as one dense layer: %lld rows through one expert, cublasGemmEx per projection + act (%.2f ms)\n",
			sh->name, same, 100 * same / dense, (long long)R, ms);
		const char *modes[] = {"grouped", "loop", "batched"};
		for (int mi = 0; mi < 3; mi++) {
			setenv("MOEBENCH_EXPERT_GEMM", modes[mi], 1);
			ms = time_ms(d->stream, &t, 10, b_ffn, &y);
			double tf = flops / (ms * 1e-3) / 1e12;
			fprintf(out, "experts_%s_%s_TFLOPs\t%.1f\t%.0f%%\t%.0f%%\t# %lld experts x %lld rows, H %lld, F %lld: gate|up + act + down (%.2f ms; %% of gemm_TFLOPs, then of the same-FLOPs dense layer)\n",
				sh->name, modes[mi], tf, 100 * tf / dense, 100 * tf / same, (long long)sh->ne,
				(long long)sh->rows, (long long)sh->h, (long long)sh->f, ms);
		}
		unsetenv("MOEBENCH_EXPERT_GEMM");
		for (int64_t j = 0; j < sh->ne; j++)
			cudaFree(w1[j]);
		cudaFree(xin);
		cudaFree(xo);
		free(w1);
		free(w3);
		free(w2);
		free(counts);
	}
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
