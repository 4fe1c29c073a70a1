/* The launcher: one memfd segment and one socketpair per rank, fork, pin (hwloc), exec the rank;
 * then serve bootstrap requests and supervise until every rank reported or one failed. */
#include "launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "boot.h"
#include "moe.h"
#include "stats.h"
#include "status.h"
#include "strategy.h"

volatile sig_atomic_t moe_interrupted;

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

static void kill_all(struct rank_proc *rp, int n, pid_t pgid)
{
	int alive = 0;
	for (int i = 0; i < n; i++)
		alive |= rp[i].pid > 0 && !rp[i].exited;
	if (!alive)
		return; /* a reaped group's id may belong to someone else by now */
	if (pgid > 0)
		kill(-pgid, SIGKILL);
	for (int i = 0; i < n; i++)
		if (rp[i].pid > 0 && !rp[i].exited)
			kill(rp[i].pid, SIGKILL);
	for (int i = 0; i < n; i++)
		if (rp[i].pid > 0 && !rp[i].exited) {
			while (waitpid(rp[i].pid, &rp[i].wstatus, 0) < 0 && errno == EINTR)
				;
			rp[i].exited = 1;
		}
}

static char *case_text(const struct moe_case *c, const struct moe_run_opts *o, int rank)
{
	char *params = moe_params_serialize(&c->p);
	size_t n = strlen(params) + 4 * MOE_PATH_MAX;
	char *s = moe_xmalloc(n);
	int k = snprintf(s, n, "%s@name=%s\n@base_dir=%s\n", params, c->name, c->p.base_dir);
	if (o->inject_rank == rank)
		k += snprintf(s + k, n - (size_t)k, "@inject=%s:%s\n", o->inject_phase, o->inject_kind);
	if (o->dump_dir) {
		/* one folder per case: its name with '/' made safe */
		char safe[MOE_NAME_MAX];
		snprintf(safe, sizeof(safe), "%s", c->name);
		for (char *q = safe; *q; q++)
			if (*q == '/' || *q == ' ')
				*q = '_';
		k += snprintf(s + k, n - (size_t)k, "@dump=%s/%s\n", o->dump_dir, safe);
	}
	if (o->delay_phase[0])
		k += snprintf(s + k, n - (size_t)k, "@delay=%s:%.3f\n", o->delay_phase, o->delay_us);
	if (o->corrupt_rank == rank)
		snprintf(s + k, n - (size_t)k, "@corrupt=%lld:%lld\n", o->corrupt_token, o->corrupt_col);
	free(params);
	return s;
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

static void describe_exit(char *buf, size_t len, int rank, int wstatus, const char *phase, long long iter)
{
	if (WIFSIGNALED(wstatus))
		snprintf(buf, len, "rank %d was killed by signal %d (%s) in phase %s, iteration %lld", rank,
			 WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)), phase, iter);
	else
		snprintf(buf, len, "rank %d exited with status %d in phase %s, iteration %lld, before reporting", rank,
			 WEXITSTATUS(wstatus), phase, iter);
}

/* Per-iteration maximum over ranks of one phase, from the ranks' raw samples. */
static double *iter_max(struct rank_proc *rp, int n, const char *phase, size_t *iters)
{
	double *out = NULL;
	*iters = 0;
	for (int r = 0; r < n; r++) {
		json_t *a = json_object_get(json_object_get(rp[r].result, "samples_us"), phase);
		if (!a)
			return NULL;
		size_t m = json_array_size(a);
		if (!out) {
			out = moe_xcalloc(m, sizeof(double));
			*iters = m;
		}
		for (size_t i = 0; i < m && i < *iters; i++) {
			double v = json_real_value(json_array_get(a, i));
			if (v > out[i])
				out[i] = v;
		}
	}
	return out;
}

static json_t *summary_json(const struct moe_summary *s)
{
	return json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I}", "p50_us", s->p50, "p90_us", s->p90, "p99_us", s->p99,
			 "min_us", s->min, "max_us", s->max, "mean_us", s->mean, "stdev_us", s->stdev, "n",
			 (json_int_t)s->n);
}

/* Phases, the iteration total, and "xfer": the time spent inside transport data calls (part of dispatch and combine). */
static const char *const timed_phases[] = {"route", "dispatch", "expert", "combine", "tp_merge", "fetch_wait", "total", "xfer",
					   "fetch"};

static void aggregate(json_t *cj, struct rank_proc *rp, int n, const struct moe_params *p, int ngpus,
		      const struct moe_run_opts *o)
{
	json_t *phases = json_object(), *samples = json_object();
	size_t iters = 0;
	double *comm = NULL, xfer_p50 = NAN, fetch_p50 = NAN, wait_p50 = NAN;
	for (size_t k = 0; k < MOE_ARRAY_SIZE(timed_phases); k++) {
		double *m = iter_max(rp, n, timed_phases[k], &iters);
		if (!m)
			continue;
		struct moe_summary s;
		moe_summarize(m, iters, &s);
		json_object_set_new(phases, timed_phases[k], summary_json(&s));
		json_t *a = json_array();
		for (size_t i = 0; i < iters; i++)
			json_array_append_new(a, json_real(m[i]));
		json_object_set_new(samples, timed_phases[k], a);
		if (!strcmp(timed_phases[k], "xfer"))
			xfer_p50 = s.p50;
		if (!strcmp(timed_phases[k], "fetch"))
			fetch_p50 = s.p50;
		if (!strcmp(timed_phases[k], "fetch_wait"))
			wait_p50 = s.p50;
		if (!strcmp(timed_phases[k], "dispatch") || !strcmp(timed_phases[k], "combine")) {
			if (!comm)
				comm = moe_xcalloc(iters, sizeof(double));
			for (size_t i = 0; i < iters; i++)
				comm[i] += m[i];
		}
		free(m);
	}
	json_object_set_new(cj, "phases", phases);
	json_object_set_new(cj, "samples", samples);
	/* the slowest rank: highest median total */
	int slow = -1;
	double slow_p50 = -1;
	json_int_t logical = 0, wire = 0, fetched = 0;
	for (int r = 0; r < n; r++) {
		struct moe_summary s;
		moe_summarize_json(json_object_get(json_object_get(rp[r].result, "samples_us"), "total"), &s);
		if (s.p50 > slow_p50) {
			slow_p50 = s.p50;
			slow = r;
		}
		json_t *b = json_object_get(rp[r].result, "bytes");
		logical += json_integer_value(json_object_get(b, "logical"));
		wire += json_integer_value(json_object_get(b, "wire"));
		fetched += json_integer_value(json_object_get(b, "fetched"));
	}
	if (fetched) {
		/* dwdp: fetch bandwidth per rank, and how much of the fetch the expert compute hid */
		double bw = fetch_p50 > 0 ? (double)fetched / n / fetch_p50 * 1e-3 : 0;
		double hidden = fetch_p50 > 0 ? 1.0 - (wait_p50 == wait_p50 ? wait_p50 : 0) / fetch_p50 : 0;
		json_object_set_new(cj, "dwdp", json_pack("{s:I,s:f,s:f,s:f,s:f}", "bytes_fetched_per_rank",
							   (json_int_t)(fetched / n), "fetch_p50_us", fetch_p50,
							   "exposed_wait_p50_us", wait_p50 == wait_p50 ? wait_p50 : 0.0,
							   "fetch_GBps", bw, "hidden_fraction", hidden < 0 ? 0.0 : hidden));
	}
	json_object_set_new(cj, "slowest_rank", json_pack("{s:i,s:f}", "rank", slow, "total_p50_us", slow_p50));
	double comm_p50 = NAN;
	if (comm) {
		struct moe_summary s;
		moe_summarize(comm, iters, &s);
		comm_p50 = s.p50;
		free(comm);
	}
	/* per-rank average bytes over the p50 of dispatch+combine: GB/s (1e9 bytes per second) */
	double alg = comm_p50 > 0 ? (double)logical / n / comm_p50 * 1e-3 : 0;
	double bus = comm_p50 > 0 ? (double)wire / n / comm_p50 * 1e-3 : 0;
	/* the transport alone: wire bytes per rank over the time inside its data calls */
	double xbw = xfer_p50 > 0 ? (double)wire / n / xfer_p50 * 1e-3 : 0;
	json_object_set_new(cj, "bytes", json_pack("{s:I,s:I,s:f,s:f,s:f,s:f}", "logical", logical, "wire", wire,
						    "comm_p50_us", comm_p50 == comm_p50 ? comm_p50 : 0.0, "algbw_GBps",
						    alg, "busbw_GBps", bus, "xfer_busbw_GBps", xbw));
	/* against the rooflines of `calibrate`, per GPU: ranks sharing a GPU run at the same time */
	json_int_t slots = 0;
	for (int r = 0; r < n; r++)
		slots += json_integer_value(json_object_get(json_object_get(rp[r].result, "slots"), "computed"));
	double expert_p50 = json_number_value(json_object_get(json_object_get(json_object_get(cj, "phases"), "expert"), "p50_us"));
	int gpus = p->backend == MOE_BACKEND_CUDA ? MOE_MAX(1, MOE_MIN(n, ngpus)) : 0;
	if (gpus && o->gemm_TFLOPs > 0 && p->expert == MOE_EXPERT_SWIGLU && expert_p50 > 0) {
		double flops = (double)slots * 6.0 * (double)p->hidden * (double)p->ffn; /* three GEMMs a slot */
		double tf = flops / gpus / expert_p50 * 1e-6;
		json_object_set_new(cj, "roofline", json_pack("{s:f,s:f,s:f,s:f}", "expert_TFLOPs", tf, "expert_pct_of_gemm",
							    100 * tf / o->gemm_TFLOPs, "comm_GBps_per_gpu",
							    comm_p50 > 0 ? 2.0 * (double)logical / gpus / comm_p50 * 1e-3 : 0.0,
							    "comm_pct_of_copy",
							    comm_p50 > 0 ? 100 * 2.0 * (double)logical / gpus / comm_p50 * 1e-3 / o->copy_GBps
									 : 0.0));
	}
}

int moe_launch_case(const struct moe_case *c, hwloc_topology_t topo, const struct moe_plan *plan,
		    const struct moe_run_opts *o, const char *exe, json_t **case_json)
{
	const struct moe_params *p = &c->p;
	int n = (int)(p->dp * p->tp), outcome = MOE_EXIT_OK, reported = 0;
	json_t *cj = json_object();
	*case_json = cj;
	json_object_set_new(cj, "name", json_string(c->name));
	json_object_set_new(cj, "file", json_string(c->file));
	json_object_set_new(cj, "line", json_integer(c->line));
	json_t *params = json_object();
	for (size_t i = 0; i < moe_nopts; i++) {
		char v[8192];
		moe_param_render(p, &moe_opts[i], v, sizeof(v));
		json_object_set_new(params, moe_opts[i].name, json_string(v));
	}
	json_object_set_new(cj, "params", params);
	int64_t *tokens = moe_xcalloc((size_t)p->dp, sizeof(int64_t));
	moe_tokens_resolve(p, tokens);
	json_t *jt = json_array();
	int64_t max_rows = 0, sum_rows = 0;
	for (int64_t d = 0; d < p->dp; d++)
		json_array_append_new(jt, json_integer(tokens[d]));
	for (int r = 0; r < n; r++) {
		int64_t rows = moe_rows_dispatched(p, tokens, r);
		max_rows = MOE_MAX(max_rows, rows);
		sum_rows += rows;
	}
	size_t part_sym = moe_partition_sym_bytes(p, tokens);
	free(tokens);
	json_object_set_new(cj, "tokens", jt);

	char reason[2048] = "";
	const struct moe_strategy_ops *st = moe_strategy_find(moe_strategy_name(p->strategy));
	if (n > MOE_MAX_RANKS)
		snprintf(reason, sizeof(reason), "%d ranks: more than %d", n, MOE_MAX_RANKS);
	else if (!st)
		snprintf(reason, sizeof(reason), "strategy %s is not implemented in this build", moe_strategy_name(p->strategy));
	else if (!moe_backend_find(moe_backend_name(p->backend)))
		snprintf(reason, sizeof(reason), "backend %s is not built in (CUDA was not found at build time)",
			 moe_backend_name(p->backend));
	else if (p->backend == MOE_BACKEND_CUDA && plan->ngpus == 0)
		snprintf(reason, sizeof(reason), "backend cuda: no NVIDIA GPU on this machine");
	else if ((p->backend == MOE_BACKEND_HOST) != (p->transport == MOE_TRANSPORT_SHM || p->transport == MOE_TRANSPORT_MPI))
		snprintf(reason, sizeof(reason), "transport %s does not work with backend %s (shm and mpi go with host; ipc and "
			 "nccl with cuda)", moe_transport_name(p->transport), moe_backend_name(p->backend));
	else if (p->backend == MOE_BACKEND_HOST && (p->transport == MOE_TRANSPORT_MPI) != (o->gathered != NULL))
		snprintf(reason, sizeof(reason), o->gathered ? "transport shm needs the fork launcher's shared segment: use mpi "
			 "under mpirun or srun" : "transport mpi runs under mpirun or srun (moebench run started by them)");
	else if (p->transport == MOE_TRANSPORT_NCCL && p->strategy == MOE_STRAT_DWDP)
		snprintf(reason, sizeof(reason), "dwdp pulls weights with one-sided reads, which nccl does not offer: use ipc");
	if (!reason[0] && p->transport == MOE_TRANSPORT_NCCL && n > plan->ngpus) {
		/* NCCL refuses two ranks on one GPU: say so instead of letting the ranks hang or crash */
		snprintf(reason, sizeof(reason), "transport nccl needs one GPU per rank: %d ranks, %d GPU%s (use --transport ipc)",
			 n, plan->ngpus, plan->ngpus == 1 ? "" : "s");
		json_object_set_new(cj, "verdict", json_string("error"));
		json_object_set_new(cj, "reason", json_string(reason));
		return MOE_EXIT_USAGE;
	}
	if (reason[0]) {
		json_object_set_new(cj, "verdict", json_string("skipped"));
		json_object_set_new(cj, "reason", json_string(reason));
		return MOE_EXIT_SKIP;
	}
	if (o->gathered && o->gathered->precheck)
		return MOE_EXIT_OK;

	size_t heap = st->sym_bytes(p, max_rows, sum_rows) + part_sym;
	size_t seg = MOE_STATUS_BYTES + moe_shm_ctl_bytes(n, (int)p->dp) + (size_t)n * heap;
	int shm = memfd_create("moebench-case", MFD_CLOEXEC);
	struct moe_status_area *status = MAP_FAILED;
	struct rank_proc *rp = moe_xcalloc((size_t)n, sizeof(*rp));
	pid_t pgid = 0;
	for (int r = 0; r < n; r++)
		rp[r].fd = -1;
	if (o->gathered) { /* the ranks ran under MPI (world.c): judge what rank 0 gathered */
		for (int r = 0; r < n; r++)
			reported += (rp[r].result = json_incref(o->gathered->reports[r])) != NULL;
		outcome = o->gathered->outcome;
		snprintf(reason, sizeof(reason), "%s", o->gathered->reason ? o->gathered->reason : "");
		goto done;
	}
	if (shm < 0 || ftruncate(shm, (off_t)seg) ||
	    (status = mmap(NULL, MOE_STATUS_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0)) == MAP_FAILED) {
		snprintf(reason, sizeof(reason), "case segment of %zu bytes: %s", seg, strerror(errno));
		outcome = MOE_EXIT_RANK;
		goto done;
	}
	status->magic = MOE_STATUS_MAGIC;
	status->nranks = (uint32_t)n;
	for (int r = 0; r < n; r++)
		atomic_store(&status->phase[r], MOE_PH_start);

	double t_start = moe_now_us();
	for (int r = 0; r < n; r++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
			snprintf(reason, sizeof(reason), "socketpair: %s", strerror(errno));
			outcome = MOE_EXIT_RANK;
			goto done;
		}
		pid_t parent = getpid();
		pid_t pid = fork();
		if (pid < 0) {
			close(sv[0]);
			close(sv[1]);
			snprintf(reason, sizeof(reason), "fork: %s", strerror(errno));
			outcome = MOE_EXIT_RANK;
			goto done;
		}
		if (pid == 0) {
			close(sv[0]);
			child(exe, r, n, sv[1], shm, pgid, parent, topo, plan);
		}
		if (!pgid)
			pgid = pid;
		setpgid(pid, pgid); /* also done in the child: whichever runs first wins the race */
		close(sv[1]);
		rp[r].pid = pid;
		rp[r].fd = sv[0];
		char *text = case_text(c, o, r);
		if (moe_msg_send(rp[r].fd, MOE_MSG_CASE, text, strlen(text)))
			moe_warn("case text to rank %d: %s", r, strerror(errno));
		free(text);
	}

	/* supervise */
	double deadline = t_start + p->timeout * 1e6;
	int failed = 0, usage = 0, skip = 0;
	struct pollfd *pf = moe_xcalloc((size_t)n, sizeof(*pf));
	while (!failed) {
		int live = 0;
		for (int r = 0; r < n; r++) {
			pf[r].fd = rp[r].fd;
			pf[r].events = POLLIN;
			pf[r].revents = 0;
			live += rp[r].fd >= 0;
		}
		/* reap what exited; a rank that exits before reporting fails the case */
		for (int r = 0; r < n; r++) {
			if (rp[r].exited || rp[r].pid <= 0)
				continue;
			if (waitpid(rp[r].pid, &rp[r].wstatus, WNOHANG) == rp[r].pid) {
				rp[r].exited = 1;
				/* drain what it sent before dying */
				while (rp[r].fd >= 0) {
					struct pollfd one = {rp[r].fd, POLLIN, 0};
					if (poll(&one, 1, 0) <= 0)
						break;
					uint32_t type;
					char *buf;
					size_t len;
					if (moe_msg_recv(rp[r].fd, &type, &buf, &len)) {
						close(rp[r].fd);
						rp[r].fd = -1;
						break;
					}
					if (type == MOE_MSG_RESULT && !rp[r].result) {
						rp[r].result = json_loads(buf, 0, NULL);
						reported++;
					} else if (type == MOE_MSG_ERROR)
						snprintf(rp[r].error, sizeof(rp[r].error), "%s", buf);
					free(buf);
				}
				int st2 = rp[r].wstatus, ph = atomic_load(&status->phase[r]);
				if (rp[r].result) {
					/* a rank that reported exits with its verdict; a crash or another status on its
					 * way out (teardown, a sanitizer's leak check) fails the case all the same */
					if (WIFEXITED(st2) &&
					    (WEXITSTATUS(st2) == MOE_EXIT_OK || WEXITSTATUS(st2) == MOE_EXIT_FAIL))
						continue;
					if (WIFSIGNALED(st2))
						snprintf(reason, sizeof(reason), "rank %d was killed by signal %d (%s) in phase %s, after reporting",
							 r, WTERMSIG(st2), strsignal(WTERMSIG(st2)), moe_phase_name(ph));
					else
						snprintf(reason, sizeof(reason), "rank %d exited with status %d in phase %s, after reporting",
							 r, WEXITSTATUS(st2), moe_phase_name(ph));
				} else if (WIFEXITED(st2) && WEXITSTATUS(st2) == MOE_EXIT_SKIP) {
					snprintf(reason, sizeof(reason), "rank %d: %s", r, rp[r].error);
					skip = 1;
				} else if (WIFEXITED(st2) && WEXITSTATUS(st2) == MOE_EXIT_USAGE) {
					snprintf(reason, sizeof(reason), "rank %d: %s", r, rp[r].error);
					usage = 1;
				} else {
					describe_exit(reason, sizeof(reason), r, st2, moe_phase_name(ph),
						      (long long)atomic_load(&status->iter[r]));
					if (rp[r].error[0]) {
						size_t k = strlen(reason);
						snprintf(reason + k, sizeof(reason) - k, ": %s", rp[r].error);
					}
				}
				failed = 1;
				break;
			}
		}
		if (failed)
			break;
		int all_done = 1;
		for (int r = 0; r < n; r++)
			all_done &= rp[r].exited;
		if (all_done)
			break;
		if (moe_interrupted) {
			snprintf(reason, sizeof(reason), "interrupted (signal) while running");
			failed = 1;
			break;
		}
		double now = moe_now_us();
		if (now > deadline) {
			size_t k = (size_t)snprintf(reason, sizeof(reason), "timed out after %.1f s:", p->timeout);
			for (int r = 0; r < n && k < sizeof(reason); r++)
				if (!rp[r].result)
					k += (size_t)snprintf(reason + k, sizeof(reason) - k, " rank %d in phase %s (iteration %lld);", r,
							      moe_phase_name(atomic_load(&status->phase[r])),
							      (long long)atomic_load(&status->iter[r]));
			failed = 1;
			break;
		}
		if (!live) {
			usleep(2000);
			continue;
		}
		int pr = poll(pf, (nfds_t)n, 20);
		if (pr < 0 && errno != EINTR) {
			snprintf(reason, sizeof(reason), "poll: %s", strerror(errno));
			failed = 1;
			break;
		}
		for (int r = 0; r < n && pr > 0; r++) {
			if (!(pf[r].revents & (POLLIN | POLLHUP | POLLERR)) || rp[r].fd < 0)
				continue;
			uint32_t type;
			char *buf;
			size_t len;
			if (moe_msg_recv(rp[r].fd, &type, &buf, &len)) {
				close(rp[r].fd); /* end of stream: the exit is judged once reaped */
				rp[r].fd = -1;
				continue;
			}
			switch (type) {
			case MOE_MSG_RESULT:
				if (!rp[r].result) {
					rp[r].result = json_loads(buf, 0, NULL);
					reported++;
				}
				break;
			case MOE_MSG_ERROR: snprintf(rp[r].error, sizeof(rp[r].error), "%s", buf); break;
			case MOE_MSG_LOG: moe_warn("rank %d: %s", r, buf); break;
			case MOE_MSG_ALLGATHER:
				rp[r].gather = buf;
				rp[r].gather_len = len;
				rp[r].has_gather = 1;
				buf = NULL;
				break;
			default: moe_warn("rank %d sent an unknown message type %u", r, type);
			}
			free(buf);
			int ready = 1;
			for (int q = 0; q < n; q++)
				ready &= rp[q].has_gather;
			if (ready) {
				size_t len0 = rp[0].gather_len, tot = 0;
				for (int q = 0; q < n; q++)
					if (rp[q].gather_len != len0) {
						snprintf(reason, sizeof(reason), "bootstrap all-gather: rank %d sent %zu bytes, rank 0 %zu", q,
							 rp[q].gather_len, len0);
						failed = 1;
					}
				char *all = moe_xmalloc(len0 * (size_t)n + 1);
				for (int q = 0; q < n; q++) {
					memcpy(all + tot, rp[q].gather, len0);
					tot += len0;
					free(rp[q].gather);
					rp[q].gather = NULL;
					rp[q].has_gather = 0;
				}
				for (int q = 0; q < n && !failed; q++)
					moe_msg_send(rp[q].fd, MOE_MSG_ALLGATHER, all, tot);
				free(all);
			}
		}
	}
	free(pf);
	if (failed)
		outcome = skip ? MOE_EXIT_SKIP : usage ? MOE_EXIT_USAGE : MOE_EXIT_RANK;
	json_object_set_new(cj, "wall_s", json_real((moe_now_us() - t_start) * 1e-6));

done:
	kill_all(rp, n, pgid);
	if (outcome == MOE_EXIT_OK && reported < n) {
		snprintf(reason, sizeof(reason), "%d of %d ranks reported", reported, n);
		outcome = MOE_EXIT_RANK;
	}
	json_t *ranks = json_array();
	int mismatch = 0;
	json_t *first_bad = NULL, *tp_bad = NULL; /* borrowed from a rank's result / owned */
	for (int r = 0; r < n; r++) {
		const struct moe_rank_place *pl = &plan->ranks[r % plan->nranks];
		json_t *rj = rp[r].result ? json_deep_copy(rp[r].result) : json_object();
		json_object_set_new(rj, "rank", json_integer(r));
		json_object_set_new(rj, "gpu", json_integer(pl->gpu));
		json_object_set_new(rj, "cpuset", json_string(pl->cpuset_str));
		json_object_set_new(rj, "numa", json_integer(pl->numa_node));
		const char *v = json_string_value(json_object_get(rj, "verdict"));
		if (v && strcmp(v, "ok")) {
			mismatch = 1;
			if (!first_bad)
				first_bad = json_object_get(rj, "first_bad");
		}
		json_array_append_new(ranks, rj);
	}
	if (outcome == MOE_EXIT_OK) {
		/* the TP ranks of a DP group hold the same merged output: their digests must agree */
		json_t *dig = json_array();
		for (int r = 0; r < n; r++) {
			const char *a = json_string_value(json_object_get(rp[r].result, "digest"));
			int d0 = r - r % (int)p->tp;
			const char *b = json_string_value(json_object_get(rp[d0].result, "digest"));
			if (r % p->tp == 0)
				json_array_append_new(dig, json_string(a ? a : ""));
			else if (!a || !b || strcmp(a, b)) {
				mismatch = 1;
				if (!tp_bad)
					tp_bad = json_pack("{s:i,s:i,s:i,s:i,s:s}", "rank", r, "layer", -1, "token", -1, "column", -1,
							   "what", "tp_merge: this rank's output differs from its TP leader's");
			}
		}
		json_object_set_new(cj, "digests", dig);
		aggregate(cj, rp, n, p, plan->ngpus, o);
		if (mismatch) {
			outcome = MOE_EXIT_FAIL;
			json_object_set_new(cj, "verdict", json_string("mismatch"));
			if (first_bad)
				json_object_set(cj, "first_bad", first_bad);
			else if (tp_bad)
				json_object_set(cj, "first_bad", tp_bad);
		} else
			json_object_set_new(cj, "verdict", json_string("ok"));
	} else {
		json_object_set_new(cj, "verdict", json_string(outcome == MOE_EXIT_SKIP ? "skipped" : "error"));
		json_object_set_new(cj, "reason", json_string(reason));
	}
	json_object_set_new(cj, "ranks", ranks);
	json_decref(tp_bad);
	json_t *pids = json_array();
	for (int r = 0; r < n; r++)
		if (rp[r].pid > 0)
			json_array_append_new(pids, json_integer(rp[r].pid));
	json_object_set_new(cj, "pids", pids);
	for (int r = 0; r < n; r++) {
		if (rp[r].fd >= 0)
			close(rp[r].fd);
		json_decref(rp[r].result);
		free(rp[r].gather);
	}
	free(rp);
	if (status != MAP_FAILED)
		munmap(status, MOE_STATUS_BYTES);
	if (shm >= 0)
		close(shm);
	return outcome;
}

char *moe_launch_case_text(const struct moe_case *c, const struct moe_run_opts *o, int rank)
{
	return case_text(c, o, rank);
}
