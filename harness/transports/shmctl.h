/* The host control plane the transports share, a room of its own (control.c; control_cuda.c opens it for
 * the CUDA transports): futex barriers and the count/displacement matrices live in the launcher's
 * segment; how bytes move is each transport's (struct moe_shm_data). */
#ifndef MOE_SHMCTL_H
#define MOE_SHMCTL_H

#include "status.h"
#include "transport.h"

struct moe_comm;

/* How one transport moves bytes between symmetric buffers. */
struct moe_shm_data {
	/* copy n bytes (either side may be a peer's symmetric memory); may be asynchronous until settle */
	int (*copy)(struct moe_comm *c, void *dst, const void *src, size_t n);
	/* dst[i] += src[i], fp32, n values (src may be a peer's) */
	int (*accumulate)(struct moe_comm *c, float *dst, const float *src, size_t n);
	/* complete this rank's outstanding device work and copies (before a barrier publishes them) */
	int (*settle)(struct moe_comm *c);
	/* one-sided read from a helper thread, complete at the next fence */
	int (*read)(struct moe_comm *c, void *dst, const void *src, size_t n);
	int (*fence)(struct moe_comm *c);
};

struct shm_ctl;

struct moe_comm {
	struct moe_comm_info info;
	struct shm_ctl *ctl;
	int64_t *mat_a, *mat_b; /* [src * nranks + dst] */
	char **base;            /* each rank's symmetric heap, as this process addresses it */
	size_t used;
	int members[2][MOE_MAX_RANKS];
	int nmem[2], me[2];
	const struct moe_shm_data *data;
	void *impl; /* the transport's own state */
};

/* control_cuda.c: a new communicator on the control plane for the CUDA transports (ipc, nccl): checks that the backend
 * is cuda, allocates impl_bytes of transport state (whose first member is a struct moe_cuda_link, which
 * is filled in) and makes the backend's GPU current. *out is set even on failure, for fini. */
struct moe_cuda_link {
	struct moe_dev *dev;
	void *stream; /* the backend's cudaStream_t */
	int gpu;
};
int moe_shmc_cuda_open(struct moe_comm **out, const struct moe_comm_info *info, const char *who, size_t impl_bytes,
		       const struct moe_shm_data *data);

/* control.c: the control plane over info->shm; base[] is left for the caller to fill. */
int moe_shmc_setup(struct moe_comm *c, const struct moe_comm_info *info);
void *moe_shmc_alloc(struct moe_comm *c, size_t bytes);
int moe_shmc_barrier(struct moe_comm *c, enum moe_group g);
int moe_shmc_exchange(struct moe_comm *c, enum moe_group g, const int64_t *send, int64_t *recv);
int moe_shmc_alltoallv(struct moe_comm *c, enum moe_group g, const void *sendbuf, const size_t *scounts,
		       const size_t *sdispls, void *recvbuf, const size_t *rcounts, const size_t *rdispls);
int moe_shmc_allgatherv(struct moe_comm *c, enum moe_group g, const void *sendbuf, size_t sbytes, void *recvbuf,
			const size_t *rcounts, const size_t *rdispls);
int moe_shmc_bcast(struct moe_comm *c, enum moe_group g, void *buf, size_t bytes, int root);
int moe_shmc_reduce_scatterv_f32(struct moe_comm *c, enum moe_group g, const float *sendbuf, const size_t *counts,
				 const size_t *displs, float *recvbuf);
int moe_shmc_read_peer(struct moe_comm *c, int peer, void *dst, const void *mine, size_t bytes);
int moe_shmc_read_fence(struct moe_comm *c);
/* base[peer] at the offset of `mine` in this rank's heap. */
void *moe_shmc_peer_ptr(struct moe_comm *c, int peer, const void *mine);

/* The members of a transport's ops that the control plane implements whole: shm and ipc differ only in
 * init, fini and how data moves (struct moe_shm_data). */
#define MOE_SHMC_OPS                                                                                        \
	.alloc = moe_shmc_alloc, .barrier = moe_shmc_barrier, .exchange = moe_shmc_exchange,                 \
	.alltoallv = moe_shmc_alltoallv, .allgatherv = moe_shmc_allgatherv, .bcast = moe_shmc_bcast,        \
	.reduce_scatterv_f32 = moe_shmc_reduce_scatterv_f32, .read_peer = moe_shmc_read_peer,               \
	.read_fence = moe_shmc_read_fence, .peer_ptr = moe_shmc_peer_ptr

#endif
