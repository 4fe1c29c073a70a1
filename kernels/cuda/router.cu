/* CUDA backend, router: the gate GEMM (cuBLAS, fp32 logits) and the top-k selection with group limits. */
#include "cuda_internal.h"

__device__ static bool better(float a, int ia, float b, int ib)
{
	return a > b || (a == b && ia < ib);
}

/* The block-wide maximum of every thread's mx, through rv (one slot per warp). */
__device__ static inline float block_max(float mx, float *rv)
{
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
	return mx;
}

/* p = softmax(l) over E experts; the sum is serial so the order is fixed and results reproducible. */
__device__ static inline void route_softmax(const float *l, int E, float *p, float *rv)
{
	float mx = -INFINITY;
	for (int e = threadIdx.x; e < E; e += blockDim.x)
		mx = fmaxf(mx, l[e]);
	mx = block_max(mx, rv);
	for (int e = threadIdx.x; e < E; e += blockDim.x)
		p[e] = expf(l[e] - mx);
	__syncthreads();
	if (threadIdx.x == 0) {
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

/* Group limit: experts outside the topk_groups groups with the best top-2 sums of sel leave the selection. */
__device__ static inline void route_group_limit(float *sel, int E, int groups, int topk_groups, float *gs)
{
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

/* K rounds of a block-wide argmax over sel (ties to the lower id); thread 0 writes token t's winners and their
 * scores p to idx and w and returns the sum of those scores (other threads return 0). */
__device__ static inline float route_topk(const float *p, float *sel, int E, int K, float *rv, int *ri, int64_t t,
					  int32_t *idx, float *w)
{
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
	return sum;
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
	} else
		route_softmax(l, E, p, rv);
	__syncthreads();
	for (int e = threadIdx.x; e < E; e += blockDim.x)
		sel[e] = p[e] + (bias ? bias[e] : 0.0f);
	__syncthreads();
	if (groups > 1)
		route_group_limit(sel, E, groups, topk_groups, gs);
	float sum = route_topk(p, sel, E, K, rv, ri, t, idx, w);
	if (threadIdx.x == 0)
		for (int k = 0; k < K; k++) {
			float v = w[t * K + k];
			if (norm)
				v = v / (sum + 1e-20f);
			w[t * K + k] = v * scale;
		}
}

int cuda_route(struct moe_dev *d, const struct moe_route_cfg *c, const moe_bf16 *x, int64_t n, const moe_bf16 *wg,
	       int32_t *idx, float *w)
{
	if (n == 0)
		return MOE_OK;
	int E = (int)c->experts, H = (int)c->hidden;
	MOE_CHECK(cuda_grow((void **)&d->logits, &d->logits_bytes, (size_t)n * E * sizeof(float)));
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
