/* The CUDA kernel backend's vtable: bf16 data, fp32 accumulation; cuBLAS for the gate GEMM and the expert
 * GEMMs; hand-written kernels for top-k routing, stable bucketing, row moves and the slot-order combine.
 * One file per kernel family beside it (router, layout, experts, combine, weights, calibrate; device.cu
 * holds the device state's life and memory). */
#include "cuda_internal.h"

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
	moe_cuda_ffn_dev, /* swiglu needs CUTLASS (MOE_ERR_UNSUPPORTED without it); scale and identity always */
};
