/* Workspaces: every buffer a case uses is allocated once, through here, between two canary guards that
 * are checked after the case (an undersized workspace is a bug class this tool exists to catch). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "strategy.h"

#define GUARD 64
#define PATTERN 0xa5

struct moe_ws_buf {
	char *base; /* guard, payload, guard */
	size_t bytes;
	int sym;
	const char *where;
};

void *moe_ws_alloc_at(struct moe_ctx *ctx, int sym, size_t bytes, const char *where)
{
	size_t pay = (bytes + GUARD - 1) / GUARD * GUARD, total = pay + 2 * GUARD;
	char *base = sym ? ctx->xp->alloc(ctx->comm, total) : ctx->be->alloc(ctx->dev, total);
	if (!base) {
		moe_err("workspace %s: cannot allocate %zu bytes (%s)", where, total, sym ? "symmetric" : "backend");
		return NULL;
	}
	if (ctx->be->memset(ctx->dev, base, PATTERN, GUARD) ||
	    ctx->be->memset(ctx->dev, base + GUARD + bytes, PATTERN, total - GUARD - bytes))
		return NULL;
	struct moe_ws_buf *n = realloc(ctx->ws, (size_t)(ctx->nws + 1) * sizeof(*n));
	if (!n)
		return NULL;
	ctx->ws = n;
	ctx->ws[ctx->nws++] = (struct moe_ws_buf){base, bytes, sym, where};
	ctx->ws_bytes += total;
	return base + GUARD;
}

int moe_ws_check(struct moe_ctx *ctx, char *why, size_t len)
{
	unsigned char g[GUARD];
	for (int i = 0; i < ctx->nws; i++) {
		struct moe_ws_buf *b = &ctx->ws[i];
		size_t tail = (b->bytes + GUARD - 1) / GUARD * GUARD + GUARD - b->bytes;
		for (int side = 0; side < 2; side++) {
			const char *at = side ? b->base + GUARD + b->bytes : b->base;
			size_t n = side ? MOE_MIN(tail, sizeof(g)) : GUARD;
			if (ctx->be->d2h(ctx->dev, g, at, n))
				return MOE_ERR_SYSTEM;
			for (size_t k = 0; k < n; k++)
				if (g[k] != PATTERN) {
					snprintf(why, len, "workspace allocated at %s (%zu bytes): canary %s it was overwritten",
						 b->where, b->bytes, side ? "after" : "before");
					return MOE_ERR_MISMATCH;
				}
		}
	}
	return MOE_OK;
}

void moe_ws_release(struct moe_ctx *ctx)
{
	for (int i = 0; i < ctx->nws; i++)
		if (!ctx->ws[i].sym) /* symmetric memory goes with the transport */
			ctx->be->free(ctx->dev, ctx->ws[i].base);
	free(ctx->ws);
	ctx->ws = NULL;
	ctx->nws = 0;
}
