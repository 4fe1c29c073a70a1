/* The compare and report commands: two runs, or a run and the history's baseline, side by side. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compare.h"
#include "history.h"
#include "moe.h"
#include "outfile.h"
#include "plot.h"
#include "report_page.h"
#include "results.h"

static void usage_compare(FILE *f)
{
	fprintf(f,
		"usage: moebench compare BASE NEW [--phases LIST] [--alpha A] [--threshold PCT] [--noise PCT] [--force]\n"
		"                        [--ignore-load]\n"
		"                        [--band-runs N] [--baseline-runs N] [--json FILE] [--markdown FILE] [--db FILE]\n"
		"BASE and NEW are results folders, run.json files (schema %s, checked before use), or\n"
		"history:RUN_ID, history:last-good or history:baseline from the history (--db). history:baseline is\n"
		"the pinned run (moebench history pin), else per case and phase the run whose median is the median of\n"
		"the last --baseline-runs (%d) good runs of NEW's environment, from the newest accepted one on.\n"
		"Cases are matched by name and parameter digest (run.json's cases[].digest: the resolved parameters\n"
		"but iters, warmup, check, tolerance and timeout); the same name with other parameters is not\n"
		"comparable. Per case and phase (LIST of route, dispatch, expert, combine, tp_merge, fetch_wait,\n"
		"total): medians, change, Mann-Whitney U p-value, 95%% bootstrap interval of the ratio of medians, and\n"
		"a verdict: slower or faster when p < alpha, |change| >= threshold and the whole interval clears\n"
		"1 +- threshold/2; else noisy when the interval is wider than noise; else same. A slower or faster\n"
		"change in a case that either run measured oversubscribed (more ranks than CPUs) or loaded (1-minute\n"
		"load average above the CPUs; run.json's cases[].load) is noisy instead, with the reason printed;\n"
		"--ignore-load keeps the verdict (a test that plants a slowdown on a shared machine).\n"
		"Noise band: when the history holds at least %d good runs of the environment, the medians of the last\n"
		"N (--band-runs, 0 turns it off) give each case and phase its run-to-run noise, 3 sqrt(2) x 1.4826\n"
		"MAD / median; the threshold becomes the larger of the two, and a significant change inside the band\n"
		"is noisy, not slower.\n"
		"Every case of either run is compared or named on stderr, one line per reason: failed, errored,\n"
		"skipped or not verified (check = off) in a run, missing from one, parameters differ, no samples;\n"
		"each regression too.\n"
		"Defaults: --phases total, --alpha 0.01, --threshold 3, --noise 20, --band-runs 10, --baseline-runs 10,\n"
		"--db results/history.db (a --db given must exist; it is only read).\n"
		"Exit: 0 every case compared and none slower; 1 a regression, everything compared; 4 incomplete: a\n"
		"case not compared, or nothing compared (whatever the regressions); 2 usage, an unknown phase, an\n"
		"unreadable or invalid run, a missing history, different environments.\n",
		MOE_SCHEMA, MOE_BASELINE_RUNS, MOE_BAND_MIN_RUNS);
}

static void markdown(FILE *f, json_t *rep, json_t *base, json_t *neww)
{
	json_t *eb = json_object_get(base, "env"), *en = json_object_get(neww, "env");
	char sum[256];
	moe_compare_summary(sum, sizeof(sum), rep);
	fprintf(f, "# moebench comparison: %s\n\n", sum);
	fprintf(f, "| | base | new |\n|---|---|---|\n");
	static const char *const keys[] = {"run_id", "git_commit", "host",	    "cpu", "kernel", "gpu", "driver",
					   "date",   "topology",   "placement_summary"};
	for (size_t i = 0; i < MOE_ARRAY_SIZE(keys); i++) {
		json_t *a = json_object_get(eb, keys[i]), *b = json_object_get(en, keys[i]);
		if (!i) {
			a = json_object_get(base, "run_id");
			b = json_object_get(neww, "run_id");
		}
		fprintf(f, "| %s | %s | %s |\n", keys[i], a ? json_string_value(a) : "", b ? json_string_value(b) : "");
	}
	fprintf(f, "\n| case | phase | base p50 (µs) | new p50 (µs) | change | p-value | 95%% CI of ratio | noise band | verdict |\n");
	fprintf(f, "|---|---|---|---|---|---|---|---|---|\n");
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(rep, "rows"), i, r)
	{
		const char *v = json_string_value(json_object_get(r, "verdict"));
		double band = json_number_value(json_object_get(r, "band_pct"));
		char bs[16] = "–";
		if (band > 0)
			snprintf(bs, sizeof(bs), "±%.1f%%", band);
		const char *nr = json_string_value(json_object_get(r, "noisy_reason"));
		fprintf(f, "| %s | %s | %.1f | %.1f | %+.1f%% | %.2g | [%.3f, %.3f] | %s | %s%s%s%s%s%s |\n",
			json_string_value(json_object_get(r, "case")), json_string_value(json_object_get(r, "phase")),
			json_number_value(json_object_get(r, "base_p50_us")), json_number_value(json_object_get(r, "new_p50_us")),
			json_number_value(json_object_get(r, "change_pct")), json_number_value(json_object_get(r, "p_value")),
			json_number_value(json_object_get(r, "ratio_lo")), json_number_value(json_object_get(r, "ratio_hi")), bs,
			!strcmp(v, "slower") ? "**" : "", v, !strcmp(v, "slower") ? "**" : "", nr ? " (" : "", nr ? nr : "",
			nr ? ")" : "");
	}
	if (json_array_size(json_object_get(rep, "problems"))) {
		fprintf(f, "\n## Not compared\n\n");
		json_array_foreach(json_object_get(rep, "problems"), i, r)
		fprintf(f, "- %s: %s\n", json_string_value(json_object_get(r, "case")),
			json_string_value(json_object_get(r, "reason")));
	}
	fprintf(f, "\n%s.\n", sum);
}

/* report: the comparison, the environment and the plots of NEW in one Markdown page. */
static int report(json_t *rep, json_t *base, json_t *neww, const char *new_dir, const char *md_path)
{
	char dir[1024], plots[1100], err[512];
	snprintf(dir, sizeof(dir), "%s", md_path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof(dir), ".");
	snprintf(plots, sizeof(plots), "%s/plots", dir);
	int drew = new_dir && moe_plot_run(new_dir, plots, NULL, err, sizeof(err)) == 0;
	if (new_dir && !drew)
		fprintf(stderr, "moebench: report: plots not drawn: %s\n", err);
	char werr[1200];
	struct moe_outfile *of = moe_out_open(md_path, werr, sizeof(werr));
	if (!of) {
		fprintf(stderr, "moebench: report: cannot write %s\n", werr);
		return -1;
	}
	FILE *f = moe_out_stream(of);
	markdown(f, rep, base, neww);
	moe_report_config_diff(f, base, neww);
	if (drew)
		moe_report_plots(f, plots, "Plots of the new run");
	if (moe_out_commit(of, werr, sizeof(werr))) {
		fprintf(stderr, "moebench: report: cannot write %s\n", werr);
		return -1;
	}
	printf("# report: %s\n", md_path);
	return 0;
}

/* The number of positional arguments of report, and the which-th (from 1) in *found (compare's options
 * that take a value skip theirs). */
static int positionals(int argc, char **argv, int which, const char **found)
{
	static const char *const valued[] = {"--phases", "--alpha", "--threshold", "--noise", "--json", "--markdown",
					     "--db", "--band-runs", "--baseline-runs", "--out"};
	int n = 0;
	for (int i = 1; i < argc; i++) {
		int takes = 0;
		for (size_t k = 0; k < MOE_ARRAY_SIZE(valued); k++)
			takes |= !strcmp(argv[i], valued[k]);
		if (takes)
			i++;
		else if (argv[i][0] != '-' && ++n == which)
			*found = argv[i];
	}
	return n;
}

/* report RUN [--out FILE.md] [--db FILE]: one run's page */
static int report_one(int argc, char **argv, const char *run_arg)
{
	const char *out = NULL, *db = "results/history.db";
	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "--out") || !strcmp(argv[i], "--db")) && i + 1 < argc) {
			*(argv[i][2] == 'o' ? &out : &db) = argv[i + 1];
			i++;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "moebench: report: option %s is not accepted with one run (--out, --db; "
					"moebench report --help)\n", argv[i]);
			return MOE_EXIT_USAGE;
		}
	}
	char err[1024], def[4200];
	int rc;
	json_t *run = moe_history_load(run_arg, db, NULL, 0, err, sizeof(err), &rc);
	if (!run) {
		fprintf(stderr, "moebench: report: %s\n", err);
		return rc;
	}
	struct stat sb;
	int is_dir = stat(run_arg, &sb) == 0 && S_ISDIR(sb.st_mode);
	if (!out) {
		size_t n = strlen(run_arg);
		while (is_dir && n > 1 && run_arg[n - 1] == '/')
			n--; /* RUN/ and RUN name the same page */
		snprintf(def, sizeof(def), "%.*s/report.md", is_dir ? (int)n : 1, is_dir ? run_arg : ".");
		out = def;
	}
	int pr = moe_report_run(run, is_dir ? run_arg : NULL, out);
	json_decref(run);
	return pr < 0 ? MOE_EXIT_INCOMPLETE : MOE_EXIT_OK;
}

int moe_cmd_report(int argc, char **argv)
{
	int help = 0;
	for (int i = 1; i < argc; i++)
		help |= !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
	const char *first = NULL;
	int npos = positionals(argc, argv, 1, &first);
	if (help || npos < 1 || npos > 2) {
		fprintf(help ? stdout : stderr,
			"usage: moebench report RUN [--out FILE.md] [--db FILE]\n"
			"       moebench report BASE NEW [--out FILE.md] [compare options]\n"
			"A Markdown page for a review. With one run: the resolved configuration (the parameters every\n"
			"case shares once, those that differ per case), the environment, the table, the strategy\n"
			"comparison (run.json's comparisons) and the plots. With two: the environment of both, the\n"
			"comparison table (moebench compare), the configuration differences (parameters that differ\n"
			"between cases of the same name, environment keys that differ) and the plots of NEW.\n"
			"The plots are drawn into plots/ beside the page (default: report.md in RUN's or NEW's folder).\n"
			"RUN, BASE and NEW: results folders, run.json files or history:RUN_ID (--db).\n"
			"options: --out FILE.md, --db FILE, -h/--help; with two runs those of moebench compare too\n"
			"(moebench compare --help). Exit: as compare with two runs; with one 0, 2 usage or an invalid\n"
			"run, 4 the page not written whole.\n");
		return help ? MOE_EXIT_OK : MOE_EXIT_USAGE;
	}
	if (npos == 1)
		return report_one(argc, argv, first);
	/* compare's options, plus --out; the page is written by compare's --markdown path */
	char **av = moe_xcalloc((size_t)argc + 3, sizeof(char *));
	int ac = 0;
	const char *out = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else
			av[ac++] = argv[i];
	}
	char def[1100];
	if (!out) {
		const char *nw = NULL;
		positionals(argc, argv, 2, &nw);
		struct stat sb;
		if (nw && stat(nw, &sb) == 0 && S_ISDIR(sb.st_mode))
			snprintf(def, sizeof(def), "%s/report.md", nw);
		else
			snprintf(def, sizeof(def), "report.md");
		out = def;
	}
	av[ac++] = "--report-page";
	av[ac++] = (char *)out;
	int rc = moe_cmd_compare(ac, av);
	free(av);
	return rc;
}

/* stderr, one line per reason: every problem and every regression. */
static void reasons(json_t *rep)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(rep, "problems"), i, r)
	fprintf(stderr, "moebench: compare: %s: %s\n", json_string_value(json_object_get(r, "case")),
		json_string_value(json_object_get(r, "reason")));
	json_array_foreach(json_object_get(rep, "rows"), i, r) if (!strcmp(json_string_value(json_object_get(r, "verdict")),
									  "slower"))
	{
		char nm[300];
		moe_oneline(nm, sizeof(nm), json_string_value(json_object_get(r, "case")));
		fprintf(stderr, "moebench: compare: %s: %s slower by %+.1f%% (regression)\n", nm,
			json_string_value(json_object_get(r, "phase")), json_number_value(json_object_get(r, "change_pct")));
	}
}

/* --json and --markdown; 0 or -1 with the error printed. */
static int write_outputs(json_t *rep, json_t *base, json_t *neww, const char *json_out, const char *md_out)
{
	int rc = 0;
	if (json_out) {
		char *s = json_dumps(rep, JSON_INDENT(1));
		char werr[1200];
		if (!s || moe_write_file(json_out, s, strlen(s), werr, sizeof(werr))) {
			fprintf(stderr, "moebench: compare: cannot write %s\n", s ? werr : json_out);
			rc = -1;
		}
		free(s);
	}
	if (md_out) {
		char werr[1200];
		struct moe_outfile *of = moe_out_open(md_out, werr, sizeof(werr));
		if (of)
			markdown(moe_out_stream(of), rep, base, neww);
		if (!of || moe_out_commit(of, werr, sizeof(werr))) {
			fprintf(stderr, "moebench: compare: cannot write %s\n", werr);
			rc = -1;
		}
	}
	return rc;
}

struct compare_args {
	const char *json_out, *md_out, *db_path, *page;
	int band_runs, baseline_runs, db_given;
};

static int parse_compare(int argc, char **argv, struct moe_compare_opts *o, struct compare_args *a)
{
	static const struct option lo[] = {
		{"phases", required_argument, NULL, 'p'}, {"alpha", required_argument, NULL, 'a'},
		{"threshold", required_argument, NULL, 't'}, {"noise", required_argument, NULL, 'n'},
		{"force", no_argument, NULL, 'f'}, {"json", required_argument, NULL, 'j'},
		{"markdown", required_argument, NULL, 'm'}, {"db", required_argument, NULL, 'd'},
		{"report-page", required_argument, NULL, 'R'}, {"band-runs", required_argument, NULL, 'b'},
		{"baseline-runs", required_argument, NULL, 'B'}, {"help", no_argument, NULL, 'h'},
		{"ignore-load", no_argument, NULL, 'L'},
		{NULL, 0, NULL, 0}};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'p': o->phases = optarg; break;
		case 'a': o->alpha = atof(optarg); break;
		case 't': o->threshold = atof(optarg); break;
		case 'n': o->noise = atof(optarg); break;
		case 'f': o->force = 1; break;
		case 'L': o->ignore_load = 1; break;
		case 'j': a->json_out = optarg; break;
		case 'm': a->md_out = optarg; break;
		case 'd': a->db_path = optarg, a->db_given = 1; break;
		case 'R': a->page = optarg; break;
		case 'b': a->band_runs = atoi(optarg); break;
		case 'B': a->baseline_runs = atoi(optarg); break;
		case 'h': usage_compare(stdout); return 0;
		default: usage_compare(stderr); return MOE_EXIT_USAGE;
		}
	}
	char list[256];
	snprintf(list, sizeof(list), "%s", o->phases);
	for (char *save = NULL, *ph = strtok_r(list, ",", &save); ph; ph = strtok_r(NULL, ",", &save))
		if (!moe_phase_known(ph)) {
			char pn[100];
			moe_oneline(pn, sizeof(pn), ph);
			fprintf(stderr, "moebench: compare: --phases: unknown phase '%s' (route, dispatch, expert, combine, "
					"tp_merge, fetch_wait, total)\n", pn);
			return MOE_EXIT_USAGE;
		}
	struct stat sb;
	if (a->db_given && stat(a->db_path, &sb) != 0) {
		fprintf(stderr, "moebench: compare: %s: no such history file (only `history record` creates one)\n",
			a->db_path);
		return MOE_EXIT_USAGE;
	}
	if (argc - optind != 2 || !(o->alpha > 0 && o->alpha < 1) || o->threshold < 0 || o->noise <= 0 ||
	    a->band_runs < 0 || a->baseline_runs < 1 || !*o->phases) {
		usage_compare(stderr);
		return MOE_EXIT_USAGE;
	}
	return -1;
}

int moe_cmd_compare(int argc, char **argv)
{
	struct moe_compare_opts o = {.alpha = 0.01, .threshold = 3.0, .noise = 20.0, .phases = "total"};
	struct compare_args a = {.db_path = "results/history.db", .band_runs = 10, .baseline_runs = MOE_BASELINE_RUNS};
	int rc = parse_compare(argc, argv, &o, &a);
	if (rc >= 0)
		return rc;
	char err[1024];
	/* NEW first: history:baseline is made of runs of NEW's environment */
	json_t *neww = moe_history_load(argv[optind + 1], a.db_path, NULL, 0, err, sizeof(err), &rc), *base = NULL,
	       *rep = NULL;
	if (!neww || !(base = moe_history_load(argv[optind], a.db_path, neww, a.baseline_runs, err, sizeof(err), &rc))) {
		fprintf(stderr, "moebench: compare: %s\n", err);
		goto out;
	}
	if (a.band_runs && json_object_get(base, "bands"))
		o.bands = json_incref(json_object_get(base, "bands"));
	else if (a.band_runs)
		o.bands = moe_history_bands(a.db_path, base, a.band_runs);
	rc = MOE_EXIT_USAGE;
	if (!(rep = moe_compare_runs(base, neww, &o, err, sizeof(err)))) {
		fprintf(stderr, "moebench: compare: %s\n", err);
		goto out;
	}
	moe_compare_print(stdout, rep);
	reasons(rep);
	rc = moe_compare_exit(rep);
	int wr = write_outputs(rep, base, neww, a.json_out, a.md_out);
	if (a.page) {
		struct stat sb;
		const char *nd = stat(argv[optind + 1], &sb) == 0 && S_ISDIR(sb.st_mode) ? argv[optind + 1] : NULL;
		wr |= report(rep, base, neww, nd, a.page);
	}
	if (wr && rc == MOE_EXIT_OK)
		rc = MOE_EXIT_INCOMPLETE; /* an output not written whole: stderr named it */
out:
	json_decref(o.bands);
	json_decref(base);
	json_decref(neww);
	json_decref(rep);
	return rc;
}
