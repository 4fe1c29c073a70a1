/* CUDA backend, combine: the slot-order weighted sum of each token's expert rows, the elementwise steps
 * around it (finish, residual add, widen) and the fp32 accumulate the CUDA transports reduce with. */
#include "cuda_internal.h"

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

int cuda_combine(struct moe_dev *d, const moe_bf16 *rows, const int32_t *slot, const float *w, int64_t n,
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

int cuda_finish(struct moe_dev *d, const float *s, const float *base, int64_t n, moe_bf16 *out)
{
	if (n) {
		finish_kernel<<<ew_grid(n), 256, 0, d->stream>>>(s, base, n, out);
		LAUNCHED();
	}
	return MOE_OK;
}

int cuda_add(struct moe_dev *d, const moe_bf16 *a, const moe_bf16 *b, int64_t n, moe_bf16 *out)
{
	if (n) {
		add_kernel<<<ew_grid(n), 256, 0, d->stream>>>(a, b, n, out);
		LAUNCHED();
	}
	return MOE_OK;
}

int cuda_widen(struct moe_dev *d, const moe_bf16 *a, int64_t n, float *out)
{
	if (n) {
		widen_kernel<<<ew_grid(n), 256, 0, d->stream>>>(a, n, out);
		LAUNCHED();
	}
	return MOE_OK;
}

__global__ void accumulate_kernel(float *dst, const float *src, int64_t n)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
		dst[i] += src[i];
}

extern "C" int moe_cuda_accumulate_f32(struct moe_dev *d, float *dst, const float *src, int64_t n)
{
	if (n) {
		accumulate_kernel<<<ew_grid(n), 256, 0, d->stream>>>(dst, src, n);
		LAUNCHED();
	}
	return MOE_OK;
}
