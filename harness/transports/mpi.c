/* mpi transport: the host backend across nodes under mpirun or srun. Collectives are MPI's; the
 * reduce-scatter gathers the blocks and sums them in member order itself (MPI_Reduce_scatter promises
 * no order). One-sided reads go through an MPI-3 shared-memory window per node (MPI_Win_allocate_shared,
 * MPI_Win_shared_query): dwdp groups lie within a node by rule, and a load from a mapped window needs no
 * progress from the target, unlike MPI_Get over TCP (Open MPI 4.1's ucx one-sided component crashed here
 * in MPI_Win_free after reads from a helper thread; pt2pt refuses MPI_THREAD_MULTIPLE). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "boot.h"
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
	MPI_Comm node;      /* the case's ranks on this node */
	MPI_Win win;        /* the heaps of this node's ranks, shared */
	char **peer_heap;   /* per case rank: its heap mapped here, NULL on other nodes */
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

/* An MPI call of the data path: a hang report tells the rank waiting in it from the rank it waits for. */
#define MPI_COLL(call)                                                                   \
	do {                                                                             \
		__atomic_store_n(&moe_mpi_case.in_collective, 1, __ATOMIC_RELAXED);      \
		int ce_ = (call);                                                        \
		__atomic_store_n(&moe_mpi_case.in_collective, 0, __ATOMIC_RELAXED);      \
		MPI_OK(ce_);                                                             \
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

/* Symmetric allocation needs one heap size everywhere; asked through the bootstrap channel, the same path
 * (an MPI_Allgather served by world.c) that carries nccl's unique id under an external launch. */
static int heap_agrees(const struct moe_comm_info *info, uint64_t mine)
{
	uint64_t *heaps = moe_xcalloc((size_t)info->nranks, sizeof(uint64_t));
	int rc = MOE_OK;
	if (moe_boot_allgather(info->boot_fd, &mine, sizeof(mine), heaps, info->nranks)) {
		moe_err("transport mpi: the bootstrap all-gather failed");
		rc = MOE_ERR_SYSTEM;
	}
	for (int r = 0; rc == MOE_OK && r < info->nranks; r++)
		if (heaps[r] != mine) {
			moe_err("transport mpi: rank %d sized its symmetric heap %llu bytes, this rank %llu", r,
				(unsigned long long)heaps[r], (unsigned long long)mine);
			rc = MOE_ERR_SYSTEM;
		}
	free(heaps);
	return rc;
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
	if (info->boot_fd >= 0) /* moe_a2a_bench has no launcher channel */
		MOE_CHECK(heap_agrees(info, c->heap_bytes));
	c->peer_heap = moe_xcalloc((size_t)info->nranks, sizeof(char *));
	MPI_OK(MPI_Comm_split_type(moe_mpi_case.comm, MPI_COMM_TYPE_SHARED, info->rank, MPI_INFO_NULL, &c->node));
	MPI_Info hint;
	MPI_Info_create(&hint);
	MPI_Info_set(hint, "alloc_shared_noncontig", "true");
	int e = MPI_Win_allocate_shared((MPI_Aint)c->heap_bytes + 64, 1, hint, c->node, &c->heap, &c->win);
	MPI_Info_free(&hint);
	MPI_OK(e);
	int nn = 0;
	MPI_OK(MPI_Comm_size(c->node, &nn));
	int *ranks = moe_xcalloc((size_t)nn, sizeof(int));
	MPI_OK(MPI_Allgather(&info->rank, 1, MPI_INT, ranks, 1, MPI_INT, c->node));
	for (int i = 0; i < nn; i++) {
		MPI_Aint sz;
		int du;
		MPI_OK(MPI_Win_shared_query(c->win, i, &sz, &du, &c->peer_heap[ranks[i]]));
	}
	free(ranks);
	return MOE_OK;
}

static void mpi_fini(struct moe_comm *c)
{
	if (!c)
		return;
	if (c->win)
		MPI_Win_free(&c->win); /* frees the heap too */
	if (c->node)
		MPI_Comm_free(&c->node);
	free(c->peer_heap);
	for (int g = 0; g < 2; g++) {
		if (c->comm[g] && c->comm[g] != MPI_COMM_NULL)
			MPI_Comm_free(&c->comm[g]);
		free(c->members[g]);
	}
	free(c->ci);
	free(c->di);
	free(c->ci2);
	free(c->di2);
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
	MPI_COLL(MPI_Barrier(c->comm[g]));
	return MOE_OK;
}

static int mpi_exchange(struct moe_comm *c, enum moe_group g, const int64_t *send, int64_t *recv)
{
	MPI_COLL(MPI_Alltoall(send, 1, MPI_INT64_T, recv, 1, MPI_INT64_T, c->comm[g]));
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
	MPI_COLL(MPI_Alltoallv(sendbuf, c->ci, c->di, MPI_BYTE, recvbuf, c->ci2, c->di2, MPI_BYTE, c->comm[g]));
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
	MPI_COLL(MPI_Allgatherv(sendbuf, (int)sbytes, MPI_BYTE, recvbuf, c->ci2, c->di2, MPI_BYTE, c->comm[g]));
	return MOE_OK;
}

static int mpi_bcast(struct moe_comm *c, enum moe_group g, void *buf, size_t bytes, int root)
{
	if (bytes > INT_MAX)
		return MOE_ERR_UNSUPPORTED;
	if (c->me[g] == root)
		for (int m = 0; m < c->nmem[g]; m++)
			tally(c, g, m, bytes);
	MPI_COLL(MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, c->comm[g]));
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
	__atomic_store_n(&moe_mpi_case.in_collective, 1, __ATOMIC_RELAXED);
	if (rc == MOE_OK &&
	    MPI_Alltoallv(sendbuf, c->ci, c->di, MPI_BYTE, blocks, c->ci2, c->di2, MPI_BYTE, c->comm[g]) != MPI_SUCCESS)
		rc = MOE_ERR_SYSTEM;
	__atomic_store_n(&moe_mpi_case.in_collective, 0, __ATOMIC_RELAXED);
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
	if (peer < 0 || peer >= c->nmem[MOE_GROUP_WORLD] || !c->peer_heap[peer]) {
		moe_err("transport mpi: rank %d is not on this node: one-sided reads stay within a node", peer);
		return MOE_ERR_UNSUPPORTED;
	}
	tally(c, MOE_GROUP_WORLD, peer, bytes);
	memcpy(dst, c->peer_heap[peer] + (p - c->heap), bytes);
	return MOE_OK;
}

/* Reads are plain loads from the mapped window: they have landed when read_peer returns. */
static int mpi_read_fence(struct moe_comm *c)
{
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
