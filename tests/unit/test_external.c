/* External launch detection: which launcher, innermost first; Slurm only inside a step; bad values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "external.h"

static const char *const all_vars[] = {
	"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
	"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "RANK", "WORLD_SIZE", "LOCAL_RANK",
	"LOCAL_WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_STEP_ID", "SLURM_NODEID",
	"SLURM_STEP_TASKS_PER_NODE", "SLURMD_NODENAME", "TORCHELASTIC_RUN_ID",
};

static int clean(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(all_vars) / sizeof(all_vars[0]); i++)
		unsetenv(all_vars[i]);
	return 0;
}

static void none_is_the_fork_launcher(void **state)
{
	struct moe_ext_env e;
	char err[128];
	assert_int_equal(moe_ext_detect(&e, err, sizeof(err)), 0);
	/* a Slurm allocation without a step (salloc, sbatch's shell) is not a launch of this process */
	setenv("SLURM_PROCID", "0", 1);
	setenv("SLURM_NTASKS", "4", 1);
	assert_int_equal(moe_ext_detect(&e, err, sizeof(err)), 0);
}

static void openmpi_under_salloc_wins_over_slurm(void **state)
{
	struct moe_ext_env e;
	char err[128];
	/* salloc -N2 mpirun: every rank sees the step's SLURM_* of mpirun's daemons, wrong for the rank */
	setenv("SLURM_STEP_ID", "0", 1);
	setenv("SLURM_PROCID", "0", 1);
	setenv("SLURM_NTASKS", "2", 1);
	setenv("OMPI_COMM_WORLD_RANK", "5", 1);
	setenv("OMPI_COMM_WORLD_SIZE", "8", 1);
	setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
	setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 1);
	assert_int_equal(moe_ext_detect(&e, err, sizeof(err)), 1);
	assert_string_equal(e.launcher, "openmpi");
	assert_int_equal(e.rank, 5);
	assert_int_equal(e.size, 8);
	assert_int_equal(e.local_rank, 1);
	assert_int_equal(e.local_size, 4);
	assert_string_equal(e.size_var, "OMPI_COMM_WORLD_SIZE");
}

static void hydra_before_torchrun(void **state)
{
	struct moe_ext_env e;
	char err[128];
	setenv("RANK", "1", 1);
	setenv("WORLD_SIZE", "2", 1);
	/* RANK and WORLD_SIZE alone (a CI job's own variables) are not a launch */
	assert_int_equal(moe_ext_detect(&e, err, sizeof(err)), 0);
	setenv("TORCHELASTIC_RUN_ID", "none", 1);
	assert_int_equal(moe_ext_detect(&e, err, sizeof(err)), 1);
	assert_string_equal(e.launcher, "torchrun");
	assert_int_equal(e.rank, 1);
	assert_int_equal(e.local_size, 1); /* no LOCAL_*: one rank a node is the safe pinning */
	setenv("PMI_RANK", "3", 1);
	setenv("PMI_SIZE", "4", 1);
	setenv("MPI_LOCALRANKID", "1", 1);
	setenv("MPI_LOCALNRANKS", "2", 1);
	assert_int_equal(moe_ext_detect(&e, err, sizeof(err)), 1);
	assert_string_equal(e.launcher, "pmi");
	assert_int_equal(e.rank, 3);
	assert_int_equal(e.local_rank, 1);
}

static void srun_step_local_size_from_the_task_list(void **state)
{
	struct moe_ext_env e;
	char err[128];
	setenv("SLURM_STEP_ID", "0", 1);
	setenv("SLURM_PROCID", "6", 1);
	setenv("SLURM_NTASKS", "7", 1);
	setenv("SLURM_LOCALID", "0", 1);
	setenv("SLURM_NODEID", "2", 1);
	setenv("SLURM_STEP_TASKS_PER_NODE", "3(x2),1", 1);
	setenv("SLURMD_NODENAME", "gpu17", 1);
	assert_int_equal(moe_ext_detect(&e, err, sizeof(err)), 1);
	assert_string_equal(e.launcher, "slurm");
	assert_int_equal(e.local_size, 1); /* node 2 is the ",1" after two nodes of 3 */
	assert_string_equal(e.node, "gpu17");
	setenv("SLURM_NODEID", "1", 1);
	setenv("SLURM_PROCID", "4", 1);
	setenv("SLURM_LOCALID", "1", 1);
	assert_int_equal(moe_ext_detect(&e, err, sizeof(err)), 1);
	assert_int_equal(e.local_size, 3);
	assert_int_equal(e.local_rank, 1);
}

static void malformed_values_are_errors(void **state)
{
	struct moe_ext_env e;
	char err[128];
	setenv("OMPI_COMM_WORLD_RANK", "x1", 1);
	setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
	assert_int_equal(moe_ext_detect(&e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "OMPI_COMM_WORLD_RANK=x1"));
	setenv("OMPI_COMM_WORLD_RANK", "4", 1); /* rank past the size */
	assert_int_equal(moe_ext_detect(&e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "rank 4 of 4"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(none_is_the_fork_launcher, clean),
		cmocka_unit_test_setup(openmpi_under_salloc_wins_over_slurm, clean),
		cmocka_unit_test_setup(hydra_before_torchrun, clean),
		cmocka_unit_test_setup(srun_step_local_size_from_the_task_list, clean),
		cmocka_unit_test_setup(malformed_values_are_errors, clean),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
