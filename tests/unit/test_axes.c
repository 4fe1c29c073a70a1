/* Unit tests for the in-run comparison (axes.c): grouping by one differing parameter, the bootstrap
 * interval of a ratio of medians, and the verdict rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "axes.h"

/* Test data from a generator of its own (not the one axes.c resamples with) */
static double uniform(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(*s >> 11) / 9007199254740992.0;
}

/* A case as run.json holds it: params, verdict, total samples uniform on [lo, hi), one rank's rows */
static json_t *make_case(const char *name, const char *strategy, const char *partition, const char *verdict, double lo,
			 double hi, int n, uint64_t seed)
{
	json_t *tot = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(tot, json_real(lo + (hi - lo) * uniform(&seed)));
	return json_pack("{s:s,s:{s:s,s:s,s:s},s:s,s:{s:o},s:[{s:i,s:{s:i}}],s:{s:i,s:i},s:[i]}", "name", name, "params",
			 "strategy", strategy, "partition", partition, "tokens", "64", "verdict", verdict, "samples", "total",
			 tot, "ranks", "rows", 64, "slots", "sent", 256, "bytes", "logical", 1000, "wire", 600, "tokens", 64);
}

static json_t *group_along(json_t *cmp, const char *axis)
{
	size_t i;
	json_t *g;
	json_array_foreach(cmp, i, g) if (!strcmp(json_string_value(json_object_get(g, "axis")), axis)) return g;
	return NULL;
}

static const char *row_str(json_t *g, size_t k, const char *key)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(g, "rows"), k), key));
}

static void test_groups_by_one_axis(void **state)
{
	(void)state;
	json_t *cases = json_array();
	json_array_append_new(cases, make_case("s/a2a/rep", "a2a", "replicate", "ok", 100, 110, 30, 1));
	json_array_append_new(cases, make_case("s/agrs/rep", "agrs", "replicate", "ok", 200, 220, 30, 2));
	json_array_append_new(cases, make_case("s/a2a/leader", "a2a", "leader", "ok", 100, 110, 30, 3));
	json_array_append_new(cases, make_case("s/agrs/leader", "agrs", "leader", "mismatch", 50, 55, 30, 4));
	json_t *cmp = moe_axes_compare(cases);
	/* strategy within replicate, partition within a2a; the mismatched case takes part in neither */
	assert_int_equal(json_array_size(cmp), 2);
	json_t *s = group_along(cmp, "strategy"), *p = group_along(cmp, "partition");
	assert_non_null(s);
	assert_non_null(p);
	assert_int_equal(json_array_size(json_object_get(s, "rows")), 2);
	assert_string_equal(json_string_value(json_object_get(s, "baseline")), "s/a2a/rep");
	assert_string_equal(row_str(s, 1, "case"), "s/agrs/rep");
	assert_string_equal(row_str(s, 1, "verdict"), "a2a wins"); /* twice as slow */
	assert_string_equal(row_str(p, 0, "case"), "s/a2a/rep");
	assert_string_equal(row_str(p, 1, "case"), "s/a2a/leader");
	assert_string_equal(row_str(p, 1, "verdict"), "not separable"); /* the same distribution */
	json_t *r = json_array_get(json_object_get(s, "rows"), 1);
	assert_int_equal(json_integer_value(json_object_get(r, "rows_dispatched")), 64);
	assert_int_equal(json_integer_value(json_object_get(r, "bytes_wire")), 600);
	double ratio = json_number_value(json_object_get(r, "ratio"));
	assert_true(ratio > 1.9 && ratio < 2.1);
	json_decref(cmp);
	json_decref(cases);
}

static void test_no_group_when_two_axes_differ(void **state)
{
	(void)state;
	json_t *cases = json_array();
	json_array_append_new(cases, make_case("a", "a2a", "replicate", "ok", 100, 110, 20, 1));
	json_array_append_new(cases, make_case("b", "agrs", "leader", "ok", 100, 110, 20, 2));
	json_t *cmp = moe_axes_compare(cases);
	assert_int_equal(json_array_size(cmp), 0);
	json_decref(cmp);
	/* a case identical to another on every key is no axis either */
	json_array_append_new(cases, make_case("a-again", "a2a", "replicate", "ok", 100, 110, 20, 3));
	cmp = moe_axes_compare(cases);
	assert_int_equal(json_array_size(cmp), 0);
	json_decref(cmp);
	json_decref(cases);
}

/* Uniform [90, 110) has median 100; scaled by 1.5 the true ratio of medians is 1.5. A 95 % interval
 * must hold it in most of 40 independent data sets (a broken interval, e.g. one from a single resample
 * or percentiles swapped, holds it rarely or never). */
static void test_interval_covers_true_ratio(void **state)
{
	(void)state;
	enum { N = 101, TRIALS = 40 };
	double a[N], b[N];
	uint64_t s = 42;
	int covered = 0;
	for (int t = 0; t < TRIALS; t++) {
		for (int i = 0; i < N; i++) {
			a[i] = 1.5 * (90 + 20 * uniform(&s));
			b[i] = 90 + 20 * uniform(&s);
		}
		double ratio, lo, hi;
		assert_int_equal(moe_axes_ratio_ci(a, N, b, N, MOE_AXES_RESAMPLES, MOE_AXES_SEED + (uint64_t)t, &ratio, &lo, &hi), 0);
		assert_true(lo <= ratio && ratio <= hi);
		assert_true(hi - lo < 0.2); /* 101 samples pin a median to a few percent */
		covered += lo <= 1.5 && 1.5 <= hi;
		assert_int_equal(moe_axes_separate(1 / hi, 1 / lo), -1); /* the faster side wins */
	}
	assert_true(covered >= 32);
	/* same inputs, same seed: the same interval */
	double r1, l1, h1, r2, l2, h2;
	moe_axes_ratio_ci(a, N, b, N, 500, 7, &r1, &l1, &h1);
	moe_axes_ratio_ci(a, N, b, N, 500, 7, &r2, &l2, &h2);
	assert_true(l1 == l2 && h1 == h2);
}

static void test_identical_not_separable(void **state)
{
	(void)state;
	double a[50], b[50];
	uint64_t s = 9;
	for (int i = 0; i < 50; i++)
		a[i] = b[i] = 100 + 10 * uniform(&s);
	double ratio, lo, hi;
	assert_int_equal(moe_axes_ratio_ci(a, 50, b, 50, MOE_AXES_RESAMPLES, MOE_AXES_SEED, &ratio, &lo, &hi), 0);
	assert_true(ratio == 1.0);
	assert_true(lo < 1 && hi > 1);
	assert_int_equal(moe_axes_separate(lo, hi), 0);
	/* the band: an interval inside 1 +- 2 % is still not separable, one past it is */
	assert_int_equal(moe_axes_separate(1.005, 1.019), 0);
	assert_int_equal(moe_axes_separate(0.981, 0.995), 0);
	assert_int_equal(moe_axes_separate(1.021, 1.2), 1);
	assert_int_equal(moe_axes_separate(0.8, 0.979), -1);
	/* nothing to divide by */
	double z[3] = {0, 0, 0};
	assert_int_equal(moe_axes_ratio_ci(a, 50, z, 3, 100, 1, &ratio, &lo, &hi), -1);
	assert_int_equal(moe_axes_ratio_ci(a, 0, b, 50, 100, 1, &ratio, &lo, &hi), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_groups_by_one_axis),
		cmocka_unit_test(test_no_group_when_two_axes_differ),
		cmocka_unit_test(test_interval_covers_true_ratio),
		cmocka_unit_test(test_identical_not_separable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
