/* Unit tests for the timing summary (stats.c): type-7 percentiles, mean, sample standard deviation; and the
 * comparison statistics (compare.c): Mann-Whitney U, the bootstrap interval, the noise band, the verdict
 * rules; and a case's identity (results.c): the parameter digest, names that are not valid UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "results.h"
#include "stats.h"

#define assert_close(x, want, tol)                                                              \
	do {                                                                                    \
		double x_ = (x), w_ = (want);                                                   \
		if (!(fabs(x_ - w_) <= (tol)))                                                  \
			fail_msg("%s = %.17g, expected %.17g (+-%g)", #x, x_, w_, (double)(tol)); \
	} while (0)

static void test_one_to_hundred(void **state)
{
	(void)state;
	double v[100];
	struct moe_summary s;
	/* shuffled 1..100: the summary must not depend on the order */
	for (int i = 0; i < 100; i++)
		v[i] = (double)((i * 37) % 100 + 1);
	moe_summarize(v, 100, &s);
	assert_int_equal(s.n, 100);
	assert_close(s.p50, 50.5, 1e-12);
	assert_close(s.p90, 90.1, 1e-12);
	assert_close(s.p99, 99.01, 1e-12);
	assert_close(s.min, 1, 0);
	assert_close(s.max, 100, 0);
	assert_close(s.mean, 50.5, 1e-12);
	assert_close(s.stdev, sqrt(100.0 * 101.0 / 12.0), 1e-12); /* sample stdev of 1..n: sqrt(n(n+1)/12) */
	assert_close(s.stdev, 29.011491975882016, 1e-12);
}

static void test_small(void **state)
{
	(void)state;
	struct moe_summary s;
	double one = 7.25;
	moe_summarize(&one, 1, &s);
	assert_int_equal(s.n, 1);
	assert_close(s.p50, 7.25, 0);
	assert_close(s.p90, 7.25, 0);
	assert_close(s.p99, 7.25, 0);
	assert_close(s.min, 7.25, 0);
	assert_close(s.max, 7.25, 0);
	assert_close(s.mean, 7.25, 0);
	assert_close(s.stdev, 0, 0);

	double two[] = {4, 2};
	moe_summarize(two, 2, &s);
	assert_close(s.p50, 3, 1e-15);
	assert_close(s.p90, 3.8, 1e-15);
	assert_close(s.p99, 3.98, 1e-15);
	assert_close(s.stdev, sqrt(2.0), 1e-15);

	double four[] = {10, 10, 10, 10};
	moe_summarize(four, 4, &s);
	assert_close(s.stdev, 0, 0);
	assert_close(s.p99, 10, 0);
}

static void test_empty(void **state)
{
	(void)state;
	struct moe_summary s;
	moe_summarize(NULL, 0, &s);
	assert_int_equal(s.n, 0);
	assert_true(isnan(s.p50) && isnan(s.p90) && isnan(s.p99));
	assert_true(isnan(s.min) && isnan(s.max) && isnan(s.mean) && isnan(s.stdev));
	assert_true(isnan(moe_percentile_sorted(NULL, 0, 0.5)));
}

static void test_input_untouched(void **state)
{
	(void)state;
	double v[] = {5, -1, 3.5, 9, 0, 2, 2, 8};
	double copy[sizeof(v) / sizeof(v[0])];
	struct moe_summary s;
	memcpy(copy, v, sizeof(v));
	moe_summarize(v, 8, &s);
	assert_memory_equal(v, copy, sizeof(v));
	assert_close(s.min, -1, 0);
	assert_close(s.max, 9, 0);
	assert_close(s.p50, 2.75, 1e-15); /* sorted: -1 0 2 2 3.5 5 8 9 */
}

static void test_percentile_sorted(void **state)
{
	(void)state;
	const double s[] = {1, 2, 4, 8};
	assert_close(moe_percentile_sorted(s, 4, 0), 1, 0);
	assert_close(moe_percentile_sorted(s, 4, 1), 8, 0);
	assert_close(moe_percentile_sorted(s, 4, 0.5), 3, 1e-15);
	assert_close(moe_percentile_sorted(s, 4, 0.25), 1.75, 1e-15); /* h = 0.75 */
	assert_close(moe_percentile_sorted(s, 4, 0.9), 6.8, 1e-14);   /* h = 2.7: 4 + 0.7*4 */
}

static void test_mann_whitney(void **state)
{
	(void)state;
	double a[5] = {3, 1, 5, 2, 4}, b[5] = {6, 10, 7, 9, 8}, u;
	/* complete separation: U = 0; normal approximation with continuity correction, by hand:
	 * mu = 12.5, var = 25/12 * 11, z = 12 / sqrt(var), p = erfc(z / sqrt 2) */
	assert_close(moe_mann_whitney(a, 5, b, 5, &u), 0.012185780355344818, 1e-12);
	assert_close(u, 0, 0);
	/* the same sample on both sides: U = mu, p = 1 */
	assert_close(moe_mann_whitney(a, 5, a, 5, &u), 1.0, 0);
	assert_close(u, 12.5, 1e-12);
	double same[4] = {2, 2, 2, 2};
	assert_close(moe_mann_whitney(same, 4, same, 4, &u), 1.0, 0); /* every value tied */
}

static void test_noise_band(void **state)
{
	(void)state;
	/* median 100, absolute deviations 0 0 1 1 2: MAD 1; 3 sqrt(2) 1.4826 * 1 % */
	double m[5] = {101, 100, 99, 102, 100};
	assert_close(moe_noise_band(m, 5), 6.290139082723052, 1e-9);
	assert_close(moe_noise_band(m, 4), 0, 0); /* too few runs: unknown */
	double flat[6] = {50, 50, 50, 50, 50, 50};
	assert_close(moe_noise_band(flat, 6), 0, 0);
}

static void test_verdict_rules(void **state)
{
	(void)state;
	struct moe_compare_opts o = {.alpha = 0.01, .threshold = 3, .noise = 20};
	assert_string_equal(moe_verdict(0.001, 10, 1.08, 1.12, 0, &o), "slower");
	assert_string_equal(moe_verdict(0.001, 10, 1.08, 1.12, 5, &o), "slower");   /* clears a 5 % band */
	assert_string_equal(moe_verdict(0.001, 10, 1.08, 1.12, 15, &o), "noisy");   /* inside a 15 % band */
	assert_string_equal(moe_verdict(0.001, -10, 0.88, 0.92, 0, &o), "faster");
	assert_string_equal(moe_verdict(0.001, -10, 0.88, 0.92, 15, &o), "noisy");
	assert_string_equal(moe_verdict(0.5, 10, 0.95, 1.25, 0, &o), "noisy");      /* interval 30 % wide */
	assert_string_equal(moe_verdict(0.5, 0.5, 0.99, 1.02, 0, &o), "same");
	assert_string_equal(moe_verdict(0.001, 2, 1.015, 1.025, 0, &o), "same");    /* below the threshold */
	assert_string_equal(moe_verdict(0.001, 4, 1.005, 1.06, 0, &o), "same");     /* interval not clear of 1.015 */
}

/* Samples around 100 with a deterministic spread; scale multiplies them all. */
static double *spread(size_t n, double scale, unsigned seed)
{
	double *v = malloc(n * sizeof(double));
	unsigned long long s = seed * 2654435761ull + 1;
	for (size_t i = 0; i < n; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		v[i] = scale * (100.0 + (double)(s >> 40) / (double)(1ull << 24) * 10.0);
	}
	return v;
}

static void test_bootstrap(void **state)
{
	(void)state;
	double lo, hi;
	double *a = spread(1000, 1.0, 1), *b = spread(1000, 2.0, 1);
	moe_bootstrap_ratio(a, 1000, a, 1000, 500, 7, &lo, &hi);
	assert_true(lo < 1.0 && hi > 1.0); /* a run against itself: 1 inside */
	moe_bootstrap_ratio(a, 1000, b, 1000, 500, 7, &lo, &hi);
	assert_close(lo, 2.0, 0.03); /* the same samples doubled: about 2 */
	assert_close(hi, 2.0, 0.03);
	free(a);
	free(b);
	/* above 4096 samples the resampled median is drawn as an order statistic: its interval must be about
	 * as wide as the resampling one just below the switch, and still find a 2 % shift in 200k samples */
	double lo1, hi1, lo2, hi2;
	double *x = spread(4096, 1.0, 2), *y = spread(4096, 1.0, 3);
	moe_bootstrap_ratio(x, 4096, y, 4096, 2000, 9, &lo1, &hi1);
	free(x);
	free(y);
	x = spread(4097, 1.0, 2);
	y = spread(4097, 1.0, 3);
	moe_bootstrap_ratio(x, 4097, y, 4097, 2000, 9, &lo2, &hi2);
	free(x);
	free(y);
	assert_true((hi2 - lo2) > 0.7 * (hi1 - lo1) && (hi2 - lo2) < 1.3 * (hi1 - lo1));
	x = spread(200000, 1.0, 4);
	y = spread(200000, 1.02, 5);
	moe_bootstrap_ratio(x, 200000, y, 200000, 2000, 9, &lo, &hi);
	assert_true(lo > 1.01 && hi < 1.03);
	free(x);
	free(y);
}

static void test_case_digest(void **state)
{
	(void)state;
	json_t *a = json_pack("{s:{s:s,s:s,s:s}}", "params", "tokens", "64", "iters", "20", "strategy", "a2a");
	json_t *b = json_pack("{s:{s:s,s:s,s:s}}", "params", "strategy", "a2a", "iters", "500", "tokens", "64");
	json_t *c = json_pack("{s:{s:s,s:s,s:s}}", "params", "tokens", "1024", "iters", "20", "strategy", "a2a");
	json_t *d = json_pack("{s:s}", "name", "no params");
	char da[17], db[17], dc[17];
	assert_int_equal(moe_case_digest(a, da), 0);
	assert_int_equal(moe_case_digest(b, db), 0);
	assert_int_equal(moe_case_digest(c, dc), 0);
	assert_int_equal(strlen(da), 16);
	assert_string_equal(da, db);	      /* key order and iters do not matter */
	assert_string_not_equal(da, dc);      /* tokens do */
	assert_int_equal(moe_case_digest(d, da), -1);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(d);
}

static void test_json_text(void **state)
{
	(void)state;
	json_t *j = moe_json_text("a\xff" "b\xc3\xa9" "c\xe2\x82");
	assert_non_null(j);
	assert_string_equal(json_string_value(j), "a\\xffb\xc3\xa9" "c\\xe2\\x82"); /* é kept, bad bytes escaped */
	json_decref(j);
	j = moe_json_text("plain");
	assert_string_equal(json_string_value(j), "plain");
	json_decref(j);
}

static void test_run_validate(void **state)
{
	(void)state;
	char err[512];
	json_t *arr = json_array();
	assert_int_equal(moe_run_validate(arr, "x.json", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "x.json: not a moebench run.json"));
	json_t *run = json_pack("{s:s,s:[{s:s,s:s,s:{}},{s:s,s:s,s:{}}]}", "schema", MOE_SCHEMA, "cases", "name", "a",
				"verdict", "ok", "params", "name", "a", "verdict", "ok", "params");
	assert_int_equal(moe_run_validate(run, "r", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "case a appears twice"));
	json_object_set_new(json_array_get(json_object_get(run, "cases"), 1), "name", json_string("b"));
	assert_int_equal(moe_run_validate(run, "r", err, sizeof(err)), 0);
	assert_non_null(json_object_get(json_array_get(json_object_get(run, "cases"), 0), "digest"));
	json_object_del(json_array_get(json_object_get(run, "cases"), 1), "verdict");
	assert_int_equal(moe_run_validate(run, "r", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "r: cases[1] has no \"verdict\""));
	json_decref(arr);
	json_decref(run);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_to_hundred),
		cmocka_unit_test(test_small),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_input_untouched),
		cmocka_unit_test(test_percentile_sorted),
		cmocka_unit_test(test_mann_whitney),
		cmocka_unit_test(test_noise_band),
		cmocka_unit_test(test_verdict_rules),
		cmocka_unit_test(test_bootstrap),
		cmocka_unit_test(test_case_digest),
		cmocka_unit_test(test_json_text),
		cmocka_unit_test(test_run_validate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
