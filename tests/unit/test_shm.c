/* The shm transport across real processes: exchange, variable all-to-all (zero counts included),
 * all-gather, broadcast and TP-group barriers, with every byte checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "status.h"
#include "transport.h"

#define HEAP (1 << 20)

/* Deterministic payload byte for (src, dst, i). */
static unsigned char pay(int s, int d, size_t i) { return (unsigned char)(s * 37 + d * 11 + i * 7 + 1); }
/* Rows rank s sends to d: varied, with zeros. */
static size_t cnt(int s, int d) { return (size_t)((s * 5 + d * 3) % 7) * 13; }

static int rank_body(void *seg, size_t bytes, int rank, int dp, int tp)
{
	int n = dp * tp;
	const struct moe_transport_ops *xp = moe_transport_find("shm");
	struct moe_comm_info ci = {.rank = rank, .nranks = n, .dp = dp, .tp = tp, .shm = seg, .shm_bytes = bytes,
				   .heap_per_rank = HEAP};
	struct moe_comm *c;
	if (!xp || xp->init(&c, &ci))
		return 10;
	unsigned char *send = xp->alloc(c, HEAP / 2);
	if (!send)
		return 11;
	size_t sc[64], sd[64], rc[64], rd[64], off = 0;
	int64_t s64[64], r64[64];
	for (int round = 0; round < 3; round++) {
		for (int d = 0; d < n; d++)
			s64[d] = (int64_t)cnt(rank, d) + round;
		if (xp->exchange(c, MOE_GROUP_WORLD, s64, r64))
			return 12;
		for (int s = 0; s < n; s++)
			if (r64[s] != (int64_t)cnt(s, rank) + round)
				return 13;
	}
	off = 0;
	for (int d = 0; d < n; d++) {
		sc[d] = cnt(rank, d);
		sd[d] = off;
		for (size_t i = 0; i < sc[d]; i++)
			send[off + i] = pay(rank, d, i);
		off += sc[d];
	}
	size_t roff = 0;
	for (int s = 0; s < n; s++) {
		rc[s] = cnt(s, rank);
		rd[s] = roff;
		roff += rc[s];
	}
	unsigned char *recv = malloc(roff + 1);
	memset(recv, 0xee, roff + 1);
	if (xp->alltoallv(c, MOE_GROUP_WORLD, send, sc, sd, recv, rc, rd))
		return 14;
	for (int s = 0; s < n; s++)
		for (size_t i = 0; i < rc[s]; i++)
			if (recv[rd[s] + i] != pay(s, rank, i))
				return 15;
	if (recv[roff] != 0xee) /* nothing written past the end */
		return 16;
	/* wrong receive counts are an error, not a silent truncation */
	rc[(rank + 1) % n] += 1;
	if (xp->alltoallv(c, MOE_GROUP_WORLD, send, sc, sd, recv, rc, rd) == MOE_OK && cnt((rank + 1) % n, rank) + 1 > 0)
		return 17;
	/* all-gather inside the TP group: member t contributes t+1 bytes */
	int t = rank % tp;
	for (int i = 0; i <= t; i++)
		send[i] = (unsigned char)(rank * 3 + i);
	size_t gc[64], gd[64], go = 0;
	for (int m = 0; m < tp; m++) {
		gc[m] = (size_t)m + 1;
		gd[m] = go;
		go += gc[m];
	}
	unsigned char g[256];
	if (xp->allgatherv(c, MOE_GROUP_TP, send, (size_t)t + 1, g, gc, gd))
		return 18;
	int base = rank - t;
	for (int m = 0; m < tp; m++)
		for (int i = 0; i <= m; i++)
			if (g[gd[m] + i] != (unsigned char)((base + m) * 3 + i))
				return 19;
	/* broadcast from TP member 0 */
	memset(send, t == 0 ? 0x5a + base : 0, 100);
	if (xp->bcast(c, MOE_GROUP_TP, send, 100, 0))
		return 20;
	for (int i = 0; i < 100; i++)
		if (send[i] != (unsigned char)(0x5a + base))
			return 21;
	for (int i = 0; i < 50; i++)
		if (xp->barrier(c, i % 2 ? MOE_GROUP_TP : MOE_GROUP_WORLD))
			return 22;
	free(recv);
	xp->fini(c);
	return 0;
}

static void run_ranks(int dp, int tp)
{
	int n = dp * tp;
	size_t bytes = moe_shm_ctl_bytes(n, dp) + (size_t)n * HEAP;
	void *seg = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(seg != MAP_FAILED);
	pid_t pids[64];
	for (int r = 0; r < n; r++) {
		pids[r] = fork();
		assert_true(pids[r] >= 0);
		if (pids[r] == 0) {
			alarm(60);
			_exit(rank_body(seg, bytes, r, dp, tp));
		}
	}
	for (int r = 0; r < n; r++) {
		int st;
		assert_int_equal(waitpid(pids[r], &st, 0), pids[r]);
		assert_true(WIFEXITED(st));
		if (WEXITSTATUS(st))
			print_error("rank %d of dp=%d tp=%d failed check %d\n", r, dp, tp, WEXITSTATUS(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	munmap(seg, bytes);
}

static void test_dp2_tp2(void **s) { (void)s; run_ranks(2, 2); }
static void test_dp4_tp1(void **s) { (void)s; run_ranks(4, 1); }
static void test_dp1_tp4(void **s) { (void)s; run_ranks(1, 4); }
static void test_dp3_tp2(void **s) { (void)s; run_ranks(3, 2); }
static void test_single(void **s) { (void)s; run_ranks(1, 1); }

static void test_groups(void **s)
{
	(void)s;
	int m[16], me, n = moe_group_members(5, 2, 4, MOE_GROUP_TP, m, &me);
	assert_int_equal(n, 4);
	assert_int_equal(me, 1);
	assert_int_equal(m[0], 4);
	assert_int_equal(m[3], 7);
	n = moe_group_members(5, 2, 4, MOE_GROUP_WORLD, m, &me);
	assert_int_equal(n, 8);
	assert_int_equal(me, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_groups),  cmocka_unit_test(test_single), cmocka_unit_test(test_dp2_tp2),
		cmocka_unit_test(test_dp4_tp1), cmocka_unit_test(test_dp1_tp4), cmocka_unit_test(test_dp3_tp2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
