/* What the CUDA backend's files share: the device state, the error macros, the bf16 helpers and the
 * backend functions that another file calls (the vtable in backend.cu, the benchmarks in calibrate.cu). */
#ifndef MOE_CUDA_INTERNAL_H
#define MOE_CUDA_INTERNAL_H

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
	void *blas_ws[5];  /* cuBLAS workspaces of the stream and the side streams, made by the first capture */
	int capture_failed; /* an op refused inside the capture: capture_end says so */
	void *ll_scratch; /* ll.cu's workspace: done counters, then bucketing or receive offsets */
	size_t ll_scratch_bytes;
	/* experts with device counts (ffn_dev) and the CUTLASS grouped GEMM: their own buffers, so that a captured
	 * layer's addresses stay valid while other calls grow the shared scratch */
	void *ffd;
	size_t ffd_cap;
	void *gg_args, *gg_ws; /* grouped GEMM problem sizes, pointers, strides; its workspace */
	size_t gg_args_cap, gg_ws_cap;
};

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

__device__ static inline float bf(moe_bf16 v)
{
	return __uint_as_float((uint32_t)v << 16);
}

__device__ static inline moe_bf16 tobf(float f)
{
	__nv_bfloat16 b = __float2bfloat16_rn(f);
	return *(moe_bf16 *)&b;
}

/* Blocks of 256 threads for a grid-stride loop over n elements. */
static inline unsigned ew_grid(int64_t n)
{
	int64_t b = (n + 255) / 256;
	return (unsigned)(b < 1 ? 1 : b > 65535 * 8 ? 65535 * 8 : b);
}

/* device.cu: the device's life, memory and timers */
int cuda_grow(void **p, size_t *cap, size_t need); /* device buffer of at least need bytes, contents lost */
int cuda_init(struct moe_dev **out, int gpu);
void cuda_fini(struct moe_dev *d);
void *cuda_alloc(struct moe_dev *d, size_t bytes);
void cuda_free(struct moe_dev *d, void *p);
int cuda_h2d(struct moe_dev *d, void *dst, const void *src, size_t n);
int cuda_d2h(struct moe_dev *d, void *dst, const void *src, size_t n);
int cuda_d2d(struct moe_dev *d, void *dst, const void *src, size_t n);
int cuda_memset(struct moe_dev *d, void *dst, int byte, size_t n);
int cuda_sync(struct moe_dev *d);
int cuda_flush(struct moe_dev *d);
int cuda_mark(struct moe_dev *d, int slot);
double cuda_elapsed_us(struct moe_dev *d, int from, int to);
size_t cuda_mem_total(struct moe_dev *d);
int cuda_spin(struct moe_dev *d, double us);

/* graph.cu: capture and replay; the check of the ops that would wait on the host (MOE_ERR_UNSUPPORTED while
 * capturing); cuBLAS moved to a stream (side -1: the backend's) with the workspace a capture needs */
int cuda_capturing(struct moe_dev *d);
int cuda_refuse_in_capture(struct moe_dev *d, const char *op);
int cuda_blas_stream(struct moe_dev *d, int side);
int cuda_capture_begin(struct moe_dev *d);
int cuda_capture_end(struct moe_dev *d, void **graph);
int cuda_replay(struct moe_dev *d, void *graph);
void cuda_graph_free(struct moe_dev *d, void *graph);

/* router.cu */
int cuda_route(struct moe_dev *d, const struct moe_route_cfg *c, const moe_bf16 *x, int64_t n, const moe_bf16 *wg,
	       int32_t *idx, float *w);

/* layout.cu: bucketing and row moves */
int cuda_bucket(struct moe_dev *d, const int32_t *key, int64_t m, int32_t off, int32_t div, int64_t nb,
		int64_t *counts, int32_t *pos);
int cuda_scatter_rows(struct moe_dev *d, const moe_bf16 *src, const int32_t *pos, int64_t m, int64_t src_div,
		      int64_t h, moe_bf16 *dst);
int cuda_scatter_i32(struct moe_dev *d, const int32_t *src, const int32_t *pos, int64_t m, int32_t *dst);
/* The stable bucketing of cuda_bucket on the device alone: total[nb] and (when not NULL) start[nb], the first
 * place of each bucket, stay in device memory; scratch holds cuda_bucket_scratch(m, nb) bytes. */
size_t cuda_bucket_scratch(int64_t m, int64_t nb);
int cuda_bucket_dev(struct moe_dev *d, const int32_t *key, int64_t m, int32_t off, int32_t div, int64_t nb,
		    void *scratch, int32_t *pos, int64_t *total, int64_t *start);
int cuda_gather_rows(struct moe_dev *d, const moe_bf16 *src, const int32_t *idx, int64_t m, int64_t h,
		     moe_bf16 *dst);

/* experts.cu */
int cuda_ffn(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *x, const int64_t *counts,
	     const float *scale, moe_bf16 *out);
int cuda_ffn_dev(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *x, const int32_t *counts,
		 int64_t max_rows, const float *scale, moe_bf16 *out);

extern "C" int moe_cuda_ffn_dev(struct moe_dev *d, const struct moe_ffn_cfg *c, const moe_bf16 *x,
				const int32_t *d_counts, int64_t max_rows, const float *d_scale, moe_bf16 *d_out);

/* grouped_gemm.cu (MOE_HAVE_CUTLASS only): group g = s * experts + j multiplies expert j's rows
 * [d_starts[j], d_starts[j + 1]) of A (K wide, row-major; d_starts in device memory, experts + 1 of them) by
 * w[g]^T (host array of experts * splits device pointers, each N x K row-major) into columns [s * N, (s + 1) * N)
 * of D (row stride ldd). The tile is picked from avg_rows (a host estimate) and, where the caller has them,
 * the host row counts h_counts (else NULL). MOE_ERR_UNSUPPORTED when the operands are not 16-byte aligned.
 * Nothing is read back to the host: the launch can be captured. */
extern "C" int moe_cuda_grouped_gemm(struct moe_dev *d, int experts, int splits, const int64_t *d_starts,
				     const int64_t *h_counts, int64_t avg_rows, int64_t n, int64_t k,
				     const moe_bf16 *a, const moe_bf16 *const *w, moe_bf16 *dd, int64_t ldd);
/* the grouped GEMM's tiles (grouped_gemm.cu says what each is for); the same bits from every one */
enum moe_gg_tile { MOE_GG_COOP, MOE_GG_COOP12, MOE_GG_COOP256, MOE_GG_SWAP128, MOE_GG_SWAPC, MOE_GG_NTILES };
extern "C" int moe_cuda_gg_pick(int experts, const int64_t *h_counts, int64_t avg_rows, int64_t n, int64_t k);
extern "C" const char *moe_cuda_gg_tile_name(int tile);

/* TMA needs 16-byte aligned rows and bases. */
static inline int moe_cuda_gg_aligned(int64_t n, int64_t k, int64_t ldd, const void *a, const void *dd,
				      const moe_bf16 *const *w, int nw)
{
	int ok = n % 8 == 0 && k % 8 == 0 && ldd % 8 == 0 && !((uintptr_t)a & 15) && !((uintptr_t)dd & 15);
	for (int i = 0; ok && i < nw; i++)
		ok = !((uintptr_t)w[i] & 15);
	return ok;
}

/* ll.cu: the low-latency exchange */
int cuda_ll_dispatch(struct moe_dev *d, const struct moe_ll_plan *pl, const moe_bf16 *x, int64_t n,
		     const int32_t *idx, const float *w, int32_t *slot);
int cuda_ll_receive(struct moe_dev *d, const struct moe_ll_plan *pl, moe_bf16 *x, float *w, int32_t *counts,
		    int32_t *src);
int cuda_ll_return(struct moe_dev *d, const struct moe_ll_plan *pl, const moe_bf16 *y, const int32_t *src,
		   const int32_t *counts);
int cuda_ll_wait_return(struct moe_dev *d, const struct moe_ll_plan *pl);

/* combine.cu: the combine and the elementwise steps around it */
int cuda_combine(struct moe_dev *d, const moe_bf16 *rows, const int32_t *slot, const float *w, int64_t n, int64_t k,
		 int64_t h, const float *base, int scaled_before, moe_bf16 *out, float *out_f32);
int cuda_finish(struct moe_dev *d, const float *s, const float *base, int64_t n, moe_bf16 *out);
int cuda_add(struct moe_dev *d, const moe_bf16 *a, const moe_bf16 *b, int64_t n, moe_bf16 *out);
int cuda_widen(struct moe_dev *d, const moe_bf16 *a, int64_t n, float *out);

/* weights.cu */
int cuda_generate(struct moe_dev *d, uint64_t seed, uint32_t tensor, uint32_t layer, uint64_t row0, int64_t rows,
		  int64_t cols, double scale, moe_bf16 *dst);

#endif
