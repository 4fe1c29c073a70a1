/* Partitions: which rows of its DP group a TP rank dispatches (replicate, leader, sp with padding),
 * the pad rows' routing, and the TP merge that rebuilds the group's output. Also the strategy registry. */
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "strategy.h"

void moe_slice_of(const struct moe_params *p, const int64_t *tokens, int rank, struct moe_slice *s)
{
	int64_t d = rank / p->tp, t = rank % p->tp, T = tokens[d];
	memset(s, 0, sizeof(*s));
	s->T = T;
	switch (p->partition) {
	case MOE_PART_REPLICATE: s->n = s->nreal = T; break;
	case MOE_PART_LEADER: s->n = s->nreal = t == 0 ? T : 0; break;
	case MOE_PART_SP:
		s->pad = (p->tp - T % p->tp) % p->tp;
		s->L = (T + s->pad) / p->tp;
		s->s0 = t * s->L;
		s->n = s->L;
		s->nreal = MOE_MAX(0, MOE_MIN(s->L, T - s->s0));
		break;
	}
}

int64_t moe_rows_dispatched(const struct moe_params *p, const int64_t *tokens, int rank)
{
	struct moe_slice s;
	moe_slice_of(p, tokens, rank, &s);
	return s.n;
}

size_t moe_partition_sym_bytes(const struct moe_params *p, const int64_t *tokens)
{
	int64_t rows = 0;
	for (int64_t d = 0; d < p->dp; d++) {
		struct moe_slice s;
		moe_slice_of(p, tokens, (int)(d * p->tp), &s);
		rows = MOE_MAX(rows, p->partition == MOE_PART_LEADER ? s.T : p->partition == MOE_PART_SP ? s.L : 0);
	}
	return rows ? (size_t)rows * (size_t)p->hidden * sizeof(moe_bf16) + MOE_WS_SYM_OVERHEAD : 0;
}

int64_t moe_slice_gid(const struct moe_params *p, const int64_t *tokens, int rank, const struct moe_slice *s,
		      int64_t i)
{
	int64_t d = rank / p->tp, g0 = 0, total = 0;
	for (int64_t q = 0; q < p->dp; q++) {
		if (q < d)
			g0 += tokens[q];
		total += tokens[q];
	}
	if (i < s->nreal)
		return g0 + s->s0 + i;
	if (p->pad != MOE_PAD_ZERO_TOKEN)
		return MOE_GID_PAD_MASKED;
	if (p->routing.kind == MOE_ROUTE_ROUTER)
		return MOE_GID_PAD_ROUTED;
	/* a zero token under synthetic routing draws its route as a token past every real one */
	return total + d * p->tp + (s->s0 + i - s->T);
}

int moe_pad_routing(struct moe_ctx *ctx, const struct moe_slice *s, int32_t *d_idx, float *d_w)
{
	const struct moe_params *p = ctx->p;
	int64_t np = s->n - s->nreal, K = p->topk;
	if (!np || p->pad == MOE_PAD_ZERO_TOKEN)
		return MOE_OK;
	/* mask and buffer: every slot of a pad row goes to expert 0 with weight 0 */
	MOE_CHECK(ctx->be->memset(ctx->dev, d_idx + s->nreal * K, 0, (size_t)(np * K) * sizeof(int32_t)));
	return ctx->be->memset(ctx->dev, d_w + s->nreal * K, 0, (size_t)(np * K) * sizeof(float));
}

int moe_slice_input(struct moe_ctx *ctx, const struct moe_slice *s, const moe_bf16 *d_full, moe_bf16 *d_xs)
{
	int64_t H = ctx->p->hidden;
	size_t row = (size_t)H * sizeof(moe_bf16);
	if (s->nreal)
		MOE_CHECK(ctx->be->d2d(ctx->dev, d_xs, d_full + s->s0 * H, (size_t)s->nreal * row));
	if (s->n > s->nreal) /* pad rows are zero tokens in every pad mode */
		MOE_CHECK(ctx->be->memset(ctx->dev, d_xs + s->nreal * H, 0, (size_t)(s->n - s->nreal) * row));
	return MOE_OK;
}

static void count_bytes(struct moe_ctx *ctx, int64_t bytes, int receivers)
{
	ctx->bytes.logical += bytes * receivers;
	ctx->bytes.wire += bytes * (receivers - 1);
}

int moe_tp_merge(struct moe_ctx *ctx, const struct moe_slice *s, const moe_bf16 *d_ys, void *sym, moe_bf16 *d_pad,
		 moe_bf16 *d_y)
{
	const struct moe_params *p = ctx->p;
	int64_t H = p->hidden, tp = p->tp;
	size_t row = (size_t)H * sizeof(moe_bf16);
	if (p->partition == MOE_PART_REPLICATE)
		return MOE_OK; /* every TP rank computed all rows: d_ys is d_y */
	/* an empty group has nothing to merge, and when every group is empty no staging buffer exists; T is
	 * the group's, so all its TP ranks skip the collective together */
	if (s->T == 0)
		return MOE_OK;
	if (p->partition == MOE_PART_LEADER) {
		if (tp == 1)
			return ctx->be->d2d(ctx->dev, d_y, d_ys, (size_t)s->T * row);
		if (ctx->t == 0) {
			MOE_CHECK(ctx->be->d2d(ctx->dev, sym, d_ys, (size_t)s->T * row));
			count_bytes(ctx, s->T * (int64_t)row, (int)tp);
		}
		MOE_CHECK(ctx->xp->bcast(ctx->comm, MOE_GROUP_TP, sym, (size_t)s->T * row, 0));
		return ctx->be->d2d(ctx->dev, d_y, sym, (size_t)s->T * row);
	}
	/* sp: all-gather the slices; mask sends only real rows, so the gather lands on exactly T rows */
	size_t *cnt = calloc((size_t)tp, sizeof(size_t)), *dis = calloc((size_t)tp, sizeof(size_t));
	if (!cnt || !dis) {
		free(cnt);
		free(dis);
		return MOE_ERR_NOMEM;
	}
	int mask = p->pad == MOE_PAD_MASK;
	size_t off = 0;
	for (int64_t m = 0; m < tp; m++) {
		int64_t real = MOE_MAX(0, MOE_MIN(s->L, s->T - m * s->L));
		cnt[m] = (size_t)(mask ? real : s->L) * row;
		dis[m] = off;
		off += cnt[m];
	}
	int64_t mine = mask ? s->nreal : s->n;
	int rc = ctx->be->d2d(ctx->dev, sym, d_ys, (size_t)mine * row);
	count_bytes(ctx, mine * (int64_t)row, (int)tp);
	if (rc == MOE_OK)
		rc = ctx->xp->allgatherv(ctx->comm, MOE_GROUP_TP, sym, (size_t)mine * row, mask ? d_y : d_pad, cnt, dis);
	if (rc == MOE_OK && !mask) /* buffer and zero_token: T + pad rows arrived; keep [0, T) */
		rc = ctx->be->d2d(ctx->dev, d_y, d_pad, (size_t)s->T * row);
	free(cnt);
	free(dis);
	return rc;
}

const struct moe_strategy_ops *moe_strategy_find(const char *name)
{
	static const struct moe_strategy_ops *const all[] = {
#define MOE_STRATEGY(n) &moe_strategy_##n,
#include "strategies.def"
#undef MOE_STRATEGY
	};
	for (size_t i = 0; i < MOE_ARRAY_SIZE(all); i++)
		if (!strcmp(all[i]->name, name))
			return all[i];
	return NULL;
}
