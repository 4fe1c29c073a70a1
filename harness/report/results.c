/* Results: run.json, TSV for plots, and the table a user reads. */
#include "results.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moe.h"
#include "stats.h"

/* longest case name kept in a TSV row (escaping may make it four times longer) */


/* keys that change how long or how carefully a case runs, not what it runs */
static const char *const digest_skip[] = {"iters", "warmup", "check", "tolerance", "timeout"};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int moe_case_digest(json_t *cas, char out[17])
{
	json_t *params = json_object_get(cas, "params");
	if (!json_is_object(params))
		return -1;
	size_t n = 0, k = 0;
	const char **keys = moe_xcalloc(json_object_size(params) + 1, sizeof(char *));
	const char *key;
	json_t *v;
	json_object_foreach(params, key, v) keys[n++] = key;
	qsort(keys, n, sizeof(char *), cmp_str);
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		int skip = 0;
		for (k = 0; k < MOE_ARRAY_SIZE(digest_skip); k++)
			skip |= !strcmp(keys[i], digest_skip[k]);
		if (skip)
			continue;
		const char *val = json_string_value(json_object_get(params, keys[i]));
		char num[64];
		if (!val) { /* a hand-written run.json may hold numbers: they hash as their text */
			snprintf(num, sizeof(num), "%.17g", json_number_value(json_object_get(params, keys[i])));
			val = num;
		}
		/* key=value\n, so that no two different parameter sets give the same byte stream */
		for (int part = 0; part < 3; part++) {
			const unsigned char *p = (const unsigned char *)(part == 0 ? keys[i] : part == 1 ? "=" : val);
			for (; *p; p++)
				h = (h ^ *p) * 0x100000001b3ull;
		}
		h = (h ^ '\n') * 0x100000001b3ull;
	}
	free(keys);
	snprintf(out, 17, "%016llx", (unsigned long long)h);
	return 0;
}

json_t *moe_json_text(const char *s)
{
	json_t *j = json_string(s ? s : "");
	if (j)
		return j;
	char *esc = moe_utf8_escape(s); /* the one escaper: bad bytes as \xhh, the same in every output */
	j = json_string(esc);
	free(esc);
	return j ? j : json_string("");
}

void moe_oneline(char *dst, size_t len, const char *src)
{
	size_t k = 0;
	for (const unsigned char *p = (const unsigned char *)(src ? src : "(none)"); *p && k + 5 < len; p++)
		k += *p < 0x20 || *p == 0x7f ? (size_t)snprintf(dst + k, len - k, "\\x%02X", *p)
					     : (size_t)snprintf(dst + k, len - k, "%c", *p);
	dst[k] = 0;
}

static int cmp_name(const void *x, const void *y)
{
	const char *a = json_string_value(json_object_get(*(json_t *const *)x, "name"));
	const char *b = json_string_value(json_object_get(*(json_t *const *)y, "name"));
	return strcmp(a, b);
}

int moe_run_validate(json_t *run, const char *what, char *err, size_t errlen)
{
	const char *schema = json_string_value(json_object_get(run, "schema"));
	json_t *cases = json_object_get(run, "cases");
	if (!json_is_object(run) || !schema) {
		snprintf(err, errlen, "%.700s: not a moebench run.json (no \"schema\"; expected %s)", what, MOE_SCHEMA);
		return -1;
	}
	if (strcmp(schema, MOE_SCHEMA)) {
		char sc[200];
		moe_oneline(sc, sizeof(sc), schema);
		snprintf(err, errlen, "%.700s: schema %s, this moebench reads %s", what, sc, MOE_SCHEMA);
		return -1;
	}
	if (!json_is_array(cases)) {
		snprintf(err, errlen, "%.700s: \"cases\" is not an array", what);
		return -1;
	}
	size_t i, n = json_array_size(cases);
	json_t *c;
	json_array_foreach(cases, i, c)
	{
		const char *miss = !json_is_object(c)					  ? "is not an object"
				   : !json_is_string(json_object_get(c, "name"))	  ? "has no \"name\""
				   : !json_is_string(json_object_get(c, "verdict"))	  ? "has no \"verdict\""
				   : !json_is_object(json_object_get(c, "params"))	  ? "has no \"params\""
				   : json_object_get(c, "digest") &&
						   !json_is_string(json_object_get(c, "digest")) ? "has a \"digest\" that is not a string"
												     : NULL;
		if (miss) {
			snprintf(err, errlen, "%.700s: cases[%zu] %s", what, i, miss);
			return -1;
		}
		char dg[17];
		if (!json_object_get(c, "digest") && !moe_case_digest(c, dg)) /* written before digests existed */
			json_object_set_new(c, "digest", json_string(dg));
	}
	/* a name twice would make every lookup by name ambiguous: refuse it, in O(n log n) */
	json_t **v = moe_xcalloc(n + 1, sizeof(json_t *));
	json_array_foreach(cases, i, c) v[i] = c;
	qsort(v, n, sizeof(json_t *), cmp_name);
	int rc = 0;
	for (i = 1; i < n && !rc; i++)
		if (!cmp_name(&v[i - 1], &v[i])) {
			char nm[300];
			moe_oneline(nm, sizeof(nm), json_string_value(json_object_get(v[i], "name")));
			snprintf(err, errlen, "%.700s: case %s appears twice", what, nm);
			rc = -1;
		}
	free(v);
	return rc;
}

static double ph(json_t *c, const char *phase, const char *stat)
{
	json_t *v = json_object_get(json_object_get(json_object_get(c, "phases"), phase), stat);
	return v ? json_number_value(v) : -1;
}

/* The steady-state period of a case: its slowest rank's (-1: not measured). */
static double period(json_t *c)
{
	json_t *v = json_object_get(json_object_get(c, "period"), "max_us");
	return v ? json_number_value(v) : -1;
}

static void tsv_tokens(char *buf, size_t len, json_t *c)
{
	size_t k = 0;
	json_t *t;
	size_t i;
	buf[0] = 0;
	json_array_foreach(json_object_get(c, "tokens"), i, t)
	{
		if (k < len)
			k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? "," : "", (long long)json_integer_value(t));
	}
}

static int64_t total_tokens(json_t *c)
{
	int64_t s = 0;
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(c, "tokens"), i, t) s += json_integer_value(t);
	return s;
}

static const char *param(json_t *c, const char *k)
{
	const char *v = json_string_value(json_object_get(json_object_get(c, "params"), k));
	return v ? v : "";
}

/* Buffer-backed text builder. */
struct sbuf {
	char *s;
	size_t n, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (k >= 0 && b->s && b->n + (size_t)k < b->cap) {
			b->n += (size_t)k;
			return;
		}
		b->cap = b->cap * 2 + (size_t)(k > 0 ? k : 0) + 4096;
		b->s = realloc(b->s, b->cap);
		if (!b->s)
			abort();
	}
}

static const char *const tsv_phases[] = {"route", "dispatch", "expert", "combine", "tp_merge", "fetch_wait", "total"};

/* Every case its identity, kept in run.json for compare and the history. */
static void add_digests(json_t *run)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(run, "cases"), i, c)
	{
		char dg[17];
		if (!json_object_get(c, "digest") && !moe_case_digest(c, dg))
			json_object_set_new(c, "digest", json_string(dg));
	}
}

/* One file of the run folder through the checked writer; the first failure is kept in err. */
static int write_one(const char *dir, const char *name, const char *text, size_t len, char *err, size_t errlen)
{
	char path[4096], why[4400];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!moe_write_file(path, text ? text : "", text ? len : 0, why, sizeof(why)))
		return 0;
	if (err && errlen && !err[0])
		snprintf(err, errlen, "%s", why);
	return -1;
}

/* The TSV rows of one case: its line in cases.tsv, its ranks' p50s, its samples. The name is escaped:
 * a tab or newline in it would otherwise shift or split the row. */
static void tsv_case(struct sbuf *c, struct sbuf *s, struct sbuf *rk, json_t *cj)
{
	char tok[4096], name[4 * MOE_TSV_NAME_MAX];
	const char *raw = json_string_value(json_object_get(cj, "name")), *verdict;
	moe_tsv_escape(raw ? raw : "", name, sizeof(name));
	verdict = json_string_value(json_object_get(cj, "verdict"));
	tsv_tokens(tok, sizeof(tok), cj);
	sb_printf(c, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%lld\t%s\t%s\t%s\t%s", name, param(cj, "strategy"),
		  param(cj, "partition"), param(cj, "transport"), param(cj, "backend"), param(cj, "dp"), param(cj, "tp"),
		  tok, (long long)total_tokens(cj), param(cj, "hidden"), param(cj, "experts"), param(cj, "topk"),
		  verdict ? verdict : "");
	for (size_t k = 0; k < MOE_ARRAY_SIZE(tsv_phases); k++)
		sb_printf(c, "\t%.3f\t%.3f", ph(cj, tsv_phases[k], "p50_us"), ph(cj, tsv_phases[k], "p99_us"));
	json_t *b = json_object_get(cj, "bytes");
	sb_printf(c, "\t%.4f\t%.4f\t%.3f\t%.3f\n", json_number_value(json_object_get(b, "algbw_GBps")),
		  json_number_value(json_object_get(b, "busbw_GBps")), ph(cj, "total_min", "p50_us"), period(cj));
	size_t ri;
	json_t *rj;
	json_array_foreach(json_object_get(cj, "ranks"), ri, rj)
	{
		const char *rpk;
		json_t *rarr;
		json_object_foreach(json_object_get(rj, "samples_us"), rpk, rarr)
		{
			if (!json_array_size(rarr))
				continue;
			struct moe_summary su;
			moe_summarize_json(rarr, &su);
			sb_printf(rk, "%s\t%lld\t%s\t%.3f\n", name, (long long)json_integer_value(json_object_get(rj, "rank")),
				  rpk, su.p50);
		}
	}
	const char *pk;
	json_t *arr;
	json_object_foreach(json_object_get(cj, "samples"), pk, arr)
	{
		size_t j;
		json_t *v;
		json_array_foreach(arr, j, v) sb_printf(s, "%s\t%zu\t%s\t%.3f\n", name, j, pk, json_number_value(v));
	}
}

int moe_results_write(const char *dir, json_t *run, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = 0;
	add_digests(run);
	char *js = json_dumps(run, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	if (!js) {
		if (err && errlen)
			snprintf(err, errlen, "%s/run.json: cannot render the results as JSON", dir);
		return -1;
	}
	int rc = write_one(dir, "run.json", js, strlen(js), err, errlen);
	free(js);
	struct sbuf c = {0}, s = {0}, rk = {0};
	sb_printf(&rk, "# case\trank\tphase\tp50_us\n");
	sb_printf(&c, "# case\tstrategy\tpartition\ttransport\tbackend\tdp\ttp\ttokens\ttokens_total\thidden\texperts\ttopk\tverdict");
	for (size_t k = 0; k < MOE_ARRAY_SIZE(tsv_phases); k++)
		sb_printf(&c, "\t%s_p50_us\t%s_p99_us", tsv_phases[k], tsv_phases[k]);
	sb_printf(&c, "\talgbw_GBps\tbusbw_GBps\ttotal_min_p50_us\tperiod_us\n");
	sb_printf(&s, "# case\titer\tphase\tus\n");
	size_t i;
	json_t *cj;
	json_array_foreach(json_object_get(run, "cases"), i, cj) tsv_case(&c, &s, &rk, cj);
	rc |= write_one(dir, "cases.tsv", c.s, c.n, err, errlen);
	rc |= write_one(dir, "samples.tsv", s.s, s.n, err, errlen);
	rc |= write_one(dir, "ranks.tsv", rk.s, rk.n, err, errlen);
	free(c.s);
	free(s.s);
	free(rk.s);
	return rc ? -1 : 0;
}

void moe_results_header(FILE *f, json_t *env)
{
	fprintf(f, "# moebench %s (commit %s) on %s, %s\n", json_string_value(json_object_get(env, "version")),
		json_string_value(json_object_get(env, "git_commit")), json_string_value(json_object_get(env, "host")),
		json_string_value(json_object_get(env, "date")));
	fprintf(f, "# kernel %s, %s, %lld CPUs; hwloc API %s, PAPI %s, jansson %s\n",
		json_string_value(json_object_get(env, "kernel")), json_string_value(json_object_get(env, "cpu")),
		(long long)json_integer_value(json_object_get(env, "ncpus")),
		json_string_value(json_object_get(env, "hwloc")), json_string_value(json_object_get(env, "papi")),
		json_string_value(json_object_get(env, "jansson")));
	fprintf(f, "# placement: %s\n", json_string_value(json_object_get(env, "placement_summary")));
	json_t *la = json_object_get(env, "loadavg_start"), *mhz = json_object_get(env, "cpu_mhz");
	if (json_object_get(env, "cpus_available")) {
		char clock[48] = "CPU clock not readable";
		if (mhz)
			snprintf(clock, sizeof(clock), "CPU %.0f MHz", json_number_value(mhz));
		fprintf(f, "# load: %lld CPUs available, up to %.2f ranks per core, load average %.2f %.2f %.2f at start, %s\n",
			(long long)json_integer_value(json_object_get(env, "cpus_available")),
			json_number_value(json_object_get(env, "ranks_per_core_max")),
			json_number_value(json_array_get(la, 0)), json_number_value(json_array_get(la, 1)),
			json_number_value(json_array_get(la, 2)), clock);
	}
	fprintf(f, "# times in microseconds: per iteration the maximum over ranks, then the median (p50) over iterations\n");
	fprintf(f, "# total_min: the fastest rank's total (p50); period: iterations back to back without a barrier, "
		   "the slowest rank's; graph = on times only those\n");
	fprintf(f, "%-44s %5s %9s %9s %9s %9s %9s %10s %10s %10s %10s %9s  %s\n", "# case", "ranks", "tokens", "route",
		"dispatch", "expert", "combine", "total_p50", "total_p99", "total_min", "period", "busbw", "verdict");
}

static void fmt_us(char *buf, size_t len, int width, double us)
{
	if (us < 0)
		snprintf(buf, len, "%*s", width, "-");
	else
		snprintf(buf, len, "%*.1f", width, us);
}

void moe_results_row(FILE *f, json_t *c)
{
	const char *v = json_string_value(json_object_get(c, "verdict"));
	const char *name = json_string_value(json_object_get(c, "name"));
	int ranks = atoi(param(c, "dp")) * atoi(param(c, "tp"));
	if (strcmp(v, "ok") && strcmp(v, "mismatch") && strcmp(v, "unchecked")) {
		fprintf(f, "%-44s %5d %9lld  %s: %s\n", name, ranks, (long long)total_tokens(c), v,
			json_string_value(json_object_get(c, "reason")));
		return;
	}
	char bw[32] = "        -";
	double busbw = json_number_value(json_object_get(json_object_get(c, "bytes"), "busbw_GBps"));
	if (busbw > 0)
		snprintf(bw, sizeof(bw), "%8.2fG", busbw);
	char cols[4][16]; /* a phase a graph does not time, or a figure not measured, prints as - */
	const char *const names[4] = {"route", "dispatch", "expert", "combine"};
	for (int k = 0; k < 4; k++)
		fmt_us(cols[k], sizeof(cols[k]), 9, ph(c, names[k], "p50_us"));
	char per[16];
	fmt_us(per, sizeof(per), 10, period(c));
	fprintf(f, "%-44s %5d %9lld %s %s %s %s %10.1f %10.1f %10.1f %s %s  %s", name, ranks, (long long)total_tokens(c),
		cols[0], cols[1], cols[2], cols[3], ph(c, "total", "p50_us"), ph(c, "total", "p99_us"),
		ph(c, "total_min", "p50_us"), per, bw, v);
	json_t *rf = json_object_get(c, "roofline");
	if (rf)
		fprintf(f, " (experts %.3g TFLOP/s = %.2g%% of dense GEMM; dispatch+combine %.3g GB/s = %.2g%% of copy)",
			json_number_value(json_object_get(rf, "expert_TFLOPs")),
			json_number_value(json_object_get(rf, "expert_pct_of_gemm")),
			json_number_value(json_object_get(rf, "comm_GBps_per_gpu")),
			json_number_value(json_object_get(rf, "comm_pct_of_copy")));
	json_t *dw = json_object_get(c, "dwdp");
	if (dw)
		fprintf(f, " (dwdp: fetch %.2f GB/s, %.0f%% hidden)", json_number_value(json_object_get(dw, "fetch_GBps")),
			100 * json_number_value(json_object_get(dw, "hidden_fraction")));
	json_t *in = json_object_get(json_object_get(c, "bytes"), "wire_inter_per_rank");
	if (in) /* across nodes (mpirun, srun): what stays on a node and what crosses, per rank and iteration */
		fprintf(f, " (wire/rank: %.3g MB in node, %.3g MB across)",
			json_number_value(json_object_get(json_object_get(c, "bytes"), "wire_intra_per_rank")) * 1e-6,
			json_number_value(in) * 1e-6);
	json_t *fb = json_object_get(c, "first_bad");
	if (fb)
		fprintf(f, " (rank %lld, layer %lld, token %lld, column %lld: %s)",
			(long long)json_integer_value(json_object_get(fb, "rank")),
			(long long)json_integer_value(json_object_get(fb, "layer")),
			(long long)json_integer_value(json_object_get(fb, "token")),
			(long long)json_integer_value(json_object_get(fb, "column")),
			json_string_value(json_object_get(fb, "what")));
	fputc('\n', f);
}

void moe_results_footer(FILE *f, json_t *cases)
{
	size_t i, ok = 0, bad = 0, skipped = 0, err = 0, unchecked = 0;
	json_t *c;
	json_array_foreach(cases, i, c)
	{
		const char *v = json_string_value(json_object_get(c, "verdict"));
		if (!strcmp(v, "ok"))
			ok++;
		else if (!strcmp(v, "mismatch"))
			bad++;
		else if (!strcmp(v, "skipped"))
			skipped++;
		else if (!strcmp(v, "unchecked"))
			unchecked++;
		else
			err++;
	}
	/* an unchecked case ran but proved nothing: it is counted apart, never among the passed */
	char more[96] = "";
	if (unchecked)
		snprintf(more, sizeof(more), ", %zu unchecked (check = off)", unchecked);
	if (skipped)
		snprintf(more + strlen(more), sizeof(more) - strlen(more), ", %zu skipped", skipped);
	if (!bad && !err)
		fprintf(f, "# OK: %zu case%s passed%s\n", ok, ok == 1 ? "" : "s", more);
	else
		fprintf(f, "# FAILED: %zu mismatch, %zu error, %zu ok%s\n", bad, err, ok, more);
}
