/* mpi transport: the host backend across nodes under mpirun or srun. Collectives are MPI's; the
 * reduce-scatter gathers the blocks and sums them in member order itself (MPI_Reduce_scatter promises
 * no order); one-sided reads are MPI_Get on a window over the symmetric heap (passive target). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "mpi_iface.h"
#include "transport.h"

struct moe_mpi_case moe_mpi_case = {.comm = MPI_COMM_NULL};

struct moe_comm {
	MPI_Comm comm[2];   /* world and this rank's TP group */
	int me[2], nmem[2];
	int *members[2];    /* case ranks of each group's members */
	char *heap;         /* symmetric heap: alloc() hands out its pieces in call order */
	size_t heap_bytes, used;
	MPI_Win win;
	int *ci, *di, *ci2, *di2; /* int counts and displacements for one call */
};

#define MPI_OK(call)                                                                                 \
	do {                                                                                           \
		int e_ = (call);                                                                       \
		if (e_ != MPI_SUCCESS) {                                                               \
			char s_[MPI_MAX_ERROR_STRING];                                                 \
			int l_ = 0;                                                                    \
			MPI_Error_string(e_, s_, &l_);                                                 \
			moe_err("%s failed: %s (%s:%d)", #call, s_, __FILE__, __LINE__);              \
			return MOE_ERR_SYSTEM;                                                         \
		}                                                                                      \
	} while (0)

/* Count bytes to member m of group g as intra- or inter-node wire bytes (dwdp reads from a helper thread). */
static void tally(struct moe_comm *c, enum moe_group g, int m, size_t bytes)
{
	if (m == c->me[g] || !bytes)
		return;
	int peer = c->members[g][m], self = c->members[g][c->me[g]];
	if (moe_mpi_case.node_of[peer] == moe_mpi_case.node_of[self])
		__atomic_fetch_add(&moe_mpi_case.wire_intra, (int64_t)bytes, __ATOMIC_RELAXED);
	else
		__atomic_fetch_add(&moe_mpi_case.wire_inter, (int64_t)bytes, __ATOMIC_RELAXED);
}

static int mpi_init(struct moe_comm **out, const struct moe_comm_info *info)
{
	int inited = 0;
	MPI_Initialized(&inited);
	if (!inited || moe_mpi_case.comm == MPI_COMM_NULL) {
		moe_err("transport mpi: no MPI world; it runs under mpirun or srun (moebench run started by them)");
		return MOE_ERR_UNSUPPORTED;
	}
	struct moe_comm *c = moe_xcalloc(1, sizeof(*c));
	*out = c;
	MPI_OK(MPI_Comm_dup(moe_mpi_case.comm, &c->comm[MOE_GROUP_WORLD]));
	MPI_OK(MPI_Comm_split(moe_mpi_case.comm, info->rank / info->tp, info->rank % info->tp, &c->comm[MOE_GROUP_TP]));
	for (int g = 0; g < 2; g++) {
		c->members[g] = moe_xcalloc((size_t)info->nranks, sizeof(int));
		c->nmem[g] = moe_group_members(info->rank, info->dp, info->tp, (enum moe_group)g, c->members[g], &c->me[g]);
	}
	c->ci = moe_xcalloc((size_t)info->nranks, sizeof(int));
	c->di = moe_xcalloc((size_t)info->nranks, sizeof(int));
	c->ci2 = moe_xcalloc((size_t)info->nranks, sizeof(int));
	c->di2 = moe_xcalloc((size_t)info->nranks, sizeof(int));
	c->heap_bytes = info->heap_per_rank;
	if (c->heap_bytes > (size_t)INT_MAX * 64) {
		moe_err("transport mpi: symmetric heap of %zu bytes is too large for an MPI window", c->heap_bytes);
		return MOE_ERR_UNSUPPORTED;
	}
	c->heap = aligned_alloc(64, (c->heap_bytes + 64) & ~(size_t)63);
	if (!c->heap)
		return MOE_ERR_NOMEM;
	/* every rank exposes its heap; reads are passive-target, so no rank has to take part in a peer's read */
	MPI_OK(MPI_Win_create(c->heap, (MPI_Aint)c->heap_bytes, 1, MPI_INFO_NULL, c->comm[MOE_GROUP_WORLD], &c->win));
	MPI_OK(MPI_Win_lock_all(MPI_MODE_NOCHECK, c->win));
	return MOE_OK;
}

static void mpi_fini(struct moe_comm *c)
{
	if (!c)
		return;
	if (c->win != MPI_WIN_NULL && c->win) {
		MPI_Win_unlock_all(c->win);
		MPI_Win_free(&c->win);
	}
	for (int g = 0; g < 2; g++) {
		if (c->comm[g] && c->comm[g] != MPI_COMM_NULL)
			MPI_Comm_free(&c->comm[g]);
		free(c->members[g]);
	}
	free(c->ci);
	free(c->di);
	free(c->ci2);
	free(c->di2);
	free(c->heap);
	free(c);
}

static void *mpi_alloc(struct moe_comm *c, size_t bytes)
{
	size_t at = (c->used + 63) & ~(size_t)63;
	if (at + bytes > c->heap_bytes) {
		moe_err("transport mpi: symmetric heap exhausted (%zu + %zu > %zu bytes)", at, bytes, c->heap_bytes);
		return NULL;
	}
	c->used = at + bytes;
	return c->heap + at;
}

static int mpi_barrier(struct moe_comm *c, enum moe_group g)
{
	MPI_OK(MPI_Barrier(c->comm[g]));
	return MOE_OK;
}

static int mpi_exchange(struct moe_comm *c, enum moe_group g, const int64_t *send, int64_t *recv)
{
	MPI_OK(MPI_Alltoall(send, 1, MPI_INT64_T, recv, 1, MPI_INT64_T, c->comm[g]));
	return MOE_OK;
}

/* size_t counts to MPI's ints; refuses what an int cannot say */
static int to_int(const size_t *v, int n, int *out)
{
	for (int i = 0; i < n; i++) {
		if (v[i] > INT_MAX) {
			moe_err("transport mpi: %zu bytes in one call to one member exceed MPI's int count", v[i]);
			return MOE_ERR_UNSUPPORTED;
		}
		out[i] = (int)v[i];
	}
	return MOE_OK;
}

static int mpi_alltoallv(struct moe_comm *c, enum moe_group g, const void *sendbuf, const size_t *scounts,
			 const size_t *sdispls, void *recvbuf, const size_t *rcounts, const size_t *rdispls)
{
	int n = c->nmem[g];
	MOE_CHECK(to_int(scounts, n, c->ci));
	MOE_CHECK(to_int(sdispls, n, c->di));
	MOE_CHECK(to_int(rcounts, n, c->ci2));
	MOE_CHECK(to_int(rdispls, n, c->di2));
	for (int m = 0; m < n; m++)
		tally(c, g, m, scounts[m]);
	MPI_OK(MPI_Alltoallv(sendbuf, c->ci, c->di, MPI_BYTE, recvbuf, c->ci2, c->di2, MPI_BYTE, c->comm[g]));
	return MOE_OK;
}

static int mpi_allgatherv(struct moe_comm *c, enum moe_group g, const void *sendbuf, size_t sbytes, void *recvbuf,
			  const size_t *rcounts, const size_t *rdispls)
{
	int n = c->nmem[g];
	MOE_CHECK(to_int(rcounts, n, c->ci2));
	MOE_CHECK(to_int(rdispls, n, c->di2));
	if (sbytes > INT_MAX)
		return MOE_ERR_UNSUPPORTED;
	for (int m = 0; m < n; m++)
		tally(c, g, m, sbytes);
	MPI_OK(MPI_Allgatherv(sendbuf, (int)sbytes, MPI_BYTE, recvbuf, c->ci2, c->di2, MPI_BYTE, c->comm[g]));
	return MOE_OK;
}

static int mpi_bcast(struct moe_comm *c, enum moe_group g, void *buf, size_t bytes, int root)
{
	if (bytes > INT_MAX)
		return MOE_ERR_UNSUPPORTED;
	if (c->me[g] == root)
		for (int m = 0; m < c->nmem[g]; m++)
			tally(c, g, m, bytes);
	MPI_OK(MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, c->comm[g]));
	return MOE_OK;
}

/* Every member's block for me, gathered by an all-to-all, then summed in member order: the same
 * roundings as the shm transport (copy of member 0's block, then += member 1, 2, ...). */
static int mpi_reduce_scatterv_f32(struct moe_comm *c, enum moe_group g, const float *sendbuf, const size_t *counts,
				   const size_t *displs, float *recvbuf)
{
	int n = c->nmem[g], me = c->me[g];
	size_t cnt = counts[me];
	float *blocks = malloc((size_t)n * cnt * sizeof(float) + sizeof(float));
	if (!blocks)
		return MOE_ERR_NOMEM;
	int rc = MOE_OK;
	for (int m = 0; m < n && rc == MOE_OK; m++) {
		size_t sb = counts[m] * sizeof(float), sd = displs[m] * sizeof(float), rb = cnt * sizeof(float);
		if (sb > INT_MAX || sd > INT_MAX || rb * (size_t)(m + 1) > INT_MAX)
			rc = MOE_ERR_UNSUPPORTED;
		c->ci[m] = (int)sb;
		c->di[m] = (int)sd;
		c->ci2[m] = (int)rb;
		c->di2[m] = (int)(rb * (size_t)m);
		tally(c, g, m, sb);
	}
	if (rc == MOE_OK &&
	    MPI_Alltoallv(sendbuf, c->ci, c->di, MPI_BYTE, blocks, c->ci2, c->di2, MPI_BYTE, c->comm[g]) != MPI_SUCCESS)
		rc = MOE_ERR_SYSTEM;
	if (rc == MOE_OK) {
		memcpy(recvbuf, blocks, cnt * sizeof(float));
		for (int m = 1; m < n; m++)
			for (size_t i = 0; i < cnt; i++)
				recvbuf[i] += blocks[(size_t)m * cnt + i];
	}
	free(blocks);
	if (rc != MOE_OK)
		moe_err("transport mpi: reduce-scatter of %zu values failed (status %d)", cnt, rc);
	return rc;
}

static int mpi_read_peer(struct moe_comm *c, int peer, void *dst, const void *mine, size_t bytes)
{
	const char *p = mine;
	if (p < c->heap || p + bytes > c->heap + c->heap_bytes) {
		moe_err("transport mpi: read_peer of a buffer outside the symmetric heap");
		return MOE_ERR_SYSTEM;
	}
	size_t off = (size_t)(p - c->heap);
	tally(c, MOE_GROUP_WORLD, peer, bytes);
	for (size_t done = 0; done < bytes;) {
		int k = (int)MOE_MIN(bytes - done, (size_t)1 << 30);
		MPI_OK(MPI_Get((char *)dst + done, k, MPI_BYTE, peer, (MPI_Aint)(off + done), k, MPI_BYTE, c->win));
		done += (size_t)k;
	}
	return MOE_OK;
}

static int mpi_read_fence(struct moe_comm *c)
{
	MPI_OK(MPI_Win_flush_all(c->win));
	return MOE_OK;
}

const struct moe_transport_ops moe_transport_mpi = {
	.abi = MOE_TRANSPORT_ABI,
	.name = "mpi",
	.init = mpi_init,
	.fini = mpi_fini,
	.alloc = mpi_alloc,
	.barrier = mpi_barrier,
	.exchange = mpi_exchange,
	.alltoallv = mpi_alltoallv,
	.allgatherv = mpi_allgatherv,
	.bcast = mpi_bcast,
	.reduce_scatterv_f32 = mpi_reduce_scatterv_f32,
	.read_peer = mpi_read_peer,
	.read_fence = mpi_read_fence,
};
