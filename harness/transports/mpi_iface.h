/* What an external launch (launch/world.c) hands the mpi transport for one case; MPI builds only. */
#ifndef MOE_MPI_IFACE_H
#define MOE_MPI_IFACE_H

#include <mpi.h>
#include <stdint.h>

struct moe_mpi_case {
	MPI_Comm comm;       /* the case's ranks (world ranks 0..n-1), in case rank order */
	const int *node_of;  /* node index of each case rank */
	/* bytes this rank sent (or pulled, for one-sided reads) to peers on its own node and on others,
	 * summed over every call of the case; self excluded */
	int64_t wire_intra, wire_inter;
	int in_collective;   /* the main thread is inside one of the transport's MPI calls (the watchdog says so) */
};

extern struct moe_mpi_case moe_mpi_case;

#endif
