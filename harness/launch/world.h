/* Runs under an external launcher (mpirun, srun): one moebench process per rank, joined in an MPI world. */
#ifndef MOE_WORLD_H
#define MOE_WORLD_H

#include <jansson.h>

#include "launcher.h"
#include "scenario.h"
#include "topo.h"

struct moe_world;

typedef int (*moe_run_fn)(int argc, char **argv, struct moe_run_opts *o, struct moe_caselist *cases);

/* `moebench run`: when an external launcher started this process, join the MPI world, pin by local
 * rank and run the cases with rank 0 collecting (run is main's loop over the cases, run on rank 0 with
 * o->world set; the other ranks follow rank 0's case by case); otherwise just run(). Returns the exit code. */
int moe_world_run(int argc, char **argv, struct moe_run_opts *o, struct moe_caselist *cases, moe_run_fn run);

/* rank 0, per case, in place of moe_launch_case: every rank runs it, rank 0 judges the gathered reports.
 * plan is replaced by the placement of the case's ranks on their nodes. */
int moe_world_case(struct moe_world *w, const struct moe_case *c, struct moe_plan *plan, const struct moe_run_opts *o,
		   json_t **case_json);

/* rank 0: record the launch in run.json's env; run and dir let a failing case be written before the job ends. */
void moe_world_env(struct moe_world *w, json_t *env, json_t *run, const char *dir);

/* rank 0: the run header's placement line for an external launch. */
void moe_world_summary(const struct moe_world *w, char *buf, size_t len);

/* `moebench topo` under an external launcher: every rank's node, GPU and cpuset, printed by rank 0.
 * Returns -1 when no external launcher started this process, else the exit code. */
int moe_world_topo(const struct moe_run_opts *o);

#endif
