/* moebench command line: run, list, topo, help; and the hidden __rank entry the launcher execs. */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <glob.h>
#include <hwloc.h>
#include <jansson.h>
#include <papi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "calibrate.h"
#ifdef MOE_HAVE_CUDA_BACKEND
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "cuda_iface.h"
#endif
#include "compare.h"
#include "invariants.h"
#include "kernels.h"
#include "launcher.h"
#include "moe.h"
#include "params.h"
#include "plot.h"
#include "rank.h"
#include "results.h"
#include "scenario.h"
#include "status.h"
#include "topo.h"
#include "world.h"

#ifndef MOE_VERSION
#define MOE_VERSION "0.0.0"
#endif
#ifndef MOE_GIT_COMMIT
#define MOE_GIT_COMMIT "unknown"
#endif
#ifndef MOE_SOURCE_DIR
#define MOE_SOURCE_DIR "."
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: moebench COMMAND [OPTIONS] [SCENARIO...]\n"
		"\n"
		"Benchmarks and checks the ways a Mixture-of-Experts layer moves tokens between ranks.\n"
		"\n"
		"commands:\n"
		"  run [SCENARIO...]   run the cases of the scenario files (default scenarios/smoke.ini)\n"
		"  list [SCENARIO...]  print the expanded cases, one a line\n"
		"  topo [--ranks N]    print the machine topology and the placement plan for N ranks\n"
		"                      (default: one per GPU, or one per core without GPUs; --bind, --topo-xml)\n"
		"  compare BASE NEW    per case and phase: change, p-value, verdict; exit 1 on a regression\n"
		"                      (moebench compare --help)\n"
		"  history record|list|trend   the SQLite history of runs (moebench history --help)\n"
		"  report BASE NEW     a Markdown page for a review: environment, comparison, plots\n"
		"  calibrate [--backend cuda]  the host's memcpy bandwidth; with cuda the GPU's copy bandwidth and\n"
		"                      bf16 GEMM rate, and the backend's kernels as a percentage of them\n"
		"  plot RUN_DIR... [--out DIR]  draw a run's results with gnuplot, PNG and SVG: latency,\n"
		"                      phases, cdf, ranks-CASE (default DIR: RUN_DIR/plots; DIR/RUN-ID with several)\n"
		"  plot --trend FILE [--out DIR]  draw a nightly trend TSV as trend.png/.svg (default DIR: FILE's folder)\n"
		"  help [keys]         this text, or every scenario key with its default\n"
		"\n"
		"options of run and list:\n"
		"  --set KEY=VALUE     override a scenario key in every case (repeatable; VALUE may sweep a|b)\n"
		"  --only GLOB         only cases whose name matches GLOB (fnmatch)\n"
		"  --backend B         host, cuda, or auto (cuda when built and a GPU is present)\n"
		"  --transport T       shm (host backend), ipc (CUDA IPC; ranks may share a GPU), nccl (one GPU\n"
		"                      per rank), mpi (host backend under mpirun or srun, docs/MULTINODE.md), or\n"
		"                      auto (nccl when ranks <= GPUs, else ipc; mpi or nccl under mpirun/srun)\n"
		"  --iters N           timed iterations (scenario key iters)\n"
		"  --warmup N          discarded warm-up iterations (key warmup)\n"
		"  --timeout SEC       seconds a case may run before its ranks are killed (key timeout)\n"
		"  --check C           full, sample:N or off (key check)\n"
		"options of run:\n"
		"  --out DIR           results folder (default results/); each run writes DIR/RUN-ID/\n"
		"  --bind MODE         auto, none, core, numa or gpu (default auto: gpu with GPUs, else core)\n"
		"  --format F          text (default) or json (run.json also on stdout)\n"
		"  --dump DIR          write each case's inputs, routing, outputs and weights as .npy files\n"
		"                      (DIR/CASE/rankR_layerL_{x,y,idx,w,wg,expertE_w1,...}.npy; bf16 as float32)\n"
		"  -q, --quiet         no table on stdout\n"
		"  -v, --verbose       more messages on stderr (repeatable)\n"
		"test aids (documented so that tests can plant faults; not for measurements):\n"
		"  --inject-fault RANK:PHASE:KIND   make RANK crash, hang, exit or run out of memory when it enters PHASE\n"
		"                                   (KIND crash|hang|exit|oom; PHASE setup|route|dispatch|expert|combine|verify)\n"
		"  --inject-corrupt RANK:TOKEN:COL  flip one bit of RANK's output before it is verified\n"
		"  --inject-delay PHASE:US          every rank spends US more microseconds in PHASE, every iteration\n"
		"                                   (a busy wait on the host backend, a device spin kernel on cuda;\n"
		"                                   to check that compare flags a slowdown)\n"
		"  --topo-xml FILE     plan placement from an hwloc XML topology instead of this machine\n"
		"\n"
		"exit codes: 0 ok, 1 mismatch, 2 usage or scenario error, 3 a rank crashed, hung or timed out,\n"
		"77 nothing runnable here. Results: DIR/RUN-ID/run.json, cases.tsv, samples.tsv.\n");
}

enum {
	OPT_SET = 256, OPT_ONLY, OPT_BACKEND, OPT_TRANSPORT, OPT_ITERS, OPT_WARMUP, OPT_TIMEOUT, OPT_CHECK, OPT_OUT,
	OPT_BIND, OPT_FORMAT, OPT_INJECT, OPT_CORRUPT, OPT_TOPO_XML, OPT_HELP, OPT_RANKS, OPT_DUMP, OPT_DELAY,
};

static const struct option long_opts[] = {
	{"set", required_argument, NULL, OPT_SET},
	{"only", required_argument, NULL, OPT_ONLY},
	{"backend", required_argument, NULL, OPT_BACKEND},
	{"transport", required_argument, NULL, OPT_TRANSPORT},
	{"iters", required_argument, NULL, OPT_ITERS},
	{"warmup", required_argument, NULL, OPT_WARMUP},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"check", required_argument, NULL, OPT_CHECK},
	{"out", required_argument, NULL, OPT_OUT},
	{"bind", required_argument, NULL, OPT_BIND},
	{"format", required_argument, NULL, OPT_FORMAT},
	{"inject-fault", required_argument, NULL, OPT_INJECT},
	{"inject-corrupt", required_argument, NULL, OPT_CORRUPT},
	{"topo-xml", required_argument, NULL, OPT_TOPO_XML},
	{"ranks", required_argument, NULL, OPT_RANKS},
	{"dump", required_argument, NULL, OPT_DUMP},
	{"inject-delay", required_argument, NULL, OPT_DELAY},
	{"quiet", no_argument, NULL, 'q'},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, OPT_HELP},
	{NULL, 0, NULL, 0},
};

static void push_set(struct moe_run_opts *o, char *s)
{
	o->sets = realloc(o->sets, (size_t)(o->nsets + 1) * sizeof(char *));
	if (!o->sets)
		abort();
	o->sets[o->nsets++] = s;
}

static void add_set(struct moe_run_opts *o, const char *key, const char *val)
{
	size_t n = strlen(key) + strlen(val) + 2;
	char *s = moe_xmalloc(n);
	snprintf(s, n, "%s=%s", key, val);
	push_set(o, s);
}

/* What parse_opts allocated: the --set values (every command that parses options frees them, on every path). */
static void free_opts(struct moe_run_opts *o)
{
	for (int i = 0; i < o->nsets; i++)
		free(o->sets[i]);
	free(o->sets);
	o->sets = NULL;
	o->nsets = 0;
}

static int parse_opts(int argc, char **argv, struct moe_run_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->inject_rank = o->corrupt_rank = -1;
	o->out_dir = "results";
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "qv", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_SET: {
			if (!strchr(optarg, '=')) {
				fprintf(stderr, "moebench: --set %s: expected KEY=VALUE\n", optarg);
				return -1;
			}
			push_set(o, moe_xstrdup(optarg));
			break;
		}
		case OPT_ONLY: o->only = optarg; break;
		case OPT_BACKEND: add_set(o, "backend", optarg); break;
		case OPT_TRANSPORT: add_set(o, "transport", optarg); break;
		case OPT_ITERS: add_set(o, "iters", optarg); break;
		case OPT_WARMUP: add_set(o, "warmup", optarg); break;
		case OPT_TIMEOUT: add_set(o, "timeout", optarg); break;
		case OPT_CHECK: add_set(o, "check", optarg); break;
		case OPT_OUT: o->out_dir = optarg; break;
		case OPT_BIND:
			if (moe_bind_parse(optarg, &o->bind)) {
				fprintf(stderr, "moebench: --bind %s: expected auto, none, core, numa or gpu\n", optarg);
				return -1;
			}
			break;
		case OPT_FORMAT:
			if (strcmp(optarg, "text") && strcmp(optarg, "json")) {
				fprintf(stderr, "moebench: --format %s: expected text or json\n", optarg);
				return -1;
			}
			o->json_stdout = !strcmp(optarg, "json");
			break;
		case OPT_INJECT: {
			char ph[32] = "", kind[16] = "";
			if (sscanf(optarg, "%d:%31[^:]:%15s", &o->inject_rank, ph, kind) != 3 || o->inject_rank < 0 ||
			    (strcmp(kind, "crash") && strcmp(kind, "hang") && strcmp(kind, "exit") && strcmp(kind, "oom"))) {
				fprintf(stderr, "moebench: --inject-fault %s: expected RANK:PHASE:crash|hang|exit|oom\n", optarg);
				return -1;
			}
			int known = 0;
			for (int i = 0; i < MOE_PH_COUNT; i++)
				known |= !strcmp(moe_phase_name(i), ph);
			if (!known) {
				fprintf(stderr, "moebench: --inject-fault %s: unknown phase '%s'\n", optarg, ph);
				return -1;
			}
			snprintf(o->inject_phase, sizeof(o->inject_phase), "%s", ph);
			snprintf(o->inject_kind, sizeof(o->inject_kind), "%s", kind);
			break;
		}
		case OPT_CORRUPT:
			if (sscanf(optarg, "%d:%lld:%lld", &o->corrupt_rank, &o->corrupt_token, &o->corrupt_col) != 3 ||
			    o->corrupt_rank < 0 || o->corrupt_token < 0 || o->corrupt_col < 0) {
				fprintf(stderr, "moebench: --inject-corrupt %s: expected RANK:TOKEN:COLUMN\n", optarg);
				return -1;
			}
			break;
		case OPT_TOPO_XML: o->topo_xml = optarg; break;
		case OPT_DUMP: o->dump_dir = optarg; break;
		case OPT_DELAY: {
			char ph[32] = "";
			int known = 0;
			if (sscanf(optarg, "%31[^:]:%lf", ph, &o->delay_us) == 2 && o->delay_us >= 0)
				for (int i = 0; i < MOE_PH_COUNT; i++)
					known |= !strcmp(moe_phase_name(i), ph);
			if (!known) {
				fprintf(stderr, "moebench: --inject-delay %s: expected PHASE:MICROSECONDS\n", optarg);
				return -1;
			}
			snprintf(o->delay_phase, sizeof(o->delay_phase), "%s", ph);
			break;
		}
		case OPT_RANKS: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 4096) {
				fprintf(stderr, "moebench: --ranks %s: expected a number from 1 to 4096\n", optarg);
				return -1;
			}
			o->ranks = (int)v;
			break;
		}
		case 'q': o->quiet = 1; break;
		case 'v': moe_log_verbosity++; break;
		case OPT_HELP:
			usage(stdout);
			free_opts(o);
			exit(0);
		default: return -1;
		}
	}
	return 0;
}

static const char *default_scenario(void)
{
	static char path[4096];
	if (access("scenarios/smoke.ini", R_OK) == 0)
		return "scenarios/smoke.ini";
	snprintf(path, sizeof(path), "%s/scenarios/smoke.ini", MOE_SOURCE_DIR);
	return path;
}

static int load_cases(int argc, char **argv, struct moe_run_opts *o, struct moe_caselist *cases)
{
	char err[2048];
	const char *def = default_scenario();
	int nfiles = argc - optind;
	for (int i = 0; i < (nfiles ? nfiles : 1); i++) {
		const char *f = nfiles ? argv[optind + i] : def;
		if (moe_scenario_load(f, o->sets, o->nsets, cases, err, sizeof(err))) {
			fprintf(stderr, "moebench: %s\n", err);
			return -1;
		}
	}
	if (o->only) {
		int k = 0;
		for (int i = 0; i < cases->n; i++)
			if (!fnmatch(o->only, cases->v[i].name, 0))
				cases->v[k++] = cases->v[i];
		cases->n = k;
	}
	return 0;
}

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
				       : p->dp * p->tp <= ngpus && p->strategy != MOE_STRAT_DWDP ? MOE_TRANSPORT_NCCL
												 : MOE_TRANSPORT_IPC;
	}
}

/* Options, then the scenario files' cases: what list and run both start with. */
static int prepare(int argc, char **argv, struct moe_run_opts *o, struct moe_caselist *cases)
{
	return parse_opts(argc, argv, o) || load_cases(argc, argv, o, cases) ? -1 : 0;
}

static int cmd_list(int argc, char **argv)
{
	struct moe_run_opts o;
	struct moe_caselist cases = {0};
	int rc = prepare(argc, argv, &o, &cases) ? MOE_EXIT_USAGE : 0;
	for (int i = 0; !rc && i < cases.n; i++) {
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
	free_opts(&o);
	return rc;
}

static int cmd_topo(int argc, char **argv)
{
	struct moe_run_opts o;
	int bad = parse_opts(argc, argv, &o);
	free_opts(&o); /* topo reads no --set */
	if (bad)
		return MOE_EXIT_USAGE;
	int ext = moe_world_topo(&o); /* under mpirun or srun: every rank's node, GPU and cpuset */
	if (ext >= 0)
		return ext;
	int nranks = o.ranks;
	hwloc_topology_t topo;
	char err[512];
	if (moe_topo_load(&topo, o.topo_xml, err, sizeof(err))) {
		fprintf(stderr, "moebench: topology: %s\n", err);
		return MOE_EXIT_FAIL;
	}
	struct moe_plan plan;
	if (!nranks) {
		/* one rank per GPU, or per core without GPUs */
		struct moe_plan probe;
		if (moe_plan_build(topo, 1, o.bind, &probe, err, sizeof(err))) {
			fprintf(stderr, "moebench: placement: %s\n", err);
			hwloc_topology_destroy(topo);
			return MOE_EXIT_FAIL;
		}
		nranks = probe.ngpus ? probe.ngpus
				     : hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) > 0
					       ? hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE)
					       : 1;
		moe_plan_free(&probe);
	}
	if (moe_plan_build(topo, nranks, o.bind, &plan, err, sizeof(err))) {
		fprintf(stderr, "moebench: placement: %s\n", err);
		hwloc_topology_destroy(topo);
		return MOE_EXIT_FAIL;
	}
	moe_plan_print(stdout, topo, &plan);
	moe_plan_free(&plan);
	hwloc_topology_destroy(topo);
	return 0;
}

static int mkdir_p(const char *path);

static int cmd_calibrate(int argc, char **argv)
{
	struct moe_run_opts o;
	int bad = parse_opts(argc, argv, &o), cuda = 0;
	for (int i = 0; i < o.nsets; i++)
		cuda |= !strcmp(o.sets[i], "backend=cuda");
	free_opts(&o);
	if (bad)
		return MOE_EXIT_USAGE;
	if (cuda) {
#ifdef MOE_HAVE_CUDA_BACKEND
		double copy = 0, gemm = 0;
		int rc = moe_cuda_calibrate(0, stdout, &copy, &gemm);
		if (rc == MOE_ERR_UNSUPPORTED)
			fprintf(stderr, "moebench: calibrate: no usable GPU\n");
		if (rc != MOE_OK)
			return rc == MOE_ERR_UNSUPPORTED ? MOE_EXIT_SKIP : MOE_EXIT_FAIL;
		/* run reads this to put every case's phases against the rooflines */
		char path[4096], text[256];
		snprintf(path, sizeof(path), "%s/calibration.json", o.out_dir);
		int n = snprintf(text, sizeof(text), "{\"copy_GBps\": %.3f, \"gemm_TFLOPs\": %.3f}\n", copy, gemm);
		if (mkdir_p(o.out_dir) || moe_write_atomic(path, text, (size_t)n)) {
			fprintf(stderr, "moebench: calibrate: cannot write %s: %s\n", path, strerror(errno));
			return MOE_EXIT_FAIL;
		}
		printf("# saved to %s: moebench run reads it from the same --out folder\n", path);
		return 0;
#else
		fprintf(stderr, "moebench: calibrate: the CUDA backend is not built in\n");
		return MOE_EXIT_SKIP;
#endif
	}
	struct moe_calibration c;
	size_t bytes = (size_t)256 << 20;
	if (moe_calibrate_host(bytes, 20, &c)) {
		fprintf(stderr, "moebench: calibrate: cannot allocate 2 x %zu bytes\n", bytes);
		return MOE_EXIT_FAIL;
	}
	printf("# host memcpy, one core: %zu MiB copied %d times between two touched buffers\n", bytes >> 20, c.copy_reps);
	printf("host_copy_GBps_p50\t%.2f\nhost_copy_GBps_max\t%.2f\n", c.copy_GBps_p50, c.copy_GBps_max);
	printf("# GB/s counts bytes copied (10^9 per second); bytes read + written is twice that\n");
	return 0;
}

/* plot RUN_DIR... and plot --trend FILE: gnuplot draws, moe_plot_* decide what and where */
static int cmd_plot(int argc, char **argv)
{
	enum { PLOT_OUT = 1, PLOT_TREND, PLOT_HELP };
	static const struct option plot_opts[] = {
		{"out", required_argument, NULL, PLOT_OUT},
		{"trend", required_argument, NULL, PLOT_TREND},
		{"help", no_argument, NULL, PLOT_HELP},
		{NULL, 0, NULL, 0},
	};
	const char *out = NULL, *trend = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "v", plot_opts, NULL)) != -1) {
		switch (c) {
		case PLOT_OUT: out = optarg; break;
		case PLOT_TREND: trend = optarg; break;
		case 'v': moe_log_verbosity++; break;
		case PLOT_HELP: usage(stdout); exit(0);
		default: return MOE_EXIT_USAGE;
		}
	}
	int nruns = argc - optind;
	if (!nruns && !trend) {
		fprintf(stderr, "moebench: plot: expected RUN_DIR... or --trend FILE\n");
		return MOE_EXIT_USAGE;
	}
	char err[2048], dir[4096], idbuf[4096];
	int rc = MOE_EXIT_OK;
	for (int i = 0; i < nruns; i++) {
		const char *run = argv[optind + i];
		/* several runs into one --out would overwrite each other: each gets its own folder there */
		if (!out)
			snprintf(dir, sizeof(dir), "%s/plots", run);
		else if (nruns > 1) {
			snprintf(idbuf, sizeof(idbuf), "%s", run);
			for (size_t n = strlen(idbuf); n > 1 && idbuf[n - 1] == '/'; n--)
				idbuf[n - 1] = 0;
			const char *id = strrchr(idbuf, '/');
			snprintf(dir, sizeof(dir), "%s/%s", out, id ? id + 1 : idbuf);
		} else
			snprintf(dir, sizeof(dir), "%s", out);
		if (moe_plot_run(run, dir, NULL, err, sizeof(err))) {
			fprintf(stderr, "moebench: plot %s: %s\n", run, err);
			rc = MOE_EXIT_FAIL;
		} else
			printf("# plots of %s: %s/\n", run, dir);
	}
	if (trend) {
		if (out)
			snprintf(dir, sizeof(dir), "%s", out);
		else {
			snprintf(dir, sizeof(dir), "%s", trend);
			char *slash = strrchr(dir, '/');
			if (slash)
				*slash = 0;
			else
				snprintf(dir, sizeof(dir), ".");
		}
		if (moe_plot_trend(trend, dir, NULL, err, sizeof(err))) {
			fprintf(stderr, "moebench: plot --trend %s: %s\n", trend, err);
			rc = MOE_EXIT_FAIL;
		} else
			printf("# trend of %s: %s/\n", trend, dir);
	}
	return rc;
}

static void on_signal(int sig)
{
	(void)sig;
	moe_interrupted = 1;
}

/* The first line of a file (driver version, GPU model), or "" */
static void first_line(const char *path, const char *prefix, char *out, size_t len)
{
	out[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f))
		if (!prefix || !strncmp(line, prefix, strlen(prefix))) {
			const char *v = prefix ? line + strlen(prefix) : line;
			while (*v == ' ' || *v == '\t')
				v++;
			snprintf(out, len, "%s", v);
			out[strcspn(out, "\n")] = 0;
			break;
		}
	fclose(f);
}

/* What a comparison needs to know about the machine: GPUs (read from the driver's /proc files, so the
 * launcher still never initialises CUDA), library versions, and a digest of the hwloc topology. */
static void env_machine(json_t *env, hwloc_topology_t topo, int ngpus)
{
	char model[256] = "", driver[256] = "", gpu[320];
	first_line("/proc/driver/nvidia/version", "NVRM version:", driver, sizeof(driver));
	glob_t g;
	if (glob("/proc/driver/nvidia/gpus/*/information", 0, NULL, &g) == 0) {
		if (g.gl_pathc)
			first_line(g.gl_pathv[0], "Model:", model, sizeof(model));
		globfree(&g);
	}
	snprintf(gpu, sizeof(gpu), "%d x %s", ngpus, ngpus ? (model[0] ? model : "NVIDIA GPU") : "none");
	json_object_set_new(env, "gpu", json_string(gpu));
	json_object_set_new(env, "driver", json_string(driver));
#ifdef MOE_HAVE_CUDA_BACKEND
	char v[32];
	snprintf(v, sizeof(v), "%d.%d", CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
	json_object_set_new(env, "cuda_built", json_string(v));
	snprintf(v, sizeof(v), "%d.%d.%d", NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
	json_object_set_new(env, "nccl_built", json_string(v));
#endif
	/* structure only: memory sizes change while a VM runs (some grow their RAM on use) */
	char shape[256];
	snprintf(shape, sizeof(shape), "packages=%d numa=%d cores=%d pus=%d gpus=%d",
		 hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE), hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE),
		 hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE), hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU), ngpus);
	json_object_set_new(env, "topology", json_string(shape));
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *q = shape; *q; q++)
		h = (h ^ (unsigned char)*q) * 0x100000001b3ull;
	char d[24];
	snprintf(d, sizeof(d), "%016llx", (unsigned long long)h);
	json_object_set_new(env, "topology_digest", json_string(d));
}

static json_t *env_json(int argc, char **argv)
{
	struct utsname u;
	uname(&u);
	char host[256] = "?", date[64], cpu[256] = "unknown";
	gethostname(host, sizeof(host));
	time_t now = time(NULL);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		char line[512];
		while (fgets(line, sizeof(line), f))
			if (!strncmp(line, "model name", 10)) {
				char *c = strchr(line, ':');
				if (c) {
					snprintf(cpu, sizeof(cpu), "%s", c + 2);
					cpu[strcspn(cpu, "\n")] = 0;
				}
				break;
			}
		fclose(f);
	}
	json_t *cmd = json_array();
	for (int i = 0; i < argc; i++)
		json_array_append_new(cmd, json_string(argv[i]));
	char hw[32], papi[32];
	unsigned hv = hwloc_get_api_version();
	snprintf(hw, sizeof(hw), "%u.%u.%u", hv >> 16, (hv >> 8) & 0xff, hv & 0xff);
	snprintf(papi, sizeof(papi), "%d.%d.%d", PAPI_VERSION_MAJOR(PAPI_VERSION), PAPI_VERSION_MINOR(PAPI_VERSION),
		 PAPI_VERSION_REVISION(PAPI_VERSION));
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:o}", "version", MOE_VERSION, "git_commit",
			 MOE_GIT_COMMIT, "host", host, "kernel", u.release, "date", date, "cpu", cpu, "ncpus",
			 (int)sysconf(_SC_NPROCESSORS_ONLN), "hwloc", hw, "papi", papi, "jansson", JANSSON_VERSION,
			 "command", cmd);
}

static int mkdir_p(const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *s = tmp + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			if (mkdir(tmp, 0755) && errno != EEXIST)
				return -1;
			*s = '/';
		}
	return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

/* run's work once the cases are loaded; cmd_run frees the options and the cases */
static int run_cases(int argc, char **argv, struct moe_run_opts *o, struct moe_caselist *cases)
{
	int ngpus = 0;
	if (!cases->n) {
		fprintf(stderr, "moebench: no case matches --only %s\n", o->only ? o->only : "");
		return MOE_EXIT_USAGE;
	}
	char exe[4096];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (k <= 0) {
		fprintf(stderr, "moebench: readlink /proc/self/exe: %s\n", strerror(errno));
		return MOE_EXIT_FAIL;
	}
	exe[k] = 0;
	hwloc_topology_t topo;
	char err[512];
	if (moe_topo_load(&topo, o->topo_xml, err, sizeof(err))) {
		fprintf(stderr, "moebench: topology: %s\n", err);
		return MOE_EXIT_USAGE;
	}
	{
		struct moe_plan probe;
		if (moe_plan_build(topo, 1, MOE_BIND_NONE, &probe, err, sizeof(err))) {
			fprintf(stderr, "moebench: placement: %s\n", err);
			hwloc_topology_destroy(topo);
			return MOE_EXIT_USAGE;
		}
		resolve_auto(cases, probe.ngpus);
		ngpus = probe.ngpus;
		moe_plan_free(&probe);
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	char run_id[64], dir[4096];
	time_t now = time(NULL);
	strftime(run_id, sizeof(run_id), "%Y%m%d-%H%M%S", localtime(&now));
	snprintf(run_id + strlen(run_id), sizeof(run_id) - strlen(run_id), "-%d", (int)getpid());
	snprintf(dir, sizeof(dir), "%s/%s", o->out_dir, run_id);
	if (o->dump_dir && mkdir_p(o->dump_dir)) {
		fprintf(stderr, "moebench: cannot create --dump folder %s: %s\n", o->dump_dir, strerror(errno));
		hwloc_topology_destroy(topo);
		return MOE_EXIT_USAGE;
	}
	if (mkdir_p(dir)) {
		fprintf(stderr, "moebench: cannot create results folder %s: %s\n", dir, strerror(errno));
		hwloc_topology_destroy(topo);
		return MOE_EXIT_USAGE;
	}
	json_t *run = json_object(), *env = env_json(argc, argv), *jcases = json_array();
	env_machine(env, topo, ngpus);
	{
		char cpath[4096];
		snprintf(cpath, sizeof(cpath), "%s/calibration.json", o->out_dir);
		json_t *cal = json_load_file(cpath, 0, NULL);
		if (cal) {
			o->copy_GBps = json_number_value(json_object_get(cal, "copy_GBps"));
			o->gemm_TFLOPs = json_number_value(json_object_get(cal, "gemm_TFLOPs"));
			json_object_set_new(env, "calibration", cal);
		}
	}
	json_object_set_new(run, "schema", json_string(MOE_SCHEMA));
	json_object_set_new(run, "run_id", json_string(run_id));
	json_object_set(run, "env", env);
	json_object_set(run, "cases", jcases);
	if (o->world)
		moe_world_env(o->world, env, run, dir);
	FILE *out = o->quiet || o->json_stdout ? NULL : stdout;
	int any_rank = 0, any_mismatch = 0, any_usage = 0, nskip = 0, printed_header = 0;
	double t0 = moe_now_us();
	for (int i = 0; i < cases->n && !moe_interrupted; i++) {
		const struct moe_case *c = &cases->v[i];
		int n = (int)(c->p.dp * c->p.tp);
		struct moe_plan plan;
		if (moe_plan_build(topo, n, o->bind, &plan, err, sizeof(err))) {
			fprintf(stderr, "moebench: case %s: placement: %s\n", c->name, err);
			any_usage = 1;
			continue;
		}
		if (!printed_header) {
			char ps[512];
			snprintf(ps, sizeof(ps), "bind %s, %d GPU%s; per case, rank r gets its share of the cores in rank order",
				 moe_bind_name(plan.bind), plan.ngpus, plan.ngpus == 1 ? "" : "s");
			if (o->world)
				moe_world_summary(o->world, ps, sizeof(ps));
			json_object_set_new(env, "placement_summary", json_string(ps));
			if (out)
				moe_results_header(out, env);
			printed_header = 1;
		}
		if (isatty(STDERR_FILENO) && !o->quiet) {
			double el = (moe_now_us() - t0) * 1e-6;
			char eta[64] = "";
			if (i > 0) /* the cases so far, extrapolated */
				snprintf(eta, sizeof(eta), ", about %.0f s to go", el / i * (cases->n - i));
			fprintf(stderr, "\r[%d/%d] %s ... %.0f s elapsed%s\033[K", i + 1, cases->n, c->name, el, eta);
		}
		json_t *cj;
		int r = o->world ? moe_world_case(o->world, c, &plan, o, &cj) : moe_launch_case(c, topo, &plan, o, exe, &cj);
		if (isatty(STDERR_FILENO) && !o->quiet)
			fprintf(stderr, "\r\033[K");
		json_t *pj = json_array();
		for (int q = 0; q < plan.nranks; q++)
			json_array_append_new(pj, json_pack("{s:i,s:i,s:s,s:i}", "rank", q, "gpu", plan.ranks[q].gpu, "cpuset",
							    plan.ranks[q].cpuset_str, "numa", plan.ranks[q].numa_node));
		json_object_set_new(cj, "placement", json_pack("{s:s,s:o}", "bind", moe_bind_name(plan.bind), "ranks", pj));
		moe_plan_free(&plan);
		json_array_append_new(jcases, cj);
		if (out) {
			moe_results_row(out, cj);
			fflush(out);
		}
		any_rank |= r == MOE_EXIT_RANK;
		any_mismatch |= r == MOE_EXIT_FAIL;
		any_usage |= r == MOE_EXIT_USAGE;
		nskip += r == MOE_EXIT_SKIP;
		/* results so far are on disk after every case: a later crash loses nothing */
		moe_results_write(dir, run);
	}
	int inv_failed = 0;
	json_t *inv = moe_invariants_check(jcases, &inv_failed);
	json_object_set_new(run, "invariants", inv);
	json_object_set_new(run, "wall_s", json_real((moe_now_us() - t0) * 1e-6));
	json_object_set_new(run, "interrupted", json_boolean(moe_interrupted));
	int wrc = moe_results_write(dir, run);
	if (out) {
		size_t ii;
		json_t *iv;
		json_array_foreach(inv, ii, iv) if (!json_is_true(json_object_get(iv, "passed")))
		{
			char *names = json_dumps(json_object_get(iv, "cases"), JSON_COMPACT);
			fprintf(out, "# invariant FAILED: %s %s: %s\n", json_string_value(json_object_get(iv, "invariant")),
				names ? names : "", json_string_value(json_object_get(iv, "detail")));
			free(names);
		}
		fprintf(out, "# invariants: %zu checked, %d failed\n", json_array_size(inv), inv_failed);
		moe_results_footer(out, jcases);
		fprintf(out, "# results: %s/run.json (wall %.1f s)\n", dir, (moe_now_us() - t0) * 1e-6);
	}
	if (o->json_stdout) {
		char *s = json_dumps(run, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		if (s)
			puts(s);
		free(s);
	}
	/* results/latest points at the newest run */
	char link[4096];
	snprintf(link, sizeof(link), "%s/latest", o->out_dir);
	unlink(link);
	if (symlink(run_id, link))
		moe_debug("symlink %s: %s", link, strerror(errno));
	json_decref(env);
	json_decref(jcases);
	json_decref(run);
	hwloc_topology_destroy(topo);
	if (moe_interrupted)
		return MOE_EXIT_RANK;
	if (any_rank)
		return MOE_EXIT_RANK;
	if (any_usage)
		return MOE_EXIT_USAGE;
	if (any_mismatch || inv_failed || wrc)
		return MOE_EXIT_FAIL;
	if (nskip == cases->n)
		return MOE_EXIT_SKIP;
	return MOE_EXIT_OK;
}

static int cmd_run(int argc, char **argv)
{
	struct moe_run_opts o;
	struct moe_caselist cases = {0};
	int rc = prepare(argc, argv, &o, &cases) ? MOE_EXIT_USAGE : moe_world_run(argc, argv, &o, &cases, run_cases);
	moe_caselist_free(&cases);
	free_opts(&o);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return MOE_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "__rank"))
		return moe_rank_main();
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "list"))
		return cmd_list(argc - 1, argv + 1);
	if (!strcmp(cmd, "topo"))
		return cmd_topo(argc - 1, argv + 1);
	if (!strcmp(cmd, "compare"))
		return moe_cmd_compare(argc - 1, argv + 1);
	if (!strcmp(cmd, "history"))
		return moe_cmd_history(argc - 1, argv + 1);
	if (!strcmp(cmd, "report"))
		return moe_cmd_report(argc - 1, argv + 1);
	if (!strcmp(cmd, "calibrate"))
		return cmd_calibrate(argc - 1, argv + 1);
	if (!strcmp(cmd, "plot"))
		return cmd_plot(argc - 1, argv + 1);
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		if (argc > 2 && !strcmp(argv[2], "keys")) {
			printf("scenario keys ([global] sets defaults; a|b sweeps; a,b is a list):\n");
			moe_opts_help(stdout);
			printf("models: %s\n", moe_model_names());
			return 0;
		}
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("moebench %s (commit %s)\n", MOE_VERSION, MOE_GIT_COMMIT);
		return 0;
	}
	fprintf(stderr, "moebench: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return MOE_EXIT_USAGE;
}
