/* The commands run and list: load the cases, then run each through the launcher (launch/), keeping the
 * results on disk after every case (report/), and end with the invariants and the exit status. */
#include <errno.h>
#include <hwloc.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "axes.h"
#include "cli.h"
#include "invariants.h"
#include "kernels.h"
#include "launcher.h"
#include "moe.h"
#include "params.h"
#include "results.h"
#include "scenario.h"
#include "status.h"
#include "topo.h"
#include "world.h"

/* auto backend and transport become concrete here, where the machine is known (GPUs are counted from
 * hwloc's PCI view: the launcher never initialises CUDA) */
static void resolve_auto(struct moe_caselist *cases, int ngpus)
{
	int cuda = moe_backend_find("cuda") != NULL && ngpus > 0;
	for (int i = 0; i < cases->n; i++) {
		struct moe_params *p = &cases->v[i].p;
		if (p->backend == MOE_BACKEND_AUTO)
			p->backend = cuda ? MOE_BACKEND_CUDA : MOE_BACKEND_HOST;
		if (p->transport == MOE_TRANSPORT_AUTO)
			p->transport = p->backend == MOE_BACKEND_HOST ? MOE_TRANSPORT_SHM
				       : p->dp * p->tp <= ngpus && p->strategy != MOE_STRAT_DWDP && p->strategy != MOE_STRAT_LL
					       ? MOE_TRANSPORT_NCCL
					       : MOE_TRANSPORT_IPC; /* dwdp and ll reach into peers' memory: nccl cannot */
	}
}

/* list: the expanded cases, one a line */
int moe_cli_list(int argc, char **argv)
{
	struct moe_run_opts o;
	struct moe_caselist cases = {0};
	int prc = moe_cli_prepare(argc, argv, &o, &cases, MOE_CMD_LIST);
	int rc = prc < 0 ? MOE_EXIT_USAGE : 0;
	for (int i = 0; !prc && i < cases.n; i++) {
		const struct moe_params *p = &cases.v[i].p;
		char tok[8192], rt[MOE_PATH_MAX + 16];
		moe_param_render(p, moe_opt_find("tokens"), tok, sizeof(tok));
		moe_param_render(p, moe_opt_find("routing"), rt, sizeof(rt));
		printf("%s\tstrategy=%s partition=%s dp=%lld tp=%lld tokens=%s H=%lld F=%lld E=%lld K=%lld expert=%s "
		       "routing=%s layers=%lld backend=%s transport=%s\n",
		       cases.v[i].name, moe_strategy_name(p->strategy), moe_partition_name(p->partition), (long long)p->dp,
		       (long long)p->tp, tok, (long long)p->hidden, (long long)p->ffn, (long long)p->experts,
		       (long long)p->topk, moe_word(moe_opt_find("expert"), p->expert),
		       rt, (long long)p->layers,
		       moe_backend_name(p->backend), moe_transport_name(p->transport));
	}
	/* a scenario that fails to load may leave the cases of the files and sections before it */
	moe_caselist_free(&cases);
	moe_cli_free_opts(&o);
	return rc;
}

/* The signal's number: the run ends with 128 + it, after saving what finished */
static void on_signal(int sig)
{
	moe_interrupted = sig;
}

/* After the last case: the invariants, the final run.json, and the table's end. OK is printed only once
 * run.json is whole on disk (a nightly reads the file, not the line). Returns 0, or -1 when it was not saved. */
static int finish_run(const struct moe_run_opts *o, json_t *run, json_t *jcases, const char *dir, FILE *out, int ncases,
		      double t0, int *inv_failed)
{
	char werr[4600] = "";
	json_t *inv = moe_invariants_check(jcases, inv_failed);
	json_object_set_new(run, "invariants", inv);
	json_t *cmp = moe_axes_compare(jcases);
	json_object_set_new(run, "comparisons", cmp);
	json_object_set_new(run, "wall_s", json_real((moe_now_us() - t0) * 1e-6));
	json_object_set_new(run, "interrupted", json_boolean(moe_interrupted));
	int wrc = moe_results_write(dir, run, werr, sizeof(werr));
	if (!wrc && moe_axes_write_tsv(dir, cmp)) {
		snprintf(werr, sizeof(werr), "%s/axes.tsv: %s", dir, strerror(errno));
		wrc = -1;
	}
	if (wrc)
		fprintf(stderr, "moebench: results NOT saved: %s (exit %d: incomplete)\n", werr, MOE_EXIT_INCOMPLETE);
	if (out) {
		moe_axes_print(out, cmp);
		size_t ii;
		json_t *iv;
		json_array_foreach(inv, ii, iv) if (!json_is_true(json_object_get(iv, "passed")))
		{
			char *names = json_dumps(json_object_get(iv, "cases"), JSON_COMPACT);
			fprintf(out, "# invariant FAILED: %s %s: %s\n", json_string_value(json_object_get(iv, "invariant")),
				names ? names : "", json_string_value(json_object_get(iv, "detail")));
			free(names);
		}
		fprintf(out, "# invariants: %zu checked, %d failed\n", json_array_size(inv), *inv_failed);
		/* OK only once run.json is whole on disk: a nightly reads the file, not this line */
		if (wrc)
			fprintf(out, "# INCOMPLETE: results not saved: %s\n", werr);
		else if (!moe_interrupted) /* an interrupted run is not OK, whatever its finished cases said */
			moe_results_footer(out, jcases);
		if (moe_interrupted)
			fprintf(out, "# INTERRUPTED by signal %d (%s) after %zu of %d cases\n", (int)moe_interrupted,
				strsignal((int)moe_interrupted), json_array_size(jcases), ncases);
		if (!wrc)
			fprintf(out, "# results: %s/run.json (wall %.1f s)\n", dir, (moe_now_us() - t0) * 1e-6);
		if (fflush(out) || ferror(out))
			fprintf(stderr, "moebench: writing the table to stdout: %s\n", strerror(errno));
	}
	if (moe_interrupted)
		fprintf(stderr, "moebench: interrupted by signal %d (%s); %s\n", (int)moe_interrupted,
			strsignal((int)moe_interrupted), wrc ? "results NOT saved" : "the cases that finished are saved");
	if (o->json_stdout) {
		char *s = json_dumps(run, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		if (s)
			puts(s);
		free(s);
	}
	return wrc ? -1 : 0;
}


/* One run on its way: the machine, where its results go, and what the cases so far came to. */
struct run {
	struct moe_run_opts *o;
	hwloc_topology_t topo;
	char exe[4096];
	int ngpus;
	char run_id[64], dir[4096];
	json_t *run, *env, *jcases;
	FILE *out; /* the table, or NULL (quiet or json) */
	double t0;
	int any_rank, any_mismatch, any_usage, nskip, printed_header;
	int cpus, warned_busy; /* CPUs this process may use; whether a busy machine was already said */
};

/* Before the first case: the CPUs, the load and the clock into run.json's env, and a warning on stderr when
 * the cases outnumber the cores or the machine is already busy (timings then measure the scheduler). */
static void load_at_start(struct run *R, const struct moe_caselist *cases)
{
	double la[3], mhz = moe_cli_cpu_mhz();
	int maxr = 1, over = 0;
	R->cpus = moe_cli_cpus_available();
	for (int i = 0; i < cases->n; i++) {
		int n = (int)(cases->v[i].p.dp * cases->v[i].p.tp);
		maxr = n > maxr ? n : maxr;
		over += n > R->cpus;
	}
	json_object_set_new(R->env, "cpus_available", json_integer(R->cpus));
	json_object_set_new(R->env, "ranks_per_core_max", json_real((double)maxr / R->cpus));
	if (mhz > 0)
		json_object_set_new(R->env, "cpu_mhz", json_real(mhz));
	if (!moe_cli_loadavg(la))
		json_object_set_new(R->env, "loadavg_start", json_pack("[f,f,f]", la[0], la[1], la[2]));
	if (over)
		moe_warn("%d of %d cases have more ranks than the %d CPU%s available (up to %.1f per core): their timings "
			 "include waiting for a core, and compare calls their changes noisy", over, cases->n, R->cpus,
			 R->cpus == 1 ? "" : "s", (double)maxr / R->cpus);
	if (la[0] > R->cpus) {
		moe_warn("the machine is busy: 1-minute load average %.2f on %d CPU%s before the run; timings will be "
			 "noisy", la[0], R->cpus, R->cpus == 1 ? "" : "s");
		R->warned_busy = 1;
	}
}

/* This executable (the ranks exec it), the machine's topology, and auto backends and transports made concrete. */
static int open_machine(struct run *R, struct moe_caselist *cases)
{
	ssize_t k = readlink("/proc/self/exe", R->exe, sizeof(R->exe) - 1);
	if (k <= 0) {
		fprintf(stderr, "moebench: readlink /proc/self/exe: %s\n", strerror(errno));
		return MOE_EXIT_FAIL;
	}
	R->exe[k] = 0;
	char err[512];
	if (moe_topo_load(&R->topo, R->o->topo_xml, err, sizeof(err))) {
		fprintf(stderr, "moebench: topology: %s\n", err);
		return MOE_EXIT_USAGE;
	}
	struct moe_plan probe;
	if (moe_plan_build(R->topo, 1, MOE_BIND_NONE, &probe, err, sizeof(err))) {
		fprintf(stderr, "moebench: placement: %s\n", err);
		hwloc_topology_destroy(R->topo);
		return MOE_EXIT_USAGE;
	}
	resolve_auto(cases, probe.ngpus);
	R->ngpus = probe.ngpus;
	moe_plan_free(&probe);
	return MOE_EXIT_OK;
}

/* A signal ends the run after the case in flight, with what finished saved. */
static void catch_signals(void)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* The run's id (time and pid) and its folder under --out, and the --dump folder. */
static int make_run_dir(struct run *R)
{
	const struct moe_run_opts *o = R->o;
	time_t now = time(NULL);
	strftime(R->run_id, sizeof(R->run_id), "%Y%m%d-%H%M%S", localtime(&now));
	snprintf(R->run_id + strlen(R->run_id), sizeof(R->run_id) - strlen(R->run_id), "-%d", (int)getpid());
	snprintf(R->dir, sizeof(R->dir), "%s/%s", o->out_dir, R->run_id);
	if (o->dump_dir && moe_cli_mkdir_p(o->dump_dir)) {
		fprintf(stderr, "moebench: cannot create --dump folder %s: %s\n", o->dump_dir, strerror(errno));
		return MOE_EXIT_USAGE;
	}
	if (moe_cli_mkdir_p(R->dir)) {
		fprintf(stderr, "moebench: cannot create results folder %s: %s\n", R->dir, strerror(errno));
		return MOE_EXIT_USAGE;
	}
	return MOE_EXIT_OK;
}

/* run.json's beginning: schema, id, the environment (with the rooflines of `calibrate` when the --out
 * folder has them) and the list the cases go into. */
static void start_record(struct run *R, int argc, char **argv)
{
	R->run = json_object();
	R->env = moe_cli_env_json(argc, argv);
	R->jcases = json_array();
	moe_cli_env_machine(R->env, R->topo, R->ngpus);
	char cpath[4096];
	snprintf(cpath, sizeof(cpath), "%s/calibration.json", R->o->out_dir);
	json_t *cal = json_load_file(cpath, 0, NULL);
	if (cal) {
		R->o->copy_GBps = json_number_value(json_object_get(cal, "copy_GBps"));
		R->o->gemm_TFLOPs = json_number_value(json_object_get(cal, "gemm_TFLOPs"));
		json_object_set_new(R->env, "calibration", cal);
	}
	json_object_set_new(R->run, "schema", json_string(MOE_SCHEMA));
	json_object_set_new(R->run, "run_id", json_string(R->run_id));
	json_object_set(R->run, "env", R->env);
	json_object_set(R->run, "cases", R->jcases);
	if (R->o->world)
		moe_world_env(R->o->world, R->env, R->run, R->dir);
	R->out = R->o->quiet || R->o->json_stdout ? NULL : stdout;
}

/* Before the first case: the placement summary, and the table's header. */
static void header_once(struct run *R, const struct moe_plan *plan)
{
	if (R->printed_header)
		return;
	char ps[512];
	snprintf(ps, sizeof(ps), "bind %s, %d GPU%s; per case, rank r gets its share of the cores in rank order",
		 moe_bind_name(plan->bind), plan->ngpus, plan->ngpus == 1 ? "" : "s");
	if (R->o->world)
		moe_world_summary(R->o->world, ps, sizeof(ps));
	json_object_set_new(R->env, "placement_summary", json_string(ps));
	if (R->out)
		moe_results_header(R->out, R->env);
	R->printed_header = 1;
}

/* The case's line: a table row, or on stderr a failed case's verdict when there is no table. */
static void case_line(const struct run *R, const struct moe_case *c, json_t *cj, int r)
{
	if (R->out) {
		moe_results_row(R->out, cj);
		fflush(R->out);
	} else if (r != MOE_EXIT_OK && r != MOE_EXIT_SKIP) {
		/* quiet or json: no table, but a case that failed still gets its line on stderr */
		const char *why = json_string_value(json_object_get(cj, "reason"));
		fprintf(stderr, "moebench: case %s: %s%s%s\n", c->name, json_string_value(json_object_get(cj, "verdict")),
			why ? ": " : "", why ? why : "");
	}
}

/* Case i of n: place it, launch it, record it with its placement, and save the results so far. */
static void run_one(struct run *R, const struct moe_case *c, int i, int ncases)
{
	const struct moe_run_opts *o = R->o;
	char err[512], werr[4600] = "";
	struct moe_plan plan;
	if (moe_plan_build(R->topo, (int)(c->p.dp * c->p.tp), o->bind, &plan, err, sizeof(err))) {
		fprintf(stderr, "moebench: case %s: placement: %s\n", c->name, err);
		R->any_usage = 1;
		return;
	}
	header_once(R, &plan);
	int tty = isatty(STDERR_FILENO) && !o->quiet;
	char prog[400];
	if (tty) {
		double el = (moe_now_us() - R->t0) * 1e-6;
		char eta[64] = "";
		if (i > 0) /* the cases so far, extrapolated */
			snprintf(eta, sizeof(eta), ", about %.0f s to go", el / i * (ncases - i));
		char nm[210];
		moe_oneline(nm, sizeof(nm), c->name); /* a hostile name must not move the terminal's cursor */
		snprintf(prog, sizeof(prog), "[%d/%d] %s (%.0f s elapsed%s)", i + 1, ncases, nm, el, eta);
		fprintf(stderr, "\r%s\033[K", prog);
		R->o->progress = prog; /* the launcher's supervisor redraws it with the iteration */
	}
	json_t *cj;
	double before[3], after[3];
	moe_cli_loadavg(before);
	int r = o->world ? moe_world_case(o->world, c, &plan, o, &cj) : moe_launch_case(c, R->topo, &plan, o, R->exe, &cj);
	moe_cli_loadavg(after);
	json_t *load = moe_cli_load_json(plan.nranks, R->cpus, before, after, moe_cli_cpu_mhz());
	if (json_is_true(json_object_get(load, "loaded")) && !R->warned_busy) {
		moe_warn("case %s: the 1-minute load average went from %.2f to %.2f on %d CPUs: the machine is busy, "
			 "timings from here on are noisy", c->name, before[0], after[0], R->cpus);
		R->warned_busy = 1;
	}
	json_object_set_new(cj, "load", load);
	R->o->progress = NULL;
	if (tty)
		fprintf(stderr, "\r\033[K");
	json_t *pj = json_array();
	for (int q = 0; q < plan.nranks; q++)
		json_array_append_new(pj, json_pack("{s:i,s:i,s:s,s:i}", "rank", q, "gpu", plan.ranks[q].gpu, "cpuset",
						    plan.ranks[q].cpuset_str, "numa", plan.ranks[q].numa_node));
	json_object_set_new(cj, "placement", json_pack("{s:s,s:o}", "bind", moe_bind_name(plan.bind), "ranks", pj));
	moe_plan_free(&plan);
	json_array_append_new(R->jcases, cj);
	case_line(R, c, cj, r);
	R->any_rank |= r == MOE_EXIT_RANK;
	R->any_mismatch |= r == MOE_EXIT_FAIL;
	R->any_usage |= r == MOE_EXIT_USAGE;
	R->nskip += r == MOE_EXIT_SKIP;
	/* results so far are on disk after every case: a later crash loses nothing */
	if (moe_results_write(R->dir, R->run, werr, sizeof(werr)))
		fprintf(stderr, "moebench: cannot save the results so far: %s\n", werr);
}

/* The run's exit status: the worst that happened, in the order the usage text gives. */
static int run_status(const struct run *R, int wrc, int inv_failed, int ncases)
{
	if (moe_interrupted)
		return 128 + (int)moe_interrupted;
	if (wrc)
		return MOE_EXIT_INCOMPLETE;
	if (R->any_rank)
		return MOE_EXIT_RANK;
	if (R->any_usage)
		return MOE_EXIT_USAGE;
	if (R->any_mismatch || inv_failed)
		return MOE_EXIT_FAIL;
	if (R->nskip == ncases)
		return MOE_EXIT_SKIP;
	return MOE_EXIT_OK;
}

/* run's work once the cases are loaded; moe_cli_run frees the options and the cases */
static int run_cases(int argc, char **argv, struct moe_run_opts *o, struct moe_caselist *cases)
{
	if (!cases->n) {
		fprintf(stderr, "moebench: no case matches --only %s\n", o->only ? o->only : "");
		return MOE_EXIT_USAGE;
	}
	struct run R = {.o = o};
	int rc = open_machine(&R, cases);
	if (rc)
		return rc;
	catch_signals();
	if ((rc = make_run_dir(&R))) {
		hwloc_topology_destroy(R.topo);
		return rc;
	}
	start_record(&R, argc, argv);
	load_at_start(&R, cases);
	R.t0 = moe_now_us();
	for (int i = 0; i < cases->n && !moe_interrupted; i++)
		run_one(&R, &cases->v[i], i, cases->n);
	int inv_failed = 0;
	int wrc = finish_run(o, R.run, R.jcases, R.dir, R.out, cases->n, R.t0, &inv_failed);
	/* results/latest points at the newest run */
	char link[4096];
	snprintf(link, sizeof(link), "%s/latest", o->out_dir);
	unlink(link);
	if (symlink(R.run_id, link))
		moe_debug("symlink %s: %s", link, strerror(errno));
	json_decref(R.env);
	json_decref(R.jcases);
	json_decref(R.run);
	hwloc_topology_destroy(R.topo);
	return run_status(&R, wrc, inv_failed, cases->n);
}

/* OpenBLAS starts its thread pool when the library loads, before main: a launcher that forks with that pool
 * alive can hang in fork() under a memory limit (ulimit -v) and ignores SIGTERM there. The launcher needs no
 * BLAS threads, so run re-executes itself once with OPENBLAS_NUM_THREADS=1 and keeps the user's value in
 * MOEBENCH_USER_BLAS_THREADS; the launcher puts it back for the ranks (launch/spawn.c, child). */
void moe_cli_launcher_without_blas_threads(char **argv)
{
	const char *u = getenv("OPENBLAS_NUM_THREADS");
	if (getenv("MOEBENCH_USER_BLAS_THREADS") || (u && !strcmp(u, "1")))
		return;
	setenv("MOEBENCH_USER_BLAS_THREADS", u ? u : "", 1);
	setenv("OPENBLAS_NUM_THREADS", "1", 1);
	execv("/proc/self/exe", argv);
	moe_debug("re-exec without BLAS threads: %s", strerror(errno)); /* carry on with the pool */
	unsetenv("MOEBENCH_USER_BLAS_THREADS");
	if (u)
		setenv("OPENBLAS_NUM_THREADS", u, 1);
	else
		unsetenv("OPENBLAS_NUM_THREADS");
}

/* run: options, the scenario files' cases, then run_cases */
int moe_cli_run(int argc, char **argv)
{
	struct moe_run_opts o;
	struct moe_caselist cases = {0};
	int prc = moe_cli_prepare(argc, argv, &o, &cases, MOE_CMD_RUN);
	int rc = prc < 0 ? MOE_EXIT_USAGE : prc > 0 ? MOE_EXIT_OK : moe_world_run(argc, argv, &o, &cases, run_cases);
	moe_caselist_free(&cases);
	moe_cli_free_opts(&o);
	return rc;
}
