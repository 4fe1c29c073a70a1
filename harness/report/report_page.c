/* The review pages: `report RUN` for one run (configuration, environment, table, strategy comparison,
 * plots), and the configuration differences `report BASE NEW` adds to the comparison. */
#include <glob.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "moe.h"
#include "outfile.h"
#include "plot.h"
#include "report_page.h"
#include "results.h"

/* A Markdown table cell: one line, and a '|' that would end the cell escaped. */
static void cell(FILE *f, const char *s)
{
	char one[600];
	moe_oneline(one, sizeof(one), s ? s : "");
	for (const char *q = one; *q; q++) {
		if (*q == '|')
			fputc('\\', f);
		fputc(*q, f);
	}
}

/* A JSON value as text: strings as they are, numbers and the rest as JSON. */
static void value_text(json_t *v, char *out, size_t len)
{
	if (!v)
		snprintf(out, len, "–");
	else if (json_is_string(v))
		snprintf(out, len, "%s", json_string_value(v));
	else {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		snprintf(out, len, "%s", s ? s : "?");
		free(s);
	}
}

/* Whether every case holds the same value of params[key]. */
static int common_param(json_t *cases, const char *key)
{
	json_t *first = json_object_get(json_object_get(json_array_get(cases, 0), "params"), key);
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c) if (!json_equal(first, json_object_get(json_object_get(c, "params"), key))) return 0;
	return 1;
}

/* The resolved configuration: the parameters every case shares once, then a column per parameter that
 * differs, a row per case. */
static void configuration(FILE *f, json_t *cases)
{
	json_t *p0 = json_object_get(json_array_get(cases, 0), "params");
	const char *key;
	json_t *v;
	char t[512];
	fprintf(f, "\n## Configuration\n\nResolved parameters shared by every case:\n\n| key | value |\n|---|---|\n");
	json_object_foreach(p0, key, v) if (common_param(cases, key))
	{
		value_text(v, t, sizeof(t));
		fprintf(f, "| %s | ", key);
		cell(f, t);
		fprintf(f, " |\n");
	}
	if (json_array_size(cases) < 2)
		return;
	fprintf(f, "\nParameters that differ between cases:\n\n| case |");
	json_object_foreach(p0, key, v) if (!common_param(cases, key)) fprintf(f, " %s |", key);
	fprintf(f, "\n|---|");
	json_object_foreach(p0, key, v) if (!common_param(cases, key)) fprintf(f, "---|");
	fprintf(f, "\n");
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c)
	{
		fprintf(f, "| ");
		cell(f, json_string_value(json_object_get(c, "name")));
		fprintf(f, " |");
		json_object_foreach(p0, key, v) if (!common_param(cases, key))
		{
			value_text(json_object_get(json_object_get(c, "params"), key), t, sizeof(t));
			fputc(' ', f);
			cell(f, t);
			fprintf(f, " |");
		}
		fprintf(f, "\n");
	}
}

/* The environment run.json recorded, a row per key. */
static void environment(FILE *f, json_t *run)
{
	fprintf(f, "\n## Environment\n\n| key | value |\n|---|---|\n");
	const char *key;
	json_t *v;
	char t[512];
	json_object_foreach(json_object_get(run, "env"), key, v)
	{
		if (json_is_object(v) || (json_is_array(v) && strcmp(key, "command")))
			continue; /* calibration and per-case load are shown where they belong */
		if (json_is_array(v)) { /* the command line, words joined */
			size_t i, n = 0;
			json_t *w;
			t[0] = 0;
			json_array_foreach(v, i, w) n += (size_t)snprintf(t + n, n < sizeof(t) ? sizeof(t) - n : 0, "%s%s",
									  i ? " " : "", json_string_value(w));
		} else
			value_text(v, t, sizeof(t));
		fprintf(f, "| %s | ", key);
		cell(f, t);
		fprintf(f, " |\n");
	}
}

static double phase_p(json_t *c, const char *ph, const char *what)
{
	return json_number_value(json_object_get(json_object_get(json_object_get(c, "phases"), ph), what));
}

/* The run's table: per case the median of each phase (µs), the tail, and the verdict. */
static void results_table(FILE *f, json_t *run)
{
	fprintf(f, "\n## Results\n\nTimes in µs: per iteration the maximum over ranks, then the median (p50) over "
		   "iterations. Load: ranks per CPU and the 1-minute load average before → after the case; **noisy** where\n"
		   "the ranks outnumbered the CPUs or the load average exceeded them.\n\n"
		   "| case | verdict | tokens | route | dispatch | expert | combine | total p50 | total p99 | load |\n"
		   "|---|---|---|---|---|---|---|---|---|---|\n");
	size_t i, k;
	json_t *c, *t;
	json_array_foreach(json_object_get(run, "cases"), i, c)
	{
		long long tok = 0;
		json_array_foreach(json_object_get(c, "tokens"), k, t) tok += json_integer_value(t);
		const char *v = json_string_value(json_object_get(c, "verdict"));
		fprintf(f, "| ");
		cell(f, json_string_value(json_object_get(c, "name")));
		fprintf(f, " | %s%s%s | %lld", strcmp(v, "ok") && strcmp(v, "unchecked") ? "**" : "", v,
			strcmp(v, "ok") && strcmp(v, "unchecked") ? "**" : "", tok);
		if (!json_object_get(c, "phases"))
			fprintf(f, " | | | | | | |");
		else
			fprintf(f, " | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |", phase_p(c, "route", "p50_us"),
				phase_p(c, "dispatch", "p50_us"), phase_p(c, "expert", "p50_us"),
				phase_p(c, "combine", "p50_us"), phase_p(c, "total", "p50_us"), phase_p(c, "total", "p99_us"));
		json_t *l = json_object_get(c, "load");
		if (l)
			fprintf(f, " %.2f/CPU, %.2f → %.2f%s", json_number_value(json_object_get(l, "ranks_per_core")),
				json_number_value(json_array_get(json_object_get(l, "loadavg_before"), 0)),
				json_number_value(json_array_get(json_object_get(l, "loadavg_after"), 0)),
				json_is_true(json_object_get(l, "oversubscribed")) || json_is_true(json_object_get(l, "loaded"))
					? " **noisy**" : "");
		fprintf(f, " |\n");
	}
}

/* run.json's comparisons: a table per group of cases that differ along one parameter. */
static void comparisons(FILE *f, json_t *run)
{
	json_t *cmp = json_object_get(run, "comparisons");
	fprintf(f, "\n## Strategy comparison\n\n");
	if (!json_array_size(cmp)) {
		fprintf(f, "No two cases differ in one parameter only: nothing to set side by side.\n");
		return;
	}
	fprintf(f, "Cases that differ in one parameter only, against the group's first case: ratio of median totals "
		   "with a 95 %% bootstrap interval; an interval reaching into 1 ± 2 %% is not separable. Rows and "
		   "bytes are summed over ranks, per iteration.\n");
	size_t i, k;
	json_t *g, *r;
	json_array_foreach(cmp, i, g)
	{
		fprintf(f, "\n### ");
		cell(f, json_string_value(json_object_get(g, "fixed")));
		fprintf(f, " along %s\n\n| %s | case | total p50 (µs) | ratio [95%% CI] | verdict | rows | bytes logical | "
			   "bytes wire |\n|---|---|---|---|---|---|---|---|\n",
			json_string_value(json_object_get(g, "axis")), json_string_value(json_object_get(g, "axis")));
		json_array_foreach(json_object_get(g, "rows"), k, r)
		{
			fprintf(f, "| ");
			cell(f, json_string_value(json_object_get(r, "value")));
			fprintf(f, " | ");
			cell(f, json_string_value(json_object_get(r, "case")));
			fprintf(f, " | %.1f | ", json_number_value(json_object_get(r, "total_median_us")));
			if (json_object_get(r, "ratio"))
				fprintf(f, "×%.3f [%.3f, %.3f]", json_number_value(json_object_get(r, "ratio")),
					json_number_value(json_object_get(r, "ci_lo")), json_number_value(json_object_get(r, "ci_hi")));
			else
				fprintf(f, "%s", json_is_true(json_object_get(r, "baseline")) ? "1 (baseline)" : "no ratio");
			fprintf(f, " | %s | %lld | %lld | %lld |\n", json_string_value(json_object_get(r, "verdict")),
				(long long)json_integer_value(json_object_get(r, "rows_dispatched")),
				(long long)json_integer_value(json_object_get(r, "bytes_logical")),
				(long long)json_integer_value(json_object_get(r, "bytes_wire")));
		}
	}
}

/* The plots drawn into plots_dir, linked relative to the page (they sit in its folder's plots/). */
void moe_report_plots(FILE *f, const char *plots_dir, const char *title)
{
	static const char *const names[] = {"latency", "phases", "cdf", "axes"};
	char png[4200];
	struct stat sb;
	fprintf(f, "\n## %s\n\n", title);
	for (size_t i = 0; i < MOE_ARRAY_SIZE(names); i++) {
		snprintf(png, sizeof(png), "%s/%s.png", plots_dir, names[i]);
		if (stat(png, &sb) == 0)
			fprintf(f, "![%s](plots/%s.png)\n\n", names[i], names[i]);
	}
	glob_t g;
	snprintf(png, sizeof(png), "%s/ranks-*.png", plots_dir);
	if (glob(png, 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc; i++) {
			const char *base = strrchr(g.gl_pathv[i], '/');
			base = base ? base + 1 : g.gl_pathv[i];
			fprintf(f, "![%.*s](<plots/%s>)\n\n", (int)(strlen(base) - 4), base, base);
		}
		globfree(&g);
	}
}

/* The page's folder's plots/ for md_path; 0, or -1 with err when the run's plots could not be drawn. */
static int draw(const char *run_dir, const char *md_path, char *plots, size_t len, char *err, size_t errlen)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", md_path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof(dir), ".");
	snprintf(plots, len, "%s/plots", dir);
	return run_dir && moe_plot_run(run_dir, plots, NULL, err, errlen) == 0 ? 0 : -1;
}

int moe_report_run(json_t *run, const char *run_dir, const char *md_path)
{
	char plots[4200], err[2048] = "the run is not a results folder", werr[1200];
	int drew = draw(run_dir, md_path, plots, sizeof(plots), err, sizeof(err)) == 0;
	if (!drew)
		fprintf(stderr, "moebench: report: plots not drawn: %s\n", err);
	struct moe_outfile *of = moe_out_open(md_path, werr, sizeof(werr));
	if (!of) {
		fprintf(stderr, "moebench: report: cannot write %s\n", werr);
		return -1;
	}
	FILE *f = moe_out_stream(of);
	json_t *cases = json_object_get(run, "cases"), *env = json_object_get(run, "env");
	fprintf(f, "# moebench run ");
	cell(f, json_string_value(json_object_get(run, "run_id")));
	fprintf(f, "\n\n%zu case%s on ", json_array_size(cases), json_array_size(cases) == 1 ? "" : "s");
	cell(f, json_string_value(json_object_get(env, "host")));
	fprintf(f, " (");
	cell(f, json_string_value(json_object_get(env, "gpu")));
	fprintf(f, "), commit %s%s.\n", json_string_value(json_object_get(env, "git_commit")),
		json_is_true(json_object_get(run, "interrupted")) ? "; **the run was interrupted**" : "");
	if (json_array_size(cases))
		configuration(f, cases);
	environment(f, run);
	results_table(f, run);
	comparisons(f, run);
	if (drew)
		moe_report_plots(f, plots, "Plots");
	if (moe_out_commit(of, werr, sizeof(werr))) {
		fprintf(stderr, "moebench: report: cannot write %s\n", werr);
		return -1;
	}
	printf("# report: %s\n", md_path);
	return drew ? 0 : 1;
}

/* A case of run by name, or NULL. */
static json_t *case_named(json_t *run, const char *name)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(run, "cases"), i, c) if (!strcmp(json_string_value(json_object_get(c, "name")),
									       name)) return c;
	return NULL;
}

/* Cases matched by name whose resolved parameters differ, a row per parameter; then the environment keys
 * that differ. */
void moe_report_config_diff(FILE *f, json_t *base, json_t *neww)
{
	fprintf(f, "\n## Configuration differences\n\n");
	size_t i;
	json_t *cn;
	int rows = 0;
	char a[512], b[512];
	json_array_foreach(json_object_get(neww, "cases"), i, cn)
	{
		const char *name = json_string_value(json_object_get(cn, "name"));
		json_t *cb = case_named(base, name), *pb = json_object_get(cb, "params"), *pn = json_object_get(cn, "params");
		const char *key;
		json_t *v;
		json_t *keys = json_object(); /* the union of both sides' keys */
		json_object_foreach(pb, key, v) json_object_set(keys, key, json_true());
		json_object_foreach(pn, key, v) json_object_set(keys, key, json_true());
		json_object_foreach(keys, key, v) if (cb && !json_equal(json_object_get(pb, key), json_object_get(pn, key)))
		{
			if (!rows++)
				fprintf(f, "| case | parameter | base | new |\n|---|---|---|---|\n");
			value_text(json_object_get(pb, key), a, sizeof(a));
			value_text(json_object_get(pn, key), b, sizeof(b));
			fprintf(f, "| ");
			cell(f, name);
			fprintf(f, " | %s | ", key);
			cell(f, a);
			fprintf(f, " | ");
			cell(f, b);
			fprintf(f, " |\n");
		}
		json_decref(keys);
	}
	if (!rows)
		fprintf(f, "The cases both runs hold have the same resolved parameters.\n");
	static const char *const skip[] = {"date", "command", "placement_summary"}; /* always differ or shown above */
	int erows = 0;
	const char *key;
	json_t *v;
	json_object_foreach(json_object_get(neww, "env"), key, v)
	{
		int skipped = json_is_object(v);
		for (size_t k = 0; k < MOE_ARRAY_SIZE(skip); k++)
			skipped |= !strcmp(key, skip[k]);
		json_t *o = json_object_get(json_object_get(base, "env"), key);
		if (skipped || json_equal(o, v))
			continue;
		if (!erows++)
			fprintf(f, "\nEnvironment keys that differ:\n\n| key | base | new |\n|---|---|---|\n");
		value_text(o, a, sizeof(a));
		value_text(v, b, sizeof(b));
		fprintf(f, "| %s | ", key);
		cell(f, a);
		fprintf(f, " | ");
		cell(f, b);
		fprintf(f, " |\n");
	}
	if (!erows)
		fprintf(f, "\nThe environments agree (besides the date and the command line).\n");
}
