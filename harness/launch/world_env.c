/* What an external launch records (run.json's env.launch) and `moebench topo` under mpirun or srun. */
#ifdef MOE_HAVE_MPI
#include <stdio.h>
#include <string.h>

#ifdef MOE_HAVE_CUDA_BACKEND
#include <nccl.h>
#endif

#include "moe.h"
#include "world_impl.h"

void moe_world_env(struct moe_world *w, json_t *env, json_t *run, const char *dir)
{
	json_t *nodes = json_array(), *per = json_array();
	for (int k = 0; k < w->nnodes; k++) {
		int c = 0;
		for (int r = 0; r < w->size; r++)
			c += w->node_of[r] == k;
		json_array_append_new(nodes, json_string(w->node_names[k]));
		json_array_append_new(per, json_integer(c));
	}
	int maj = 0, min = 0;
	char std[16];
	MPI_Get_version(&maj, &min);
	snprintf(std, sizeof(std), "%d.%d", maj, min);
	json_object_set_new(env, "launch", json_pack("{s:s,s:i,s:s,s:s,s:o,s:o}", "launcher", w->env.launcher, "world_size",
						      w->size, "mpi_library", w->mpi_library, "mpi_standard", std,
						      "nodes", nodes, "ranks_per_node", per));
	json_t *launch = json_object_get(env, "launch");
#ifdef MOE_HAVE_CUDA_BACKEND
	int nv = 0;
	if (ncclGetVersion(&nv) == ncclSuccess) /* the library loaded, not the headers built against */
		json_object_set_new(launch, "nccl_loaded", json_sprintf("%d.%d.%d", nv / 10000, nv / 100 % 100, nv % 100));
#endif
	pthread_mutex_lock(&w->lock);
	w->launch = launch;
	w->run = run;
	snprintf(w->dir, sizeof(w->dir), "%s", dir);
	pthread_mutex_unlock(&w->lock);
}

void moe_world_summary(const struct moe_world *w, char *buf, size_t len)
{
	int gpus = 0;
	for (int r = 0; r < w->size; r++)
		gpus += w->placed[r].gpu >= 0;
	snprintf(buf, len, "%s launch: %d ranks on %d node%s (%s), each pinned by its node's plan (bind %s), %d with a GPU; "
		 "a case of n ranks runs on ranks 0..n-1", w->env.launcher, w->size, w->nnodes, w->nnodes == 1 ? "" : "s",
		 w->mpi_library, moe_bind_name(w->bind), gpus);
}

int moe_world_topo(const struct moe_run_opts *o)
{
	struct moe_ext_env e;
	char err[256] = "";
	int d = moe_ext_detect(&e, err, sizeof(err)), rc;
	if (d <= 0) {
		if (d < 0)
			fprintf(stderr, "moebench: external launch: %s\n", err);
		return d == 0 ? -1 : MOE_EXIT_USAGE;
	}
	struct moe_world *w = moe_world_join(&e, o, &rc);
	if (!w)
		return rc;
	if (w->rank == 0) {
		printf("# %s launch, %d ranks on %d node%s; %s\n", e.launcher, w->size, w->nnodes, w->nnodes == 1 ? "" : "s",
		       w->mpi_library);
		printf("%-6s %-20s %-6s %-5s %-5s %s\n", "rank", "node", "local", "gpu", "numa", "cpuset");
		for (int r = 0; r < w->size; r++) {
			int local = 0;
			for (int q = 0; q < r; q++)
				local += w->node_of[q] == w->node_of[r];
			printf("%-6d %-20s %-6d %-5d %-5d %s\n", r, w->node_names[w->node_of[r]], local, w->placed[r].gpu,
			       w->placed[r].numa, w->placed[r].cpuset);
		}
		fflush(stdout);
	}
	MPI_Finalize();
	return MOE_EXIT_OK;
}

#endif
