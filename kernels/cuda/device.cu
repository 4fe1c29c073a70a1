/* CUDA backend: the device's streams, cuBLAS handle and events, its memory, timers and cache flush, and
 * what the CUDA transports ask of it (cuda_iface.h). */
#include "cuda_internal.h"

/* Keeps peak_used: the most device memory seen in use (a sample after each allocation). */
static void note_usage(struct moe_dev *d)
{
	size_t fr = 0, tot = 0;
	if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot - fr > d->peak_used)
		d->peak_used = tot - fr;
}

int cuda_grow(void **p, size_t *cap, size_t need)
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

int cuda_init(struct moe_dev **out, int gpu)
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

void cuda_fini(struct moe_dev *d)
{
	if (!d)
		return;
	cudaStreamSynchronize(d->stream);
	cudaFree(d->scratch);
	cudaFree(d->logits);
	cudaFree(d->ptrs);
	cudaFree(d->flush);
	cudaFree(d->ll_scratch);
	cudaFree(d->ffd);
	cudaFree(d->gg_args);
	cudaFree(d->gg_ws);
	cudaFreeHost(d->hcounts);
	cudaFreeHost(d->hptrs);
	for (int i = 0; i < 5; i++)
		cudaFree(d->blas_ws[i]);
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

void *cuda_alloc(struct moe_dev *d, size_t bytes)
{
	void *p = NULL;
	if (cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess)
		return NULL;
	note_usage(d);
	return p;
}

void cuda_free(struct moe_dev *d, void *p)
{
	(void)d;
	cudaFree(p);
}

int cuda_h2d(struct moe_dev *d, void *dst, const void *src, size_t n)
{
	MOE_CHECK(cuda_refuse_in_capture(d, "h2d (it waits for the copy: the source may be freed)"));
	if (n) {
		CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, d->stream));
		CU(cudaStreamSynchronize(d->stream)); /* src may be freed by the caller right after */
	}
	return MOE_OK;
}

int cuda_d2h(struct moe_dev *d, void *dst, const void *src, size_t n)
{
	MOE_CHECK(cuda_refuse_in_capture(d, "d2h"));
	if (n) {
		CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, d->stream));
		CU(cudaStreamSynchronize(d->stream));
	}
	return MOE_OK;
}

int cuda_d2d(struct moe_dev *d, void *dst, const void *src, size_t n)
{
	if (n)
		CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, d->stream));
	return MOE_OK;
}

int cuda_memset(struct moe_dev *d, void *dst, int byte, size_t n)
{
	if (n)
		CU(cudaMemsetAsync(dst, byte, n, d->stream));
	return MOE_OK;
}

int cuda_sync(struct moe_dev *d)
{
	MOE_CHECK(cuda_refuse_in_capture(d, "sync"));
	CU(cudaStreamSynchronize(d->stream));
	return MOE_OK;
}

int cuda_flush(struct moe_dev *d)
{
	if (!d->flush) {
		d->flush_bytes = 256u << 20; /* several times any Hopper L2 */
		CU(cudaMalloc((void **)&d->flush, d->flush_bytes));
	}
	CU(cudaMemsetAsync(d->flush, 0, d->flush_bytes, d->stream));
	return MOE_OK;
}

int cuda_mark(struct moe_dev *d, int slot)
{
	if (cuda_capturing(d)) /* a timestamp inside a graph would be replayed: skipped */
		return MOE_OK;
	CU(cudaEventRecord(d->marks[slot], d->stream));
	return MOE_OK;
}

double cuda_elapsed_us(struct moe_dev *d, int from, int to)
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

int cuda_spin(struct moe_dev *d, double us)
{
	spin_kernel<<<1, 1, 0, d->stream>>>((long long)(us * 1000.0));
	LAUNCHED();
	return MOE_OK;
}

size_t cuda_mem_total(struct moe_dev *d)
{
	size_t free_b = 0, total = 0;
	cudaSetDevice(d->gpu);
	return cudaMemGetInfo(&free_b, &total) == cudaSuccess ? total : 0;
}

/* ---- for the CUDA transports ---- */

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
