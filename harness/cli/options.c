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

static void usage_case_opts(FILE *f)
{
	fprintf(f,
		"  --set KEY=VALUE     override a scenario key in every case (repeatable; VALUE may sweep a|b)\n"
		"  --only GLOB         only cases whose name matches GLOB (fnmatch); matching none is an error (exit 2)\n"
		"  --backend B         host, cuda, or auto (cuda when built and a GPU is present)\n"
		"  --transport T       shm (host backend), ipc (CUDA IPC; ranks may share a GPU), nccl (one GPU\n"
		"                      per rank), mpi (host backend under mpirun or srun, docs/MULTINODE.md), or\n"
		"                      auto (nccl when ranks <= GPUs, else ipc; mpi or nccl under mpirun/srun)\n"
		"  --iters N           timed iterations (scenario key iters)\n"
		"  --warmup N          discarded warm-up iterations (key warmup)\n"
		"  --timeout SEC       seconds a case may run before its ranks are killed (key timeout)\n"
		"  --check C           full, sample:N or off (key check; off: verdict unchecked)\n");
}

static void usage_run_opts(FILE *f)
{
	fprintf(f,
		"  --out DIR           results folder (default results/); each run writes DIR/RUN-ID/\n"
		"  --bind MODE         auto, none, core, numa or gpu (default auto: gpu with GPUs, else core)\n"
		"  --format F          text (default) or json (run.json also on stdout)\n"
		"  --dump DIR          write each case's inputs, routing, outputs and weights as .npy files\n"
		"                      (DIR/CASE/rankR_layerL_{x,y,idx,w,wg,expertE_w1,...}.npy; bf16 as float32)\n"
		"  -q, --quiet         no table on stdout (a failed or errored case still gets its line on stderr)\n"
		"  -v, --verbose       more messages on stderr (repeatable)\n"
		"  -h, --help          this text\n"
		"test aids (documented so that tests can plant faults; not for measurements):\n"
		"  --inject-fault RANK:PHASE:KIND   make RANK crash, hang, exit or run out of memory when it enters PHASE\n"
		"                                   (KIND crash|hang|exit|oom; PHASE setup|route|dispatch|expert|combine|verify)\n"
		"  --inject-corrupt RANK:TOKEN:COL  flip one bit of RANK's output before it is verified\n"
		"  --inject-delay PHASE:US          every rank spends US more microseconds in PHASE, every iteration\n"
		"                                   (a busy wait on the host backend, a device spin kernel on cuda;\n"
		"                                   to check that compare flags a slowdown)\n"
		"  --topo-xml FILE     plan placement from an hwloc XML topology instead of this machine\n");
}

static void usage_exit_codes(FILE *f)
{
	fprintf(f,
		"exit codes: 0 ok, 1 mismatch (compare: a regression), 2 usage or scenario error, 3 a rank crashed, hung or\n"
		"timed out, 4 incomplete (compare: not every case compared; run: an output could not be written whole,\n"
		"full disk or file-size limit; stderr names it), 77 nothing runnable here (never a usage error),\n"
		"128+N interrupted by signal N (129 SIGHUP, 130 SIGINT, 143 SIGTERM; the cases that finished are saved,\n"
		"run.json says interrupted).\n");
}

void moe_cli_usage(FILE *f)
{
	fprintf(f,
		"usage: moebench COMMAND [OPTIONS] [SCENARIO...]\n"
		"\n"
		"Benchmarks and checks the ways a Mixture-of-Experts layer moves tokens between ranks.\n"
		"\n"
		"commands (moebench COMMAND --help lists what each accepts):\n"
		"  run [SCENARIO...]   run the cases of the scenario files (default scenarios/smoke.ini)\n"
		"  list [SCENARIO...]  print the expanded cases, one a line\n"
		"  topo [--ranks N]    print the machine topology and the placement plan for N ranks\n"
		"                      (default: one per GPU, or one per core without GPUs; --bind, --topo-xml)\n"
		"  compare BASE NEW    per case and phase: change, p-value, verdict; exit 1 on a regression,\n"
		"                      4 when not every case was compared\n"
		"  history record|list|trend|accept|pin|unpin|baseline   the SQLite history of runs and the baseline\n"
		"  report RUN          a Markdown page for a review of one run: configuration, environment, table,\n"
		"                      strategy comparison, plots\n"
		"  report BASE NEW     the same for two runs: comparison and configuration differences\n"
		"  calibrate [--backend cuda]  the host's memcpy bandwidth; with cuda the GPU's copy bandwidth and\n"
		"                      bf16 GEMM rate, and the backend's kernels as a percentage of them\n"
		"  plot RUN_DIR... [--out DIR]  draw a run's results with gnuplot, PNG and SVG: latency,\n"
		"                      phases, cdf, axes, ranks-CASE (default DIR: RUN_DIR/plots; DIR/RUN-ID with several)\n"
		"  plot --trend FILE [--out DIR]  draw a nightly trend TSV as trend.png/.svg (default DIR: FILE's folder)\n"
		"  help [keys|env]     this text, every scenario key with its default, or the environment variables\n"
		"  version, --version  the version and git commit\n"
		"\n"
		"options of run and list:\n");
	usage_case_opts(f);
	fprintf(f, "options of run:\n");
	usage_run_opts(f);
	fprintf(f, "\n");
	usage_exit_codes(f);
	fprintf(f,
		"Results: DIR/RUN-ID/run.json, cases.tsv, samples.tsv, ranks.tsv, axes.tsv (docs/RESULTS.md; case names\n"
		"with tabs, newlines or control bytes escaped as \\t, \\n, \\xHH). Every output is written to a temp file\n"
		"and renamed once whole.\n");
}

/* help env: every variable moebench reads (the README's table says the same) */
void moe_cli_usage_env(FILE *f)
{
	fprintf(f,
		"environment variables moebench reads:\n"
		"  MOEBENCH_PAPI_EVENTS   comma-separated PAPI events each rank counts per phase (unset or empty:\n"
		"                         PAPI_TOT_INS,PAPI_TOT_CYC,perf::TASK-CLOCK; events PAPI refuses are named in\n"
		"                         run.json and skipped)\n"
		"  OPENBLAS_NUM_THREADS   the ranks' BLAS threads (the launcher itself runs with 1; see below)\n"
		"  OPENBLAS_CORETYPE      OpenBLAS's kernels; unset, ranks whose OpenBLAS fell back to a generic core get\n"
		"                         SkylakeX (AVX-512) or Haswell (AVX2)\n"
		"  MOEBENCH_ORACLE_TIMES  set: each rank prints where its oracle's time went (inputs, routing, outputs)\n"
		"  MOEBENCH_PYTHON        the Python calibrate runs its PyTorch anchors with (default python3 on PATH)\n"
		"  MOEBENCH_TORCH_TIMEOUT seconds the PyTorch anchors may take before calibrate kills them (default 900)\n"
		"  MOEBENCH_TORCH_ANCHOR  the anchor script (default scripts/torch_anchor.py beside the binary or in the\n"
		"                         source tree it was built from)\n"
		"  MOEBENCH_EXPERT_GEMM   cuda backend: batched|grouped|loop|cutlass forces how the expert GEMMs run\n"
		"                         (unset: the CUTLASS grouped GEMM where built, else cuBLAS; docs/GPU.md)\n"
		"  MOEBENCH_GG_TILE       cuda backend: coop|coop12|coop256|swap128|swapc forces the CUTLASS grouped\n"
		"                         GEMM's tile (unset: picked per GEMM from its size and rows per expert)\n"
		"  MOEBENCH_CALIB_TILES   set: calibrate --backend cuda also times every CUTLASS tile on each expert GEMM\n"
		"read to tell an external launch (docs/MULTINODE.md), innermost launcher first:\n"
		"  OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK, OMPI_COMM_WORLD_LOCAL_SIZE\n"
		"                         Open MPI's mpirun\n"
		"  PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS   MPICH's hydra\n"
		"  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE   torchrun (only with TORCHELASTIC_RUN_ID set)\n"
		"  SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_STEP_TASKS_PER_NODE, SLURM_NODEID, SLURMD_NODENAME\n"
		"                         srun (only inside a step, SLURM_STEP_ID set); the world size is always\n"
		"                         checked against MPI's\n"
		"set by moebench for its own processes (not to be set by hand):\n"
		"  MOEBENCH_USER_BLAS_THREADS  the user's OPENBLAS_NUM_THREADS, kept while run re-executes itself\n"
		"                              with 1 and handed back to the ranks\n"
		"  MOEBENCH_RANK, MOEBENCH_NRANKS, MOEBENCH_BOOT_FD, MOEBENCH_SHM_FD, MOEBENCH_GPU,\n"
		"  MOEBENCH_GPU_RANKS          a rank's identity, its bootstrap socket, its case segment, its GPU and\n"
		"                              how many ranks share that GPU\n");
}

void moe_cli_usage_of(FILE *f, enum moe_cli_cmd cmd)
{
	switch (cmd) {
	case MOE_CMD_RUN:
		fprintf(f, "usage: moebench run [OPTIONS] [SCENARIO...]\n"
			   "Runs the cases of the scenario files (default scenarios/smoke.ini) and writes DIR/RUN-ID/.\n"
			   "options:\n");
		usage_case_opts(f);
		usage_run_opts(f);
		usage_exit_codes(f);
		break;
	case MOE_CMD_LIST:
		fprintf(f, "usage: moebench list [OPTIONS] [SCENARIO...]\n"
			   "Prints the expanded cases of the scenario files, one a line.\noptions:\n");
		usage_case_opts(f);
		fprintf(f, "  -v, --verbose       more messages on stderr\n  -h, --help          this text\n"
			   "exit: 0, or 2 for a scenario error or an --only that matches nothing\n");
		break;
	case MOE_CMD_TOPO:
		fprintf(f, "usage: moebench topo [--ranks N] [--bind MODE] [--topo-xml FILE] [-v]\n"
			   "Prints the machine topology and the placement plan for N ranks.\noptions:\n"
			   "  --ranks N           ranks to plan for (default: one per GPU, or one per core without GPUs)\n"
			   "  --bind MODE         auto, none, core, numa or gpu\n"
			   "  --topo-xml FILE     an hwloc XML topology instead of this machine\n"
			   "  -v, --verbose       more messages on stderr\n  -h, --help          this text\n");
		break;
	case MOE_CMD_CALIBRATE:
		fprintf(f, "usage: moebench calibrate [--backend host|cuda] [--out DIR] [--no-torch | --torch-only] [-v]\n"
			   "The host's memcpy bandwidth; with --backend cuda the GPU's copy bandwidth, bf16 GEMM rate and\n"
			   "kernels, saved to DIR/calibration.json (default results/), which run reads from the same --out\n"
			   "folder. Then, where python3 (MOEBENCH_PYTHON) imports torch with CUDA, scripts/torch_anchor.py\n"
			   "times the same figures with PyTorch: torch_KEY lines give moebench / torch, and the JSON gets\n"
			   "\"torch\": {KEY: figure} beside calibrate's own keys. Without torch calibrate says why and goes on.\n"
			   "options:\n"
			   "  --backend B         host (default) or cuda\n"
			   "  --out DIR           where calibration.json goes (cuda only)\n"
			   "  --no-torch          no PyTorch anchors\n"
			   "  --torch-only        only the PyTorch anchors, merged into DIR/calibration.json as it is\n"
			   "  -v, --verbose       more messages on stderr\n  -h, --help          this text\n"
			   "exit: 0, 1 a failure, 2 usage, 77 no usable GPU or the CUDA backend not built in\n");
		break;
	}
}

enum {
	OPT_SET = 256, OPT_ONLY, OPT_BACKEND, OPT_TRANSPORT, OPT_ITERS, OPT_WARMUP, OPT_TIMEOUT, OPT_CHECK, OPT_OUT,
	OPT_BIND, OPT_FORMAT, OPT_INJECT, OPT_CORRUPT, OPT_TOPO_XML, OPT_HELP, OPT_RANKS, OPT_DUMP, OPT_DELAY,
	OPT_NO_TORCH, OPT_TORCH_ONLY,
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
	{"no-torch", no_argument, NULL, OPT_NO_TORCH},
	{"torch-only", no_argument, NULL, OPT_TORCH_ONLY},
	{"quiet", no_argument, NULL, 'q'},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, OPT_HELP},
	{NULL, 0, NULL, 0},
};

/* Which commands take each option (bits of 1 << enum moe_cli_cmd); the rest are refused, not ignored. */
#define R (1u << MOE_CMD_RUN)
#define L (1u << MOE_CMD_LIST)
#define T (1u << MOE_CMD_TOPO)
#define C (1u << MOE_CMD_CALIBRATE)
static unsigned accepted_by(int opt)
{
	switch (opt) {
	case OPT_SET: case OPT_ONLY: case OPT_TRANSPORT: case OPT_ITERS: case OPT_WARMUP: case OPT_TIMEOUT:
	case OPT_CHECK: return R | L;
	case OPT_BACKEND: return R | L | C;
	case OPT_OUT: return R | C;
	case OPT_BIND: case OPT_TOPO_XML: return R | T;
	case OPT_RANKS: return T;
	case OPT_NO_TORCH: case OPT_TORCH_ONLY: return C;
	case OPT_FORMAT: case OPT_INJECT: case OPT_CORRUPT: case OPT_DUMP: case OPT_DELAY: case 'q': return R;
	default: return R | L | T | C; /* -v, -h */
	}
}
#undef R
#undef L
#undef T
#undef C

static const char *const cmd_names[] = {"run", "list", "topo", "calibrate"};

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

/* The options of run, list, topo and calibrate (each command's --help lists its own); the scenario files are
 * what follows them. An option the command does not take is refused, naming it. */
int moe_cli_parse_opts(int argc, char **argv, struct moe_run_opts *o, enum moe_cli_cmd cmd)
{
	memset(o, 0, sizeof(*o));
	o->inject_rank = o->corrupt_rank = -1;
	o->out_dir = "results";
	int c, li = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "qvh", long_opts, &li)) != -1) {
		if (c != '?' && !(accepted_by(c) & (1u << cmd))) {
			char nm[64];
			if (li >= 0 && long_opts[li].val == c)
				snprintf(nm, sizeof(nm), "--%s", long_opts[li].name);
			else
				snprintf(nm, sizeof(nm), "-%c", c);
			fprintf(stderr, "moebench: %s: option %s is not accepted by %s (moebench %s --help)\n",
				cmd_names[cmd], nm, cmd_names[cmd], cmd_names[cmd]);
			return -1;
		}
		li = -1;
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
		case OPT_NO_TORCH: add_set(o, "torch", "off"); break;
		case OPT_TORCH_ONLY: add_set(o, "torch", "only"); break;
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
		case 'h':
		case OPT_HELP: moe_cli_usage_of(stdout, cmd); return 1;
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
		if (!k) {
			fprintf(stderr, "moebench: no case matches --only %s\n", o->only);
			return -1;
		}
	}
	return 0;
}

/* Options, then the scenario files' cases: what list and run both start with. 1: help was printed. */
int moe_cli_prepare(int argc, char **argv, struct moe_run_opts *o, struct moe_caselist *cases, enum moe_cli_cmd cmd)
{
	int rc = moe_cli_parse_opts(argc, argv, o, cmd);
	if (rc)
		return rc;
	return load_cases(argc, argv, o, cases) ? -1 : 0;
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
