/* The launcher: runs a case's ranks as pinned child processes and supervises them. Never touches CUDA. */
#ifndef MOE_LAUNCHER_H
#define MOE_LAUNCHER_H

#include <jansson.h>
#include <signal.h>

#include "scenario.h"
#include "topo.h"

struct moe_run_opts {
	char **sets;
	int nsets;
	const char *only;
	const char *out_dir;
	enum moe_bind bind;
	const char *topo_xml;
	int inject_rank; /* -1: none */
	char inject_phase[32], inject_kind[16];
	int corrupt_rank; /* -1: none */
	long long corrupt_token, corrupt_col;
	int json_stdout;
	int quiet;
	int ranks; /* topo: ranks to plan for (0 = default) */
	const char *dump_dir; /* --dump: tensors as .npy */
	char delay_phase[32]; /* --inject-delay PHASE:US (test aid, host backend) */
	double delay_us;
	double copy_GBps, gemm_TFLOPs; /* rooflines from `calibrate` (0: unknown) */
	struct moe_world *world; /* external launch (world.c): cases go through moe_world_case */
	const struct moe_gathered *gathered; /* set by world.c: nothing is spawned */
	const char *progress; /* run on a terminal: the progress line's start ("[i/n] CASE"), else NULL */
};

/* An external launch (world.c): the ranks ran the case under MPI and rank 0 gathered their reports;
 * moe_launch_case then only checks and judges. precheck: stop after the checks (is it runnable?). */
struct moe_gathered {
	int precheck;
	json_t **reports; /* n entries, NULL where a rank sent none */
	int outcome;      /* MOE_EXIT_OK when every rank reported, else the failure's class */
	const char *reason;
};

extern volatile sig_atomic_t moe_interrupted;

/* Run one case. Returns its outcome class (MOE_EXIT_OK, _FAIL for a mismatch, _USAGE for a case the
 * ranks found invalid, _RANK for a crash/hang/timeout, _SKIP when not runnable here) and its JSON record. */
int moe_launch_case(const struct moe_case *c, hwloc_topology_t topo, const struct moe_plan *plan,
		    const struct moe_run_opts *o, const char *exe, json_t **case_json);

/* The case as text for rank `rank` (world.c hands it to the in-process rank). */
char *moe_launch_case_text(const struct moe_case *c, const struct moe_run_opts *o, int rank);

#endif
