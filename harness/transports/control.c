/* The host control plane the transports share (shmctl.h): futex barriers, the count/displacement
 * matrices and the symmetric heaps live in the launcher's case segment; the collectives here move bytes
 * through a transport's struct moe_shm_data (memcpy for shm, device copies for ipc). */
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
#include "shmctl.h"
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

int moe_shmc_setup(struct moe_comm *c, const struct moe_comm_info *info)
{
	if (info->nranks > MOE_MAX_RANKS)
		return MOE_ERR_UNSUPPORTED;
	size_t need = moe_shm_ctl_bytes(info->nranks, info->dp);
	if (!info->shm || info->shm_bytes < need) {
		moe_err("shared segment of %zu bytes, the control plane needs %zu", info->shm_bytes, need);
		return MOE_ERR_SYSTEM;
	}
	c->info = *info;
	c->ctl = info->shm;
	c->mat_a = (int64_t *)((char *)info->shm + ctl_head(info->nranks, info->dp));
	c->mat_b = c->mat_a + (size_t)info->nranks * info->nranks;
	c->base = calloc((size_t)info->nranks, sizeof(char *));
	if (!c->base)
		return MOE_ERR_NOMEM;
	for (int g = 0; g < 2; g++)
		c->nmem[g] = moe_group_members(info->rank, info->dp, info->tp, (enum moe_group)g, c->members[g], &c->me[g]);
	return MOE_OK;
}

void *moe_shmc_alloc(struct moe_comm *c, size_t bytes)
{
	size_t sz = (bytes + 255) & ~(size_t)255;
	if (c->used + sz > c->info.heap_per_rank) {
		moe_err("%s transport: symmetric heap exhausted (%zu + %zu > %zu bytes)", c->info.nranks ? "symmetric" : "",
			c->used, sz, c->info.heap_per_rank);
		return NULL;
	}
	void *p = c->base[c->info.rank] + c->used;
	c->used += sz;
	return p;
}

/* The same symmetric buffer in peer's region. */
static const char *peer_ptr(struct moe_comm *c, int peer, const void *mine)
{
	return c->base[peer] + ((const char *)mine - c->base[c->info.rank]);
}

static int is_sym(struct moe_comm *c, const void *p)
{
	const char *mine = c->base[c->info.rank];
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

int moe_shmc_barrier(struct moe_comm *c, enum moe_group g)
{
	int n = c->nmem[g];
	MOE_CHECK(c->data->settle(c));
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

int moe_shmc_exchange(struct moe_comm *c, enum moe_group g, const int64_t *send, int64_t *recv)
{
	int n = c->nmem[g], R = c->info.nranks, me = c->info.rank;
	for (int i = 0; i < n; i++)
		c->mat_a[(size_t)me * R + c->members[g][i]] = send[i];
	MOE_CHECK(moe_shmc_barrier(c, g));
	for (int i = 0; i < n; i++)
		recv[i] = c->mat_a[(size_t)c->members[g][i] * R + me];
	return moe_shmc_barrier(c, g); /* the matrix is reused by the next call */
}

int moe_shmc_alltoallv(struct moe_comm *c, enum moe_group g, const void *sendbuf, const size_t *scounts,
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
	MOE_CHECK(moe_shmc_barrier(c, g));
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
			MOE_CHECK(c->data->copy(c, (char *)recvbuf + rdispls[pi], peer_ptr(c, p, sendbuf) + c->mat_b[(size_t)p * R + me],
						cnt));
	}
	MOE_CHECK(moe_shmc_barrier(c, g));
	return rc;
}

int moe_shmc_allgatherv(struct moe_comm *c, enum moe_group g, const void *sendbuf, size_t sbytes, void *recvbuf,
			  const size_t *rcounts, const size_t *rdispls)
{
	int n = c->nmem[g], R = c->info.nranks, me = c->info.rank;
	if (!is_sym(c, sendbuf)) {
		moe_err("shm allgatherv: send buffer is not from the transport's alloc()");
		return MOE_ERR_SYSTEM;
	}
	c->mat_a[(size_t)me * R + me] = (int64_t)sbytes;
	MOE_CHECK(moe_shmc_barrier(c, g));
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
			MOE_CHECK(c->data->copy(c, (char *)recvbuf + rdispls[pi], peer_ptr(c, p, sendbuf), cnt));
	}
	MOE_CHECK(moe_shmc_barrier(c, g));
	return rc;
}

int moe_shmc_bcast(struct moe_comm *c, enum moe_group g, void *buf, size_t bytes, int root)
{
	if (!is_sym(c, buf)) {
		moe_err("shm bcast: buffer is not from the transport's alloc()");
		return MOE_ERR_SYSTEM;
	}
	MOE_CHECK(moe_shmc_barrier(c, g));
	if (c->me[g] != root && bytes)
		MOE_CHECK(c->data->copy(c, buf, peer_ptr(c, c->members[g][root], buf), bytes));
	return moe_shmc_barrier(c, g);
}

int moe_shmc_reduce_scatterv_f32(struct moe_comm *c, enum moe_group g, const float *sendbuf, const size_t *counts,
				   const size_t *displs, float *recvbuf)
{
	int n = c->nmem[g], me = c->me[g];
	if (!is_sym(c, sendbuf)) {
		moe_err("shm reduce_scatterv: send buffer is not from the transport's alloc()");
		return MOE_ERR_SYSTEM;
	}
	MOE_CHECK(moe_shmc_barrier(c, g));
	size_t cnt = counts[me];
	for (int m = 0; m < n; m++) {
		const float *src = (const float *)peer_ptr(c, c->members[g][m], sendbuf) + displs[me];
		if (m == 0)
			MOE_CHECK(c->data->copy(c, recvbuf, src, cnt * sizeof(float)));
		else
			MOE_CHECK(c->data->accumulate(c, recvbuf, src, cnt));
	}
	return moe_shmc_barrier(c, g);
}

int moe_shmc_read_peer(struct moe_comm *c, int peer, void *dst, const void *mine, size_t bytes)
{
	if (!is_sym(c, mine) || peer < 0 || peer >= c->info.nranks) {
		moe_err("shm read_peer: not a symmetric buffer, or no rank %d", peer);
		return MOE_ERR_SYSTEM;
	}
	return c->data->read(c, dst, peer_ptr(c, peer, mine), bytes);
}

int moe_shmc_read_fence(struct moe_comm *c)
{
	return c->data->fence(c);
}

void *moe_shmc_peer_ptr(struct moe_comm *c, int peer, const void *mine)
{
	if (!is_sym(c, mine) || peer < 0 || peer >= c->info.nranks || !c->base[peer])
		return NULL;
	return (void *)peer_ptr(c, peer, mine);
}
