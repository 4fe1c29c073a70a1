/* Internals shared by world.c (the case protocol) and watchdog.c (supervision); MPI builds only. */
#ifndef MOE_WORLD_IMPL_H
#define MOE_WORLD_IMPL_H

#include <mpi.h>
#include <pthread.h>
#include <signal.h>

#include "external.h"
#include "status.h"
#include "world.h"

#define MOE_NODE_MAX 64

struct moe_placed {
	int gpu, numa;
	char cpuset[256];
};

struct moe_world {
	struct moe_ext_env env;
	int rank, size, local_rank, local_size, nnodes;
	enum moe_bind bind;          /* what this rank's node plan used (rank 0's stands for all) */
	int *node_of;                /* node index of each world rank */
	char (*node_names)[MOE_NODE_MAX]; /* per node index */
	struct moe_placed *placed;   /* per world rank */
	MPI_Comm ctl, sup, boot;     /* case protocol, supervision notices, the ranks' bootstrap all-gathers */
	char mpi_library[256];
	struct moe_case *cases;      /* every rank parsed the same scenarios: a case is named by its index */
	int ncases;
	/* supervision (watchdog.c) */
	pthread_t watchdog;
	int watchdog_started;
	_Atomic int stop;
	pthread_mutex_t lock;        /* the case record below, and the results file on rank 0 */
	int active, n_case;          /* a case is running, on n_case ranks */
	double deadline_us, timeout_s;
	const struct moe_case *c;
	struct moe_run_opts opts;    /* the case's options (rank 0 records a failure with them) */
	struct moe_status_area *status; /* this rank's status, read for phase and iteration */
	json_t *run;                 /* rank 0: the run document and where it is written */
	json_t *launch;              /* rank 0: run.json's env.launch (the first case's start goes in) */
	char dir[4096];
};

/* MPI_Init, the size cross-check against the launcher's, nodes and placements. NULL (reason printed,
 * *rc the exit code) when the world cannot be joined. */
struct moe_world *moe_world_join(const struct moe_ext_env *e, const struct moe_run_opts *o, int *rc);

/* The case's placement across the nodes, in the fork launcher's plan shape (replaces plan's contents). */
void moe_world_plan(const struct moe_world *w, int n, struct moe_plan *plan);

/* Start/stop the watchdog thread and the fatal-signal hand-off. */
int moe_watchdog_start(struct moe_world *w);
void moe_watchdog_stop(struct moe_world *w);
/* Tell rank 0 this rank failed the case for good (it records the case and ends the job). */
void moe_watchdog_notify(struct moe_world *w, const char *why);
/* rank 0: record the current case as failed with reason, write the results, end the job (MPI_Abort). */
void moe_world_fail(struct moe_world *w, const char *reason) __attribute__((noreturn));

#endif
