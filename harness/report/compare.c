/* Run comparison with honest statistics: medians, Mann-Whitney U (two-sided, normal approximation with
 * tie and continuity corrections) and a percentile bootstrap of the ratio of medians. Written here on libm
 * alone, so that no GPL statistics library is needed. */
#include "compare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "results.h"
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

/* The k-th smallest of v[0..n), reordering v so that everything after position k is >= it (three-way
 * selection: equal values, which timings are full of, end a round instead of slowing it). */
static double select_kth(double *v, size_t n, size_t k)
{
	size_t l = 0, r = n - 1;
	while (l < r) {
		double piv = v[l + (r - l) / 2], t;
		size_t lt = l, i = l, gt = r;
		while (i <= gt) {
			if (v[i] < piv) {
				t = v[lt], v[lt++] = v[i], v[i++] = t;
			} else if (v[i] > piv) {
				t = v[gt], v[gt] = v[i], v[i] = t;
				if (gt-- == lt)
					break;
			} else
				i++;
		}
		if (k < lt)
			r = lt - 1;
		else if (k > gt)
			l = gt + 1;
		else
			return piv;
	}
	return v[k];
}

/* Median (type 7) of v[0..n), reordering v: selection, no sort. */
static double median_select(double *v, size_t n)
{
	size_t k = (n - 1) / 2;
	double m = select_kth(v, n, k);
	if (n % 2)
		return m;
	double next = v[k + 1];
	for (size_t i = k + 2; i < n; i++)
		if (v[i] < next)
			next = v[i];
	return (m + next) / 2.0;
}

/* Above this many samples a side, a resample's median is drawn as an order statistic instead of by
 * resampling: the rank of a resampled median is binomial around n/2 with spread sqrt(n)/2, normal in
 * the limit, so each replicate costs O(1) after one sort and 200k samples take milliseconds. */
#define BOOT_EXACT_MAX 4096

static double unit(unsigned long long *s)
{
	return ((double)(xorshift(s) >> 11) + 0.5) / 9007199254740992.0;
}

static double boot_median(const double *v, const double *sorted, size_t n, double *scratch, unsigned long long *s)
{
	if (n <= BOOT_EXACT_MAX) {
		for (size_t i = 0; i < n; i++)
			scratch[i] = v[xorshift(s) % n];
		return median_select(scratch, n);
	}
	double z = sqrt(-2.0 * log(unit(s))) * cos(6.283185307179586 * unit(s));
	double r = floor((double)(n - 1) / 2.0 + z * sqrt((double)n) / 2.0 + 0.5);
	size_t k = r < 0 ? 0 : r > (double)(n - 1) ? n - 1 : (size_t)r;
	return sorted[k];
}

void moe_bootstrap_ratio(const double *a, size_t na, const double *b, size_t nb, int reps, unsigned long long seed,
			 double *lo, double *hi)
{
	double *sa = moe_xmalloc(na * sizeof(double)), *sb = moe_xmalloc(nb * sizeof(double));
	memcpy(sa, a, na * sizeof(double));
	memcpy(sb, b, nb * sizeof(double));
	if (na > BOOT_EXACT_MAX)
		qsort(sa, na, sizeof(double), cmp_dbl);
	if (nb > BOOT_EXACT_MAX)
		qsort(sb, nb, sizeof(double), cmp_dbl);
	double *ra = moe_xmalloc(MOE_MIN(na, BOOT_EXACT_MAX + 1) * sizeof(double));
	double *rb = moe_xmalloc(MOE_MIN(nb, BOOT_EXACT_MAX + 1) * sizeof(double));
	double *ratio = moe_xmalloc((size_t)reps * sizeof(double));
	unsigned long long s = seed ? seed : 0x9e3779b97f4a7c15ull;
	for (int k = 0; k < reps; k++) {
		double ma = boot_median(a, sa, na, ra, &s);
		double mb = boot_median(b, sb, nb, rb, &s);
		ratio[k] = ma > 0 ? mb / ma : NAN;
	}
	qsort(ratio, (size_t)reps, sizeof(double), cmp_dbl);
	*lo = moe_percentile_sorted(ratio, (size_t)reps, 0.025);
	*hi = moe_percentile_sorted(ratio, (size_t)reps, 0.975);
	free(sa);
	free(sb);
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

static const char *const known_phases[] = {"route", "dispatch", "expert", "combine", "tp_merge", "fetch_wait", "total"};

int moe_phase_known(const char *ph)
{
	for (size_t i = 0; i < MOE_ARRAY_SIZE(known_phases); i++)
		if (!strcmp(ph, known_phases[i]))
			return 1;
	return 0;
}

static int cmp_case_name(const void *x, const void *y)
{
	const char *a = json_string_value(json_object_get(*(json_t *const *)x, "name"));
	const char *b = json_string_value(json_object_get(*(json_t *const *)y, "name"));
	return strcmp(a, b);
}

/* The samples of a phase, or NULL with *n = 0 when there are none; *bad set when they are not all finite numbers. */
static double *samples_of(json_t *cas, const char *phase, size_t *n, int *bad)
{
	json_t *a = json_object_get(json_object_get(cas, "samples"), phase);
	*n = json_array_size(a);
	if (!*n)
		return NULL;
	double *v = moe_xmalloc(*n * sizeof(double));
	for (size_t i = 0; i < *n; i++) {
		json_t *x = json_array_get(a, i);
		v[i] = json_number_value(x);
		*bad |= !json_is_number(x) || !isfinite(v[i]);
	}
	return v;
}

/* One reason a comparison is incomplete: "CASE: reason" into the report's problems. */
static void problem(json_t *probs, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#include <stdarg.h>
static void problem(json_t *probs, const char *name, const char *fmt, ...)
{
	char nm[300], why[700];
	moe_oneline(nm, sizeof(nm), name);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	json_array_append_new(probs, json_pack("{s:s,s:s}", "case", nm, "reason", why));
}

static int cmp_key(const void *x, const void *y)
{
	json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
	int d = strcmp(json_string_value(json_object_get(a, "digest")), json_string_value(json_object_get(b, "digest")));
	return d ? d : cmp_case_name(x, y);
}

/* The run's cases sorted by (digest, name), and by name alone into byname. */
static json_t **sorted_cases(json_t *run, size_t *n, json_t ***byname)
{
	json_t *cases = json_object_get(run, "cases");
	*n = json_array_size(cases);
	json_t **v = moe_xcalloc(*n + 1, sizeof(json_t *)), **w = moe_xcalloc(*n + 1, sizeof(json_t *));
	for (size_t i = 0; i < *n; i++)
		v[i] = w[i] = json_array_get(cases, i);
	qsort(v, *n, sizeof(json_t *), cmp_key);
	qsort(w, *n, sizeof(json_t *), cmp_case_name);
	*byname = w;
	return v;
}

static json_t *find(json_t **v, size_t n, json_t *key, int (*cmp)(const void *, const void *))
{
	json_t **hit = bsearch(&key, v, n, sizeof(json_t *), cmp);
	return hit ? *hit : NULL;
}

static int env_differs(json_t *base, json_t *neww, const struct moe_compare_opts *o, json_t *diff, char *err,
		       size_t errlen)
{
	json_t *fa = moe_env_fingerprint(base), *fb = moe_env_fingerprint(neww);
	const char *k;
	json_t *v;
	json_object_foreach(fa, k, v)
	{
		if (!json_equal(v, json_object_get(fb, k)))
			json_array_append_new(diff, json_string(k));
	}
	json_decref(fa);
	json_decref(fb);
	if (!json_array_size(diff) || o->force)
		return 0;
	size_t n = (size_t)snprintf(err, errlen, "the runs come from different environments (");
	size_t i;
	json_array_foreach(diff, i, v) if (n < errlen) n += (size_t)snprintf(err + n, errlen - n, "%s%s", i ? ", " : "",
								       json_string_value(v));
	if (n < errlen)
		snprintf(err + n, errlen - n, " differ); --force compares them anyway");
	return 1;
}

/* Whether a case can be compared at all: its verdict in one run; a failed, errored, skipped or unverified
 * case is a problem. */
static int usable(json_t *cas, const char *which, json_t *probs)
{
	const char *v = json_string_value(json_object_get(cas, "verdict"));
	const char *check = json_string_value(json_object_get(json_object_get(cas, "params"), "check"));
	if (!strcmp(v, "unchecked") || (!strcmp(v, "ok") && check && !strcmp(check, "off"))) {
		/* its timings are real, so it is compared; but it is not verified (runs before the verdict
		 * unchecked said "ok" with check = off) */
		problem(probs, json_string_value(json_object_get(cas, "name")), "not verified in %s (check = off)", which);
		return 1;
	}
	if (!strcmp(v, "ok"))
		return 1;
	const char *why = json_string_value(json_object_get(cas, "reason"));
	problem(probs, json_string_value(json_object_get(cas, "name")), "%s in %s%s%.500s", v, which, why ? ": " : "",
		why ? why : "");
	return 0;
}

/* Why a case's timings are suspect from its run.json "load" record (written by run since the load fields):
 * more ranks than CPUs, or a 1-minute load average above the CPUs; "" when neither. */
static void load_note(json_t *cas, const char *which, char *out, size_t len)
{
	json_t *l = json_object_get(cas, "load");
	size_t n = strlen(out);
	if (json_is_true(json_object_get(l, "oversubscribed")))
		n += (size_t)snprintf(out + n, n < len ? len - n : 0, "%s%s: %lld ranks on %lld CPUs", n ? "; " : "", which,
				      (long long)json_integer_value(json_object_get(l, "ranks")),
				      (long long)json_integer_value(json_object_get(l, "cpus")));
	if (json_is_true(json_object_get(l, "loaded")))
		snprintf(out + n, n < len ? len - n : 0, "%s%s: load average %.2f before, %.2f after on %lld CPUs",
			 n ? "; " : "", which, json_number_value(json_array_get(json_object_get(l, "loadavg_before"), 0)),
			 json_number_value(json_array_get(json_object_get(l, "loadavg_after"), 0)),
			 (long long)json_integer_value(json_object_get(l, "cpus")));
}

/* Rows for one matched case: each asked phase with samples on both sides. */
static void compare_case(json_t *cb, json_t *cn, const char *phases, const struct moe_compare_opts *o, json_t *rows,
			 json_t *probs, int *regressions)
{
	const char *name = json_string_value(json_object_get(cn, "name"));
	const char *digest = json_string_value(json_object_get(cn, "digest"));
	char list[256];
	snprintf(list, sizeof(list), "%s", phases);
	for (char *save = NULL, *ph = strtok_r(list, ",", &save); ph; ph = strtok_r(NULL, ",", &save)) {
		size_t na, nb;
		int bad_a = 0, bad_b = 0;
		double *a = samples_of(cb, ph, &na, &bad_a), *b = samples_of(cn, ph, &nb, &bad_b);
		/* a phase this case does not have (tp_merge without TP) is absent from both, beside other phases */
		int not_here = !a && !b && strcmp(ph, "total") && json_object_size(json_object_get(cb, "samples")) &&
			       json_object_size(json_object_get(cn, "samples"));
		if (bad_a || bad_b)
			problem(probs, name, "%s samples in %s are not all finite numbers", ph, bad_a ? "BASE" : "NEW");
		else if ((!a || !b) && !not_here)
			problem(probs, name, "no %s samples in %s", ph, !a && !b ? "either run" : !a ? "BASE" : "NEW");
		if (!a || !b || bad_a || bad_b) {
			free(a);
			free(b);
			continue;
		}
		double u, p = moe_mann_whitney(a, na, b, nb, &u), lo, hi;
		moe_bootstrap_ratio(a, na, b, nb, 2000, 12345, &lo, &hi);
		double ma = median_of(a, na), mb = median_of(b, nb);
		double change = ma > 0 ? (mb / ma - 1.0) * 100.0 : 0;
		char key[512];
		snprintf(key, sizeof(key), "%s\t%s", digest, ph);
		double band = o->bands ? json_number_value(json_object_get(o->bands, key)) : 0;
		const char *verdict = moe_verdict(p, change, lo, hi, band, o);
		/* a change measured on an oversubscribed or loaded machine is the scheduler's as much as the code's:
		 * 4 ranks on 2 busy cores moved identical runs 3-5x */
		char why[512] = "";
		load_note(cb, "BASE", why, sizeof(why));
		load_note(cn, "NEW", why, sizeof(why));
		if (why[0] && !o->ignore_load && (!strcmp(verdict, "slower") || !strcmp(verdict, "faster")))
			verdict = "noisy";
		else
			why[0] = 0;
		*regressions += !strcmp(verdict, "slower");
		json_t *row = json_pack("{s:s,s:s,s:s,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:s}", "case", name, "digest", digest,
					"phase", ph, "base_p50_us", ma, "new_p50_us", mb, "change_pct", change, "p_value", p,
					"ratio_lo", lo, "ratio_hi", hi, "band_pct", band, "verdict", verdict);
		if (why[0])
			json_object_set_new(row, "noisy_reason", json_string(why));
		json_array_append_new(rows, row);
		free(a);
		free(b);
	}
}

/* Every case of BASE and NEW either compared or named as a problem. */
static void match_cases(json_t *base, json_t *neww, const char *phases, const struct moe_compare_opts *o,
			json_t *rows, json_t *probs, int *regressions)
{
	size_t nb, nn;
	json_t **bname, **nname, **bs = sorted_cases(base, &nb, &bname), **ns = sorted_cases(neww, &nn, &nname);
	for (size_t i = 0; i < nb; i++) {
		json_t *cb = bs[i], *cn = find(ns, nn, cb, cmp_key);
		const char *name = json_string_value(json_object_get(cb, "name"));
		if (!cn) {
			json_t *other = find(nname, nn, cb, cmp_case_name);
			if (other)
				problem(probs, name, "not comparable: its parameters differ (digest %s in BASE, %s in NEW)",
					json_string_value(json_object_get(cb, "digest")),
					json_string_value(json_object_get(other, "digest")));
			else
				problem(probs, name, "in BASE, missing from NEW");
			continue;
		}
		int ok_b = usable(cb, "BASE", probs), ok_n = usable(cn, "NEW", probs);
		if (ok_b && ok_n)
			compare_case(cb, cn, phases, o, rows, probs, regressions);
	}
	for (size_t i = 0; i < nn; i++) {
		json_t *cn = ns[i];
		if (find(bs, nb, cn, cmp_key))
			continue;
		usable(cn, "NEW", probs); /* a NEW case that crashed is named even without a baseline */
		if (!find(bname, nb, cn, cmp_case_name)) /* same name, other digest: named above */
			problem(probs, json_string_value(json_object_get(cn, "name")), "in NEW, no baseline in BASE");
	}
	free(bs);
	free(ns);
	free(bname);
	free(nname);
}

json_t *moe_compare_runs(json_t *base, json_t *neww, const struct moe_compare_opts *o, char *err, size_t errlen)
{
	json_t *diff = json_array();
	if (env_differs(base, neww, o, diff, err, errlen)) {
		json_decref(diff);
		return NULL;
	}
	char phases[256];
	snprintf(phases, sizeof(phases), "%s", o->phases && *o->phases ? o->phases : "total");
	char list[256];
	snprintf(list, sizeof(list), "%s", phases);
	for (char *save = NULL, *ph = strtok_r(list, ",", &save); ph; ph = strtok_r(NULL, ",", &save))
		if (!moe_phase_known(ph)) {
			char pn[100];
			moe_oneline(pn, sizeof(pn), ph);
			snprintf(err, errlen, "--phases: unknown phase '%s' (route, dispatch, expert, combine, tp_merge, "
					      "fetch_wait, total)", pn);
			json_decref(diff);
			return NULL;
		}
	json_t *rows = json_array(), *probs = json_array();
	int regressions = 0;
	match_cases(base, neww, phases, o, rows, probs, &regressions);
	if (!json_array_size(rows))
		problem(probs, "(all)", "nothing was compared: no case of BASE and NEW has the same name, parameters and "
					"a passing verdict with samples");
	return json_pack("{s:o,s:o,s:o,s:i,s:i,s:i,s:{s:f,s:f,s:f}}", "rows", rows, "problems", probs, "env_diff", diff,
			 "regressions", regressions, "incomplete", (int)json_array_size(probs), "compared",
			 (int)json_array_size(rows), "thresholds", "alpha", o->alpha, "threshold_pct", o->threshold,
			 "noise_pct", o->noise);
}

int moe_compare_exit(json_t *report)
{
	if (json_integer_value(json_object_get(report, "incomplete")))
		return MOE_EXIT_INCOMPLETE;
	return json_integer_value(json_object_get(report, "regressions")) ? MOE_EXIT_FAIL : MOE_EXIT_OK;
}

void moe_compare_summary(char *buf, size_t len, json_t *report)
{
	int n = (int)json_integer_value(json_object_get(report, "regressions"));
	int inc = (int)json_integer_value(json_object_get(report, "incomplete"));
	int cmp = (int)json_integer_value(json_object_get(report, "compared"));
	if (inc)
		snprintf(buf, len, "INCOMPLETE: %d problem%s (not everything compared); %d regression%s in the %d "
				   "case-phase%s compared", inc, inc == 1 ? "" : "s", n, n == 1 ? "" : "s", cmp,
			 cmp == 1 ? "" : "s");
	else
		snprintf(buf, len, "%d regression%s; all %d case-phase%s compared", n, n == 1 ? "" : "s", cmp,
			 cmp == 1 ? "" : "s");
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
		char bs[16] = "-", nm[300];
		if (band > 0)
			snprintf(bs, sizeof(bs), "%.1f%%", band);
		moe_oneline(nm, sizeof(nm), json_string_value(json_object_get(r, "case")));
		fprintf(f, "%-44s %-10s %12.1f %12.1f %+7.1f%% %9.2g   [%.3f, %.3f] %7s  %s\n", nm,
			json_string_value(json_object_get(r, "phase")), json_number_value(json_object_get(r, "base_p50_us")),
			json_number_value(json_object_get(r, "new_p50_us")), json_number_value(json_object_get(r, "change_pct")),
			json_number_value(json_object_get(r, "p_value")), json_number_value(json_object_get(r, "ratio_lo")),
			json_number_value(json_object_get(r, "ratio_hi")), bs, json_string_value(json_object_get(r, "verdict")));
		if (json_object_get(r, "noisy_reason"))
			fprintf(f, "#   noisy, not a verdict: %s\n", json_string_value(json_object_get(r, "noisy_reason")));
	}
	json_array_foreach(json_object_get(report, "problems"), i, r)
	fprintf(f, "# not compared: %s: %s\n", json_string_value(json_object_get(r, "case")),
		json_string_value(json_object_get(r, "reason")));
	char sum[256];
	moe_compare_summary(sum, sizeof(sum), report);
	fprintf(f, "# %s\n", sum);
}
