/* What the launcher's steps share: one case's ranks as the launcher sees them. Not for other rooms. */
#ifndef MOE_LAUNCH_INTERNAL_H
#define MOE_LAUNCH_INTERNAL_H

#include <jansson.h>
#include <sys/types.h>

#include "boot.h"
#include "launcher.h"

struct rank_proc {
	pid_t pid;
	int fd;         /* our end of the socketpair, -1 once closed */
	int exited;     /* reaped */
	int wstatus;
	json_t *result; /* the RESULT message */
	char error[1024];
	char *gather;   /* pending ALLGATHER blob */
	size_t gather_len;
	int has_gather;
};

/* One case on its way through the launcher: what every step reads and what it leaves for the next. */
struct launch {
	const struct moe_case *c;
	const struct moe_params *p;
	const struct moe_plan *plan;
	const struct moe_run_opts *o;
	int n;                 /* ranks */
	struct rank_proc *rp;
	pid_t pgid;            /* the ranks' process group: the first rank's pid */
	int shm;               /* the case segment's memfd */
	struct moe_status_area *status;
	double t_start;
	int reported;          /* ranks whose RESULT arrived */
	int failed, usage, skip;
	char reason[2048];
};

/* spawn.c: fork each rank into the case's process group, pin and exec it, and send it the case. */
int moe_launch_spawn(struct launch *L, const char *exe, hwloc_topology_t topo);
/* The case as the text a rank reads on its bootstrap socket (every value escaped onto its own line). */
char *moe_launch_text(const struct moe_case *c, const struct moe_run_opts *o, int rank);
/* supervise.c: serve the ranks' bootstrap and messages until every one exited, one failed, a signal
 * arrived or the case timed out (L->failed and L->reason say which) */
void moe_launch_supervise(struct launch *L);
/* supervise.c: kill and reap every rank still alive */
void moe_launch_kill_all(struct rank_proc *rp, int n, pid_t pgid);

#endif
