/* The oracle against small hand-computed cases, and its verdicts on planted errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "oracle.h"
#include "params.h"
#include "workload.h"

static void small(struct moe_params *p, int64_t H, int64_t F, int64_t E, int64_t K, enum moe_expert_kind ex)
{
	moe_params_defaults(p);
	p->hidden = H;
	p->ffn = F;
	p->experts = E;
	p->topk = K;
	p->expert = ex;
}

static moe_bf16 bf(float f) { return moe_f32_to_bf16(f); }

/* scale experts: y = sum_k w_k (e_k + 1) x, exact in bf16 for these values */
static void test_exact_scale_by_hand(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 4, 2, 4, 2, MOE_EXPERT_SCALE);
	p.routing.kind = MOE_ROUTE_UNIFORM;
	int32_t idx[2];
	float w[2];
	moe_route_synth(&p, 0, 7, idx, w);
	moe_bf16 x[4] = {bf(1.0f), bf(2.0f), bf(-0.5f), bf(0.25f)}, y[4];
	for (int c = 0; c < 4; c++) {
		float xv = moe_bf16_to_f32(x[c]);
		/* by hand: each expert output rounds to bf16, then the weighted sum in slot order */
		float f0 = (float)(idx[0] + 1) * xv, f1 = (float)(idx[1] + 1) * xv;
		y[c] = bf(fmaf(w[1], f1, fmaf(w[0], f0, 0.0f)));
	}
	int64_t gid = 7;
	struct moe_verdict v;
	assert_int_equal(moe_oracle_check(&p, 0, 1, x, &gid, idx, w, y, NULL, 0, NULL, 1, &v), MOE_OK);
	assert_int_equal(v.bad, 0);
	assert_int_equal(v.checked, 1);
	/* one ulp off in one column is a mismatch naming that column */
	y[2] ^= 1;
	assert_int_equal(moe_oracle_check(&p, 0, 1, x, &gid, idx, w, y, NULL, 0, NULL, 1, &v), MOE_OK);
	assert_int_equal(v.bad, 1);
	assert_int_equal(v.token, 0);
	assert_int_equal(v.col, 2);
	assert_true(strstr(v.what, "output") != NULL);
}

static void test_identity_is_weighted_sum(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 2, 2, 4, 2, MOE_EXPERT_IDENTITY);
	p.routing.kind = MOE_ROUTE_BALANCED;
	int32_t idx[2];
	float w[2];
	moe_route_synth(&p, 0, 0, idx, w);
	assert_int_equal(idx[0], 0);
	assert_int_equal(idx[1], 1);
	/* normalised weights sum to 1, so identity experts give back x (up to one rounding) */
	moe_bf16 x[2] = {bf(3.0f), bf(-1.5f)}, y[2] = {bf(3.0f), bf(-1.5f)};
	int64_t gid = 0;
	struct moe_verdict v;
	assert_int_equal(moe_oracle_check(&p, 0, 1, x, &gid, idx, w, y, NULL, 0, NULL, 1, &v), MOE_OK);
	assert_int_equal(v.bad, 0);
}

static void test_synthetic_routing_must_match(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 2, 2, 8, 2, MOE_EXPERT_IDENTITY);
	p.routing.kind = MOE_ROUTE_UNIFORM;
	int32_t idx[2];
	float w[2];
	moe_route_synth(&p, 0, 3, idx, w);
	idx[1] = (idx[1] + 1) % 8 == idx[0] ? (idx[1] + 2) % 8 : (idx[1] + 1) % 8;
	moe_bf16 x[2] = {bf(1), bf(1)}, y[2] = {bf(1), bf(1)};
	int64_t gid = 3;
	struct moe_verdict v;
	moe_oracle_check(&p, 0, 1, x, &gid, idx, w, y, NULL, 0, NULL, 1, &v);
	assert_int_equal(v.bad, 1);
	assert_true(strstr(v.what, "routing") != NULL);
}

/* With x = 0 every logit is 0: softmax is uniform, ties go to the lowest ids. */
static void test_router_zero_input_ties(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 8, 4, 8, 3, MOE_EXPERT_SWIGLU);
	moe_bf16 x[8] = {0};
	int32_t idx[3];
	double w[3];
	moe_oracle_route(&p, 0, x, idx, w, NULL);
	for (int k = 0; k < 3; k++) {
		assert_int_equal(idx[k], k);
		assert_float_equal(w[k], 1.0 / 3.0, 1e-12);
	}
	/* without normalisation the weights are the softmax probabilities 1/E, scaled */
	p.route_norm = false;
	p.route_scale = 2.0;
	moe_oracle_route(&p, 0, x, idx, w, NULL);
	assert_float_equal(w[0], 2.0 / 8.0, 1e-12);
	/* sigmoid(0) = 0.5 for every expert */
	p.score = MOE_SCORE_SIGMOID;
	p.route_scale = 1.0;
	moe_oracle_route(&p, 0, x, idx, w, NULL);
	assert_float_equal(w[2], 0.5, 1e-12);
	assert_int_equal(idx[2], 2);
}

/* Group-limited routing keeps only experts of the best groups. */
static void test_router_group_limit(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 16, 4, 16, 4, MOE_EXPERT_SWIGLU);
	p.groups = 4;
	p.topk_groups = 1;
	p.route_bias = true;
	p.seed = 11;
	moe_bf16 x[16] = {0}; /* all scores equal: the bias decides */
	int32_t idx[4];
	double w[4], sel[16];
	moe_oracle_route(&p, 0, x, idx, w, sel);
	double best = -1;
	int bg = -1;
	for (int g = 0; g < 4; g++) {
		double a = -1e9, b = -1e9;
		for (int e = 4 * g; e < 4 * g + 4; e++) {
			double s = 1.0 / 16 + moe_gen_bias(&p, 0, e);
			if (s > a) {
				b = a;
				a = s;
			} else if (s > b)
				b = s;
		}
		if (a + b > best) {
			best = a + b;
			bg = g;
		}
	}
	for (int k = 0; k < 4; k++)
		assert_int_equal(idx[k] / 4, bg);
}

/* One expert, H = 2, F = 1: f(u) = W2 * silu(W1.u) * (W3.u), by hand from the generated weights. */
static void test_swiglu_by_hand(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 2, 1, 1, 1, MOE_EXPERT_SWIGLU);
	p.routing.kind = MOE_ROUTE_UNIFORM;
	int32_t idx[1];
	float w[1];
	moe_route_synth(&p, 0, 0, idx, w);
	assert_int_equal(idx[0], 0);
	moe_bf16 x[2] = {bf(0.75f), bf(-1.25f)}, y[2];
	double a = 0, b = 0;
	for (int h = 0; h < 2; h++) {
		a += moe_bf16_to_f32(moe_gen_elem(&p, MOE_T_W1, 0, 0, h)) * moe_bf16_to_f32(x[h]);
		b += moe_bf16_to_f32(moe_gen_elem(&p, MOE_T_W3, 0, 0, h)) * moe_bf16_to_f32(x[h]);
	}
	double act = a / (1 + exp(-a)) * b;
	for (int h = 0; h < 2; h++)
		y[h] = bf((float)(w[0] * moe_bf16_to_f32(moe_gen_elem(&p, MOE_T_W2, 0, h, 0)) * act));
	int64_t gid = 0;
	struct moe_verdict v;
	moe_oracle_check(&p, 0, 1, x, &gid, idx, w, y, NULL, 0, NULL, 1, &v);
	assert_int_equal(v.bad, 0);
	assert_true(v.max_err < 1e-2);
	/* 10% off is beyond the 2% bf16 tolerance */
	for (int h = 0; h < 2; h++)
		y[h] = bf(1.1f * moe_bf16_to_f32(y[h]));
	moe_oracle_check(&p, 0, 1, x, &gid, idx, w, y, NULL, 0, NULL, 1, &v);
	assert_int_equal(v.bad, 1);
	assert_true(v.max_err > 0.05);
}

/* A NaN in the output never passes. */
static void test_nan_fails(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 2, 1, 1, 1, MOE_EXPERT_SWIGLU);
	p.routing.kind = MOE_ROUTE_UNIFORM;
	int32_t idx[1];
	float w[1];
	moe_route_synth(&p, 0, 0, idx, w);
	moe_bf16 x[2] = {bf(1), bf(1)}, y[2] = {0x7fc0, bf(0)};
	int64_t gid = 0;
	struct moe_verdict v;
	moe_oracle_check(&p, 0, 1, x, &gid, idx, w, y, NULL, 0, NULL, 1, &v);
	assert_int_equal(v.bad, 1);
}

/* Only the listed rows are checked (check = sample:N). */
static void test_check_subset(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 2, 1, 2, 1, MOE_EXPERT_IDENTITY);
	p.routing.kind = MOE_ROUTE_UNIFORM;
	int32_t idx[3];
	float w[3];
	moe_bf16 x[6], y[6];
	int64_t gid[3] = {0, 1, 2};
	for (int i = 0; i < 3; i++) {
		moe_route_synth(&p, 0, (uint64_t)i, idx + i, w + i);
		for (int c = 0; c < 2; c++) {
			x[2 * i + c] = bf((float)(i + c));
			y[2 * i + c] = bf(w[i] * (float)(i + c));
		}
	}
	y[2 * 1 + 1] ^= 0x40; /* row 1 is wrong */
	int64_t rows[2] = {0, 2};
	struct moe_verdict v;
	moe_oracle_check(&p, 0, 3, x, gid, idx, w, y, rows, 2, NULL, 1, &v);
	assert_int_equal(v.bad, 0);
	assert_int_equal(v.checked, 2);
	moe_oracle_check(&p, 0, 3, x, gid, idx, w, y, NULL, 0, NULL, 1, &v);
	assert_int_equal(v.bad, 1);
	assert_int_equal(v.token, 1);
	assert_int_equal(v.col, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_scale_by_hand),
		cmocka_unit_test(test_identity_is_weighted_sum),
		cmocka_unit_test(test_synthetic_routing_must_match),
		cmocka_unit_test(test_router_zero_input_ties),
		cmocka_unit_test(test_router_group_limit),
		cmocka_unit_test(test_swiglu_by_hand),
		cmocka_unit_test(test_nan_fails),
		cmocka_unit_test(test_check_subset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
