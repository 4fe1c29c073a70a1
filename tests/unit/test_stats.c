/* Unit tests for the timing summary (stats.c): type-7 percentiles, mean, sample standard deviation; and the
 * comparison statistics (compare.c): Mann-Whitney U, the noise band, the verdict rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "compare.h"
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
