/* The float64 CPU oracle. Written from DESIGN.md §2 alone: it shares no code with kernels/ or strategies,
 * only the element generator (so it can rebuild any tensor) and the bf16 conversions. */
#include "oracle.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double gen(const struct moe_params *p, enum moe_tensor t, uint32_t l, uint64_t r, uint64_t c)
{
	return (double)moe_bf16_to_f32(moe_gen_elem(p, t, l, r, c));
}

/* The gate matrix of the last layer asked for, in float64 (regenerating it per token would dominate). */
static const double *gate_matrix(const struct moe_params *p, uint32_t layer)
{
	static double *wg;
	static int64_t key_seed = -1, key_e, key_h;
	static uint32_t key_layer;
	if (wg && key_seed == p->seed && key_layer == layer && key_e == p->experts && key_h == p->hidden)
		return wg;
	free(wg);
	wg = malloc((size_t)(p->experts * p->hidden) * sizeof(double));
	if (!wg)
		abort();
	for (int64_t e = 0; e < p->experts; e++)
		for (int64_t h = 0; h < p->hidden; h++)
			wg[e * p->hidden + h] = gen(p, MOE_T_GATE, layer, (uint64_t)e, (uint64_t)h);
	key_seed = p->seed;
	key_layer = layer;
	key_e = p->experts;
	key_h = p->hidden;
	return wg;
}

static void route_scores(const struct moe_params *p, uint32_t layer, const moe_bf16 *x, double *prob, double *sel)
{
	int64_t E = p->experts, H = p->hidden;
	const double *wg = gate_matrix(p, layer);
	for (int64_t e = 0; e < E; e++) {
		double s = 0;
		for (int64_t h = 0; h < H; h++)
			s += wg[e * H + h] * (double)moe_bf16_to_f32(x[h]);
		prob[e] = s;
	}
	if (p->score == MOE_SCORE_SIGMOID) {
		for (int64_t e = 0; e < E; e++)
			prob[e] = 1.0 / (1.0 + exp(-prob[e]));
	} else {
		double mx = prob[0], sum = 0;
		for (int64_t e = 1; e < E; e++)
			mx = prob[e] > mx ? prob[e] : mx;
		for (int64_t e = 0; e < E; e++)
			sum += (prob[e] = exp(prob[e] - mx));
		for (int64_t e = 0; e < E; e++)
			prob[e] /= sum;
	}
	for (int64_t e = 0; e < E; e++)
		sel[e] = prob[e] + (double)moe_gen_bias(p, layer, e);
	if (p->groups > 1) {
		int64_t G = p->groups, per = E / G;
		double *gs = malloc((size_t)G * sizeof(double));
		for (int64_t g = 0; g < G; g++) {
			double a = -INFINITY, b = -INFINITY;
			for (int64_t e = g * per; e < (g + 1) * per; e++) {
				if (sel[e] > a) {
					b = a;
					a = sel[e];
				} else if (sel[e] > b)
					b = sel[e];
			}
			gs[g] = a + b;
		}
		for (int64_t g = 0; g < G; g++) {
			int64_t ahead = 0;
			for (int64_t h = 0; h < G; h++)
				ahead += gs[h] > gs[g] || (gs[h] == gs[g] && h < g);
			if (ahead >= p->topk_groups)
				for (int64_t e = g * per; e < (g + 1) * per; e++)
					sel[e] = -INFINITY;
		}
		free(gs);
	}
}

static void route_topk(const struct moe_params *p, const double *prob, const double *sel, int32_t *idx, double *w)
{
	int64_t E = p->experts, K = p->topk;
	char *taken = calloc((size_t)E, 1);
	double sum = 0;
	for (int64_t k = 0; k < K; k++) {
		int64_t b = -1;
		for (int64_t e = 0; e < E; e++)
			if (!taken[e] && sel[e] != -INFINITY && (b < 0 || sel[e] > sel[b]))
				b = e;
		taken[b] = 1;
		idx[k] = (int32_t)b;
		w[k] = prob[b];
		sum += prob[b];
	}
	for (int64_t k = 0; k < K; k++)
		w[k] = (p->route_norm ? w[k] / (sum + 1e-20) : w[k]) * p->route_scale;
	free(taken);
}

void moe_oracle_route(const struct moe_params *p, uint32_t layer, const moe_bf16 *x, int32_t *idx, double *w,
		      double *sel_out)
{
	int64_t E = p->experts;
	double *prob = malloc((size_t)E * sizeof(double)), *sel = malloc((size_t)E * sizeof(double));
	route_scores(p, layer, x, prob, sel);
	route_topk(p, prob, sel, idx, w);
	if (sel_out)
		memcpy(sel_out, sel, (size_t)E * sizeof(double));
	free(prob);
	free(sel);
}

/* Routing check for one token; returns 0 when acceptable, else fills why. */
static int check_routing(const struct moe_params *p, uint32_t layer, const moe_bf16 *x, int64_t gid,
			 const int32_t *idx, const float *w, const struct moe_trace *trace, char *why, size_t len)
{
	int64_t K = p->topk, E = p->experts;
	for (int64_t k = 0; k < K; k++)
		if (idx[k] < 0 || idx[k] >= E) {
			snprintf(why, len, "routing: slot %lld names expert %d, outside [0, %lld)", (long long)k, idx[k],
				 (long long)E);
			return -1;
		}
	if (gid == MOE_ORACLE_PAD_MASKED) {
		for (int64_t k = 0; k < K; k++)
			if (idx[k] != 0 || w[k] != 0.0f) {
				snprintf(why, len, "pad row: slot %lld is expert %d weight %.9g, expected expert 0 weight 0",
					 (long long)k, idx[k], (double)w[k]);
				return -1;
			}
		return 0;
	}
	if (p->routing.kind != MOE_ROUTE_ROUTER && gid >= 0) {
		int32_t ri[64];
		float rw[64];
		moe_route_synth(p, layer, (uint64_t)gid, ri, rw);
		if (p->routing.kind == MOE_ROUTE_TRACE)
			for (int64_t k = 0; k < K; k++)
				ri[k] = trace->ids[(gid % trace->ntokens) * trace->topk + k];
		for (int64_t k = 0; k < K; k++)
			if (ri[k] != idx[k] || rw[k] != w[k]) {
				snprintf(why, len, "routing: slot %lld is expert %d weight %.9g, expected expert %d weight %.9g",
					 (long long)k, idx[k], (double)w[k], ri[k], (double)rw[k]);
				return -1;
			}
		return 0;
	}
	/* router: a chosen expert must score within tolerance of the K-th best (near ties are fine),
	 * ids must be distinct, and weights must match the float64 ones for the chosen set */
	int32_t oi[64];
	double ow[64];
	double *sel = malloc((size_t)E * sizeof(double)), *prob = malloc((size_t)E * sizeof(double));
	route_scores(p, layer, x, prob, sel);
	route_topk(p, prob, sel, oi, ow);
	int rc = 0;
	double kth = sel[oi[K - 1]];
	const double tol = 1e-4;
	double sum = 0;
	for (int64_t k = 0; k < K && !rc; k++) {
		for (int64_t j = 0; j < k; j++)
			if (idx[j] == idx[k]) {
				snprintf(why, len, "routing: expert %d chosen twice (slots %lld and %lld)", idx[k], (long long)j,
					 (long long)k);
				rc = -1;
			}
		if (!rc && !(sel[idx[k]] >= kth - tol * (1 + fabs(kth)))) {
			snprintf(why, len, "routing: slot %lld chose expert %d (score %.9g) below the K-th best %.9g (expert %d)",
				 (long long)k, idx[k], sel[idx[k]], kth, oi[K - 1]);
			rc = -1;
		}
		sum += prob[idx[k]];
	}
	for (int64_t k = 0; k < K && !rc; k++) {
		double ref = (p->route_norm ? prob[idx[k]] / (sum + 1e-20) : prob[idx[k]]) * p->route_scale;
		if (!(fabs((double)w[k] - ref) <= 1e-3 * (fabs(ref) + 1e-6))) {
			snprintf(why, len, "routing: slot %lld weight %.9g, float64 reference %.9g", (long long)k, (double)w[k], ref);
			rc = -1;
		}
	}
	free(sel);
	free(prob);
	return rc;
}

/* Exact modes: mirror the fp32 arithmetic of the data path step by step. */
static float exact_expert(const struct moe_params *p, int64_t e, float u)
{
	float f = p->expert == MOE_EXPERT_SCALE ? (float)(e + 1) : 1.0f;
	return moe_bf16_to_f32(moe_f32_to_bf16(f * u));
}

/* acc after slot k in the data path's fp32 arithmetic */
static float exact_term(const struct moe_params *p, int32_t e, float wk, float xv, float acc)
{
	if (p->score_before_experts)
		return acc + exact_expert(p, e, moe_bf16_to_f32(moe_f32_to_bf16(wk * xv)));
	return fmaf(wk, exact_expert(p, e, xv), acc);
}

static void exact_row(const struct moe_params *p, int nranks, const moe_bf16 *x, const int32_t *idx, const float *w,
		      moe_bf16 *out)
{
	int64_t per = p->experts / (nranks > 0 ? nranks : 1);
	for (int64_t c = 0; c < p->hidden; c++) {
		float xv = moe_bf16_to_f32(x[c]);
		float base = p->shared_experts ? exact_expert(p, p->experts, xv) : 0.0f;
		if (p->strategy == MOE_STRAT_AGRS) {
			/* each rank sums its own slots in slot order from 0; the ranks' partials are then added in
			 * rank order, starting from rank 0's; the shared term is added last */
			float s = 0.0f;
			for (int r = 0; r < nranks; r++) {
				float acc = 0.0f;
				for (int64_t k = 0; k < p->topk; k++)
					if (idx[k] / per == r)
						acc = exact_term(p, idx[k], w[k], xv, acc);
				s = r == 0 ? acc : s + acc;
			}
			out[c] = moe_f32_to_bf16(p->shared_experts ? base + s : s);
			continue;
		}
		float acc = base;
		for (int64_t k = 0; k < p->topk; k++)
			acc = exact_term(p, idx[k], w[k], xv, acc);
		out[c] = moe_f32_to_bf16(acc);
	}
}

/* y[m x H] += scale_r * swiglu_e(u_r) in float64 for m rows u (m x H). */
static void swiglu_rows(const struct moe_params *p, uint32_t layer, int shared, int64_t e, int64_t m, const double *u,
			const double *rowscale, double *y)
{
	int64_t H = p->hidden, F = shared ? p->ffn * p->shared_experts : p->ffn;
	enum moe_tensor t1 = shared ? MOE_T_SW1 : MOE_T_W1, t3 = shared ? MOE_T_SW3 : MOE_T_W3,
			t2 = shared ? MOE_T_SW2 : MOE_T_W2;
	double *w1 = malloc((size_t)(F * H) * sizeof(double)), *w3 = malloc((size_t)(F * H) * sizeof(double));
	double *w2 = malloc((size_t)(H * F) * sizeof(double));
	double *a = malloc((size_t)(m * F) * sizeof(double)), *b = malloc((size_t)(m * F) * sizeof(double));
	uint64_t r1 = shared ? 0 : (uint64_t)(e * F), r2 = shared ? 0 : (uint64_t)(e * H);
	for (int64_t f = 0; f < F; f++)
		for (int64_t h = 0; h < H; h++) {
			w1[f * H + h] = gen(p, t1, layer, r1 + (uint64_t)f, (uint64_t)h);
			w3[f * H + h] = gen(p, t3, layer, r1 + (uint64_t)f, (uint64_t)h);
		}
	for (int64_t h = 0; h < H; h++)
		for (int64_t f = 0; f < F; f++)
			w2[h * F + f] = gen(p, t2, layer, r2 + (uint64_t)h, (uint64_t)f);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)F, (int)H, 1.0, u, (int)H, w1, (int)H, 0.0, a, (int)F);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)F, (int)H, 1.0, u, (int)H, w3, (int)H, 0.0, b, (int)F);
	for (int64_t r = 0; r < m; r++)
		for (int64_t f = 0; f < F; f++) {
			double g = a[r * F + f];
			a[r * F + f] = g / (1.0 + exp(-g)) * b[r * F + f] * (rowscale ? rowscale[r] : 1.0);
		}
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)H, (int)F, 1.0, a, (int)F, w2, (int)F, 1.0, y, (int)H);
	free(w1);
	free(w3);
	free(w2);
	free(a);
	free(b);
}

int moe_oracle_check(const struct moe_params *p, uint32_t layer, int64_t n, const moe_bf16 *x, const int64_t *gid,
		     const int32_t *idx, const float *w, const moe_bf16 *y, const int64_t *check, int64_t ncheck,
		     const struct moe_trace *trace, int nranks, struct moe_verdict *v)
{
	int64_t H = p->hidden, K = p->topk, E = p->experts;
	memset(v, 0, sizeof(*v));
	v->token = v->col = v->gid = -1;
	if (!check)
		ncheck = n;
	char why[256];
	/* routing first: an output built on wrong routing is reported as a routing error */
	for (int64_t j = 0; j < ncheck; j++) {
		int64_t i = check ? check[j] : j;
		if (check_routing(p, layer, x + i * H, gid[i], idx + i * K, w + i * K, trace, why, sizeof(why))) {
			v->mismatched++;
			if (!v->bad) {
				v->bad = 1;
				v->token = i;
				v->gid = gid[i];
				v->col = -1;
				snprintf(v->what, sizeof(v->what), "%s", why);
			}
		}
	}
	v->checked = ncheck;
	/* pad rows are inert: whatever the mode, a pad's output is zero */
	for (int64_t j = 0; j < ncheck && !v->bad; j++) {
		int64_t i = check ? check[j] : j;
		if (gid[i] >= 0)
			continue;
		for (int64_t c = 0; c < H; c++)
			if (moe_bf16_to_f32(y[i * H + c]) != 0.0f) {
				v->bad = 1;
				v->mismatched++;
				v->token = i;
				v->gid = gid[i];
				v->col = c;
				snprintf(v->what, sizeof(v->what), "pad row not inert: output %.6g, expected 0",
					 (double)moe_bf16_to_f32(y[i * H + c]));
				break;
			}
	}
	if (v->bad)
		return MOE_OK;
	if (p->expert != MOE_EXPERT_SWIGLU) {
		moe_bf16 *ref = malloc((size_t)H * sizeof(moe_bf16));
		for (int64_t j = 0; j < ncheck; j++) {
			int64_t i = check ? check[j] : j;
			exact_row(p, nranks, x + i * H, idx + i * K, w + i * K, ref);
			int first = -1;
			for (int64_t c = 0; c < H; c++) {
				uint16_t a = y[i * H + c], b = ref[c];
				if (a != b) {
					double d = fabs((double)moe_bf16_to_f32(a) - (double)moe_bf16_to_f32(b));
					if (d != d)
						d = INFINITY;
					if (d > v->max_err)
						v->max_err = d;
					if (first < 0)
						first = (int)c;
				}
			}
			if (first >= 0) {
				v->mismatched++;
				if (!v->bad) {
					v->bad = 1;
					v->token = i;
					v->gid = gid[i];
					v->col = first;
					snprintf(v->what, sizeof(v->what), "output: %.9g, expected exactly %.9g",
						 (double)moe_bf16_to_f32(y[i * H + first]), (double)moe_bf16_to_f32(ref[first]));
				}
			}
		}
		free(ref);
		return MOE_OK;
	}
	/* swiglu: float64 reference built expert by expert (each expert's weights generated once) */
	double *yref = calloc((size_t)(ncheck * H + 1), sizeof(double));
	double *u = malloc((size_t)(ncheck * H + 1) * sizeof(double));
	/* one expert can take up to K slots of a row (pad rows, traces with repeats) */
	double *us = malloc((size_t)(ncheck * K * H + 1) * sizeof(double));
	double *ys = malloc((size_t)(ncheck * K * H + 1) * sizeof(double));
	double *sc = malloc((size_t)(ncheck * K + 1) * sizeof(double));
	int64_t *who = malloc((size_t)(ncheck * K + 1) * sizeof(int64_t));
	if (!yref || !u || !us || !ys || !sc || !who) {
		free(yref); free(u); free(us); free(ys); free(sc); free(who);
		return MOE_ERR_NOMEM;
	}
	for (int64_t j = 0; j < ncheck; j++) {
		int64_t i = check ? check[j] : j;
		for (int64_t c = 0; c < H; c++)
			u[j * H + c] = (double)moe_bf16_to_f32(x[i * H + c]);
	}
	if (p->shared_experts)
		swiglu_rows(p, layer, 1, 0, ncheck, u, NULL, yref);
	for (int64_t e = 0; e < E; e++) {
		int64_t m = 0;
		for (int64_t j = 0; j < ncheck; j++) {
			int64_t i = check ? check[j] : j;
			for (int64_t k = 0; k < K; k++) {
				if (idx[i * K + k] != e)
					continue;
				double wk = (double)w[i * K + k];
				for (int64_t c = 0; c < H; c++)
					us[m * H + c] = p->score_before_experts ? wk * u[j * H + c] : u[j * H + c];
				sc[m] = p->score_before_experts ? 1.0 : wk;
				who[m++] = j;
			}
		}
		if (!m)
			continue;
		memset(ys, 0, (size_t)(m * H) * sizeof(double));
		swiglu_rows(p, layer, 0, e, m, us, sc, ys);
		for (int64_t r = 0; r < m; r++)
			for (int64_t c = 0; c < H; c++)
				yref[who[r] * H + c] += ys[r * H + c];
	}
	for (int64_t j = 0; j < ncheck; j++) {
		int64_t i = check ? check[j] : j;
		double num = 0, den = 0, worst = -1;
		int64_t wc = 0;
		for (int64_t c = 0; c < H; c++) {
			double d = (double)moe_bf16_to_f32(y[i * H + c]) - yref[j * H + c];
			if (d != d)
				d = INFINITY;
			num += d * d;
			den += yref[j * H + c] * yref[j * H + c];
			if (fabs(d) > worst) {
				worst = fabs(d);
				wc = c;
			}
		}
		double rel = sqrt(num) / (sqrt(den) + 1e-30);
		if (rel != rel)
			rel = INFINITY;
		if (rel > v->max_err)
			v->max_err = rel;
		if (rel > p->tolerance) {
			v->mismatched++;
			if (!v->bad) {
				v->bad = 1;
				v->token = i;
				v->gid = gid[i];
				v->col = wc;
				snprintf(v->what, sizeof(v->what),
					 "output: relative error %.3g > tolerance %.3g; column %lld is %.6g, float64 reference %.6g",
					 rel, p->tolerance, (long long)wc, (double)moe_bf16_to_f32(y[i * H + wc]), yref[j * H + wc]);
			}
		}
	}
	free(yref); free(u); free(us); free(ys); free(sc); free(who);
	return MOE_OK;
}
