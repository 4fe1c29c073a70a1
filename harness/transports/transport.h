/* Transport interface: how bytes move between ranks. Knows nothing of experts or tokens. */
#ifndef MOE_TRANSPORT_H
#define MOE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

#define MOE_TRANSPORT_ABI 1

enum moe_group { MOE_GROUP_WORLD, MOE_GROUP_TP };

/* What every transport is given at init. */
struct moe_comm_info {
	int rank, nranks, dp, tp;
	int boot_fd;          /* socket to the launcher (allgather of handles, ids) */
	void *shm;            /* the launcher's shared segment for this case, after the status area */
	size_t shm_bytes;
	size_t heap_per_rank; /* bytes of symmetric heap each rank may allocate */
	const struct moe_backend_ops *be;
	struct moe_dev *dev;
};

struct moe_comm;

struct moe_transport_ops {
	int abi;
	const char *name;
	int (*init)(struct moe_comm **c, const struct moe_comm_info *info);
	void (*fini)(struct moe_comm *c);
	/* Symmetric allocation: every rank calls it with the same sizes in the same order; a buffer
	 * from here may be the send side of the collectives below and read by peers. */
	void *(*alloc)(struct moe_comm *c, size_t bytes);
	int (*barrier)(struct moe_comm *c, enum moe_group g);
	/* One int64 to and from each member of the group, in member order. Host memory. */
	int (*exchange)(struct moe_comm *c, enum moe_group g, const int64_t *send, int64_t *recv);
	/* Variable all-to-all in bytes; sendbuf from alloc(). Counts and displacements are per member. */
	int (*alltoallv)(struct moe_comm *c, enum moe_group g, const void *sendbuf, const size_t *scounts,
			 const size_t *sdispls, void *recvbuf, const size_t *rcounts, const size_t *rdispls);
	/* Variable all-gather; sendbuf from alloc(). */
	int (*allgatherv)(struct moe_comm *c, enum moe_group g, const void *sendbuf, size_t sbytes, void *recvbuf,
			  const size_t *rcounts, const size_t *rdispls);
	/* Broadcast from member root; buf from alloc(). */
	int (*bcast)(struct moe_comm *c, enum moe_group g, void *buf, size_t bytes, int root);
	/* Reduce-scatter of fp32 values: sendbuf (from alloc()) holds one block per member, counts[m] values at
	 * displs[m]; member m receives the sum of every member's block m, summed in member order (block of
	 * member 0, then + member 1, ...): deterministic. recvbuf gets counts[me] values. */
	int (*reduce_scatterv_f32)(struct moe_comm *c, enum moe_group g, const float *sendbuf, const size_t *counts,
				   const size_t *displs, float *recvbuf);
	/* One-sided read of bytes from peer's copy of the symmetric buffer `mine` (at the same offset) into
	 * dst. Safe from a helper thread while the main thread uses the other calls. May complete only at
	 * the next read_fence. */
	int (*read_peer)(struct moe_comm *c, int peer, void *dst, const void *mine, size_t bytes);
	/* Wait until every read_peer issued so far has landed. */
	int (*read_fence)(struct moe_comm *c);
	/* Optional (NULL: peers' memory is not mapped here): peer's copy of the symmetric buffer `mine`, as an
	 * address this rank's backend can read and write (kernels store into it directly). */
	void *(*peer_ptr)(struct moe_comm *c, int peer, const void *mine);
};

#define MOE_TRANSPORT(name) extern const struct moe_transport_ops moe_transport_##name;
#include "transports.def"
#undef MOE_TRANSPORT

const struct moe_transport_ops *moe_transport_find(const char *name);

/* Members of group g as seen from rank: fills members (ascending world ranks), returns the count;
 * *me receives the caller's index among them. */
int moe_group_members(int rank, int dp, int tp, enum moe_group g, int *members, int *me);

#endif
