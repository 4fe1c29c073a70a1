/* Run comparison with honest statistics: medians, Mann-Whitney U (two-sided, normal approximation with
 * tie and continuity corrections) and a percentile bootstrap of the ratio of medians. Written here on libm
 * alone, so that no GPL statistics library is needed. */
#include "compare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "stats.h"

struct ranked {
	double v;
	int from_a;
};

static int cmp_ranked(const void *x, const void *y)
{
	double a = ((const struct ranked *)x)->v, b = ((const struct ranked *)y)->v;
	return (a > b) - (a < b);
}

double moe_mann_whitney(const double *a, size_t na, const double *b, size_t nb, double *u)
{
	size_t n = na + nb;
	if (!na || !nb) {
		*u = 0;
		return 1.0;
	}
	struct ranked *r = moe_xmalloc(n * sizeof(*r));
	for (size_t i = 0; i < na; i++)
		r[i] = (struct ranked){a[i], 1};
	for (size_t i = 0; i < nb; i++)
		r[na + i] = (struct ranked){b[i], 0};
	qsort(r, n, sizeof(*r), cmp_ranked);
	double ra = 0, ties = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && r[j].v == r[i].v)
			j++;
		double avg = (double)(i + j + 1) / 2.0, t = (double)(j - i); /* ranks i+1 .. j */
		ties += t * t * t - t;
		for (size_t k = i; k < j; k++)
			if (r[k].from_a)
				ra += avg;
		i = j;
	}
	free(r);
	double ua = ra - (double)na * (double)(na + 1) / 2.0;
	*u = ua;
	double mu = (double)na * (double)nb / 2.0;
	double var = (double)na * (double)nb / 12.0 * ((double)(n + 1) - ties / ((double)n * (double)(n - 1)));
	if (var <= 0)
		return 1.0; /* every value equal */
	double z = (fabs(ua - mu) - 0.5) / sqrt(var);
	if (z < 0)
		z = 0;
	return erfc(z / sqrt(2.0));
}

static double median_of(double *v, size_t n)
{
	struct moe_summary s;
	moe_summarize(v, n, &s);
	return s.p50;
}

static unsigned long long xorshift(unsigned long long *s)
{
	unsigned long long x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static int cmp_dbl(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

void moe_bootstrap_ratio(const double *a, size_t na, const double *b, size_t nb, int reps, unsigned long long seed,
			 double *lo, double *hi)
{
	double *ra = moe_xmalloc(na * sizeof(double)), *rb = moe_xmalloc(nb * sizeof(double));
	double *ratio = moe_xmalloc((size_t)reps * sizeof(double));
	unsigned long long s = seed ? seed : 0x9e3779b97f4a7c15ull;
	for (int k = 0; k < reps; k++) {
		for (size_t i = 0; i < na; i++)
			ra[i] = a[xorshift(&s) % na];
		for (size_t i = 0; i < nb; i++)
			rb[i] = b[xorshift(&s) % nb];
		double ma = median_of(ra, na);
		ratio[k] = ma > 0 ? median_of(rb, nb) / ma : NAN;
	}
	qsort(ratio, (size_t)reps, sizeof(double), cmp_dbl);
	*lo = moe_percentile_sorted(ratio, (size_t)reps, 0.025);
	*hi = moe_percentile_sorted(ratio, (size_t)reps, 0.975);
	free(ra);
	free(rb);
	free(ratio);
}

double moe_noise_band(const double *medians, size_t n)
{
	if (n < MOE_BAND_MIN_RUNS)
		return 0;
	double *v = moe_xmalloc(n * sizeof(double));
	memcpy(v, medians, n * sizeof(double));
	qsort(v, n, sizeof(double), cmp_dbl);
	double m = moe_percentile_sorted(v, n, 0.5);
	for (size_t i = 0; i < n; i++)
		v[i] = fabs(v[i] - m);
	qsort(v, n, sizeof(double), cmp_dbl);
	double mad = moe_percentile_sorted(v, n, 0.5);
	free(v);
	return m > 0 ? 3.0 * sqrt(2.0) * 1.4826 * mad / m * 100.0 : 0;
}

const char *moe_verdict(double p, double change_pct, double lo, double hi, double band_pct,
			const struct moe_compare_opts *o)
{
	int significant = p < o->alpha;
	/* the change must clear the case's own run-to-run noise when the history knows it */
	double thr = band_pct > o->threshold ? band_pct : o->threshold;
	/* the whole interval must clear half the threshold, not just 1: a run-to-run drift of a percent
	 * or two, which every shared machine has, is not a regression */
	double margin = thr / 200.0;
	if (significant && change_pct >= thr && lo > 1.0 + margin)
		return "slower";
	if (significant && change_pct <= -thr && hi < 1.0 - margin)
		return "faster";
	/* a real shift within this pair, but no larger than the case moves between identical runs */
	if (significant && band_pct > o->threshold && fabs(change_pct) >= o->threshold)
		return "noisy";
	/* no shift shown; a wide interval means the runs could not have shown one */
	if ((hi - lo) * 100.0 > o->noise)
		return "noisy";
	return "same";
}

json_t *moe_env_fingerprint(json_t *run)
{
	json_t *env = json_object_get(run, "env");
	json_t *fp = json_object();
	/* the commit is what a nightly comparison is about: it is not part of the environment */
	static const char *const keys[] = {"host",   "cpu",	"ncpus",	  "kernel",	"placement_summary",
					   "gpu",    "driver", "cuda_built", "nccl_built", "topology_digest"};
	for (size_t i = 0; i < MOE_ARRAY_SIZE(keys); i++) {
		json_t *v = json_object_get(env, keys[i]);
		if (v)
			json_object_set(fp, keys[i], v);
	}
	return fp;
}

static double *samples_of(json_t *cas, const char *phase, size_t *n)
{
	json_t *a = json_object_get(json_object_get(cas, "samples"), phase);
	*n = json_array_size(a);
	if (!*n)
		return NULL;
	double *v = moe_xmalloc(*n * sizeof(double));
	for (size_t i = 0; i < *n; i++)
		v[i] = json_number_value(json_array_get(a, i));
	return v;
}

json_t *moe_compare_runs(json_t *base, json_t *neww, const struct moe_compare_opts *o, char *err, size_t errlen)
{
	json_t *fa = moe_env_fingerprint(base), *fb = moe_env_fingerprint(neww);
	json_t *diff = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(fa, k, v)
	{
		if (!json_equal(v, json_object_get(fb, k)))
			json_array_append_new(diff, json_string(k));
	}
	json_decref(fa);
	json_decref(fb);
	if (json_array_size(diff) && !o->force) {
		size_t n = (size_t)snprintf(err, errlen, "the runs come from different environments (");
		size_t i;
		json_array_foreach(diff, i, v) if (n < errlen) n += (size_t)snprintf(err + n, errlen - n, "%s%s", i ? ", " : "",
									       json_string_value(v));
		if (n < errlen)
			snprintf(err + n, errlen - n, " differ); --force compares them anyway");
		json_decref(diff);
		return NULL;
	}
	json_t *rows = json_array();
	int regressions = 0;
	char phases[256];
	snprintf(phases, sizeof(phases), "%s", o->phases && *o->phases ? o->phases : "total");
	size_t i;
	json_t *cb;
	json_array_foreach(json_object_get(base, "cases"), i, cb)
	{
		const char *name = json_string_value(json_object_get(cb, "name"));
		json_t *cn = NULL, *c;
		size_t j;
		json_array_foreach(json_object_get(neww, "cases"), j, c) if (!strcmp(json_string_value(json_object_get(c, "name")),
									   name)) cn = c;
		if (!cn)
			continue;
		char list[256];
		snprintf(list, sizeof(list), "%s", phases);
		for (char *save = NULL, *ph = strtok_r(list, ",", &save); ph; ph = strtok_r(NULL, ",", &save)) {
			size_t na, nb;
			double *a = samples_of(cb, ph, &na), *b = samples_of(cn, ph, &nb);
			if (!a || !b) {
				free(a);
				free(b);
				continue;
			}
			double u, p = moe_mann_whitney(a, na, b, nb, &u), lo, hi;
			moe_bootstrap_ratio(a, na, b, nb, 2000, 12345, &lo, &hi);
			double ma = median_of(a, na), mb = median_of(b, nb);
			double change = ma > 0 ? (mb / ma - 1.0) * 100.0 : 0;
			char key[512];
			snprintf(key, sizeof(key), "%s\t%s", name, ph);
			double band = o->bands ? json_number_value(json_object_get(o->bands, key)) : 0;
			const char *verdict = moe_verdict(p, change, lo, hi, band, o);
			regressions += !strcmp(verdict, "slower");
			json_array_append_new(rows, json_pack("{s:s,s:s,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:s}", "case", name, "phase",
							      ph, "base_p50_us", ma, "new_p50_us", mb, "change_pct", change,
							      "p_value", p, "ratio_lo", lo, "ratio_hi", hi, "band_pct", band,
							      "verdict", verdict));
			free(a);
			free(b);
		}
	}
	return json_pack("{s:o,s:o,s:i,s:{s:f,s:f,s:f}}", "rows", rows, "env_diff", diff, "regressions", regressions,
			 "thresholds", "alpha", o->alpha, "threshold_pct", o->threshold, "noise_pct", o->noise);
}

void moe_compare_print(FILE *f, json_t *report)
{
	fprintf(f, "%-44s %-10s %12s %12s %8s %9s %17s %7s  %s\n", "# case", "phase", "base_p50_us", "new_p50_us",
		"change", "p-value", "95% CI of ratio", "band", "verdict");
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(report, "rows"), i, r)
	{
		double band = json_number_value(json_object_get(r, "band_pct"));
		char bs[16] = "-";
		if (band > 0)
			snprintf(bs, sizeof(bs), "%.1f%%", band);
		fprintf(f, "%-44s %-10s %12.1f %12.1f %+7.1f%% %9.2g   [%.3f, %.3f] %7s  %s\n",
			json_string_value(json_object_get(r, "case")), json_string_value(json_object_get(r, "phase")),
			json_number_value(json_object_get(r, "base_p50_us")), json_number_value(json_object_get(r, "new_p50_us")),
			json_number_value(json_object_get(r, "change_pct")), json_number_value(json_object_get(r, "p_value")),
			json_number_value(json_object_get(r, "ratio_lo")), json_number_value(json_object_get(r, "ratio_hi")),
			bs, json_string_value(json_object_get(r, "verdict")));
	}
	int n = (int)json_integer_value(json_object_get(report, "regressions"));
	fprintf(f, "# %d regression%s\n", n, n == 1 ? "" : "s");
}
