/* Comparison within one run: cases that differ in one parameter, ratios to a baseline with bootstrap intervals. */
#include "axes.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "results.h"
#include "stats.h"

/* The phases compared, in the table's order; 'total' decides the verdict. */
static const char *const axes_phases[] = {"route", "dispatch", "expert", "combine", "tp_merge", "fetch_wait", "total"};

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median_of(double *v, size_t n)
{
	qsort(v, n, sizeof(double), cmp_dbl);
	return moe_percentile_sorted(v, n, 0.5);
}

/* One bootstrap draw of v's median into scratch tmp (n entries). The modulo bias of a 64-bit draw over
 * a few thousand samples is below 1e-15: not worth a rejection loop. */
static double draw_median(const double *v, size_t n, double *tmp, uint64_t *s)
{
	for (size_t i = 0; i < n; i++)
		tmp[i] = v[splitmix64(s) % n];
	return median_of(tmp, n);
}

int moe_axes_ratio_ci(const double *num, size_t nnum, const double *den, size_t nden, int resamples, uint64_t seed,
		      double *ratio, double *lo, double *hi)
{
	if (!nnum || !nden || resamples < 1)
		return -1;
	double *a = moe_xmalloc(nnum * sizeof(double)), *b = moe_xmalloc(nden * sizeof(double));
	double *r = moe_xmalloc((size_t)resamples * sizeof(double));
	memcpy(a, num, nnum * sizeof(double));
	memcpy(b, den, nden * sizeof(double));
	double mn = median_of(a, nnum), md = median_of(b, nden);
	int rc = -1;
	if (md > 0 && isfinite(mn)) {
		uint64_t s = seed;
		for (int i = 0; i < resamples; i++) {
			double d = draw_median(den, nden, b, &s);
			r[i] = d > 0 ? draw_median(num, nnum, a, &s) / d : INFINITY;
		}
		qsort(r, (size_t)resamples, sizeof(double), cmp_dbl);
		*ratio = mn / md;
		*lo = moe_percentile_sorted(r, (size_t)resamples, (1 - MOE_AXES_LEVEL) / 2);
		*hi = moe_percentile_sorted(r, (size_t)resamples, 1 - (1 - MOE_AXES_LEVEL) / 2);
		rc = 0;
	}
	free(a);
	free(b);
	free(r);
	return rc;
}

int moe_axes_separate(double lo, double hi)
{
	if (hi < 1 - MOE_AXES_BAND)
		return -1;
	if (lo > 1 + MOE_AXES_BAND)
		return 1;
	return 0;
}

static const char *param_of(json_t *c, const char *key)
{
	const char *v = json_string_value(json_object_get(json_object_get(c, "params"), key));
	return v ? v : "";
}

static int eligible(json_t *c)
{
	const char *v = json_string_value(json_object_get(c, "verdict"));
	json_t *t = json_object_get(json_object_get(c, "samples"), "total");
	return v && (!strcmp(v, "ok") || !strcmp(v, "unchecked")) && json_array_size(t) > 0 &&
	       json_is_object(json_object_get(c, "params"));
}

/* Equal params on every key but `axis` (a key missing on one side counts as "") */
static int same_but(json_t *a, json_t *b, const char *axis)
{
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(a, "params"), k, v)
	{
		if (strcmp(k, axis) && strcmp(json_string_value(v) ? json_string_value(v) : "", param_of(b, k)))
			return 0;
	}
	json_object_foreach(json_object_get(b, "params"), k, v)
	{
		if (strcmp(k, axis) && !json_object_get(json_object_get(a, "params"), k) && strcmp(param_of(b, k), ""))
			return 0;
	}
	return 1;
}

static double *samples_of(json_t *c, const char *phase, size_t *n)
{
	json_t *arr = json_object_get(json_object_get(c, "samples"), phase);
	*n = json_array_size(arr);
	if (!*n)
		return NULL;
	double *v = moe_xmalloc(*n * sizeof(double));
	for (size_t i = 0; i < *n; i++)
		v[i] = json_number_value(json_array_get(arr, i));
	return v;
}

static double median_json(json_t *c, const char *phase)
{
	size_t n;
	double *v = samples_of(c, phase, &n);
	double m = v ? median_of(v, n) : NAN;
	free(v);
	return m;
}

/* What a row moved: rows dispatched and slots sent summed over ranks, bytes as the launcher totalled them */
static void add_moved(json_t *row, json_t *c)
{
	json_int_t rows = 0, slots = 0, tokens = 0;
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(c, "ranks"), i, r)
	{
		rows += json_integer_value(json_object_get(r, "rows"));
		slots += json_integer_value(json_object_get(json_object_get(r, "slots"), "sent"));
	}
	json_array_foreach(json_object_get(c, "tokens"), i, r) tokens += json_integer_value(r);
	json_t *b = json_object_get(c, "bytes");
	json_object_set_new(row, "tokens_total", json_integer(tokens));
	json_object_set_new(row, "rows_dispatched", json_integer(rows));
	json_object_set_new(row, "slots_sent", json_integer(slots));
	json_object_set_new(row, "bytes_logical", json_integer(json_integer_value(json_object_get(b, "logical"))));
	json_object_set_new(row, "bytes_wire", json_integer(json_integer_value(json_object_get(b, "wire"))));
}

/* Per phase: medians, ratio and interval; the seed mixes in the row's place so rows draw independently */
static json_t *phase_ratios(json_t *c, json_t *base, uint64_t seed)
{
	json_t *out = json_object();
	for (size_t k = 0; k < MOE_ARRAY_SIZE(axes_phases); k++) {
		size_t nn, nd;
		double *num = samples_of(c, axes_phases[k], &nn), *den = samples_of(base, axes_phases[k], &nd);
		double ratio, lo, hi;
		if (num && den &&
		    !moe_axes_ratio_ci(num, nn, den, nd, MOE_AXES_RESAMPLES, seed + k, &ratio, &lo, &hi) && ratio > 0)
			json_object_set_new(out, axes_phases[k],
					    json_pack("{s:f,s:f,s:f,s:f,s:f}", "median_us", median_json(c, axes_phases[k]),
						      "baseline_median_us", median_json(base, axes_phases[k]), "ratio", ratio,
						      "ci_lo", lo, "ci_hi", hi));
		free(num);
		free(den);
	}
	return out;
}

static json_t *row_json(json_t *c, json_t *base, const char *axis, int idx, uint64_t seed)
{
	const char *value = param_of(c, axis), *bvalue = param_of(base, axis);
	json_t *row = json_pack("{s:s,s:s,s:b}", "case", json_string_value(json_object_get(c, "name")), "value", value,
				"baseline", c == base);
	add_moved(row, c);
	json_object_set_new(row, "total_median_us", json_real(median_json(c, "total")));
	if (c == base) {
		json_object_set_new(row, "verdict", json_string("baseline"));
		return row;
	}
	json_t *ph = phase_ratios(c, base, seed + 64 * (uint64_t)idx);
	json_t *t = json_object_get(ph, "total");
	char verdict[512] = "not separable";
	if (t) {
		double lo = json_number_value(json_object_get(t, "ci_lo")), hi = json_number_value(json_object_get(t, "ci_hi"));
		int s = moe_axes_separate(lo, hi);
		if (s)
			snprintf(verdict, sizeof(verdict), "%s wins", s < 0 ? value : bvalue);
		json_object_set(row, "ratio", json_object_get(t, "ratio"));
		json_object_set(row, "ci_lo", json_object_get(t, "ci_lo"));
		json_object_set(row, "ci_hi", json_object_get(t, "ci_hi"));
	}
	json_object_set_new(row, "verdict", json_string(verdict));
	json_object_set_new(row, "phases", ph);
	return row;
}

/* The baseline's name less its "/axis=value" part: what the group's rows have in common */
static void fixed_label(json_t *base, const char *axis, char *out, size_t n)
{
	const char *name = json_string_value(json_object_get(base, "name"));
	char pat[512];
	snprintf(out, n, "%s", name ? name : "");
	snprintf(pat, sizeof(pat), "/%s=%s", axis, param_of(base, axis));
	char *at = strstr(out, pat);
	size_t pl = strlen(pat);
	if (at && (at[pl] == '/' || at[pl] == 0))
		memmove(at, at + pl, strlen(at + pl) + 1);
}

/* FNV-1a of "key=value": the XOR over a case's params is its signature; XORing one key's term back out
 * gives the signature without that key, so unlike cases are told apart without comparing every string */
static uint64_t kv_hash(const char *k, const char *v)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *q = k; *q; q++)
		h = (h ^ (unsigned char)*q) * 0x100000001b3ull;
	h = (h ^ '=') * 0x100000001b3ull;
	for (const char *q = v; *q; q++)
		h = (h ^ (unsigned char)*q) * 0x100000001b3ull;
	return h;
}

static uint64_t params_hash(json_t *c)
{
	uint64_t h = 0;
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(c, "params"), k, v)
	{
		h ^= kv_hash(k, json_string_value(v) ? json_string_value(v) : "");
	}
	return h;
}

/* One group along `axis` from case i: the first case of each value, in run order */
static json_t *group_from(json_t **v, const uint64_t *sig, int n, int i, const char *axis, char *taken)
{
	int *members = moe_xmalloc((size_t)n * sizeof(int)), m = 0;
	for (int j = i; j < n; j++) {
		if (taken[j] || (j != i && (sig[j] != sig[i] || !same_but(v[i], v[j], axis))))
			continue;
		taken[j] = 1;
		int dup = 0;
		for (int q = 0; q < m; q++)
			dup |= !strcmp(param_of(v[members[q]], axis), param_of(v[j], axis));
		if (!dup)
			members[m++] = j;
	}
	json_t *g = NULL;
	if (m >= 2) {
		char label[1024];
		fixed_label(v[i], axis, label, sizeof(label));
		json_t *rows = json_array();
		for (int q = 0; q < m; q++)
			json_array_append_new(rows, row_json(v[members[q]], v[i], axis, q, MOE_AXES_SEED));
		g = json_pack("{s:s,s:s,s:s,s:s,s:o}", "axis", axis, "fixed", label, "baseline",
			      json_string_value(json_object_get(v[i], "name")), "baseline_value", param_of(v[i], axis),
			      "rows", rows);
	}
	free(members);
	return g;
}

json_t *moe_axes_compare(json_t *cases)
{
	json_t *out = json_array();
	size_t nc = json_array_size(cases);
	json_t **v = moe_xmalloc((nc ? nc : 1) * sizeof(json_t *));
	int n = 0;
	for (size_t i = 0; i < nc; i++)
		if (eligible(json_array_get(cases, i)))
			v[n++] = json_array_get(cases, i);
	char *taken = moe_xmalloc((size_t)(n ? n : 1));
	size_t nsig = (size_t)(n ? n : 1) * sizeof(uint64_t);
	uint64_t *all = moe_xmalloc(nsig), *sig = moe_xmalloc(nsig);
	for (int i = 0; i < n; i++)
		all[i] = params_hash(v[i]);
	const char *axis;
	json_t *unused;
	/* the keys of the first case, in the scenario table's order: every case carries the same set */
	json_object_foreach(json_object_get(n ? v[0] : NULL, "params"), axis, unused)
	{
		memset(taken, 0, (size_t)(n ? n : 1));
		for (int i = 0; i < n; i++)
			sig[i] = all[i] ^ kv_hash(axis, param_of(v[i], axis));
		for (int i = 0; i < n; i++) {
			if (taken[i])
				continue;
			json_t *g = group_from(v, sig, n, i, axis, taken);
			if (g)
				json_array_append_new(out, g);
		}
	}
	free(taken);
	free(all);
	free(sig);
	free(v);
	return out;
}

static void human_bytes(json_int_t b, char *out, size_t n)
{
	if (b >= 10 * 1000 * 1000)
		snprintf(out, n, "%.1f MB", (double)b * 1e-6);
	else if (b >= 10 * 1000)
		snprintf(out, n, "%.1f kB", (double)b * 1e-3);
	else
		snprintf(out, n, "%lld B", (long long)b);
}

static void print_row(FILE *f, json_t *r)
{
	char lb[32], wb[32], ratio[64] = "baseline";
	human_bytes(json_integer_value(json_object_get(r, "bytes_logical")), lb, sizeof(lb));
	human_bytes(json_integer_value(json_object_get(r, "bytes_wire")), wb, sizeof(wb));
	if (json_object_get(r, "ratio"))
		snprintf(ratio, sizeof(ratio), "x%.3f [%.3f, %.3f]", json_number_value(json_object_get(r, "ratio")),
			 json_number_value(json_object_get(r, "ci_lo")), json_number_value(json_object_get(r, "ci_hi")));
	else if (!json_is_true(json_object_get(r, "baseline")))
		snprintf(ratio, sizeof(ratio), "no ratio");
	fprintf(f, "#   %-18s %11.1f  %-26s %-18s %9lld %11s %11s\n", json_string_value(json_object_get(r, "value")),
		json_number_value(json_object_get(r, "total_median_us")), ratio,
		json_is_true(json_object_get(r, "baseline")) ? "-" : json_string_value(json_object_get(r, "verdict")),
		(long long)json_integer_value(json_object_get(r, "rows_dispatched")), lb, wb);
}

void moe_axes_print(FILE *f, json_t *comparisons)
{
	if (!json_array_size(comparisons))
		return;
	fprintf(f, "# strategy comparison: cases that differ in one parameter only, against the group's first case;\n"
		   "# ratio = median total / the baseline's, [%.0f%% bootstrap interval, %d resamples]; an interval\n"
		   "# reaching into 1 +- %.0f%% is 'not separable'; rows dispatched and bytes summed over ranks, per iteration\n",
		100 * MOE_AXES_LEVEL, MOE_AXES_RESAMPLES, 100 * MOE_AXES_BAND);
	size_t i;
	json_t *g;
	json_array_foreach(comparisons, i, g)
	{
		fprintf(f, "# %s along %s:\n", json_string_value(json_object_get(g, "fixed")),
			json_string_value(json_object_get(g, "axis")));
		fprintf(f, "#   %-18s %11s  %-26s %-18s %9s %11s %11s\n", "value", "total_p50", "ratio [CI]", "verdict",
			"rows", "logical", "wire");
		size_t k;
		json_t *r;
		json_array_foreach(json_object_get(g, "rows"), k, r) print_row(f, r);
	}
}

static void tsv_phase(FILE *m, size_t gi, json_t *g, size_t k, json_t *r, const char *phase, json_t *p)
{
	size_t nrows = json_array_size(json_object_get(g, "rows"));
	int base = json_is_true(json_object_get(r, "baseline"));
	/* the baseline's median comes from another row's record of it */
	double med = json_number_value(json_object_get(p, base ? "baseline_median_us" : "median_us"));
	double ratio = base ? 1 : json_number_value(json_object_get(p, "ratio"));
	fprintf(m, "%zu\t%s\t%s\t%s\t%s\t%d\t%s\t%.3f\t%.3f\t%.5f\t%.5f\t%.5f\t%s\t%lld\t%lld\t%lld\t%lld\t%zu\t%zu\n", gi,
		json_string_value(json_object_get(g, "axis")), json_string_value(json_object_get(g, "fixed")),
		json_string_value(json_object_get(r, "value")), json_string_value(json_object_get(r, "case")), base, phase,
		med, json_number_value(json_object_get(p, "baseline_median_us")), ratio,
		base ? 1.0 : json_number_value(json_object_get(p, "ci_lo")),
		base ? 1.0 : json_number_value(json_object_get(p, "ci_hi")),
		base ? "baseline" : !strcmp(phase, "total") ? json_string_value(json_object_get(r, "verdict")) : "-",
		(long long)json_integer_value(json_object_get(r, "tokens_total")),
		(long long)json_integer_value(json_object_get(r, "rows_dispatched")),
		(long long)json_integer_value(json_object_get(r, "bytes_logical")),
		(long long)json_integer_value(json_object_get(r, "bytes_wire")), k, nrows);
}

/* The baseline row has no phases of its own: a phase is written for it when the group's second row
 * compared it (every row of a group shares the baseline). */
static void tsv_group(FILE *m, size_t gi, json_t *g)
{
	json_t *rows = json_object_get(g, "rows"), *ref = json_object_get(json_array_get(rows, 1), "phases");
	size_t k;
	json_t *r;
	json_array_foreach(rows, k, r)
	{
		for (size_t p = 0; p < MOE_ARRAY_SIZE(axes_phases); p++) {
			int base = json_is_true(json_object_get(r, "baseline"));
			json_t *ph = json_object_get(base ? ref : json_object_get(r, "phases"), axes_phases[p]);
			if (ph)
				tsv_phase(m, gi, g, k, r, axes_phases[p], ph);
		}
	}
}

int moe_axes_write_tsv(const char *dir, json_t *comparisons)
{
	char *text = NULL, path[4096];
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	if (!m) {
		moe_err("axes.tsv: %s", strerror(errno));
		return -1;
	}
	fprintf(m, "# group\taxis\tfixed\tvalue\tcase\tis_baseline\tphase\tmedian_us\tbaseline_median_us\tratio\tci_lo\t"
		   "ci_hi\tverdict\ttokens_total\trows_dispatched\tbytes_logical\tbytes_wire\tmember\tmembers\n");
	size_t gi;
	json_t *g;
	json_array_foreach(comparisons, gi, g) tsv_group(m, gi, g);
	fclose(m);
	snprintf(path, sizeof(path), "%s/axes.tsv", dir);
	int rc = moe_write_atomic(path, text, len);
	if (rc)
		moe_err("writing %s: %s", path, strerror(errno));
	free(text);
	return rc;
}
