/* The oracle: its shared specification against fixed vectors, its own routing against the data path's, and its
 * verdicts on planted errors (inputs, routing, ties, pads, bounds). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "oracle.h"
#include "oracle_int.h"
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
	p->dp = p->tp = 1;
}

static moe_bf16 bf(float f) { return moe_f32_to_bf16(f); }

/* The generator's tokens [g0, g0 + n) of layer 0. */
static void tokens_x(const struct moe_params *p, int64_t g0, int64_t n, moe_bf16 *x)
{
	moe_gen_block(p, MOE_T_X, 0, (uint64_t)g0, n, p->hidden, x);
}

/* Vectors computed outside moebench by a python3 script using only the standard library: the RNG from its
 * definition (splitmix64 finaliser on seed + golden, then xor-mixed with tensor<<32|layer, row, col*golden),
 * bf16 as the nearest bf16 to the float's exact value by rational arithmetic (fractions.Fraction), ties to
 * even, overflow past max + half an ulp to inf. */
static void test_spec_fixed_vectors(void **state)
{
	(void)state;
	assert_true(moe_rng_u64(0, 1, 0, 0, 0) == 0x72ee908d56829297ull);
	assert_true(moe_rng_u64(7, 3, 3, 11, 13) == 0x665f77211ceb7431ull);
	assert_true(moe_rng_u64(42, 2, 1, 255, 7167) == 0xce2c1a6be3cbdec0ull);
	assert_true(moe_rng_u64(9223372036854775813ull, 12, 9, 1099511627779ull, 99) == 0xba0d72d1fb95bad0ull);
	static const uint32_t in[] = {0x3f800000, 0x3f808000, 0x3f818000, 0x3f80ffff, 0xbf808001,
				      0x7f7fffff, 0x00000001, 0x807fffff, 0x40490fdb, 0x3c23d70a};
	static const uint16_t out[] = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0xbf81, 0x7f80, 0x0000, 0x8080, 0x4049, 0x3c24};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		float f;
		memcpy(&f, &in[i], 4);
		if (moe_f32_to_bf16(f) != out[i])
			fail_msg("bf16(0x%08x) = 0x%04x, expected 0x%04x", in[i], moe_f32_to_bf16(f), out[i]);
		uint32_t back = (uint32_t)out[i] << 16;
		float g;
		memcpy(&g, &back, 4);
		assert_true(moe_bf16_to_f32(out[i]) == g || isnan(g)); /* widening is exact */
	}
	float nan = NAN;
	assert_true(isnan(moe_bf16_to_f32(moe_f32_to_bf16(nan))));
	/* the oracle's row generator hoists the row's key: it must still give the specification's elements */
	struct moe_params p;
	small(&p, 96, 40, 8, 2, MOE_EXPERT_SWIGLU);
	p.seed = 1234;
	double row[96];
	enum moe_tensor ts[] = {MOE_T_X, MOE_T_GATE, MOE_T_W1, MOE_T_W2, MOE_T_SW3};
	for (int t = 0; t < 5; t++)
		for (uint64_t r = 0; r < 300; r += 37) {
			orc_gen_row(&p, ts[t], 2, r, 96, row);
			for (int c = 0; c < 96; c++)
				assert_true(row[c] == (double)moe_bf16_to_f32(moe_gen_elem(&p, ts[t], 2, r, (uint64_t)c)));
		}
}

/* The oracle draws synthetic routes itself; for a correct data path both agree bit for bit. */
static void test_synth_agrees_with_workload(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 8, 4, 32, 6, MOE_EXPERT_SCALE);
	const char *kinds[] = {"uniform", "balanced", "zipf:1.2", "hot:0.5", "zipf:8"};
	for (int k = 0; k < 5; k++)
		for (int norm = 0; norm < 2; norm++) {
			char err[256];
			assert_int_equal(moe_param_set(&p, "routing", kinds[k], err, sizeof(err)), 0);
			p.route_norm = norm;
			p.route_scale = 2.5;
			for (uint64_t g = 0; g < 300; g++) {
				int32_t a[6], b[6];
				float wa[6], wb[6];
				moe_route_synth(&p, 1, g, a, wa);
				orc_synth(&p, 1, g, NULL, b, wb);
				assert_memory_equal(a, b, sizeof(a));
				assert_memory_equal(wa, wb, sizeof(wa));
			}
		}
}

/* The rank's view of dp = 1, tp = 1, T tokens at layer 0 with scale/identity experts, computed by hand. */
struct fix {
	struct moe_params p;
	int64_t T;
	moe_bf16 x[16 * 8], y[16 * 8];
	int32_t idx[16 * 4];
	float w[16 * 4];
};

/* y of the rank's rows with the routing of `layer` drawn (UINT32_MAX: the routing in f kept). */
static void hand_layer(struct fix *f, uint32_t layer)
{
	const struct moe_params *p = &f->p;
	int64_t H = p->hidden, K = p->topk;
	for (int64_t i = 0; i < f->T; i++) {
		if (layer != UINT32_MAX)
			moe_route_synth(p, layer, (uint64_t)i, f->idx + i * K, f->w + i * K);
		for (int64_t c = 0; c < H; c++) {
			float xv = moe_bf16_to_f32(f->x[i * H + c]), acc = 0;
			/* each expert output rounds to bf16, then the weighted sum in slot order */
			for (int64_t k = 0; k < K; k++) {
				float fe = p->expert == MOE_EXPERT_SCALE ? (float)(f->idx[i * K + k] + 1) : 1.0f;
				acc = fmaf(f->w[i * K + k], moe_bf16_to_f32(bf(fe * xv)), acc);
			}
			f->y[i * H + c] = bf(acc);
		}
	}
}

static void fix_init(struct fix *f, enum moe_expert_kind ex, int64_t T)
{
	small(&f->p, 8, 2, 8, 4, ex);
	f->p.routing.kind = MOE_ROUTE_UNIFORM;
	f->T = T;
	tokens_x(&f->p, 0, T, f->x);
	hand_layer(f, 0);
}

static void test_exact_scale_by_hand(void **state)
{
	(void)state;
	struct fix f;
	fix_init(&f, MOE_EXPERT_SCALE, 5);
	struct moe_oracle *o = moe_oracle_open(&f.p, &f.T, 0, NULL);
	struct moe_verdict v;
	assert_int_equal(moe_oracle_check(o, 0, 5, f.x, f.idx, f.w, f.y, NULL, 0, &v), MOE_OK);
	assert_int_equal(v.bad, 0);
	assert_int_equal(v.checked, 5);
	moe_oracle_close(o);
	f.y[3 * 8 + 2] ^= 1;
	o = moe_oracle_open(&f.p, &f.T, 0, NULL);
	moe_oracle_check(o, 0, 5, f.x, f.idx, f.w, f.y, NULL, 0, &v);
	assert_int_equal(v.bad, 1);
	assert_int_equal(v.token, 3);
	assert_int_equal(v.gid, 3);
	assert_int_equal(v.col, 2);
	assert_non_null(strstr(v.what, "output"));
	moe_oracle_close(o);
}

/* Inputs are rebuilt: a wrong token at layer 0 and a stale buffer at layer 1 are input mismatches. */
static void test_inputs_rebuilt(void **state)
{
	(void)state;
	struct fix f;
	fix_init(&f, MOE_EXPERT_IDENTITY, 4);
	struct moe_verdict v;
	/* rows 1 and 2 swapped: the rank holds the wrong tokens */
	moe_bf16 sw[4 * 8];
	memcpy(sw, f.x, sizeof(sw));
	memcpy(sw + 8, f.x + 16, 16);
	memcpy(sw + 16, f.x + 8, 16);
	struct moe_oracle *o = moe_oracle_open(&f.p, &f.T, 0, NULL);
	moe_oracle_check(o, 0, 4, sw, f.idx, f.w, f.y, NULL, 0, &v);
	assert_int_equal(v.bad, 1);
	assert_int_equal(v.token, 1);
	assert_non_null(strstr(v.what, "input"));
	moe_oracle_close(o);
	/* layer 1 must come after a verified layer 0 */
	o = moe_oracle_open(&f.p, &f.T, 0, NULL);
	assert_int_equal(moe_oracle_check(o, 1, 4, f.x, f.idx, f.w, f.y, NULL, 0, &v), MOE_ERR_USAGE);
	assert_int_equal(moe_oracle_check(o, 0, 4, f.x, f.idx, f.w, f.y, NULL, 0, &v), MOE_OK);
	assert_int_equal(v.bad, 0);
	/* layer 1 with layer 0's input (a stale buffer): mismatch on the first row */
	moe_bf16 x0[4 * 8];
	memcpy(x0, f.x, sizeof(x0));
	for (int i = 0; i < 4 * 8; i++)
		f.x[i] = bf(moe_bf16_to_f32(f.x[i]) + moe_bf16_to_f32(f.y[i]));
	hand_layer(&f, 1);
	moe_oracle_check(o, 1, 4, x0, f.idx, f.w, f.y, NULL, 0, &v);
	assert_int_equal(v.bad, 1);
	assert_int_equal(v.token, 0);
	assert_non_null(strstr(v.what, "previous layer"));
	/* the right input x0 + y0 passes */
	moe_oracle_close(o);
	o = moe_oracle_open(&f.p, &f.T, 0, NULL);
	struct fix g;
	fix_init(&g, MOE_EXPERT_IDENTITY, 4);
	moe_oracle_check(o, 0, 4, g.x, g.idx, g.w, g.y, NULL, 0, &v);
	moe_oracle_check(o, 1, 4, f.x, f.idx, f.w, f.y, NULL, 0, &v);
	assert_int_equal(v.bad, 0);
	/* a rank that reports another row count than its slice has */
	moe_oracle_close(o);
	o = moe_oracle_open(&f.p, &f.T, 0, NULL);
	moe_oracle_check(o, 0, 3, g.x, g.idx, g.w, g.y, NULL, 0, &v);
	assert_int_equal(v.bad, 1);
	assert_non_null(strstr(v.what, "rows"));
	moe_oracle_close(o);
}

/* A synthetic weight that is not renormalised is a routing mismatch, though the output matches its weights. */
static void test_synthetic_routing_must_match(void **state)
{
	(void)state;
	struct fix f;
	fix_init(&f, MOE_EXPERT_SCALE, 2);
	for (int k = 0; k < 4; k++)
		f.w[4 + k] = (float)(0.05 + moe_rng_unit((uint64_t)f.p.seed, MOE_T_ROUTE, 0, 1, 2000000 + (uint64_t)k));
	hand_layer(&f, UINT32_MAX);
	struct moe_oracle *o = moe_oracle_open(&f.p, &f.T, 0, NULL);
	struct moe_verdict v;
	moe_oracle_check(o, 0, 2, f.x, f.idx, f.w, f.y, NULL, 0, &v);
	assert_int_equal(v.bad, 1);
	assert_int_equal(v.token, 1);
	assert_int_equal(v.gid, 1);
	assert_non_null(strstr(v.what, "routing"));
	moe_oracle_close(o);
}

/* sp at tp = 2 with T = 1: rank 1's only row is a pad. mask: expert 0 weight 0; zero_token under the router:
 * all scores equal, so experts 0..K-1 exactly, and the higher ids are refused as a tie broken the wrong way. */
static void test_pad_rows(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 8, 2, 8, 3, MOE_EXPERT_SCALE);
	p.partition = MOE_PART_SP;
	p.tp = 2;
	p.pad = MOE_PAD_MASK;
	int64_t T = 1;
	moe_bf16 x[8] = {0}, y[8] = {0};
	int32_t idx[3] = {0, 0, 0};
	float w[3] = {0, 0, 0};
	struct moe_verdict v;
	struct moe_oracle *o = moe_oracle_open(&p, &T, 1, NULL);
	assert_int_equal(moe_oracle_rows(o), 1);
	assert_int_equal(moe_oracle_gid(o, 0), -1);
	moe_oracle_check(o, 0, 1, x, idx, w, y, NULL, 0, &v);
	assert_int_equal(v.bad, 0);
	idx[2] = 1;
	moe_oracle_close(o);
	o = moe_oracle_open(&p, &T, 1, NULL);
	moe_oracle_check(o, 0, 1, x, idx, w, y, NULL, 0, &v);
	assert_int_equal(v.bad, 1);
	assert_non_null(strstr(v.what, "pad row"));
	moe_oracle_close(o);
	p.pad = MOE_PAD_ZERO_TOKEN;
	for (int sig = 0; sig < 2; sig++) {
		p.score = sig ? MOE_SCORE_SIGMOID : MOE_SCORE_SOFTMAX;
		float pe = sig ? 0.5f : 1.0f / 8.0f, s = pe + pe + pe;
		o = moe_oracle_open(&p, &T, 1, NULL);
		assert_int_equal(moe_oracle_gid(o, 0), -2);
		for (int k = 0; k < 3; k++) {
			idx[k] = k;
			w[k] = pe / (s + 1e-20f);
		}
		moe_oracle_check(o, 0, 1, x, idx, w, y, NULL, 0, &v);
		assert_int_equal(v.bad, 0);
		moe_oracle_close(o);
		o = moe_oracle_open(&p, &T, 1, NULL);
		for (int k = 0; k < 3; k++)
			idx[k] = 7 - k;
		moe_oracle_check(o, 0, 1, x, idx, w, y, NULL, 0, &v);
		assert_int_equal(v.bad, 1);
		assert_non_null(strstr(v.what, "lower id"));
		moe_oracle_close(o);
	}
	/* with a bias the equal probabilities are ordered by it, exactly */
	p.route_bias = true;
	p.score = MOE_SCORE_SOFTMAX;
	int order[8];
	for (int e = 0; e < 8; e++)
		order[e] = e;
	for (int a = 0; a < 8; a++)
		for (int b = a + 1; b < 8; b++)
			if (moe_gen_bias(&p, 0, order[b]) + 0.125f > moe_gen_bias(&p, 0, order[a]) + 0.125f) {
				int t = order[a];
				order[a] = order[b];
				order[b] = t;
			}
	for (int k = 0; k < 3; k++)
		idx[k] = order[k];
	o = moe_oracle_open(&p, &T, 1, NULL);
	moe_oracle_check(o, 0, 1, x, idx, w, y, NULL, 0, &v);
	assert_int_equal(v.bad, 0);
	moe_oracle_close(o);
	idx[1] = order[3];
	o = moe_oracle_open(&p, &T, 1, NULL);
	moe_oracle_check(o, 0, 1, x, idx, w, y, NULL, 0, &v);
	assert_int_equal(v.bad, 1);
	moe_oracle_close(o);
}

/* The slice and ids come from the layout alone: replicate, leader, sp with pads, DP groups before. */
static void test_layout(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 8, 2, 8, 2, MOE_EXPERT_SCALE);
	p.dp = 2;
	p.tp = 2;
	int64_t tokens[2] = {4, 3};
	p.partition = MOE_PART_SP;
	struct moe_oracle *o = moe_oracle_open(&p, tokens, 3, NULL); /* group 1, TP rank 1 */
	assert_int_equal(moe_oracle_rows(o), 2);
	assert_int_equal(moe_oracle_gid(o, 0), 4 + 2);
	assert_int_equal(moe_oracle_gid(o, 1), -1);
	moe_oracle_close(o);
	p.partition = MOE_PART_LEADER;
	o = moe_oracle_open(&p, tokens, 3, NULL);
	assert_int_equal(moe_oracle_rows(o), 0);
	moe_oracle_close(o);
	o = moe_oracle_open(&p, tokens, 2, NULL);
	assert_int_equal(moe_oracle_rows(o), 3);
	assert_int_equal(moe_oracle_gid(o, 2), 6);
	moe_oracle_close(o);
	p.partition = MOE_PART_REPLICATE;
	o = moe_oracle_open(&p, tokens, 1, NULL);
	assert_int_equal(moe_oracle_rows(o), 4);
	assert_int_equal(moe_oracle_gid(o, 0), 0);
	moe_oracle_close(o);
}

/* A router in fp32 as a kernel would run it: logits summed in order, softmax, top-K (ties to the lower id). */
static void fp32_route(const struct moe_params *p, const moe_bf16 *x, int32_t *idx, float *w)
{
	int64_t E = p->experts, H = p->hidden, K = p->topk;
	float *s = malloc((size_t)E * sizeof(float)), mx = -INFINITY, sum = 0;
	for (int64_t e = 0; e < E; e++) {
		float z = 0;
		for (int64_t h = 0; h < H; h++)
			z = fmaf(moe_bf16_to_f32(moe_gen_elem(p, MOE_T_GATE, 0, (uint64_t)e, (uint64_t)h)), moe_bf16_to_f32(x[h]), z);
		s[e] = z;
		mx = fmaxf(mx, z);
	}
	for (int64_t e = 0; e < E; e++)
		sum += (s[e] = expf(s[e] - mx));
	for (int64_t e = 0; e < E; e++)
		s[e] /= sum;
	float ws = 0;
	for (int64_t k = 0; k < K; k++) {
		int64_t b = -1;
		for (int64_t e = 0; e < E; e++) {
			int taken = 0;
			for (int64_t j = 0; j < k; j++)
				taken |= idx[j] == e;
			if (!taken && (b < 0 || s[e] > s[b]))
				b = e;
		}
		idx[k] = (int32_t)b;
		ws += (w[k] = s[b]);
	}
	for (int64_t k = 0; k < K; k++)
		w[k] = w[k] / (ws + 1e-20f) * (float)p->route_scale;
	free(s);
}

/* Weights within their bound pass, just past it fail; large activations (|x| ~ 3.6e4, the 3-layer scale case
 * that used to cry wolf) stay within the bound. */
static void test_router_weight_bound(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 256, 4, 64, 8, MOE_EXPERT_SCALE);
	int64_t T = 3;
	moe_bf16 x[3 * 256], y[3 * 256] = {0};
	int32_t idx[3 * 8];
	float w[3 * 8];
	double wref[3 * 8], wb[3 * 8];
	tokens_x(&p, 0, T, x);
	for (int i = 0; i < 3; i++)
		fp32_route(&p, x + i * 256, idx + i * 8, w + i * 8);
	assert_int_equal(moe_oracle_reference(&p, 0, 3, x, idx, w, wref, wb, NULL, NULL), MOE_OK);
	for (int k = 0; k < 24; k++) {
		assert_true(fabs((double)w[k] - wref[k]) <= wb[k]);
		assert_true(wb[k] < 1e-3 * fabs(wref[k])); /* and tighter than the old fixed 1e-3 at |x| ~ 1 */
	}
	/* the outputs must be consistent with the weights for the check to reach the routing */
	for (int i = 0; i < 3; i++)
		for (int c = 0; c < 256; c++) {
			float acc = 0, xv = moe_bf16_to_f32(x[i * 256 + c]);
			for (int k = 0; k < 8; k++)
				acc = fmaf(w[i * 8 + k], moe_bf16_to_f32(bf((float)(idx[i * 8 + k] + 1) * xv)), acc);
			y[i * 256 + c] = bf(acc);
		}
	struct moe_verdict v;
	struct moe_oracle *o = moe_oracle_open(&p, &T, 0, NULL);
	moe_oracle_check(o, 0, 3, x, idx, w, y, NULL, 0, &v);
	assert_int_equal(v.bad, 0);
	moe_oracle_close(o);
	/* a weight 1.5 bounds off (the output recomputed with it) is refused */
	float keep = w[8 + 2];
	w[8 + 2] = (float)(wref[8 + 2] + 1.5 * wb[8 + 2]);
	assert_true(fabs((double)w[8 + 2] - wref[8 + 2]) > wb[8 + 2]);
	o = moe_oracle_open(&p, &T, 0, NULL);
	moe_oracle_check(o, 0, 3, x, idx, w, y, NULL, 0, &v);
	assert_int_equal(v.bad, 1);
	assert_int_equal(v.token, 1);
	assert_non_null(strstr(v.what, "weight"));
	moe_oracle_close(o);
	w[8 + 2] = keep;
	/* large magnitudes: the fp32 router's weights stay within the bound */
	for (int i = 0; i < 256; i++)
		x[i] = bf(3.6e4f * moe_bf16_to_f32(x[i]));
	fp32_route(&p, x, idx, w);
	assert_int_equal(moe_oracle_reference(&p, 0, 1, x, idx, w, wref, wb, NULL, NULL), MOE_OK);
	for (int k = 0; k < 8; k++)
		assert_true(fabs((double)w[k] - wref[k]) <= wb[k]);
}

/* swiglu as the host kernel computes it (bf16 projections, activation and output) is within the bound; an
 * element pushed just past its bound is a mismatch naming its column. */
static void test_swiglu_bound(void **state)
{
	(void)state;
	struct moe_params p;
	small(&p, 64, 32, 4, 2, MOE_EXPERT_SWIGLU);
	p.routing.kind = MOE_ROUTE_UNIFORM;
	int64_t T = 4, H = 64, F = 32;
	moe_bf16 x[4 * 64], y[4 * 64];
	int32_t idx[8];
	float w[8];
	tokens_x(&p, 0, T, x);
	for (int i = 0; i < 4; i++) {
		moe_route_synth(&p, 0, (uint64_t)i, idx + 2 * i, w + 2 * i);
		float acc[64] = {0};
		for (int k = 0; k < 2; k++) {
			int64_t e = idx[2 * i + k];
			float hact[32];
			for (int64_t f = 0; f < F; f++) {
				float a = 0, b = 0;
				for (int64_t h = 0; h < H; h++) {
					float xv = moe_bf16_to_f32(x[i * H + h]);
					a = fmaf(moe_bf16_to_f32(moe_gen_elem(&p, MOE_T_W1, 0, (uint64_t)(e * F + f), (uint64_t)h)), xv, a);
					b = fmaf(moe_bf16_to_f32(moe_gen_elem(&p, MOE_T_W3, 0, (uint64_t)(e * F + f), (uint64_t)h)), xv, b);
				}
				a = moe_bf16_to_f32(bf(a));
				b = moe_bf16_to_f32(bf(b));
				hact[f] = moe_bf16_to_f32(bf(a / (1.0f + expf(-a)) * b));
			}
			for (int64_t h = 0; h < H; h++) {
				float o = 0;
				for (int64_t f = 0; f < F; f++)
					o = fmaf(moe_bf16_to_f32(moe_gen_elem(&p, MOE_T_W2, 0, (uint64_t)(e * H + h), (uint64_t)f)), hact[f], o);
				acc[h] = fmaf(w[2 * i + k], moe_bf16_to_f32(bf(o)), acc[h]);
			}
		}
		for (int64_t h = 0; h < H; h++)
			y[i * H + h] = bf(acc[h]);
	}
	struct moe_verdict v;
	struct moe_oracle *o = moe_oracle_open(&p, &T, 0, NULL);
	moe_oracle_check(o, 0, T, x, idx, w, y, NULL, 0, &v);
	assert_int_equal(v.bad, 0);
	assert_true(v.max_err < 1 && v.max_err > 0);
	moe_oracle_close(o);
	double yref[4 * 64], yb[4 * 64];
	assert_int_equal(moe_oracle_reference(&p, 0, T, x, idx, w, NULL, NULL, yref, yb), MOE_OK);
	/* row 2, column 17: the smallest bf16 beyond ref + bound */
	int at = 2 * 64 + 17;
	float t = (float)(yref[at] + yb[at]);
	moe_bf16 b = bf(t);
	while (fabs((double)moe_bf16_to_f32(b) - yref[at]) <= yb[at])
		b = (moe_bf16)(moe_bf16_to_f32(b) > 0 ? b + 1 : b - 1);
	moe_bf16 keep = y[at];
	y[at] = b;
	o = moe_oracle_open(&p, &T, 0, NULL);
	moe_oracle_check(o, 0, T, x, idx, w, y, NULL, 0, &v);
	assert_int_equal(v.bad, 1);
	assert_int_equal(v.token, 2);
	assert_int_equal(v.col, 17);
	moe_oracle_close(o);
	/* and a NaN never passes */
	y[at] = 0x7fc0;
	o = moe_oracle_open(&p, &T, 0, NULL);
	moe_oracle_check(o, 0, T, x, idx, w, y, NULL, 0, &v);
	assert_int_equal(v.bad, 1);
	moe_oracle_close(o);
	/* only the listed rows are checked (check = sample:N) */
	y[at] = keep ^ 0x40;
	int64_t rows[2] = {0, 3};
	o = moe_oracle_open(&p, &T, 0, NULL);
	moe_oracle_check(o, 0, T, x, idx, w, y, rows, 2, &v);
	assert_int_equal(v.bad, 0);
	assert_int_equal(v.checked, 2);
	moe_oracle_close(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_fixed_vectors),
		cmocka_unit_test(test_synth_agrees_with_workload),
		cmocka_unit_test(test_exact_scale_by_hand),
		cmocka_unit_test(test_inputs_rebuilt),
		cmocka_unit_test(test_synthetic_routing_must_match),
		cmocka_unit_test(test_pad_rows),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_router_weight_bound),
		cmocka_unit_test(test_swiglu_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
