/* CUDA graphs: the backend stream captured (thread-local mode) into a graph, instantiated once and launched
 * on the same stream; the ops that would wait on the host refuse while capturing instead of invalidating
 * the capture; cuBLAS gets its own workspaces, as a capture requires. */
#include "cuda_internal.h"

#define BLAS_WS_BYTES (32u << 20) /* what cuBLAS asks for on Hopper */

int cuda_capturing(struct moe_dev *d)
{
	cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
	return cudaStreamIsCapturing(d->stream, &st) == cudaSuccess && st == cudaStreamCaptureStatusActive;
}

int cuda_refuse_in_capture(struct moe_dev *d, const char *op)
{
	if (!cuda_capturing(d))
		return MOE_OK;
	d->capture_failed = 1;
	fprintf(stderr, "moebench: graph capture: %s waits on the host (a host round trip), which a graph cannot "
			"replay\n", op);
	return MOE_ERR_UNSUPPORTED;
}

/* cuBLAS on stream `side` (-1: the backend stream), with that stream's own workspace: cublasSetStream resets
 * the workspace to cuBLAS's pool, which a capture must not allocate from (capture_begin makes them all first). */
int cuda_blas_stream(struct moe_dev *d, int side)
{
	CB(cublasSetStream(d->blas, side < 0 ? d->stream : d->side[side]));
	/* a workspace of its own per stream, eager or captured: GEMMs on the side streams run at once, and one
	 * shared workspace (split-K) would race between them */
	if (!d->blas_ws[side + 1])
		CU(cudaMalloc(&d->blas_ws[side + 1], BLAS_WS_BYTES));
	CB(cublasSetWorkspace(d->blas, d->blas_ws[side + 1], BLAS_WS_BYTES));
	return MOE_OK;
}

int cuda_capture_begin(struct moe_dev *d)
{
	if (cuda_capturing(d)) {
		fprintf(stderr, "moebench: graph capture: a capture is already in progress\n");
		return MOE_ERR_SYSTEM;
	}
	for (int i = 0; i < 5; i++) /* one per stream cuBLAS runs on: the side streams run at the same time */
		if (!d->blas_ws[i])
			CU(cudaMalloc(&d->blas_ws[i], BLAS_WS_BYTES));
	MOE_CHECK(cuda_blas_stream(d, -1));
	d->capture_failed = 0;
	CU(cudaStreamBeginCapture(d->stream, cudaStreamCaptureModeThreadLocal));
	return MOE_OK;
}

int cuda_capture_end(struct moe_dev *d, void **graph)
{
	cudaGraph_t g = NULL;
	cudaGraphExec_t x = NULL;
	*graph = NULL;
	cudaError_t e = cudaStreamEndCapture(d->stream, &g);
	if (d->capture_failed || e != cudaSuccess) {
		if (g)
			cudaGraphDestroy(g);
		cudaGetLastError(); /* an invalidated capture leaves its error behind */
		if (!d->capture_failed)
			fprintf(stderr, "moebench: graph capture failed: %s\n", cudaGetErrorString(e));
		return d->capture_failed ? MOE_ERR_UNSUPPORTED : MOE_ERR_SYSTEM;
	}
	e = cudaGraphInstantiate(&x, g, 0);
	cudaGraphDestroy(g);
	if (e != cudaSuccess) {
		fprintf(stderr, "moebench: cudaGraphInstantiate failed: %s\n", cudaGetErrorString(e));
		return MOE_ERR_SYSTEM;
	}
	*graph = (void *)x;
	return MOE_OK;
}

int cuda_replay(struct moe_dev *d, void *graph)
{
	CU(cudaGraphLaunch((cudaGraphExec_t)graph, d->stream));
	return MOE_OK;
}

void cuda_graph_free(struct moe_dev *d, void *graph)
{
	(void)d;
	if (graph)
		cudaGraphExecDestroy((cudaGraphExec_t)graph);
}
