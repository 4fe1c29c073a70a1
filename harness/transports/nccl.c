/* nccl transport: one GPU per rank. Variable all-to-all, all-gather(v) and the deterministic
 * reduce-scatter are grouped ncclSend/ncclRecv on the backend's stream; broadcast is ncclBroadcast;
 * the TP communicator is split from the world. Host barriers and count exchange use the host control plane
 * (control.c). */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_iface.h"
#include "boot.h"
#include "moe.h"
#include "cudacheck.h"
#include "shmctl.h"

struct nccl_impl {
	struct moe_cuda_link link; /* first: moe_shmc_cuda_open fills it */
	ncclComm_t comm[2];        /* world, TP */
	float *tmp;
	size_t tmp_cap;
	void **allocs;
	int nallocs;
};

#define NC(call)                                                                                          \
	do {                                                                                              \
		ncclResult_t r_ = (call);                                                                 \
		if (r_ != ncclSuccess) {                                                                  \
			moe_err("%s failed: %s (%s:%d)", #call, ncclGetErrorString(r_), __FILE__, __LINE__); \
			return MOE_ERR_SYSTEM;                                                            \
		}                                                                                         \
	} while (0)

static int nccl_copy(struct moe_comm *c, void *dst, const void *src, size_t n)
{
	(void)c;
	(void)dst;
	(void)src;
	(void)n;
	return MOE_ERR_UNSUPPORTED; /* nccl moves data through its own calls below */
}

static int nccl_accumulate(struct moe_comm *c, float *dst, const float *src, size_t n)
{
	struct nccl_impl *im = c->impl;
	return moe_cuda_accumulate_f32(im->link.dev, dst, src, (int64_t)n);
}

static int nccl_settle(struct moe_comm *c)
{
	struct nccl_impl *im = c->impl;
	MOE_CU(cudaStreamSynchronize((cudaStream_t)im->link.stream));
	return MOE_OK;
}

static const struct moe_shm_data nccl_data = {nccl_copy, nccl_accumulate, nccl_settle, nccl_copy, nccl_settle};

static int nccl_init(struct moe_comm **out, const struct moe_comm_info *info)
{
	MOE_CHECK(moe_shmc_cuda_open(out, info, "nccl", sizeof(struct nccl_impl), &nccl_data));
	struct nccl_impl *im = (*out)->impl;
	ncclUniqueId *ids = calloc((size_t)info->nranks, sizeof(*ids));
	if (!ids)
		return MOE_ERR_NOMEM;
	ncclUniqueId id;
	memset(&id, 0, sizeof(id));
	if (info->rank == 0)
		NC(ncclGetUniqueId(&id));
	if (moe_boot_allgather(info->boot_fd, &id, sizeof(id), ids, info->nranks)) {
		free(ids);
		moe_err("nccl transport: exchanging the unique id through the launcher failed");
		return MOE_ERR_SYSTEM;
	}
	id = ids[0];
	free(ids);
	NC(ncclCommInitRank(&im->comm[MOE_GROUP_WORLD], info->nranks, id, info->rank));
	NC(ncclCommSplit(im->comm[MOE_GROUP_WORLD], info->rank / info->tp, info->rank % info->tp, &im->comm[MOE_GROUP_TP],
			 NULL));
	return MOE_OK;
}

static void nccl_fini(struct moe_comm *c)
{
	if (!c)
		return;
	struct nccl_impl *im = c->impl;
	if (im) {
		cudaStreamSynchronize((cudaStream_t)im->link.stream);
		for (int g = 1; g >= 0; g--)
			if (im->comm[g])
				ncclCommDestroy(im->comm[g]);
		for (int i = 0; i < im->nallocs; i++)
			cudaFree(im->allocs[i]);
		cudaFree(im->tmp);
		free(im->allocs);
		free(im);
	}
	free(c->base);
	free(c);
}

static void *nccl_alloc(struct moe_comm *c, size_t bytes)
{
	struct nccl_impl *im = c->impl;
	void *p = NULL;
	void **n = realloc(im->allocs, (size_t)(im->nallocs + 1) * sizeof(void *));
	if (!n || cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess)
		return NULL;
	im->allocs = n;
	im->allocs[im->nallocs++] = p;
	return p;
}

static int nccl_alltoallv(struct moe_comm *c, enum moe_group g, const void *sendbuf, const size_t *scounts,
			  const size_t *sdispls, void *recvbuf, const size_t *rcounts, const size_t *rdispls)
{
	struct nccl_impl *im = c->impl;
	NC(ncclGroupStart());
	for (int m = 0; m < c->nmem[g]; m++) {
		if (scounts[m])
			NC(ncclSend((const char *)sendbuf + sdispls[m], scounts[m], ncclUint8, m, im->comm[g], (cudaStream_t)im->link.stream));
		if (rcounts[m])
			NC(ncclRecv((char *)recvbuf + rdispls[m], rcounts[m], ncclUint8, m, im->comm[g], (cudaStream_t)im->link.stream));
	}
	NC(ncclGroupEnd());
	return MOE_OK;
}

static int nccl_allgatherv(struct moe_comm *c, enum moe_group g, const void *sendbuf, size_t sbytes, void *recvbuf,
			   const size_t *rcounts, const size_t *rdispls)
{
	struct nccl_impl *im = c->impl;
	NC(ncclGroupStart());
	for (int m = 0; m < c->nmem[g]; m++) {
		if (sbytes)
			NC(ncclSend(sendbuf, sbytes, ncclUint8, m, im->comm[g], (cudaStream_t)im->link.stream));
		if (rcounts[m])
			NC(ncclRecv((char *)recvbuf + rdispls[m], rcounts[m], ncclUint8, m, im->comm[g], (cudaStream_t)im->link.stream));
	}
	NC(ncclGroupEnd());
	return MOE_OK;
}

static int nccl_bcast(struct moe_comm *c, enum moe_group g, void *buf, size_t bytes, int root)
{
	struct nccl_impl *im = c->impl;
	if (bytes)
		NC(ncclBroadcast(buf, buf, bytes, ncclUint8, root, im->comm[g], (cudaStream_t)im->link.stream));
	return MOE_OK;
}

/* Every member's block for me arrives in tmp, then is summed in member order: deterministic, unlike
 * ncclReduceScatter, and variable in size. */
static int nccl_reduce_scatterv_f32(struct moe_comm *c, enum moe_group g, const float *sendbuf, const size_t *counts,
				    const size_t *displs, float *recvbuf)
{
	struct nccl_impl *im = c->impl;
	int n = c->nmem[g], me = c->me[g];
	size_t cnt = counts[me], need = (size_t)n * cnt * sizeof(float);
	if (need > im->tmp_cap) {
		cudaFree(im->tmp);
		im->tmp = NULL;
		MOE_CU(cudaMalloc((void **)&im->tmp, need));
		im->tmp_cap = need;
	}
	NC(ncclGroupStart());
	for (int m = 0; m < n; m++) {
		if (counts[m])
			NC(ncclSend(sendbuf + displs[m], counts[m], ncclFloat32, m, im->comm[g], (cudaStream_t)im->link.stream));
		if (cnt)
			NC(ncclRecv(im->tmp + (size_t)m * cnt, cnt, ncclFloat32, m, im->comm[g], (cudaStream_t)im->link.stream));
	}
	NC(ncclGroupEnd());
	if (!cnt)
		return MOE_OK;
	MOE_CU(cudaMemcpyAsync(recvbuf, im->tmp, cnt * sizeof(float), cudaMemcpyDeviceToDevice, (cudaStream_t)im->link.stream));
	for (int m = 1; m < n; m++)
		MOE_CHECK(moe_cuda_accumulate_f32(im->link.dev, recvbuf, im->tmp + (size_t)m * cnt, (int64_t)cnt));
	return MOE_OK;
}

static int nccl_read_peer(struct moe_comm *c, int peer, void *dst, const void *mine, size_t bytes)
{
	(void)c;
	(void)peer;
	(void)dst;
	(void)mine;
	(void)bytes;
	moe_err("nccl transport: one-sided reads are not supported (dwdp needs ipc or shm)");
	return MOE_ERR_UNSUPPORTED;
}

const struct moe_transport_ops moe_transport_nccl = {
	.abi = MOE_TRANSPORT_ABI,
	.name = "nccl",
	.init = nccl_init,
	.fini = nccl_fini,
	.alloc = nccl_alloc,
	.barrier = moe_shmc_barrier,
	.exchange = moe_shmc_exchange,
	.alltoallv = nccl_alltoallv,
	.allgatherv = nccl_allgatherv,
	.bcast = nccl_bcast,
	.reduce_scatterv_f32 = nccl_reduce_scatterv_f32,
	.read_peer = nccl_read_peer,
	.read_fence = moe_shmc_read_fence,
};
