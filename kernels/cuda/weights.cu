/* CUDA backend, weights: generated tensors made on the device, bit for bit as the host generator makes them. */
#include "cuda_internal.h"
#include "rng.h"

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

int cuda_generate(struct moe_dev *d, uint64_t seed, uint32_t tensor, uint32_t layer, uint64_t row0, int64_t rows,
		  int64_t cols, double scale, moe_bf16 *dst)
{
	if (rows * cols > 0) {
		generate_kernel<<<ew_grid(rows * cols), 256, 0, d->stream>>>(seed, tensor, layer, row0, rows, cols, scale, dst);
		LAUNCHED();
	}
	return MOE_OK;
}
