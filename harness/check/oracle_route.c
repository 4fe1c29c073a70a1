/* The oracle's routing reference: its own generator, bias, synthetic routing and router with error bounds. */
#include "oracle_int.h"

#include <cblas.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

int orc_ncpu(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	return 1;
}

double orc_scale(const struct moe_params *p, enum moe_tensor t)
{
	switch (t) {
	case MOE_T_GATE:
	case MOE_T_W1:
	case MOE_T_W3:
	case MOE_T_SW1:
	case MOE_T_SW3: return 1.0 / sqrt((double)p->hidden);
	case MOE_T_W2:
	case MOE_T_SW2: return 1.0 / sqrt((double)p->ffn);
	default: return 1.0;
	}
}

/* The columns of one row, written so the compiler vectorises them: the u64 -> double conversion goes through
 * the exponent trick (exact: z >> 12 has 52 bits, the dropped bit is added back exactly) and the bf16 rounding
 * is moe_f32_to_bf16's select without a branch; the bits are the same as moe_rng_unit's. Cloned per ISA
 * because the binary is built on one machine and run on another. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ORC_VECTOR \
	__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("tree-vectorize")))
#else
#define ORC_VECTOR
#endif
ORC_VECTOR static void gen_cols(uint64_t h, double s, int64_t cols, double *restrict out)
{
	for (int64_t c = 0; c < cols; c++) {
		uint64_t z = moe_mix64(h ^ ((uint64_t)c * 0x9e3779b97f4a7c15ull)), b = (z >> 12) | 0x4330000000000000ull;
		double d;
		memcpy(&d, &b, sizeof(d));
		double u = ((d - 0x1p52) * 2.0 + (double)(int32_t)((z >> 11) & 1)) * 0x1.0p-53;
		float f = (float)((2.0 * u - 1.0) * s);
		uint32_t v;
		memcpy(&v, &f, sizeof(v));
		uint32_t nan = (v & 0x7f800000u) == 0x7f800000u && (v & 0x007fffffu);
		uint32_t r = nan ? (v | 0x400000u) & 0xffff0000u : (v + 0x7fffu + ((v >> 16) & 1u)) & 0xffff0000u;
		memcpy(&f, &r, sizeof(f));
		out[c] = (double)f;
	}
}

void orc_gen_row(const struct moe_params *p, enum moe_tensor t, uint32_t layer, uint64_t row, int64_t cols,
		 double *out)
{
	/* moe_rng_u64 mixes seed, (tensor, layer) and row before the column: done once per row here */
	uint64_t h = moe_mix64((uint64_t)p->seed + 0x9e3779b97f4a7c15ull);
	h = moe_mix64(h ^ ((uint64_t)t << 32 | layer));
	h = moe_mix64(h ^ row);
	gen_cols(h, orc_scale(p, t), cols, out);
}

double orc_bias(const struct moe_params *p, uint32_t layer, int64_t e)
{
	if (!p->route_bias)
		return 0.0;
	return (double)(float)(0.1 * (2.0 * moe_rng_unit((uint64_t)p->seed, MOE_T_BIAS, layer, (uint64_t)e, 0) - 1.0));
}

/* Expert of one draw: uniform over ids; zipf:S by inverse CDF over ranks 1..E; hot:F sends slot 0 of a
 * fraction F of the tokens to expert 0. */
static int32_t synth_draw(const struct moe_params *p, int64_t k, double u, double u2)
{
	int64_t E = p->experts;
	if (p->routing.kind == MOE_ROUTE_ZIPF) {
		double total = 0, acc = 0;
		for (int64_t e = 1; e <= E; e++)
			total += pow((double)e, -p->routing.arg);
		for (int64_t e = 1; e <= E; e++) {
			acc += pow((double)e, -p->routing.arg);
			if (u * total < acc)
				return (int32_t)(e - 1);
		}
		return (int32_t)(E - 1);
	}
	if (p->routing.kind == MOE_ROUTE_HOT && k == 0 && u2 < p->routing.arg)
		return 0;
	return (int32_t)(u * (double)E);
}

static int used(const int32_t *idx, int64_t k, int32_t e)
{
	for (int64_t j = 0; j < k; j++)
		if (idx[j] == e)
			return 1;
	return 0;
}

void orc_synth(const struct moe_params *p, uint32_t layer, uint64_t g, const struct moe_trace *trace, int32_t *idx,
	       float *w)
{
	int64_t K = p->topk, E = p->experts;
	uint64_t seed = (uint64_t)p->seed;
	if (p->routing.kind == MOE_ROUTE_TRACE) {
		for (int64_t k = 0; k < K; k++)
			idx[k] = trace->ids[(int64_t)(g % (uint64_t)trace->ntokens) * trace->topk + k];
	} else if (p->routing.kind == MOE_ROUTE_BALANCED) {
		for (int64_t k = 0; k < K; k++)
			idx[k] = (int32_t)((g * (uint64_t)K + (uint64_t)k) % (uint64_t)E);
	} else {
		/* draw c of token g is (ROUTE, g, c); its hot coin is (ROUTE, g, 1e6 + c + 1); a repeat is redrawn,
		 * and after 64K draws the lowest unused id is taken */
		uint64_t c = 0;
		for (int64_t k = 0; k < K; k++)
			for (;;) {
				double u = moe_rng_unit(seed, MOE_T_ROUTE, layer, g, c);
				double u2 = moe_rng_unit(seed, MOE_T_ROUTE, layer, g, 1000000 + c + 1);
				c++;
				int32_t e = synth_draw(p, k, u, u2);
				if (!used(idx, k, e)) {
					idx[k] = e;
					break;
				}
				if (c > 64 * (uint64_t)K) {
					for (e = 0; used(idx, k, e); e++)
						;
					idx[k] = e;
					break;
				}
			}
	}
	/* weights: 0.05 + u per slot in fp32, summed in slot order, normalised and scaled in fp32 */
	float sum = 0;
	for (int64_t k = 0; k < K; k++)
		sum += (w[k] = (float)(0.05 + moe_rng_unit(seed, MOE_T_ROUTE, layer, g, 2000000 + (uint64_t)k)));
	for (int64_t k = 0; k < K; k++)
		w[k] = (p->route_norm ? w[k] / (sum + 1e-20f) : w[k]) * (float)p->route_scale;
}

int orc_logits(const struct moe_params *p, uint32_t layer, int64_t n, const double *x, double *z, double *dz)
{
	int64_t E = p->experts, H = p->hidden;
	double *wg = malloc((size_t)(E * H + 1) * sizeof(double)), *ax = malloc((size_t)(n * H + 1) * sizeof(double));
	if (!wg || !ax) {
		free(wg);
		free(ax);
		return MOE_ERR_NOMEM;
	}
	for (int64_t e = 0; e < E; e++)
		orc_gen_row(p, MOE_T_GATE, layer, (uint64_t)e, H, wg + e * H);
	if (n > 0)
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)E, (int)H, 1.0, x, (int)H, wg, (int)H, 0.0,
			    z, (int)E);
	for (int64_t i = 0; i < n * H; i++)
		ax[i] = fabs(x[i]);
	for (int64_t i = 0; i < E * H; i++)
		wg[i] = fabs(wg[i]);
	/* an fp32 dot product of H exact bf16 products, summed in any order: |error| <= (H-1) u sum|x||w|;
	 * H + 2 leaves room for a kernel that rounds its products too */
	if (n > 0)
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)E, (int)H, (double)(H + 2) * ORC_U32, ax,
			    (int)H, wg, (int)H, 0.0, dz, (int)E);
	free(wg);
	free(ax);
	return MOE_OK;
}
