/* What the CUDA transports (ipc, nccl) may ask of the CUDA backend: its stream, device, and two
 * device helpers. C-callable; exists only when the CUDA backend is built. */
#ifndef MOE_CUDA_IFACE_H
#define MOE_CUDA_IFACE_H

#include <stddef.h>
#include <stdint.h>

struct moe_dev;

void *moe_cuda_stream(struct moe_dev *dev); /* the cudaStream_t every kernel of the backend runs on */
int moe_cuda_device(struct moe_dev *dev);
/* Device memory this process added at its peak (bytes in use on the GPU, less what was in use at init:
 * ranks sharing a GPU see each other's allocations too). */
size_t moe_cuda_peak_bytes(struct moe_dev *dev);
/* dst[i] += src[i] for n fp32 values, on the backend's stream. */
int moe_cuda_accumulate_f32(struct moe_dev *dev, float *dst, const float *src, int64_t n);

/* Rooflines (copy bandwidth, dense bf16 GEMM) and the backend's kernels against them, printed to out. */
#include <stdio.h>
int moe_cuda_calibrate(int gpu, FILE *out, double *copy_GBps, double *gemm_TFLOPs);

#endif
