/* ipc transport: each rank's symmetric heap is device memory exported with CUDA IPC and opened by every
 * peer (ranks may share a GPU or sit on NVLink peers); data moves with device-to-device copies on the
 * backend's stream, reading peers' buffers directly; barriers and counts use the host control plane (control.c). */
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_iface.h"
#include "boot.h"
#include "moe.h"
#include "cudacheck.h"
#include "shmctl.h"

struct ipc_impl {
	struct moe_cuda_link link; /* first: moe_shmc_cuda_open fills it */
	cudaStream_t read_stream;  /* one-sided reads from the dwdp helper thread */
	char *heap;
};

static int ipc_copy(struct moe_comm *c, void *dst, const void *src, size_t n)
{
	struct ipc_impl *im = c->impl;
	MOE_CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, (cudaStream_t)im->link.stream));
	return MOE_OK;
}

static int ipc_accumulate(struct moe_comm *c, float *dst, const float *src, size_t n)
{
	struct ipc_impl *im = c->impl;
	return moe_cuda_accumulate_f32(im->link.dev, dst, src, (int64_t)n);
}

static int ipc_settle(struct moe_comm *c)
{
	struct ipc_impl *im = c->impl;
	MOE_CU(cudaStreamSynchronize((cudaStream_t)im->link.stream));
	return MOE_OK;
}

static int ipc_read(struct moe_comm *c, void *dst, const void *src, size_t n)
{
	struct ipc_impl *im = c->impl;
	MOE_CU(cudaSetDevice(im->link.gpu)); /* the calling thread may be new to CUDA */
	MOE_CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, im->read_stream));
	return MOE_OK;
}

static int ipc_fence(struct moe_comm *c)
{
	struct ipc_impl *im = c->impl;
	MOE_CU(cudaStreamSynchronize(im->read_stream));
	return MOE_OK;
}

static const struct moe_shm_data ipc_data = {ipc_copy, ipc_accumulate, ipc_settle, ipc_read, ipc_fence};

static int ipc_init(struct moe_comm **out, const struct moe_comm_info *info)
{
	MOE_CHECK(moe_shmc_cuda_open(out, info, "ipc", sizeof(struct ipc_impl), &ipc_data));
	struct moe_comm *c = *out;
	struct ipc_impl *im = c->impl;
	cudaIpcMemHandle_t *all = calloc((size_t)info->nranks, sizeof(*all));
	if (!all)
		return MOE_ERR_NOMEM;
	MOE_CU(cudaStreamCreateWithFlags(&im->read_stream, cudaStreamNonBlocking));
	MOE_CU(cudaMalloc((void **)&im->heap, info->heap_per_rank ? info->heap_per_rank : 256));
	cudaIpcMemHandle_t mine;
	MOE_CU(cudaIpcGetMemHandle(&mine, im->heap));
	if (moe_boot_allgather(info->boot_fd, &mine, sizeof(mine), all, info->nranks)) {
		moe_err("ipc transport: exchanging IPC handles through the launcher failed");
		free(all);
		return MOE_ERR_SYSTEM;
	}
	for (int r = 0; r < info->nranks; r++) {
		if (r == info->rank) {
			c->base[r] = im->heap;
			continue;
		}
		void *p;
		cudaError_t e = cudaIpcOpenMemHandle(&p, all[r], cudaIpcMemLazyEnablePeerAccess);
		if (e != cudaSuccess) {
			moe_err("ipc transport: opening rank %d's heap: %s", r, cudaGetErrorString(e));
			free(all);
			return MOE_ERR_SYSTEM;
		}
		c->base[r] = p;
	}
	free(all);
	/* no rank may free or reuse its heap before every peer has opened it */
	return moe_shmc_barrier(c, MOE_GROUP_WORLD);
}

static void ipc_fini(struct moe_comm *c)
{
	struct ipc_impl *im = c ? c->impl : NULL;
	if (!c)
		return;
	if (im) {
		cudaStreamSynchronize((cudaStream_t)im->link.stream);
		moe_shmc_barrier(c, MOE_GROUP_WORLD); /* peers are done reading my heap */
		for (int r = 0; c->base && r < c->info.nranks; r++)
			if (r != c->info.rank && c->base[r])
				cudaIpcCloseMemHandle(c->base[r]);
		cudaFree(im->heap);
		cudaStreamDestroy(im->read_stream);
		free(im);
	}
	free(c->base);
	free(c);
}

const struct moe_transport_ops moe_transport_ipc = {
	.abi = MOE_TRANSPORT_ABI,
	.name = "ipc",
	.init = ipc_init,
	.fini = ipc_fini,
	MOE_SHMC_OPS,
};
