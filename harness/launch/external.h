/* External launch: who started this process (mpirun, hydra, srun, torchrun), read from the environment. */
#ifndef MOE_EXTERNAL_H
#define MOE_EXTERNAL_H

#include <stddef.h>

struct moe_ext_env {
	const char *launcher;  /* "openmpi", "pmi", "torchrun", "slurm" */
	int rank, size;        /* as the launcher says; cross-checked against MPI */
	int local_rank, local_size;
	char node[256];        /* the launcher's node name where it gives one, else "" */
	char size_var[64];     /* the variable the size came from, for the mismatch message */
};

/* Reads the launcher's variables, innermost launcher first (Open MPI, PMI, torchrun, then Slurm, whose
 * SLURM_PROCID counts only inside a step; torchrun only with its TORCHELASTIC_RUN_ID). Returns 1 when
 * an external launcher started this process, 0 when not (the fork launcher is then the default), -1
 * when its variables are malformed (reason in err). */
int moe_ext_detect(struct moe_ext_env *e, char *err, size_t errlen);

#endif
