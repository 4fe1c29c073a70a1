/* shm transport: ranks on one host exchange through the launcher's shared segment (one copy per byte,
 * receivers pull from the sender's symmetric buffer), with futex barriers. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "moe.h"
#include "status.h"
#include "transport.h"

struct shm_barrier {
	_Atomic uint32_t count;
	_Atomic uint32_t gen;
	char pad[56];
};

struct shm_ctl {
	uint32_t nranks, dp;
	struct shm_barrier bar[]; /* [0] world, [1 + d] TP group d; then two nranks x nranks int64 matrices */
};

struct moe_comm {
	struct moe_comm_info info;
	struct shm_ctl *ctl;
	int64_t *mat_a, *mat_b; /* [src * nranks + dst] */
	char *heap;             /* nranks regions of heap_per_rank bytes */
	size_t used;
	int members[2][MOE_MAX_RANKS];
	int nmem[2], me[2];
};

static size_t ctl_head(int nranks, int dp)
{
	(void)nranks;
	return (sizeof(struct shm_ctl) + (size_t)(1 + dp) * sizeof(struct shm_barrier) + 63) & ~(size_t)63;
}

size_t moe_shm_ctl_bytes(int nranks, int dp)
{
	size_t b = ctl_head(nranks, dp) + 2 * (size_t)nranks * (size_t)nranks * sizeof(int64_t);
	return (b + 4095) & ~(size_t)4095;
}

static int shm_init(struct moe_comm **out, const struct moe_comm_info *info)
{
	if (info->nranks > MOE_MAX_RANKS)
		return MOE_ERR_UNSUPPORTED;
	size_t need = moe_shm_ctl_bytes(info->nranks, info->dp) + (size_t)info->nranks * info->heap_per_rank;
	if (!info->shm || info->shm_bytes < need) {
		moe_err("shm transport: shared segment of %zu bytes, need %zu", info->shm_bytes, need);
		return MOE_ERR_SYSTEM;
	}
	struct moe_comm *c = calloc(1, sizeof(*c));
	if (!c)
		return MOE_ERR_NOMEM;
	c->info = *info;
	c->ctl = info->shm;
	char *base = info->shm;
	c->mat_a = (int64_t *)(base + ctl_head(info->nranks, info->dp));
	c->mat_b = c->mat_a + (size_t)info->nranks * info->nranks;
	c->heap = base + moe_shm_ctl_bytes(info->nranks, info->dp);
	for (int g = 0; g < 2; g++)
		c->nmem[g] = moe_group_members(info->rank, info->dp, info->tp, (enum moe_group)g, c->members[g], &c->me[g]);
	*out = c;
	return MOE_OK;
}

static void shm_fini(struct moe_comm *c)
{
	free(c);
}

static void *shm_alloc(struct moe_comm *c, size_t bytes)
{
	size_t sz = (bytes + 255) & ~(size_t)255;
	if (c->used + sz > c->info.heap_per_rank) {
		moe_err("shm transport: symmetric heap exhausted (%zu + %zu > %zu bytes)", c->used, sz,
			c->info.heap_per_rank);
		return NULL;
	}
	void *p = c->heap + (size_t)c->info.rank * c->info.heap_per_rank + c->used;
	c->used += sz;
	return p;
}

/* The same symmetric buffer in peer's region. */
static const char *peer_ptr(struct moe_comm *c, int peer, const void *mine)
{
	size_t off = (size_t)((const char *)mine - (c->heap + (size_t)c->info.rank * c->info.heap_per_rank));
	return c->heap + (size_t)peer * c->info.heap_per_rank + off;
}

static int is_sym(struct moe_comm *c, const void *p)
{
	const char *mine = c->heap + (size_t)c->info.rank * c->info.heap_per_rank;
	return (const char *)p >= mine && (const char *)p < mine + c->info.heap_per_rank;
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
	struct timespec ts = {0, 50 * 1000 * 1000};
	syscall(SYS_futex, addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static int shm_barrier(struct moe_comm *c, enum moe_group g)
{
	int n = c->nmem[g];
	if (n == 1)
		return MOE_OK;
	struct shm_barrier *b = &c->ctl->bar[g == MOE_GROUP_WORLD ? 0 : 1 + c->info.rank / c->info.tp];
	uint32_t gen = atomic_load(&b->gen);
	if (atomic_fetch_add(&b->count, 1) == (uint32_t)n - 1) {
		atomic_store(&b->count, 0);
		atomic_fetch_add(&b->gen, 1);
		futex_wake(&b->gen);
		return MOE_OK;
	}
	/* a short spin catches partners on other cores; then sleep so oversubscribed cores make progress */
	for (int i = 0; i < 2000; i++)
		if (atomic_load(&b->gen) != gen)
			return MOE_OK;
	while (atomic_load(&b->gen) == gen)
		futex_wait(&b->gen, gen);
	return MOE_OK;
}

static int shm_exchange(struct moe_comm *c, enum moe_group g, const int64_t *send, int64_t *recv)
{
	int n = c->nmem[g], R = c->info.nranks, me = c->info.rank;
	for (int i = 0; i < n; i++)
		c->mat_a[(size_t)me * R + c->members[g][i]] = send[i];
	MOE_CHECK(shm_barrier(c, g));
	for (int i = 0; i < n; i++)
		recv[i] = c->mat_a[(size_t)c->members[g][i] * R + me];
	return shm_barrier(c, g); /* the matrix is reused by the next call */
}

static int shm_alltoallv(struct moe_comm *c, enum moe_group g, const void *sendbuf, const size_t *scounts,
			 const size_t *sdispls, void *recvbuf, const size_t *rcounts, const size_t *rdispls)
{
	int n = c->nmem[g], R = c->info.nranks, me = c->info.rank;
	if (!is_sym(c, sendbuf)) {
		moe_err("shm alltoallv: send buffer is not from the transport's alloc()");
		return MOE_ERR_SYSTEM;
	}
	for (int i = 0; i < n; i++) {
		c->mat_a[(size_t)me * R + c->members[g][i]] = (int64_t)scounts[i];
		c->mat_b[(size_t)me * R + c->members[g][i]] = (int64_t)sdispls[i];
	}
	MOE_CHECK(shm_barrier(c, g));
	int rc = MOE_OK;
	for (int i = 0; i < n; i++) {
		int p = c->members[g][(c->me[g] + i) % n]; /* staggered so peers do not all read one sender */
		int pi = (c->me[g] + i) % n;
		size_t cnt = (size_t)c->mat_a[(size_t)p * R + me];
		if (cnt != rcounts[pi]) {
			moe_err("shm alltoallv: rank %d sends %zu bytes, %zu expected", p, cnt, rcounts[pi]);
			rc = MOE_ERR_SYSTEM;
			continue;
		}
		if (cnt)
			memcpy((char *)recvbuf + rdispls[pi], peer_ptr(c, p, sendbuf) + c->mat_b[(size_t)p * R + me], cnt);
	}
	MOE_CHECK(shm_barrier(c, g));
	return rc;
}

static int shm_allgatherv(struct moe_comm *c, enum moe_group g, const void *sendbuf, size_t sbytes, void *recvbuf,
			  const size_t *rcounts, const size_t *rdispls)
{
	int n = c->nmem[g], R = c->info.nranks, me = c->info.rank;
	if (!is_sym(c, sendbuf)) {
		moe_err("shm allgatherv: send buffer is not from the transport's alloc()");
		return MOE_ERR_SYSTEM;
	}
	c->mat_a[(size_t)me * R + me] = (int64_t)sbytes;
	MOE_CHECK(shm_barrier(c, g));
	int rc = MOE_OK;
	for (int i = 0; i < n; i++) {
		int pi = (c->me[g] + i) % n, p = c->members[g][pi];
		size_t cnt = (size_t)c->mat_a[(size_t)p * R + p];
		if (cnt != rcounts[pi]) {
			moe_err("shm allgatherv: rank %d contributes %zu bytes, %zu expected", p, cnt, rcounts[pi]);
			rc = MOE_ERR_SYSTEM;
			continue;
		}
		if (cnt)
			memcpy((char *)recvbuf + rdispls[pi], peer_ptr(c, p, sendbuf), cnt);
	}
	MOE_CHECK(shm_barrier(c, g));
	return rc;
}

static int shm_bcast(struct moe_comm *c, enum moe_group g, void *buf, size_t bytes, int root)
{
	if (!is_sym(c, buf)) {
		moe_err("shm bcast: buffer is not from the transport's alloc()");
		return MOE_ERR_SYSTEM;
	}
	MOE_CHECK(shm_barrier(c, g));
	if (c->me[g] != root && bytes)
		memcpy(buf, peer_ptr(c, c->members[g][root], buf), bytes);
	return shm_barrier(c, g);
}

static int shm_reduce_scatterv_f32(struct moe_comm *c, enum moe_group g, const float *sendbuf, const size_t *counts,
				   const size_t *displs, float *recvbuf)
{
	int n = c->nmem[g], me = c->me[g];
	if (!is_sym(c, sendbuf)) {
		moe_err("shm reduce_scatterv: send buffer is not from the transport's alloc()");
		return MOE_ERR_SYSTEM;
	}
	MOE_CHECK(shm_barrier(c, g));
	size_t cnt = counts[me];
	for (int m = 0; m < n; m++) {
		const float *src = (const float *)peer_ptr(c, c->members[g][m], sendbuf) + displs[me];
		if (m == 0)
			memcpy(recvbuf, src, cnt * sizeof(float));
		else
			for (size_t i = 0; i < cnt; i++)
				recvbuf[i] += src[i];
	}
	return shm_barrier(c, g);
}

static int shm_read_peer(struct moe_comm *c, int peer, void *dst, const void *mine, size_t bytes)
{
	if (!is_sym(c, mine) || peer < 0 || peer >= c->info.nranks) {
		moe_err("shm read_peer: not a symmetric buffer, or no rank %d", peer);
		return MOE_ERR_SYSTEM;
	}
	memcpy(dst, peer_ptr(c, peer, mine), bytes);
	return MOE_OK;
}

const struct moe_transport_ops moe_transport_shm = {
	.abi = MOE_TRANSPORT_ABI,
	.name = "shm",
	.init = shm_init,
	.fini = shm_fini,
	.alloc = shm_alloc,
	.barrier = shm_barrier,
	.exchange = shm_exchange,
	.alltoallv = shm_alltoallv,
	.allgatherv = shm_allgatherv,
	.bcast = shm_bcast,
	.reduce_scatterv_f32 = shm_reduce_scatterv_f32,
	.read_peer = shm_read_peer,
};
