/* The mpi transport's all-to-all against a bare MPI_Alltoallv of the same bytes, in one run, interleaved
 * round by round (docs/PERFORMANCE.md). Run under mpirun: moe_a2a_bench [BYTES_PER_PEER] [ROUNDS]. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moe.h"
#include "mpi_iface.h"
#include "transport.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return v[n / 2];
}

/* node index of every rank, from the hostnames */
static int *nodes(int rank, int size)
{
	char me[64] = "", *all = moe_xcalloc((size_t)size, 64);
	gethostname(me, sizeof(me) - 1);
	MPI_Allgather(me, 64, MPI_CHAR, all, 64, MPI_CHAR, MPI_COMM_WORLD);
	int *node_of = moe_xcalloc((size_t)size, sizeof(int));
	for (int r = 0; r < size; r++) {
		node_of[r] = r;
		for (int q = 0; q < r; q++)
			if (!strcmp(all + 64 * q, all + 64 * r)) {
				node_of[r] = node_of[q];
				break;
			}
	}
	free(all);
	(void)rank;
	return node_of;
}

int main(int argc, char **argv)
{
	int provided, rank, size;
	MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	size_t per = argc > 1 ? (size_t)atol(argv[1]) : 1 << 20;
	int rounds = argc > 2 ? atoi(argv[2]) : 30;
	moe_mpi_case.comm = MPI_COMM_WORLD;
	moe_mpi_case.node_of = nodes(rank, size);
	struct moe_comm_info info = {.rank = rank, .nranks = size, .dp = size, .tp = 1, .boot_fd = -1,
				     .heap_per_rank = per * (size_t)size + 4096};
	const struct moe_transport_ops *xp = &moe_transport_mpi;
	struct moe_comm *c;
	if (xp->init(&c, &info) != MOE_OK)
		MPI_Abort(MPI_COMM_WORLD, 1);
	char *send = xp->alloc(c, per * (size_t)size), *recv = malloc(per * (size_t)size);
	size_t *cnt = moe_xcalloc((size_t)size, sizeof(size_t)), *dsp = moe_xcalloc((size_t)size, sizeof(size_t));
	int *icnt = moe_xcalloc((size_t)size, sizeof(int)), *idsp = moe_xcalloc((size_t)size, sizeof(int));
	for (int r = 0; r < size; r++) {
		cnt[r] = per;
		dsp[r] = per * (size_t)r;
		icnt[r] = (int)per;
		idsp[r] = (int)(per * (size_t)r);
	}
	memset(send, rank + 1, per * (size_t)size);
	double *tx = moe_xcalloc((size_t)rounds, sizeof(double)), *bare = moe_xcalloc((size_t)rounds, sizeof(double));
	for (int i = -3; i < rounds; i++) { /* three warm-up rounds */
		for (int k = 0; k < 2; k++) {
			int which = (i + k) & 1; /* alternate who goes first */
			MPI_Barrier(MPI_COMM_WORLD);
			double t0 = MPI_Wtime();
			if (which)
				xp->alltoallv(c, MOE_GROUP_WORLD, send, cnt, dsp, recv, cnt, dsp);
			else
				MPI_Alltoallv(send, icnt, idsp, MPI_BYTE, recv, icnt, idsp, MPI_BYTE, MPI_COMM_WORLD);
			double t = MPI_Wtime() - t0;
			MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
			if (i >= 0)
				(which ? tx : bare)[i] = t;
		}
	}
	double mt = median(tx, rounds), mb = median(bare, rounds);
	if (!rank)
		printf("%d ranks, %zu bytes per peer, %d rounds: transport %.1f us, bare MPI_Alltoallv %.1f us (median, "
		       "slowest rank): transport at %.1f%% of bare\n",
		       size, per, rounds, mt * 1e6, mb * 1e6, 100 * mb / mt);
	xp->fini(c);
	MPI_Finalize();
	return 0;
}
