/* Starting a case's ranks: the case text each reads, and fork, pin (hwloc) and exec of each. */
#include "launch_internal.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "moe.h"
#include "status.h"

/* "@key=value\n" with the value escaped onto one line */
static void text_line(char **s, size_t *n, size_t *cap, const char *key, const char *value)
{
	char *v = moe_line_escape(value);
	size_t need = strlen(key) + strlen(v) + 4;
	if (*n + need >= *cap) {
		*cap = 2 * *cap + need;
		char *t = realloc(*s, *cap);
		if (!t)
			abort();
		*s = t;
	}
	*n += (size_t)snprintf(*s + *n, *cap - *n, "@%s=%s\n", key, v);
	free(v);
}

/* The case as the rank reads it: the parameters (values escaped by moe_params_serialize), then "@" lines
 * whose values are escaped here: no name or path can end a line early and add one of its own. */
char *moe_launch_text(const struct moe_case *c, const struct moe_run_opts *o, int rank)
{
	char *s = moe_params_serialize(&c->p), v[MOE_PATH_MAX + MOE_NAME_MAX + 64];
	size_t n = strlen(s), cap = n + 1;
	text_line(&s, &n, &cap, "name", c->name);
	text_line(&s, &n, &cap, "base_dir", c->p.base_dir);
	if (o->inject_rank == rank) {
		snprintf(v, sizeof(v), "%s:%s", o->inject_phase, o->inject_kind);
		text_line(&s, &n, &cap, "inject", v);
	}
	if (o->dump_dir) {
		/* one folder per case: its name with '/' made safe */
		char safe[MOE_NAME_MAX];
		snprintf(safe, sizeof(safe), "%s", c->name);
		for (char *q = safe; *q; q++)
			if (*q == '/' || *q == ' ')
				*q = '_';
		snprintf(v, sizeof(v), "%s/%s", o->dump_dir, safe);
		text_line(&s, &n, &cap, "dump", v);
	}
	if (o->delay_phase[0]) {
		snprintf(v, sizeof(v), "%s:%.3f", o->delay_phase, o->delay_us);
		text_line(&s, &n, &cap, "delay", v);
	}
	if (o->corrupt_rank == rank) {
		snprintf(v, sizeof(v), "%lld:%lld", o->corrupt_token, o->corrupt_col);
		text_line(&s, &n, &cap, "corrupt", v);
	}
	return s;
}

/* OpenBLAS picks its kernels from the CPU model, and a VM that hides the model gets the generic ones: on the
 * lent H200 host ("Intel(R) Xeon(R) Processor", AVX-512) it chose Prescott, and the oracle's float64 GEMMs ran
 * 3.4x slower than with its SkylakeX kernels (docs/PERFORMANCE.md). Unless the user chose OPENBLAS_CORETYPE,
 * ranks whose OpenBLAS fell back to a generic core get the one their instruction set supports. */
static const char *blas_core_for_ranks(void)
{
	static const char *const generic[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom",
					      "Katmai", "Coppermine", "Northwood", "Banias", "Unknown"};
	const char *core = openblas_get_corename();
	int is_generic = 0;
	for (size_t i = 0; core && i < MOE_ARRAY_SIZE(generic); i++)
		is_generic |= !strcasecmp(core, generic[i]);
	if (getenv("OPENBLAS_CORETYPE") || !is_generic)
		return NULL;
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
		return "SkylakeX";
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return "Haswell";
#endif
	return NULL;
}

/* Exec the rank process; runs in the child. Never returns. */
static void child(const char *exe, int rank, int nranks, int sock, int shm, pid_t pgid, pid_t parent,
		  hwloc_topology_t topo, const struct moe_plan *plan)
{
	setpgid(0, pgid ? pgid : 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphans if the launcher dies */
	if (getppid() != parent)
		_exit(127);
	char err[512];
	if (moe_plan_apply(topo, plan, rank, err, sizeof(err))) {
		fprintf(stderr, "moebench: rank %d: pinning failed: %s\n", rank, err);
		_exit(126);
	}
	fcntl(sock, F_SETFD, 0);
	fcntl(shm, F_SETFD, 0);
	char v[32];
	snprintf(v, sizeof(v), "%d", rank);
	setenv("MOEBENCH_RANK", v, 1);
	snprintf(v, sizeof(v), "%d", nranks);
	setenv("MOEBENCH_NRANKS", v, 1);
	snprintf(v, sizeof(v), "%d", sock);
	setenv("MOEBENCH_BOOT_FD", v, 1);
	snprintf(v, sizeof(v), "%d", shm);
	setenv("MOEBENCH_SHM_FD", v, 1);
	setenv("NCCL_NVLS_ENABLE", "0", 1); /* NVLink multicast stays off on shared hosts */
	const char *core = blas_core_for_ranks();
	if (core)
		setenv("OPENBLAS_CORETYPE", core, 1);
	const char *blas = getenv("MOEBENCH_USER_BLAS_THREADS"); /* the user's, kept aside by main for the ranks */
	struct rlimit as;
	if (blas) {
		/* under an address-space limit a pool thread that cannot get its ~128 MiB buffer spins in OpenBLAS
		 * forever (and the rank's exit waits for it): one thread unless the user chose otherwise */
		if (blas[0])
			setenv("OPENBLAS_NUM_THREADS", blas, 1);
		else if (!getrlimit(RLIMIT_AS, &as) && as.rlim_cur != RLIM_INFINITY)
			setenv("OPENBLAS_NUM_THREADS", "1", 1);
		else
			unsetenv("OPENBLAS_NUM_THREADS");
		unsetenv("MOEBENCH_USER_BLAS_THREADS");
	}
	if (plan->ranks[rank].gpu >= 0) {
		/* CUDA numbers devices in PCI bus order like the plan does */
		setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID", 1);
		snprintf(v, sizeof(v), "%d", plan->ranks[rank].gpu);
		setenv("MOEBENCH_GPU", v, 1);
		int sharers = 0; /* ranks placed on this GPU: the memory preflight counts them all */
		for (int i = 0; i < nranks; i++)
			sharers += plan->ranks[i].gpu == plan->ranks[rank].gpu;
		snprintf(v, sizeof(v), "%d", sharers);
		setenv("MOEBENCH_GPU_RANKS", v, 1);
	}
	execl(exe, "moebench", "__rank", (char *)NULL);
	fprintf(stderr, "moebench: rank %d: exec %s: %s\n", rank, exe, strerror(errno));
	_exit(127);
}

/* Fork each rank into the case's process group, pin and exec it (child()), and send it the case. */
int moe_launch_spawn(struct launch *L, const char *exe, hwloc_topology_t topo)
{
	for (int r = 0; r < L->n; r++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
			snprintf(L->reason, sizeof(L->reason), "socketpair: %s", strerror(errno));
			return -1;
		}
		pid_t parent = getpid();
		pid_t pid = fork();
		if (pid < 0) {
			close(sv[0]);
			close(sv[1]);
			snprintf(L->reason, sizeof(L->reason), "fork: %s", strerror(errno));
			return -1;
		}
		if (pid == 0) {
			close(sv[0]);
			child(exe, r, L->n, sv[1], L->shm, L->pgid, parent, topo, L->plan);
		}
		if (!L->pgid)
			L->pgid = pid;
		setpgid(pid, L->pgid); /* also done in the child: whichever runs first wins the race */
		close(sv[1]);
		L->rp[r].pid = pid;
		L->rp[r].fd = sv[0];
		char *text = moe_launch_text(L->c, L->o, r);
		if (moe_msg_send(L->rp[r].fd, MOE_MSG_CASE, text, strlen(text)))
			moe_warn("case text to rank %d: %s", r, strerror(errno));
		free(text);
	}
	return 0;
}
