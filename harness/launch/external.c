/* Which external launcher started this process, from the environment it leaves (docs/MULTINODE.md). */
#include "external.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "world.h"

static int int_var(const char *name, int *out, int *found, char *err, size_t errlen)
{
	const char *v = getenv(name);
	*found = v != NULL;
	if (!v)
		return 0;
	char *end;
	long x = strtol(v, &end, 10);
	if (!*v || *end || x < 0 || x > 1 << 24) {
		snprintf(err, errlen, "%s=%s is not a rank or size", name, v);
		return -1;
	}
	*out = (int)x;
	return 0;
}

/* Local size from Slurm's compressed task list, "2(x3),1": the tasks on this node (SLURM_NODEID). */
static int slurm_tasks_here(const char *list, int node)
{
	for (const char *p = list; p && *p;) {
		char *end;
		long n = strtol(p, &end, 10), rep = 1;
		if (end == p)
			return 0;
		if (!strncmp(end, "(x", 2))
			rep = strtol(end + 2, &end, 10), end += *end == ')';
		if (node < rep)
			return (int)n;
		node -= (int)rep;
		p = *end == ',' ? end + 1 : NULL;
	}
	return 0;
}

struct ext_vars {
	const char *launcher, *rank, *size, *local_rank, *local_size;
};

static const struct ext_vars innermost_first[] = {
	{"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
	{"pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
	{"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
	{"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", NULL},
};

int moe_ext_detect(struct moe_ext_env *e, char *err, size_t errlen)
{
	memset(e, 0, sizeof(*e));
	e->local_size = 1;
	for (size_t i = 0; i < sizeof(innermost_first) / sizeof(innermost_first[0]); i++) {
		const struct ext_vars *v = &innermost_first[i];
		int f_rank, f_size, f_lr, f_ls = 0;
		/* srun's variables count only inside a step: under salloc they describe the allocation */
		if (!strcmp(v->launcher, "slurm") && !getenv("SLURM_STEP_ID"))
			continue;
		/* RANK and WORLD_SIZE are common names: torchrun also leaves its run id */
		if (!strcmp(v->launcher, "torchrun") && !getenv("TORCHELASTIC_RUN_ID"))
			continue;
		if (int_var(v->rank, &e->rank, &f_rank, err, errlen) || int_var(v->size, &e->size, &f_size, err, errlen))
			return -1;
		if (!f_rank || !f_size)
			continue;
		if (int_var(v->local_rank, &e->local_rank, &f_lr, err, errlen) ||
		    (v->local_size && int_var(v->local_size, &e->local_size, &f_ls, err, errlen)))
			return -1;
		if (!v->local_size) {
			const char *tl = getenv("SLURM_STEP_TASKS_PER_NODE"), *nid = getenv("SLURM_NODEID");
			e->local_size = tl && nid ? slurm_tasks_here(tl, atoi(nid)) : 0;
			f_ls = e->local_size > 0;
		}
		if (!f_lr || !f_ls) /* no local view: one rank per node is the safe pinning */
			e->local_rank = 0, e->local_size = 1;
		if (e->rank >= e->size || e->local_rank >= e->local_size) {
			snprintf(err, errlen, "%s says rank %d of %d, local rank %d of %d", v->launcher, e->rank, e->size,
				 e->local_rank, e->local_size);
			return -1;
		}
		e->launcher = v->launcher;
		snprintf(e->size_var, sizeof(e->size_var), "%s", v->size);
		const char *node = getenv("SLURMD_NODENAME");
		if (node && getenv("SLURM_STEP_ID"))
			snprintf(e->node, sizeof(e->node), "%s", node);
		return 1;
	}
	return 0;
}

#ifndef MOE_HAVE_MPI
/* Without MPI an external launch is refused loudly: N copies of a one-host run would be worse. */

int moe_world_run(int argc, char **argv, struct moe_run_opts *o, struct moe_caselist *cases, moe_run_fn run)
{
	struct moe_ext_env e;
	char err[256] = "";
	int d = moe_ext_detect(&e, err, sizeof(err));
	if (d == 0)
		return run(argc, argv, o, cases);
	fprintf(stderr, "moebench: %s: this moebench was built without MPI, so it cannot join the ranks %s "
		"started; rebuild with MPI (scripts/deps.sh installs it) or run moebench run on one host\n",
		d < 0 ? err : e.launcher, d < 0 ? "the launcher" : e.launcher);
	return MOE_EXIT_USAGE;
}

int moe_world_case(struct moe_world *w, const struct moe_case *c, struct moe_plan *plan, const struct moe_run_opts *o,
		   json_t **case_json)
{
	return MOE_EXIT_USAGE;
}

void moe_world_env(struct moe_world *w, json_t *env, json_t *run, const char *dir) {}

void moe_world_summary(const struct moe_world *w, char *buf, size_t len) {}

int moe_world_topo(const struct moe_run_opts *o)
{
	struct moe_ext_env e;
	char err[256];
	return moe_ext_detect(&e, err, sizeof(err)) == 0 ? -1 : MOE_EXIT_USAGE;
}

#endif
