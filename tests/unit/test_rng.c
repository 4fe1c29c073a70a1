/* Unit tests for the counter RNG (rng.h) and the workload it drives (workload.c): elements, synthetic routing, traces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moe.h"
#include "params.h"
#include "rng.h"
#include "workload.h"

#define assert_contains(hay, needle)                                                      \
	do {                                                                              \
		if (!strstr((hay), (needle)))                                             \
			fail_msg("expected '%s' to contain '%s'", (hay), (needle));       \
	} while (0)

static void set(struct moe_params *p, const char *key, const char *val)
{
	char err[512] = "";
	if (moe_param_set(p, key, val, err, sizeof(err)))
		fail_msg("%s = %s: %s", key, val, err);
}

static void test_u64_deterministic_and_keyed(void **state)
{
	(void)state;
	const uint64_t base = moe_rng_u64(7, MOE_T_W1, 3, 11, 13);
	assert_true(base == moe_rng_u64(7, MOE_T_W1, 3, 11, 13));
	assert_true(moe_rng_unit(7, MOE_T_W1, 3, 11, 13) == moe_rng_unit(7, MOE_T_W1, 3, 11, 13));
	/* every component of the key matters */
	assert_true(base != moe_rng_u64(8, MOE_T_W1, 3, 11, 13));
	assert_true(base != moe_rng_u64(7, MOE_T_W3, 3, 11, 13));
	assert_true(base != moe_rng_u64(7, MOE_T_W1, 4, 11, 13));
	assert_true(base != moe_rng_u64(7, MOE_T_W1, 3, 12, 13));
	assert_true(base != moe_rng_u64(7, MOE_T_W1, 3, 11, 14));
	/* swapping row and column, or tensor and layer, gives another stream */
	assert_true(moe_rng_u64(1, 2, 3, 4, 5) != moe_rng_u64(1, 2, 3, 5, 4));
	assert_true(moe_rng_u64(1, 2, 3, 4, 5) != moe_rng_u64(1, 3, 2, 4, 5));
	/* over a small grid, no two keys collide */
	enum { N = 4 * 4 * 4 * 8 * 8 };
	static uint64_t seen[N];
	int n = 0;
	for (uint64_t s = 0; s < 4; s++)
		for (uint32_t t = 1; t <= 4; t++)
			for (uint32_t l = 0; l < 4; l++)
				for (uint64_t r = 0; r < 8; r++)
					for (uint64_t c = 0; c < 8; c++)
						seen[n++] = moe_rng_u64(s, t, l, r, c);
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			if (seen[i] == seen[j])
				fail_msg("keys %d and %d give the same value", i, j);
}

static void test_unit_range_and_mean(void **state)
{
	(void)state;
	double sum = 0, lo = 1, hi = 0;
	int low_half = 0;
	for (uint64_t i = 0; i < 100000; i++) {
		double u = moe_rng_unit(42, MOE_T_X, 0, i, i % 7);
		assert_true(u >= 0.0 && u < 1.0);
		sum += u;
		lo = fmin(lo, u);
		hi = fmax(hi, u);
		low_half += u < 0.5;
	}
	assert_true(fabs(sum / 100000 - 0.5) < 0.01);
	assert_true(lo < 0.001 && hi > 0.999);
	assert_in_range(low_half, 49000, 51000);
}

/* max |element| over a block, and whether both signs occur */
static double max_abs(const struct moe_params *p, enum moe_tensor t, uint64_t rows, uint64_t cols, int *both_signs)
{
	double m = 0;
	int pos = 0, neg = 0;
	for (uint64_t r = 0; r < rows; r++)
		for (uint64_t c = 0; c < cols; c++) {
			float v = moe_bf16_to_f32(moe_gen_elem(p, t, 0, r, c));
			assert_true(isfinite(v));
			m = fmax(m, fabs(v));
			pos |= v > 0;
			neg |= v < 0;
		}
	*both_signs = pos && neg;
	return m;
}

static void test_gen_elem_scale(void **state)
{
	(void)state;
	struct moe_params p;
	int both;
	moe_params_defaults(&p);
	set(&p, "hidden", "256"); /* 1/16: exact in bf16 */
	set(&p, "ffn", "128");
	const double sh = 1.0 / 16;
	enum moe_tensor hs[] = {MOE_T_GATE, MOE_T_W1, MOE_T_W3, MOE_T_SW1, MOE_T_SW3};
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
		double m = max_abs(&p, hs[i], 64, 256, &both);
		assert_true(both);
		if (m > sh || m < 0.95 * sh)
			fail_msg("tensor %d: max |w| = %g, expected just under 1/sqrt(H) = %g", hs[i], m, sh);
	}
	/* 1/sqrt(F) is not a bf16 number: allow the rounding (half an ulp, 2^-9 relative) */
	const double sf = 1.0 / sqrt(128.0);
	double m = max_abs(&p, MOE_T_W2, 64, 128, &both);
	assert_true(both);
	if (m > sf * (1 + 0x1p-8) || m < 0.95 * sf)
		fail_msg("W2: max |w| = %g, expected about 1/sqrt(F) = %g", m, sf);
	m = max_abs(&p, MOE_T_X, 64, 256, &both);
	assert_true(both);
	if (m > 1.0 || m < 0.95)
		fail_msg("X: max |x| = %g, expected just under 1", m);

	/* a real shape: H = 7168 */
	set(&p, "hidden", "7168");
	const double s7 = 1.0 / sqrt(7168.0);
	m = max_abs(&p, MOE_T_W1, 8, 7168, &both);
	if (m > s7 * (1 + 0x1p-8) || m < 0.95 * s7)
		fail_msg("W1 at H = 7168: max |w| = %g, expected about %g", m, s7);

	/* the same key gives the same element; a block is the elements */
	moe_bf16 blk[3 * 5];
	moe_gen_block(&p, MOE_T_W3, 2, 10, 3, 5, blk);
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 5; c++)
			assert_int_equal(blk[r * 5 + c], moe_gen_elem(&p, MOE_T_W3, 2, 10 + (uint64_t)r, (uint64_t)c));
	/* the seed changes the data */
	moe_bf16 s1[8], s2[8];
	moe_gen_block(&p, MOE_T_X, 0, 0, 1, 8, s1);
	set(&p, "seed", "2");
	moe_gen_block(&p, MOE_T_X, 0, 0, 1, 8, s2);
	assert_memory_not_equal(s1, s2, sizeof(s1));
}

static void test_gen_bias(void **state)
{
	(void)state;
	struct moe_params p;
	moe_params_defaults(&p);
	assert_true(moe_gen_bias(&p, 0, 3) == 0.0f);
	set(&p, "route_bias", "true");
	int nonzero = 0;
	for (int e = 0; e < 16; e++) {
		float b = moe_gen_bias(&p, 0, e);
		assert_true(fabsf(b) <= 0.1f);
		nonzero += b != 0.0f;
		assert_true(b == moe_gen_bias(&p, 0, e));
	}
	assert_true(nonzero > 12);
}

static void check_route(const struct moe_params *p, uint64_t g, int32_t *idx, float *w)
{
	int64_t K = p->topk, E = p->experts;
	moe_route_synth(p, 0, g, idx, w);
	float sum = 0;
	for (int64_t k = 0; k < K; k++) {
		if (idx[k] < 0 || idx[k] >= E)
			fail_msg("token %llu slot %lld: expert %d out of [0, %lld)", (unsigned long long)g, (long long)k,
				 idx[k], (long long)E);
		for (int64_t j = 0; j < k; j++)
			if (idx[j] == idx[k])
				fail_msg("token %llu: expert %d twice", (unsigned long long)g, idx[k]);
		assert_true(w[k] > 0);
		sum += w[k];
	}
	if (p->route_norm && fabsf(sum - (float)p->route_scale) > 1e-5f * (float)p->route_scale)
		fail_msg("token %llu: weights sum to %g, expected route_scale %g", (unsigned long long)g, sum,
			 p->route_scale);
}

static void test_route_synth_basic(void **state)
{
	(void)state;
	struct moe_params p;
	int32_t idx[64], idx2[64];
	float w[64], w2[64];
	const char *kinds[] = {"uniform", "balanced", "zipf:1.2", "hot:0.5", "zipf:10"};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		moe_params_defaults(&p);
		set(&p, "routing", kinds[i]);
		set(&p, "route_scale", "2.5");
		for (uint64_t g = 0; g < 2000; g++) {
			check_route(&p, g, idx, w);
			moe_route_synth(&p, 0, g, idx2, w2);
			assert_memory_equal(idx, idx2, (size_t)p.topk * sizeof(int32_t));
			assert_memory_equal(w, w2, (size_t)p.topk * sizeof(float));
		}
		/* K = E: every expert exactly once */
		set(&p, "experts", "8");
		set(&p, "topk", "8");
		for (uint64_t g = 0; g < 200; g++)
			check_route(&p, g, idx, w);
	}
	/* without route_norm the raw weights are scaled but not normalised */
	moe_params_defaults(&p);
	set(&p, "routing", "uniform");
	set(&p, "route_norm", "false");
	set(&p, "route_scale", "3");
	int off = 0;
	for (uint64_t g = 0; g < 100; g++) {
		check_route(&p, g, idx, w);
		float sum = 0;
		for (int k = 0; k < 4; k++) {
			assert_true(w[k] >= 0.05f * 3 && w[k] <= 1.05f * 3);
			sum += w[k];
		}
		off += fabsf(sum - 3.0f) > 0.01f;
	}
	assert_true(off > 90);
	/* the seed and the layer change the routing */
	struct moe_params q;
	moe_params_defaults(&p);
	set(&p, "routing", "uniform");
	q = p;
	set(&q, "seed", "99");
	int diff_seed = 0, diff_layer = 0;
	for (uint64_t g = 0; g < 50; g++) {
		moe_route_synth(&p, 0, g, idx, w);
		moe_route_synth(&p, 1, g, idx2, w2);
		diff_layer |= memcmp(idx, idx2, 4 * sizeof(int32_t)) != 0;
		moe_route_synth(&q, 0, g, idx2, w2);
		diff_seed |= memcmp(idx, idx2, 4 * sizeof(int32_t)) != 0;
	}
	assert_true(diff_layer);
	assert_true(diff_seed);
}

static void test_route_balanced(void **state)
{
	(void)state;
	struct moe_params p;
	int32_t idx[64];
	float w[64];
	const struct {
		const char *e, *k;
		int t;
	} cases[] = {{"16", "4", 64}, {"6", "4", 3}, {"256", "8", 96}, {"12", "8", 3}};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		moe_params_defaults(&p);
		set(&p, "routing", "balanced");
		set(&p, "experts", cases[c].e);
		set(&p, "topk", cases[c].k);
		int count[256] = {0};
		for (int g = 0; g < cases[c].t; g++) {
			check_route(&p, (uint64_t)g, idx, w);
			for (int k = 0; k < p.topk; k++)
				count[idx[k]]++;
		}
		int64_t each = cases[c].t * p.topk / p.experts;
		for (int e = 0; e < p.experts; e++)
			if (count[e] != each)
				fail_msg("E = %s, K = %s, T = %d: expert %d has %d slots, expected %lld", cases[c].e, cases[c].k,
					 cases[c].t, e, count[e], (long long)each);
	}
}

static void test_route_hot_zipf(void **state)
{
	(void)state;
	struct moe_params p;
	int32_t idx[64];
	float w[64];

	moe_params_defaults(&p);
	set(&p, "routing", "hot:1.0");
	for (uint64_t g = 0; g < 1000; g++) {
		check_route(&p, g, idx, w);
		int has0 = 0;
		for (int k = 0; k < p.topk; k++)
			has0 |= idx[k] == 0;
		if (!has0)
			fail_msg("hot:1.0: token %llu does not go to expert 0", (unsigned long long)g);
	}

	/* hot:0 is uniform: expert 0 gets about its fair share */
	set(&p, "routing", "hot:0");
	int n0 = 0;
	for (uint64_t g = 0; g < 4000; g++) {
		check_route(&p, g, idx, w);
		for (int k = 0; k < p.topk; k++)
			n0 += idx[k] == 0;
	}
	assert_in_range(n0, 800, 1200); /* 4000 * 4 / 16 = 1000 */

	/* zipf:1.2: expert 0 is the most frequent, and frequency falls with rank */
	set(&p, "routing", "zipf:1.2");
	set(&p, "experts", "64");
	set(&p, "topk", "4");
	int count[64] = {0};
	for (uint64_t g = 0; g < 5000; g++) {
		check_route(&p, g, idx, w);
		for (int k = 0; k < p.topk; k++)
			count[idx[k]]++;
	}
	for (int e = 1; e < 64; e++)
		if (count[e] >= count[0])
			fail_msg("zipf:1.2: expert %d has %d slots, expert 0 only %d", e, count[e], count[0]);
	assert_true(count[1] > count[8] && count[8] > count[63]);
	/* every token's K slots are distinct, so expert 0 can have at most one slot per token */
	assert_true(count[0] <= 5000);
	assert_true(count[0] > 2500);
}

static char tmpdir[256];

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/moe_test_rng.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void trace_bad(const char *name, const char *text, int64_t experts, const char *want_at, const char *want)
{
	char err[1024] = "", at[600];
	struct moe_trace tr;
	const char *path = write_file(name, text);
	snprintf(at, sizeof(at), "%s%s", path, want_at);
	if (!moe_trace_load(path, experts, &tr, err, sizeof(err)))
		fail_msg("%s loaded, expected '%s'", name, want);
	assert_contains(err, at);
	assert_contains(err, want);
	assert_null(tr.ids);
	assert_int_equal(tr.ntokens, 0);
}

static void test_trace_load(void **state)
{
	(void)state;
	char err[1024] = "";
	struct moe_trace tr;
	const char *path = write_file("ok.txt", "# a trace: K ids per token\n"
						"\n"
						"0 1 2\n"
						"   # indented comment\n"
						"  15, 3,4  \n"
						"\t\n"
						"7 7 0\n");
	if (moe_trace_load(path, 16, &tr, err, sizeof(err)))
		fail_msg("loading the trace: %s", err);
	assert_int_equal(tr.ntokens, 3);
	assert_int_equal(tr.topk, 3);
	const int32_t want[] = {0, 1, 2, 15, 3, 4, 7, 7, 0};
	assert_memory_equal(tr.ids, want, sizeof(want));
	moe_trace_free(&tr);
	assert_null(tr.ids);

	/* more tokens than the first allocation holds */
	char *big = malloc(3000 * 8);
	assert_non_null(big);
	size_t o = 0;
	for (int i = 0; i < 3000; i++)
		o += (size_t)sprintf(big + o, "%d %d\n", i % 16, (i + 1) % 16);
	path = write_file("big.txt", big);
	free(big);
	if (moe_trace_load(path, 16, &tr, err, sizeof(err)))
		fail_msg("loading the big trace: %s", err);
	assert_int_equal(tr.ntokens, 3000);
	assert_int_equal(tr.ids[2 * 2999], 2999 % 16);
	assert_int_equal(tr.ids[2 * 2999 + 1], 3000 % 16);
	moe_trace_free(&tr);

	trace_bad("range.txt", "0 1\n# c\n16 2\n", 16, ":3:", "expert id 16 out of range [0, 16)");
	trace_bad("neg.txt", "0 -1\n", 16, ":1:", "expert id -1 out of range");
	trace_bad("count.txt", "0 1\n\n2\n", 16, ":3:", "1 expert ids, but earlier lines have 2");
	trace_bad("word.txt", "0 1\n2 x\n", 16, ":2:", "expected an expert id, got 'x");
	trace_bad("empty.txt", "", 16, ":", "no routed tokens in the trace");
	trace_bad("comments.txt", "# only\n\n# comments\n", 16, ":", "no routed tokens in the trace");

	snprintf(err, sizeof(err), "%s/none.txt", tmpdir);
	char e2[1024] = "";
	assert_int_equal(moe_trace_load(err, 16, &tr, e2, sizeof(e2)), -1);
	assert_contains(e2, "cannot open");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_u64_deterministic_and_keyed),
		cmocka_unit_test(test_unit_range_and_mean),
		cmocka_unit_test(test_gen_elem_scale),
		cmocka_unit_test(test_gen_bias),
		cmocka_unit_test(test_route_synth_basic),
		cmocka_unit_test(test_route_balanced),
		cmocka_unit_test(test_route_hot_zipf),
		cmocka_unit_test(test_trace_load),
	};
	return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
