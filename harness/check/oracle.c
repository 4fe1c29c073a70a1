/* The float64 CPU oracle. Written from DESIGN.md §2-4 alone: it shares no code with kernels/ or strategies,
 * only the counter RNG and the bf16 conversions (the specification); docs/VERIFICATION.md says how it checks. */
#include "oracle.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oracle_int.h"

struct moe_oracle {
	struct moe_params p;
	const struct moe_trace *trace;
	int64_t d, T, g0, total; /* DP group, its tokens, its first global id, tokens of all groups */
	int64_t s0, n, nreal;    /* the slice: first padded row, rows, real rows */
	uint32_t next;           /* the layer expected next */
	moe_bf16 *xin;           /* n x H: the input each row must have at layer `next` */
};

struct moe_oracle *moe_oracle_open(const struct moe_params *p, const int64_t *tokens, int rank,
				   const struct moe_trace *trace)
{
	struct moe_oracle *o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->p = *p;
	o->trace = trace;
	int64_t tp = p->tp > 0 ? p->tp : 1, t = rank % tp;
	o->d = rank / tp;
	for (int64_t q = 0; q < p->dp; q++) {
		o->g0 += q < o->d ? tokens[q] : 0;
		o->total += tokens[q];
	}
	o->T = tokens[o->d];
	/* DESIGN §3: replicate holds all T rows, leader only on TP rank 0; sp pads to a multiple of tp and takes
	 * rows [tL, (t+1)L) of the padded group */
	if (p->partition == MOE_PART_SP) {
		int64_t pad = (tp - o->T % tp) % tp, L = (o->T + pad) / tp;
		o->s0 = t * L;
		o->n = L;
		o->nreal = o->T - o->s0 < 0 ? 0 : o->T - o->s0 < L ? o->T - o->s0 : L;
	} else {
		o->n = o->nreal = p->partition == MOE_PART_LEADER && t != 0 ? 0 : o->T;
	}
	int64_t H = p->hidden;
	o->xin = calloc((size_t)(o->n * H + 1), sizeof(moe_bf16));
	if (!o->xin) {
		free(o);
		return NULL;
	}
	double *row = malloc((size_t)H * sizeof(double));
	for (int64_t i = 0; row && i < o->nreal; i++) {
		orc_gen_row(p, MOE_T_X, 0, (uint64_t)(o->g0 + o->s0 + i), H, row);
		for (int64_t c = 0; c < H; c++)
			o->xin[i * H + c] = moe_f32_to_bf16((float)row[c]);
	}
	if (!row) {
		moe_oracle_close(o);
		return NULL;
	}
	free(row);
	return o; /* pad rows stay zero: they are zero tokens in every pad mode, at every layer */
}

void moe_oracle_close(struct moe_oracle *o)
{
	if (o)
		free(o->xin);
	free(o);
}

int64_t moe_oracle_rows(const struct moe_oracle *o) { return o->n; }

int64_t moe_oracle_gid(const struct moe_oracle *o, int64_t i)
{
	if (i < o->nreal)
		return o->g0 + o->s0 + i;
	return o->p.pad == MOE_PAD_ZERO_TOKEN ? -2 : -1;
}

/* The id a row's synthetic route is drawn from: a zero-token pad draws as a token past every real one. */
static int64_t route_id(const struct moe_oracle *o, int64_t i)
{
	if (i < o->nreal)
		return o->g0 + o->s0 + i;
	return o->total + o->d * o->p.tp + (o->s0 + i - o->T);
}

static void fail(struct moe_verdict *v, const struct moe_oracle *o, int64_t i, int64_t col, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void fail(struct moe_verdict *v, const struct moe_oracle *o, int64_t i, int64_t col, const char *fmt, ...)
{
	v->mismatched++;
	if (v->bad)
		return;
	v->bad = 1;
	v->token = i;
	v->gid = i >= 0 && i < o->nreal ? moe_oracle_gid(o, i) : -1;
	v->col = col;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->what, sizeof(v->what), fmt, ap);
	va_end(ap);
}

/* The rank's input must be the row the oracle rebuilt, bit for bit: a wrong token, a stale buffer or a
 * wrong id shows here before anything is computed from it. */
static void check_inputs(const struct moe_oracle *o, uint32_t layer, const moe_bf16 *x, const int64_t *rows,
			 int64_t nr, struct moe_verdict *v)
{
	int64_t H = o->p.hidden;
	for (int64_t j = 0; j < nr; j++) {
		int64_t i = rows[j];
		for (int64_t c = 0; c < H; c++)
			if (x[i * H + c] != o->xin[i * H + c]) {
				fail(v, o, i, c, "input: %.9g, expected %.9g (%s)", (double)moe_bf16_to_f32(x[i * H + c]),
				     (double)moe_bf16_to_f32(o->xin[i * H + c]),
				     i >= o->nreal ? "a pad row is a zero token"
				     : layer == 0  ? "the generator's token"
						   : "the previous layer's input plus its verified output");
				break;
			}
	}
}

static double *widen_rows(const moe_bf16 *x, int64_t H, const int64_t *rows, int64_t nr)
{
	double *u = malloc((size_t)(nr * H + 1) * sizeof(double));
	for (int64_t j = 0; u && j < nr; j++)
		for (int64_t c = 0; c < H; c++)
			u[j * H + c] = (double)moe_bf16_to_f32(x[rows[j] * H + c]);
	return u;
}

/* Routing of every listed row: ids in range and distinct; pads and synthetic routes exactly as the
 * specification draws them; router routes within the bounds of the rank's fp32 arithmetic. */
static int check_routing(const struct moe_oracle *o, uint32_t layer, const moe_bf16 *x, const int32_t *idx,
			 const float *w, const int64_t *rows, int64_t nr, struct moe_verdict *v)
{
	const struct moe_params *p = &o->p;
	int64_t K = p->topk, E = p->experts, H = p->hidden;
	int router = p->routing.kind == MOE_ROUTE_ROUTER;
	double *u = router ? widen_rows(x, H, rows, nr) : NULL;
	double *z = router ? malloc((size_t)(nr * E + 1) * sizeof(double)) : NULL;
	double *dz = router ? malloc((size_t)(nr * E + 1) * sizeof(double)) : NULL;
	if (router && (!u || !z || !dz || orc_logits(p, layer, nr, u, z, dz) != MOE_OK)) {
		free(u), free(z), free(dz);
		return MOE_ERR_NOMEM;
	}
	char why[256];
	for (int64_t j = 0; j < nr; j++) {
		int64_t i = rows[j];
		const int32_t *ri = idx + i * K;
		const float *rw = w + i * K;
		int64_t k = 0;
		while (k < K && ri[k] >= 0 && ri[k] < E)
			k++;
		if (k < K) {
			fail(v, o, i, -1, "routing: slot %lld names expert %d, outside [0, %lld)", (long long)k, ri[k],
			     (long long)E);
			continue;
		}
		if (i >= o->nreal && p->pad != MOE_PAD_ZERO_TOKEN) {
			for (k = 0; k < K && ri[k] == 0 && rw[k] == 0.0f; k++)
				;
			if (k < K)
				fail(v, o, i, -1, "pad row: slot %lld is expert %d weight %.9g, expected expert 0 weight 0",
				     (long long)k, ri[k], (double)rw[k]);
			continue;
		}
		if (!router) {
			int32_t si[64];
			float sw[64];
			orc_synth(p, layer, (uint64_t)route_id(o, i), o->trace, si, sw);
			for (k = 0; k < K && si[k] == ri[k] && sw[k] == rw[k]; k++)
				;
			if (k < K)
				fail(v, o, i, -1, "routing: slot %lld is expert %d weight %.9g, expected expert %d weight %.9g",
				     (long long)k, ri[k], (double)rw[k], si[k], (double)sw[k]);
			continue;
		}
		int dup = 0;
		for (k = 1; k < K && !dup; k++)
			for (int64_t q = 0; q < k; q++)
				dup |= ri[q] == ri[k];
		if (dup) {
			fail(v, o, i, -1, "routing: an expert is chosen twice (slot %lld)", (long long)(k - 1));
			continue;
		}
		/* a zero row has logits exactly 0 in any arithmetic: its scores are known bit for bit */
		int exact = 1;
		for (int64_t c = 0; c < H && exact; c++)
			exact = u[j * H + c] == 0;
		if (orc_check_router(p, layer, z + j * E, dz + j * E, exact, ri, rw, NULL, NULL, why, sizeof(why)))
			fail(v, o, i, -1, "%s", why);
	}
	free(u), free(z), free(dz);
	return MOE_OK;
}

/* Exact modes: f_e(u) = (e+1)u or u, rounded to bf16; the combine's fp32 fma in slot order (DESIGN §2). */
static float exact_expert(const struct moe_params *p, int64_t e, float u)
{
	float f = p->expert == MOE_EXPERT_SCALE ? (float)(e + 1) : 1.0f;
	return moe_bf16_to_f32(moe_f32_to_bf16(f * u));
}

static float exact_term(const struct moe_params *p, int32_t e, float wk, float xv, float acc)
{
	if (p->score_before_experts)
		return acc + exact_expert(p, e, moe_bf16_to_f32(moe_f32_to_bf16(wk * xv)));
	return fmaf(wk, exact_expert(p, e, xv), acc);
}

static moe_bf16 exact_col(const struct moe_params *p, const int32_t *idx, const float *w, float xv)
{
	float base = p->shared_experts ? exact_expert(p, p->experts, xv) : 0.0f;
	if (p->strategy != MOE_STRAT_AGRS) {
		float acc = base;
		for (int64_t k = 0; k < p->topk; k++)
			acc = exact_term(p, idx[k], w[k], xv, acc);
		return moe_f32_to_bf16(acc);
	}
	/* agrs: each rank sums its own slots in slot order from 0, the partials are added in rank order from
	 * rank 0's, the shared term last (DESIGN §3) */
	int64_t nr = p->dp * p->tp, per = p->experts / (nr > 0 ? nr : 1);
	float s = 0.0f;
	for (int64_t r = 0; r < nr; r++) {
		float acc = 0.0f;
		for (int64_t k = 0; k < p->topk; k++)
			if (idx[k] / per == r)
				acc = exact_term(p, idx[k], w[k], xv, acc);
		s = r == 0 ? acc : s + acc;
	}
	return moe_f32_to_bf16(p->shared_experts ? base + s : s);
}

static void check_exact(const struct moe_oracle *o, const moe_bf16 *x, const int32_t *idx, const float *w,
			const moe_bf16 *y, const int64_t *rows, int64_t nr, struct moe_verdict *v)
{
	const struct moe_params *p = &o->p;
	int64_t H = p->hidden, K = p->topk;
	for (int64_t j = 0; j < nr; j++) {
		int64_t i = rows[j], first = -1;
		moe_bf16 want = 0;
		for (int64_t c = 0; c < H; c++) {
			moe_bf16 ref = exact_col(p, idx + i * K, w + i * K, moe_bf16_to_f32(x[i * H + c]));
			if (y[i * H + c] == ref)
				continue;
			double d = fabs((double)moe_bf16_to_f32(y[i * H + c]) - (double)moe_bf16_to_f32(ref));
			v->max_err = d != d ? INFINITY : d > v->max_err ? d : v->max_err;
			if (first < 0) {
				first = c;
				want = ref;
			}
		}
		if (first >= 0)
			fail(v, o, i, first, "output: %.9g, expected exactly %.9g", (double)moe_bf16_to_f32(y[i * H + first]),
			     (double)moe_bf16_to_f32(want));
	}
}

/* swiglu: float64 reference expert by expert; each element within its own bound (docs/VERIFICATION.md §3). */
static int check_swiglu(const struct moe_oracle *o, uint32_t layer, const moe_bf16 *x, const int32_t *idx,
			const float *w, const moe_bf16 *y, const int64_t *rows, int64_t nr, struct moe_verdict *v)
{
	const struct moe_params *p = &o->p;
	int64_t H = p->hidden, K = p->topk;
	double *u = widen_rows(x, H, rows, nr), *yref = malloc((size_t)(nr * H + 1) * sizeof(double));
	double *yb = malloc((size_t)(nr * H + 1) * sizeof(double));
	int32_t *ri = malloc((size_t)(nr * K + 1) * sizeof(int32_t));
	float *rw = malloc((size_t)(nr * K + 1) * sizeof(float));
	int rc = u && yref && yb && ri && rw ? MOE_OK : MOE_ERR_NOMEM;
	for (int64_t j = 0; rc == MOE_OK && j < nr; j++) {
		memcpy(ri + j * K, idx + rows[j] * K, (size_t)K * sizeof(int32_t));
		memcpy(rw + j * K, w + rows[j] * K, (size_t)K * sizeof(float));
	}
	if (rc == MOE_OK)
		rc = orc_experts(p, layer, nr, u, ri, rw, yref, yb);
	double mult = p->tolerance > 0 ? p->tolerance : 1.0;
	for (int64_t j = 0; rc == MOE_OK && j < nr; j++) {
		int64_t i = rows[j];
		for (int64_t c = 0; c < H; c++) {
			double ref = yref[j * H + c], got = (double)moe_bf16_to_f32(y[i * H + c]);
			/* the sum's own bound, then one rounding to bf16; 2^-126: where a kernel may flush to zero */
			double b = mult * (yb[j * H + c] + ORC_UBF * (fabs(ref) + yb[j * H + c])) + 0x1p-126;
			double r = fabs(got - ref) / b;
			if (r != r)
				r = INFINITY;
			v->max_err = r > v->max_err ? r : v->max_err;
			if (r > 1) {
				fail(v, o, i, c, "output: %.9g, float64 reference %.9g, error %.3g over its bound %.3g", got, ref,
				     fabs(got - ref), b);
				break;
			}
		}
	}
	free(u), free(yref), free(yb), free(ri), free(rw);
	return rc;
}

int moe_oracle_check(struct moe_oracle *o, uint32_t layer, int64_t n, const moe_bf16 *x, const int32_t *idx,
		     const float *w, const moe_bf16 *y, const int64_t *check, int64_t ncheck, struct moe_verdict *v)
{
	const struct moe_params *p = &o->p;
	int64_t H = p->hidden;
	memset(v, 0, sizeof(*v));
	v->token = v->col = v->gid = -1;
	if (layer != o->next)
		return MOE_ERR_USAGE; /* the inputs of layer l are rebuilt from layer l - 1's verified outputs */
	if (n != o->n) {
		fail(v, o, -1, -1, "rows: the rank reports %lld rows, its slice of the layout has %lld", (long long)n,
		     (long long)o->n);
		return MOE_OK;
	}
	int64_t *rows = calloc((size_t)(n + 1), sizeof(int64_t)), nr = check ? ncheck : n;
	if (!rows)
		return MOE_ERR_NOMEM;
	for (int64_t j = 0; j < nr; j++)
		rows[j] = check ? check[j] : j;
	v->checked = nr;
	int rc = MOE_OK;
	/* MOEBENCH_ORACLE_TIMES=1: where a check's time goes (stderr), for tuning the oracle on a new host */
	double t0 = moe_now_us(), t1, t2;
	check_inputs(o, layer, x, rows, nr, v);
	t1 = moe_now_us();
	if (!v->bad)
		rc = check_routing(o, layer, x, idx, w, rows, nr, v);
	t2 = moe_now_us();
	/* pad rows are zero tokens: whatever the mode, their output is zero */
	for (int64_t j = 0; rc == MOE_OK && !v->bad && j < nr; j++)
		for (int64_t c = 0; rows[j] >= o->nreal && c < H; c++)
			if (moe_bf16_to_f32(y[rows[j] * H + c]) != 0.0f) {
				fail(v, o, rows[j], c, "pad row not inert: output %.6g, expected 0",
				     (double)moe_bf16_to_f32(y[rows[j] * H + c]));
				break;
			}
	if (rc == MOE_OK && !v->bad) {
		if (p->expert != MOE_EXPERT_SWIGLU)
			check_exact(o, x, idx, w, y, rows, nr, v);
		else
			rc = check_swiglu(o, layer, x, idx, w, y, rows, nr, v);
	}
	if (getenv("MOEBENCH_ORACLE_TIMES"))
		fprintf(stderr, "oracle: layer %u, %lld rows: inputs %.3f s, routing %.3f s, outputs %.3f s\n", layer,
			(long long)nr, (t1 - t0) * 1e-6, (t2 - t1) * 1e-6, (moe_now_us() - t2) * 1e-6);
	if (rc == MOE_OK && !v->bad) {
		/* the next layer's input: x + y, rounded once (DESIGN §2), for the rows checked here */
		for (int64_t j = 0; j < nr; j++)
			for (int64_t c = 0; rows[j] < o->nreal && c < H; c++) {
				size_t at = (size_t)(rows[j] * H + c);
				o->xin[at] = moe_f32_to_bf16(moe_bf16_to_f32(o->xin[at]) + moe_bf16_to_f32(y[at]));
			}
		o->next = layer + 1;
	}
	free(rows);
	return rc;
}

int moe_oracle_reference(const struct moe_params *p, uint32_t layer, int64_t n, const moe_bf16 *x,
			 const int32_t *idx, const float *w, double *wref, double *wbound, double *yref, double *ybound)
{
	int64_t H = p->hidden, E = p->experts, K = p->topk;
	double *u = malloc((size_t)(n * H + 1) * sizeof(double)), *z = malloc((size_t)(n * E + 1) * sizeof(double));
	double *dz = malloc((size_t)(n * E + 1) * sizeof(double));
	int rc = u && z && dz ? MOE_OK : MOE_ERR_NOMEM;
	for (int64_t i = 0; rc == MOE_OK && i < n * H; i++)
		u[i] = (double)moe_bf16_to_f32(x[i]);
	if (rc == MOE_OK && wref)
		rc = orc_logits(p, layer, n, u, z, dz);
	char why[256];
	for (int64_t i = 0; rc == MOE_OK && wref && i < n; i++) {
		int exact = 1;
		for (int64_t c = 0; c < H && exact; c++)
			exact = u[i * H + c] == 0;
		/* a routing the check refuses still gets its reference and bounds */
		orc_check_router(p, layer, z + i * E, dz + i * E, exact, idx + i * K, w + i * K, wref + i * K,
				 wbound ? wbound + i * K : NULL, why, sizeof(why));
	}
	if (rc == MOE_OK && yref) {
		double *yb = ybound ? ybound : malloc((size_t)(n * H + 1) * sizeof(double));
		rc = yb ? orc_experts(p, layer, n, u, idx, w, yref, yb) : MOE_ERR_NOMEM;
		double mult = p->tolerance > 0 ? p->tolerance : 1.0;
		for (int64_t i = 0; rc == MOE_OK && ybound && i < n * H; i++)
			ybound[i] = mult * (yb[i] + ORC_UBF * (fabs(yref[i]) + yb[i])) + 0x1p-126;
		if (yb != ybound)
			free(yb);
	}
	free(u), free(z), free(dz);
	return rc;
}
