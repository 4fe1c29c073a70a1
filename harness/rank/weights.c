/* Weights on the backend: generated from the counter RNG and uploaded. The router and shared experts are
 * replicated on every rank; the default expert placement is DP-to-EP (rank r holds [r*E/ep, (r+1)*E/ep)). */
#include <stdlib.h>

#include "moe.h"
#include "strategy.h"
#include "workload.h"

int moe_weights_upload(struct moe_ctx *ctx, enum moe_tensor t, uint32_t layer, uint64_t row0, int64_t rows,
		       int64_t cols, void *d_dst)
{
	size_t bytes = (size_t)(rows * cols) * sizeof(moe_bf16);
	if (ctx->be->generate) /* the same elements, made where they are used */
		return ctx->be->generate(ctx->dev, (uint64_t)ctx->p->seed, t, layer, row0, rows, cols,
					 moe_tensor_scale(ctx->p, t), d_dst);
	moe_bf16 *h = malloc(bytes ? bytes : 1);
	if (!h)
		return MOE_ERR_NOMEM;
	moe_gen_block(ctx->p, t, layer, row0, rows, cols, h);
	int rc = ctx->be->h2d(ctx->dev, d_dst, h, bytes);
	free(h);
	return rc;
}

static int upload_new(struct moe_ctx *ctx, enum moe_tensor t, uint32_t layer, uint64_t row0, int64_t rows,
		      int64_t cols, moe_bf16 **out)
{
	*out = ctx->be->alloc(ctx->dev, (size_t)(rows * cols) * sizeof(moe_bf16));
	if (!*out)
		return MOE_ERR_NOMEM;
	return moe_weights_upload(ctx, t, layer, row0, rows, cols, *out);
}

int moe_weights_replicated(struct moe_ctx *ctx, int64_t l, struct moe_layer_weights *lw)
{
	const struct moe_params *p = ctx->p;
	int64_t E = p->experts, H = p->hidden, F = p->ffn;
	uint32_t L = (uint32_t)l;
	MOE_CHECK(upload_new(ctx, MOE_T_GATE, L, 0, E, H, &lw->wg));
	if (p->route_bias) {
		float *b = malloc((size_t)E * sizeof(float));
		lw->bias = ctx->be->alloc(ctx->dev, (size_t)E * sizeof(float));
		if (!b || !lw->bias) {
			free(b);
			return MOE_ERR_NOMEM;
		}
		for (int64_t e = 0; e < E; e++)
			b[e] = moe_gen_bias(p, L, e);
		int rc = ctx->be->h2d(ctx->dev, lw->bias, b, (size_t)E * sizeof(float));
		free(b);
		MOE_CHECK(rc);
	}
	lw->w1 = calloc((size_t)E, sizeof(moe_bf16 *));
	lw->w3 = calloc((size_t)E, sizeof(moe_bf16 *));
	lw->w2 = calloc((size_t)E, sizeof(moe_bf16 *));
	if (!lw->w1 || !lw->w3 || !lw->w2)
		return MOE_ERR_NOMEM;
	if (p->shared_experts && p->expert == MOE_EXPERT_SWIGLU) {
		int64_t FS = F * p->shared_experts; /* S shared experts act as one of width S*F */
		MOE_CHECK(upload_new(ctx, MOE_T_SW1, L, 0, FS, H, &lw->sw1));
		MOE_CHECK(upload_new(ctx, MOE_T_SW3, L, 0, FS, H, &lw->sw3));
		MOE_CHECK(upload_new(ctx, MOE_T_SW2, L, 0, H, FS, &lw->sw2));
	}
	return MOE_OK;
}

int moe_experts_run(struct moe_ctx *ctx, int layer, int64_t first, int64_t n, const int64_t *counts,
		    const moe_bf16 *x, const float *w, moe_bf16 *y)
{
	const struct moe_params *p = ctx->p;
	const struct moe_layer_weights *lw = &ctx->lw[layer];
	struct moe_ffn_cfg fc = {
		.kind = (enum moe_ffn_kind)p->expert,
		.hidden = p->hidden,
		.ffn = p->ffn,
		.nexperts = n,
		.first_expert = first,
		.d_w1 = (const moe_bf16 *const *)lw->w1 + first,
		.d_w3 = (const moe_bf16 *const *)lw->w3 + first,
		.d_w2 = (const moe_bf16 *const *)lw->w2 + first,
	};
	if (ctx->expert_rows) /* what is computed, for the accounting check */
		for (int64_t j = 0; j < n; j++)
			ctx->expert_rows[first + j] += counts[j];
	return ctx->be->ffn(ctx->dev, &fc, x, counts, p->score_before_experts ? w : NULL, y);
}

size_t moe_weights_bytes(const struct moe_params *p, int nranks)
{
	double E = (double)p->experts, H = (double)p->hidden, F = (double)p->ffn, b = 0;
	b += E * H * 2 + (p->route_bias ? E * 4 : 0); /* gate (and bias) */
	if (p->expert == MOE_EXPERT_SWIGLU) {
		double mat = F * H * 2;
		b += 3 * mat * (double)p->shared_experts;
		if (p->strategy != MOE_STRAT_DWDP)
			b += 3 * mat * E / nranks; /* this rank's experts (dwdp keeps its own in the heap) */
	}
	double total = b * (double)p->layers;
	return total > 1e18 ? (size_t)1e18 : (size_t)total;
}

int moe_weights_default(struct moe_ctx *ctx)
{
	const struct moe_params *p = ctx->p;
	int64_t E = p->experts, H = p->hidden, F = p->ffn, epr = E / ctx->nranks;
	ctx->lw = calloc((size_t)MOE_MAX(p->layers, 1), sizeof(*ctx->lw));
	if (!ctx->lw)
		return MOE_ERR_NOMEM;
	for (int64_t l = 0; l < p->layers; l++) {
		struct moe_layer_weights *lw = &ctx->lw[l];
		MOE_CHECK(moe_weights_replicated(ctx, l, lw));
		if (p->expert != MOE_EXPERT_SWIGLU)
			continue; /* scale and identity experts have no weights */
		for (int64_t e = ctx->rank * epr; e < (ctx->rank + 1) * epr; e++) {
			/* W1 and W3 back to back: a backend may run both projections as one GEMM of width 2F */
			lw->w1[e] = ctx->be->alloc(ctx->dev, (size_t)(2 * F * H) * sizeof(moe_bf16));
			if (!lw->w1[e])
				return MOE_ERR_NOMEM;
			lw->w3[e] = lw->w1[e] + F * H;
			MOE_CHECK(moe_weights_upload(ctx, MOE_T_W1, (uint32_t)l, (uint64_t)(e * F), F, H, lw->w1[e]));
			MOE_CHECK(moe_weights_upload(ctx, MOE_T_W3, (uint32_t)l, (uint64_t)(e * F), F, H, lw->w3[e]));
			MOE_CHECK(upload_new(ctx, MOE_T_W2, (uint32_t)l, (uint64_t)(e * H), H, F, &lw->w2[e]));
		}
	}
	return MOE_OK;
}

void moe_weights_free(struct moe_ctx *ctx, int own_experts)
{
	if (!ctx->lw)
		return;
	for (int64_t l = 0; l < MOE_MAX(ctx->p->layers, 1); l++) {
		struct moe_layer_weights *lw = &ctx->lw[l];
		ctx->be->free(ctx->dev, lw->wg);
		ctx->be->free(ctx->dev, lw->bias);
		ctx->be->free(ctx->dev, lw->sw1);
		ctx->be->free(ctx->dev, lw->sw3);
		ctx->be->free(ctx->dev, lw->sw2);
		for (int64_t e = 0; own_experts && lw->w1 && e < ctx->p->experts; e++) {
			ctx->be->free(ctx->dev, lw->w1[e]); /* W3 lies in W1's allocation */
			ctx->be->free(ctx->dev, lw->w2[e]);
		}
		free(lw->w1);
		free(lw->w3);
		free(lw->w2);
	}
	free(ctx->lw);
	ctx->lw = NULL;
}
