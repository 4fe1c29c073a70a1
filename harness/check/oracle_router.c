/* The oracle's router check: scores with error bounds (docs/VERIFICATION.md §2), exact ties, group limit. */
#include "oracle_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct score {
	double p, rel;  /* reference probability and the relative bound of the rank's fp32 one */
	double s, a;    /* selection score p + bias and its absolute bound (0: known exactly) */
};

/* Scores of one row from its float64 logits z and their bounds dz; exact: the logits are exactly 0
 * (a zero input), so the rank's fp32 scores are known bit for bit. */
static void scores(const struct moe_params *p, uint32_t layer, const double *z, const double *dz, int exact,
		   double mult, struct score *sc)
{
	int64_t E = p->experts;
	int sig = p->score == MOE_SCORE_SIGMOID;
	double mx = z[0], dmax = 0, sum = 0;
	for (int64_t e = 0; e < E; e++) {
		mx = z[e] > mx ? z[e] : mx;
		dmax = dz[e] * mult > dmax ? dz[e] * mult : dmax;
	}
	for (int64_t e = 0; e < E && !sig; e++)
		sum += exp(z[e] - mx);
	for (int64_t e = 0; e < E; e++) {
		double b = orc_bias(p, layer, e), d = dz[e] * mult;
		if (exact) {
			/* softmax of equal logits: expf(0) = 1, a sum of E ones, 1/E rounded once; sigmoid(0) = 1/2 */
			float pf = sig ? 0.5f : 1.0f / (float)E;
			sc[e] = (struct score){pf, 0, (double)(pf + (float)b), 0};
			continue;
		}
		double pe, rel;
		if (sig) {
			/* d ln(sigmoid)/dz = 1 - p <= 1; expf (2 ulp), add and divide round */
			pe = 1.0 / (1.0 + exp(-z[e]));
			rel = expm1(d) + 12 * ORC_U32 * mult;
		} else {
			/* ln p_e moves by at most d_e + max d; the fp32 subtraction of the max, expf, a sum of E terms
			 * and the division add rounding, relative */
			pe = exp(z[e] - mx) / sum;
			rel = expm1(d + dmax + mult * ORC_U32 * (2 * fabs(z[e] - mx) + (double)E + 12));
		}
		/* 2^-126: the smallest normal fp32, below which a score may flush to zero */
		double a = pe * rel + 0x1p-126 + ORC_U32 * (pe + fabs(b));
		sc[e] = (struct score){pe, rel, pe + b, a};
	}
}

/* Is e certainly ahead of f whatever the rank's rounding? Exactly known equal scores go to the lower id. */
static int ahead(double se, double ae, int64_t e, double sf, double af, int64_t f)
{
	if (ae == 0 && af == 0)
		return se > sf || (se == sf && e < f);
	return se - ae > sf + af;
}

/* Group limit: which groups are possibly kept (the rank may keep them) and certainly kept. */
static void groups(const struct moe_params *p, const struct score *sc, char *maybe, char *sure)
{
	int64_t G = p->groups, per = p->experts / G;
	double *gs = malloc((size_t)G * 2 * sizeof(double)), *ga = gs + G;
	for (int64_t g = 0; g < G; g++) {
		double a = -INFINITY, b = -INFINITY, worst = 0;
		for (int64_t e = g * per; e < (g + 1) * per; e++) {
			if (sc[e].s > a) {
				b = a;
				a = sc[e].s;
			} else if (sc[e].s > b)
				b = sc[e].s;
			worst = sc[e].a > worst ? sc[e].a : worst;
		}
		gs[g] = a + b;
		/* the top two of perturbed scores sum to within twice the largest perturbation, then one fp32 add */
		ga[g] = worst > 0 ? 2 * worst + ORC_U32 * fabs(a + b) : 0;
	}
	for (int64_t g = 0; g < G; g++) {
		int64_t beaten = 0, maybe_beaten = 0;
		for (int64_t h = 0; h < G; h++) {
			if (h == g)
				continue;
			beaten += ahead(gs[h], ga[h], h, gs[g], ga[g], g);
			maybe_beaten += !ahead(gs[g], ga[g], g, gs[h], ga[h], h);
		}
		maybe[g] = beaten < p->topk_groups;
		sure[g] = maybe_beaten < p->topk_groups;
	}
	free(gs);
}

/* Slot k's expert c must not be beaten for certain by any expert still free in a surely kept group. */
static int check_order(const struct moe_params *p, const struct score *sc, const char *maybe, const char *sure,
		       const int32_t *idx, char *why, size_t len)
{
	int64_t E = p->experts, K = p->topk, per = p->groups > 1 ? E / p->groups : E;
	for (int64_t k = 0; k < K; k++) {
		int32_t c = idx[k];
		if (!maybe[c / per]) {
			snprintf(why, len, "routing: slot %lld chose expert %d of group %lld, which the group limit drops",
				 (long long)k, c, (long long)(c / per));
			return -1;
		}
		for (int64_t e = 0; e < E; e++) {
			int taken = 0;
			for (int64_t j = 0; j <= k; j++)
				taken |= idx[j] == e;
			if (taken || !sure[e / per] || !ahead(sc[e].s, sc[e].a, e, sc[c].s, sc[c].a, c))
				continue;
			snprintf(why, len,
				 "routing: slot %lld chose expert %d (score %.9g +- %.3g) but expert %lld is ahead (%.9g +- %.3g)%s",
				 (long long)k, c, sc[c].s, sc[c].a, (long long)e, sc[e].s, sc[e].a,
				 sc[e].s == sc[c].s ? ": equal scores go to the lower id" : "");
			return -1;
		}
	}
	return 0;
}

int orc_check_router(const struct moe_params *p, uint32_t layer, const double *z, const double *dz, int exact,
		     const int32_t *idx, const float *w, double *wref, double *wbound, char *why, size_t len)
{
	int64_t E = p->experts, K = p->topk, G = p->groups > 1 ? p->groups : 1;
	double mult = p->tolerance > 0 ? p->tolerance : 1.0;
	struct score *sc = malloc((size_t)E * sizeof(*sc));
	char *maybe = malloc((size_t)G * 2), *sure = maybe + G;
	if (!sc || !maybe) {
		free(sc);
		free(maybe);
		snprintf(why, len, "oracle: out of memory");
		return -1;
	}
	scores(p, layer, z, dz, exact, mult, sc);
	memset(maybe, 1, (size_t)G * 2);
	if (G > 1)
		groups(p, sc, maybe, sure);
	int rc = check_order(p, sc, maybe, sure, idx, why, len);
	/* weights of the rank's own choice: w = p_c [/ (sum p + 1e-20)] * route_scale */
	double sum = 0, rs = 0;
	for (int64_t k = 0; k < K; k++) {
		sum += sc[idx[k]].p;
		rs = sc[idx[k]].rel > rs ? sc[idx[k]].rel : rs;
	}
	for (int64_t k = 0; k < K; k++) {
		const struct score *s = &sc[idx[k]];
		double ref = (p->route_norm ? s->p / (sum + 1e-20) : s->p) * p->route_scale;
		/* fp32 rounding of the sum (K terms), the division and the scaling, on top of the scores' own */
		double round = mult * ORC_U32 * (double)(K + 6) * fabs(ref) + 0x1p-126;
		double b = p->route_norm ? fabs(ref) * (s->rel + rs) * 1.01 + round
					 : s->a * fabs(p->route_scale) + round;
		if (wref)
			wref[k] = ref;
		if (wbound)
			wbound[k] = b;
		if (!rc && !(fabs((double)w[k] - ref) <= b)) {
			snprintf(why, len, "routing: slot %lld (expert %d) weight %.9g, float64 reference %.9g, bound %.3g",
				 (long long)k, idx[k], (double)w[k], ref, b);
			rc = -1;
		}
	}
	free(sc);
	free(maybe);
	return rc;
}
