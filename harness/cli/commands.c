/* The commands beside run and list: topo (the placement plan), calibrate (the rooflines) and plot. */
#include <errno.h>
#include <getopt.h>
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#ifdef MOE_HAVE_CUDA_BACKEND
#include "cuda_iface.h"
#endif
#include "cli.h"
#include "moe.h"
#include "outfile.h"
#include "plot.h"
#include "status.h"
#include "topo.h"
#include "world.h"

/* topo: the machine and the placement plan for --ranks N (default one per GPU, or per core) */
int moe_cli_topo(int argc, char **argv)
{
	struct moe_run_opts o;
	int bad = moe_cli_parse_opts(argc, argv, &o, MOE_CMD_TOPO);
	moe_cli_free_opts(&o); /* topo reads no --set */
	if (bad)
		return bad > 0 ? MOE_EXIT_OK : MOE_EXIT_USAGE;
	if (optind < argc) {
		fprintf(stderr, "moebench: topo: unexpected argument '%s' (moebench topo --help)\n", argv[optind]);
		return MOE_EXIT_USAGE;
	}
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

#ifdef MOE_HAVE_CUDA_BACKEND
/* calibrate.cu prints its figures as it goes; a tee keeps a copy to turn into calibration.json */
struct tee {
	FILE *a, *b;
};

static ssize_t tee_write(void *c, const char *buf, size_t n)
{
	struct tee *t = (struct tee *)c;
	fwrite(buf, 1, n, t->a);
	fflush(t->a);
	fwrite(buf, 1, n, t->b);
	return (ssize_t)n;
}

/* The CUDA figures: every KEY<TAB>NUMBER line calibrate.cu prints, the rooflines at full precision */
static int calibrate_cuda(json_t **cal)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	struct tee t = {stdout, mem};
	FILE *tee = fopencookie(&t, "w", (cookie_io_functions_t){.write = tee_write});
	double copy = 0, gemm = 0;
	int rc = moe_cuda_calibrate(0, tee, &copy, &gemm);
	fclose(tee);
	fclose(mem);
	if (rc == MOE_ERR_UNSUPPORTED)
		fprintf(stderr, "moebench: calibrate: no usable GPU\n");
	if (rc == MOE_OK) {
		*cal = moe_calib_parse_text(text);
		json_object_set_new(*cal, "copy_GBps", json_real(copy));
		json_object_set_new(*cal, "gemm_TFLOPs", json_real(gemm));
	}
	free(text);
	return rc == MOE_OK ? 0 : rc == MOE_ERR_UNSUPPORTED ? MOE_EXIT_SKIP : MOE_EXIT_FAIL;
}
#endif

static int save_calibration(const char *dir, const char *path, json_t *cal)
{
	char *text = json_dumps(cal, JSON_INDENT(1) | JSON_REAL_PRECISION(8));
	int bad = !text || moe_cli_mkdir_p(dir) || moe_write_atomic(path, text, strlen(text));
	if (bad)
		fprintf(stderr, "moebench: calibrate: cannot write %s: %s\n", path, strerror(errno));
	free(text);
	return bad;
}

/* calibrate --backend cuda and --torch-only: the figures (or those saved before), then the PyTorch anchors */
static int calibrate_gpu(const char *dir, int torch)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/calibration.json", dir);
	json_t *cal = NULL;
	if (torch == 2) {
		cal = json_load_file(path, 0, NULL);
		if (!json_is_object(cal)) {
			json_decref(cal);
			cal = json_object();
		}
	} else {
#ifdef MOE_HAVE_CUDA_BACKEND
		int rc = calibrate_cuda(&cal);
		if (rc)
			return rc;
		/* saved before the anchors too: they may be interrupted, run needs only these */
		if (save_calibration(dir, path, cal)) {
			json_decref(cal);
			return MOE_EXIT_FAIL;
		}
#else
		fprintf(stderr, "moebench: calibrate: the CUDA backend is not built in\n");
		return MOE_EXIT_SKIP;
#endif
	}
	if (torch) {
		fflush(stdout);
		moe_torch_anchors(cal, stdout);
	}
	int bad = save_calibration(dir, path, cal);
	json_decref(cal);
	if (bad)
		return MOE_EXIT_FAIL;
	printf("# saved to %s: moebench run reads it from the same --out folder\n", path);
	return 0;
}

/* calibrate: the host's copy bandwidth, or with --backend cuda the GPU's rooflines and kernels (and the PyTorch
 * anchors beside them) */
int moe_cli_calibrate(int argc, char **argv)
{
	struct moe_run_opts o;
	int bad = moe_cli_parse_opts(argc, argv, &o, MOE_CMD_CALIBRATE), cuda = 0, host = 0, torch = 1, tsets = 0;
	for (int i = 0; i < o.nsets; i++) {
		cuda |= !strcmp(o.sets[i], "backend=cuda");
		host |= !strcmp(o.sets[i], "backend=host");
		if (!strncmp(o.sets[i], "torch=", 6)) {
			torch = !strcmp(o.sets[i], "torch=only") ? 2 : 0;
			tsets++;
		}
	}
	int nsets = o.nsets;
	const char *dir = o.out_dir;
	moe_cli_free_opts(&o);
	if (bad)
		return bad > 0 ? MOE_EXIT_OK : MOE_EXIT_USAGE;
	if (nsets > cuda + host + tsets || tsets > 1 || optind < argc) {
		fprintf(stderr, "moebench: calibrate: expected --backend host or cuda, at most one of --no-torch and "
				"--torch-only, and no arguments (moebench calibrate --help)\n");
		return MOE_EXIT_USAGE;
	}
	if (cuda || torch == 2)
		return calibrate_gpu(dir, torch);
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
int moe_cli_plot(int argc, char **argv)
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
	while ((c = getopt_long(argc, argv, "vh", plot_opts, NULL)) != -1) {
		switch (c) {
		case PLOT_OUT: out = optarg; break;
		case PLOT_TREND: trend = optarg; break;
		case 'v': moe_log_verbosity++; break;
		case 'h':
		case PLOT_HELP:
			printf("usage: moebench plot RUN_DIR... [--out DIR] [-v]\n"
			       "       moebench plot --trend FILE [--out DIR] [-v]\n"
			       "Draws a run's results with gnuplot, PNG and SVG: latency, phases, cdf, axes, ranks-CASE\n"
			       "(default DIR: RUN_DIR/plots; DIR/RUN-ID with several runs), or a nightly trend TSV\n"
			       "(moebench history trend) as trend.png/.svg (default DIR: FILE's folder).\n"
			       "options:\n"
			       "  --out DIR           where the plots go\n"
			       "  --trend FILE        draw a trend TSV\n"
			       "  -v, --verbose       name what was drawn and left out\n"
			       "  -h, --help          this text\n");
			return MOE_EXIT_OK;
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
		int pr = moe_plot_run(run, dir, NULL, err, sizeof(err));
		if (pr) {
			fprintf(stderr, "moebench: plot %s: %s\n", run, err);
			rc = pr == MOE_PLOT_REFUSED ? MOE_EXIT_USAGE : MOE_EXIT_FAIL;
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
		int pr = moe_plot_trend(trend, dir, NULL, err, sizeof(err));
		if (pr) {
			fprintf(stderr, "moebench: plot --trend %s: %s\n", trend, err);
			rc = pr == MOE_PLOT_REFUSED ? MOE_EXIT_USAGE : MOE_EXIT_FAIL;
		} else
			printf("# trend of %s: %s/\n", trend, dir);
	}
	return rc;
}
