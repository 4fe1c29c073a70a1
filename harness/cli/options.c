/* The command line's shared options: the usage text, parsing the options of run, list and topo into
 * moe_run_opts, and loading the scenario files' cases. */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "moe.h"
#include "params.h"
#include "scenario.h"
#include "status.h"

#ifndef MOE_SOURCE_DIR
#define MOE_SOURCE_DIR "."
#endif

void moe_cli_usage(FILE *f)
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
		"  compare BASE NEW    per case and phase: change, p-value, verdict; exit 1 on a regression,\n"
		"                      4 when not every case was compared\n"
		"                      (moebench compare --help)\n"
		"  history record|list|trend|accept|pin|unpin|baseline   the SQLite history of runs and the baseline\n"
		"                      (moebench history --help)\n"
		"  report BASE NEW     a Markdown page for a review: environment, comparison, plots\n"
		"  calibrate [--backend cuda]  the host's memcpy bandwidth; with cuda the GPU's copy bandwidth and\n"
		"                      bf16 GEMM rate, and the backend's kernels as a percentage of them\n"
		"  plot RUN_DIR... [--out DIR]  draw a run's results with gnuplot, PNG and SVG: latency,\n"
		"                      phases, cdf, axes, ranks-CASE (default DIR: RUN_DIR/plots; DIR/RUN-ID with several)\n"
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
		"  -q, --quiet         no table on stdout (a failed or errored case still gets its line on stderr)\n"
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
		"exit codes: 0 ok, 1 mismatch (compare: a regression), 2 usage or scenario error, 3 a rank crashed, hung or\n"
		"timed out, 4 incomplete (compare: not every case compared; run: an output could not be written whole,\n"
		"full disk or file-size limit; stderr names it), 77 nothing runnable here, 128+N interrupted by signal N\n"
		"(129 SIGHUP, 130 SIGINT, 143 SIGTERM; the cases that finished are saved, run.json says interrupted).\n"
		"Results: DIR/RUN-ID/run.json, cases.tsv, samples.tsv, ranks.tsv, axes.tsv (docs/RESULTS.md; case names\n"
		"with tabs, newlines or control bytes escaped as \\t, \\n, \\xHH). Every output is written to a temp file\n"
		"and renamed once whole.\n");
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
void moe_cli_free_opts(struct moe_run_opts *o)
{
	for (int i = 0; i < o->nsets; i++)
		free(o->sets[i]);
	free(o->sets);
	o->sets = NULL;
	o->nsets = 0;
}

/* --inject-fault RANK:PHASE:KIND */
static int parse_inject(struct moe_run_opts *o, const char *arg)
{
	char ph[32] = "", kind[16] = "";
	if (sscanf(arg, "%d:%31[^:]:%15s", &o->inject_rank, ph, kind) != 3 || o->inject_rank < 0 ||
	    (strcmp(kind, "crash") && strcmp(kind, "hang") && strcmp(kind, "exit") && strcmp(kind, "oom"))) {
		fprintf(stderr, "moebench: --inject-fault %s: expected RANK:PHASE:crash|hang|exit|oom\n", arg);
		return -1;
	}
	int known = 0;
	for (int i = 0; i < MOE_PH_COUNT; i++)
		known |= !strcmp(moe_phase_name(i), ph);
	if (!known) {
		fprintf(stderr, "moebench: --inject-fault %s: unknown phase '%s'\n", arg, ph);
		return -1;
	}
	snprintf(o->inject_phase, sizeof(o->inject_phase), "%s", ph);
	snprintf(o->inject_kind, sizeof(o->inject_kind), "%s", kind);
	return 0;
}

/* --inject-delay PHASE:US */
static int parse_delay(struct moe_run_opts *o, const char *arg)
{
	char ph[32] = "";
	int known = 0;
	if (sscanf(arg, "%31[^:]:%lf", ph, &o->delay_us) == 2 && o->delay_us >= 0)
		for (int i = 0; i < MOE_PH_COUNT; i++)
			known |= !strcmp(moe_phase_name(i), ph);
	if (!known) {
		fprintf(stderr, "moebench: --inject-delay %s: expected PHASE:MICROSECONDS\n", arg);
		return -1;
	}
	snprintf(o->delay_phase, sizeof(o->delay_phase), "%s", ph);
	return 0;
}

/* The options every command shares (moe_cli_usage lists them); the scenario files are what follows them. */
int moe_cli_parse_opts(int argc, char **argv, struct moe_run_opts *o)
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
		case OPT_INJECT:
			if (parse_inject(o, optarg))
				return -1;
			break;
		case OPT_CORRUPT:
			if (sscanf(optarg, "%d:%lld:%lld", &o->corrupt_rank, &o->corrupt_token, &o->corrupt_col) != 3 ||
			    o->corrupt_rank < 0 || o->corrupt_token < 0 || o->corrupt_col < 0) {
				fprintf(stderr, "moebench: --inject-corrupt %s: expected RANK:TOKEN:COLUMN\n", optarg);
				return -1;
			}
			break;
		case OPT_TOPO_XML: o->topo_xml = optarg; break;
		case OPT_DUMP: o->dump_dir = optarg; break;
		case OPT_DELAY:
			if (parse_delay(o, optarg))
				return -1;
			break;
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
			moe_cli_usage(stdout);
			moe_cli_free_opts(o);
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

/* Options, then the scenario files' cases: what list and run both start with. */
int moe_cli_prepare(int argc, char **argv, struct moe_run_opts *o, struct moe_caselist *cases)
{
	return moe_cli_parse_opts(argc, argv, o) || load_cases(argc, argv, o, cases) ? -1 : 0;
}

/* mkdir -p: every missing folder of the path */
int moe_cli_mkdir_p(const char *path)
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
