/* Accounting check: what each rank counted (rows and pad rows dispatched, rows computed per expert, slots,
 * logical and wire bytes, dwdp bytes fetched) against closed forms from the layout and the routing.
 *
 * Where: the launcher, from every rank's report. Each rank reports its counters and the histogram of its
 * own routing (slots per expert); the cross-rank quantities (the rows a rank receives and computes under
 * a2a and agrs) are sums of the other ranks' histograms. Doing it in the launcher adds no collective to
 * the transport under test, and nothing here reuses the data path's slice or byte arithmetic. The routing
 * itself is the oracle's to verify; this file only asks whether exactly the work that routing implies was
 * moved and computed, no more and no less. */
#include "accounting.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"

json_t *moe_accounting_report(struct moe_ctx *ctx, int64_t n, int32_t *const *d_idx)
{
	const struct moe_params *p = ctx->p;
	int64_t K = p->topk, E = p->experts, stray = 0;
	int32_t *idx = malloc((size_t)(n * K + 1) * sizeof(int32_t));
	int64_t *hist = calloc((size_t)E, sizeof(int64_t));
	json_t *routed = json_array(), *computed = json_array();
	int rc = idx && hist && routed && computed ? MOE_OK : MOE_ERR_NOMEM;
	for (int64_t l = 0; l < p->layers && rc == MOE_OK; l++) {
		if (n)
			rc = ctx->be->d2h(ctx->dev, idx, d_idx[l], (size_t)(n * K) * sizeof(int32_t));
		for (int64_t i = 0; i < n * K && rc == MOE_OK; i++) {
			if (idx[i] >= 0 && idx[i] < E)
				hist[idx[i]]++;
			else
				stray++;
		}
	}
	for (int64_t e = 0; e < E && rc == MOE_OK; e++) {
		json_array_append_new(routed, json_integer(hist[e]));
		json_array_append_new(computed, json_integer(ctx->expert_rows ? ctx->expert_rows[e] : -1));
	}
	free(idx);
	free(hist);
	if (rc != MOE_OK) {
		json_decref(routed);
		json_decref(computed);
		return NULL;
	}
	return json_pack("{s:I,s:I,s:I,s:o,s:o}", "rows", (json_int_t)ctx->rows_dispatched, "pad_rows",
			 (json_int_t)ctx->pad_dispatched, "stray_slots", (json_int_t)stray, "routed", routed, "computed",
			 computed);
}

/* Rows rank r dispatches in one layer, and how many of them are real tokens. */
static void slice_rows(const struct moe_params *p, const int64_t *tokens, int64_t r, int64_t *rows, int64_t *real)
{
	int64_t tp = p->tp, T = tokens[r / tp], t = r % tp;
	if (p->partition == MOE_PART_LEADER) { /* only TP rank 0 dispatches */
		*rows = *real = t == 0 ? T : 0;
	} else if (p->partition == MOE_PART_SP) {
		int64_t L = (T + tp - 1) / tp; /* ceil: the group pads (-T) mod tp rows, L*tp - T */
		*rows = L;
		*real = MOE_MAX(0, MOE_MIN(L, T - t * L));
	} else { /* replicate: every TP rank dispatches all T */
		*rows = *real = T;
	}
}

struct expect {
	int64_t rows, pad, sent, computed, logical, wire, fetched;
};

static int64_t hist(json_t *rank, const char *key, int64_t e)
{
	return json_integer_value(json_array_get(json_object_get(json_object_get(rank, "accounting"), key), (size_t)e));
}

/* Bytes of one layer's TP merge sent by rank r: the leader broadcasts T rows; sp all-gathers each slice
 * (mask sends only the real rows); replicate and a single TP rank (leader) copy nothing. */
static int64_t merge_sent(const struct moe_params *p, const int64_t *tokens, int64_t r, int64_t rows, int64_t real)
{
	int64_t row = p->hidden * 2;
	if (p->partition == MOE_PART_LEADER)
		return p->tp > 1 && r % p->tp == 0 ? tokens[r / p->tp] * row : 0;
	if (p->partition == MOE_PART_SP)
		return (p->pad == MOE_PAD_MASK ? real : rows) * row;
	return 0;
}

/* What rank r must count over one iteration (every layer); ex[e] the rows it must compute per expert. */
static void expect_rank(const struct moe_params *p, const int64_t *tokens, json_t *ranks, int64_t r,
			struct expect *x, int64_t *ex)
{
	int64_t R = (int64_t)json_array_size(ranks), E = p->experts, K = p->topk, L = p->layers, H = p->hidden;
	int64_t row = H * 2, epr = E / R, rows, real;
	slice_rows(p, tokens, r, &rows, &real);
	memset(x, 0, sizeof(*x));
	x->rows = L * rows;
	x->pad = L * (rows - real);
	x->sent = L * rows * K;
	int64_t m = merge_sent(p, tokens, r, rows, real);
	x->logical = L * m * p->tp;
	x->wire = L * m * (p->tp - 1);
	for (int64_t e = 0; e < E; e++) {
		ex[e] = 0;
		if (p->strategy == MOE_STRAT_DWDP) /* no token exchange: a rank computes its own slots */
			ex[e] = hist(json_array_get(ranks, (size_t)r), "routed", e);
		else if (e / epr == r) /* a2a, agrs, ll: the owner computes every rank's slots of its experts */
			for (int64_t j = 0; j < R; j++)
				ex[e] += hist(json_array_get(ranks, (size_t)j), "routed", e);
		x->computed += ex[e];
	}
	if (p->strategy == MOE_STRAT_A2A || p->strategy == MOE_STRAT_LL) {
		/* per slot: its row, its expert id and (score_before_experts) its weight out; the expert's output
		 * row back to the slot's owner; self-sends are logical, not wire. ll's kernels also write, each
		 * layer, to every rank its epr int32 counts and an 8-byte signal, and an 8-byte signal back */
		if (p->strategy == MOE_STRAT_LL) {
			int64_t ctrl = L * (epr * 4 + 16);
			x->logical += R * ctrl;
			x->wire += (R - 1) * ctrl;
		}
		int64_t elem = row + 4 + (p->score_before_experts ? 4 : 0);
		for (int64_t j = 0; j < R; j++) {
			int64_t out = 0, back = 0;
			for (int64_t e = j * epr; e < (j + 1) * epr; e++)
				out += hist(json_array_get(ranks, (size_t)r), "routed", e);
			for (int64_t e = r * epr; e < (r + 1) * epr; e++)
				back += hist(json_array_get(ranks, (size_t)j), "routed", e);
			int64_t b = out * elem + back * row;
			x->logical += b;
			x->wire += j == r ? 0 : b;
		}
	} else if (p->strategy == MOE_STRAT_AGRS) {
		/* all-gather of rows, ids and weights to every rank; reduce-scatter of fp32 partial sums of every
		 * rank's rows, of which this rank's own stay */
		int64_t all = 0, g = rows * (row + 8 * K);
		for (int64_t j = 0; j < R; j++) {
			int64_t rj, realj;
			slice_rows(p, tokens, j, &rj, &realj);
			all += rj;
		}
		x->logical += L * (g * R + all * H * 4);
		x->wire += L * (g * (R - 1) + (all - rows) * H * 4);
	} else if (p->strategy == MOE_STRAT_DWDP) { /* (D - 1) * P experts of three F x H matrices a layer */
		int64_t D = p->dwdp_size ? p->dwdp_size : R;
		x->fetched = L * (D - 1) * p->prefetch_experts * 3 * p->ffn * H * 2;
	}
}

static json_t *bad(int64_t r, const char *what, const char *why, long long want, long long got)
{
	char s[512];
	snprintf(s, sizeof(s), "accounting: %s: expected %lld, counted %lld (%s)", what, want, got, why);
	return json_pack("{s:I,s:i,s:i,s:i,s:s,s:s,s:I,s:I}", "rank", (json_int_t)r, "layer", -1, "token", -1, "column",
			 -1, "what", s, "quantity", what, "expected", (json_int_t)want, "counted", (json_int_t)got);
}

static json_int_t geti(json_t *rank, const char *obj, const char *key)
{
	return json_integer_value(json_object_get(json_object_get(rank, obj), key));
}

/* Rows first: the first quantity of rank r that differs from what its strategy and partition require, or NULL. */
static json_t *check_rows(const struct moe_params *p, json_t *rk, int64_t r, const struct expect *x)
{
	const char *part = moe_partition_name(p->partition);
	if (geti(rk, "accounting", "rows") != x->rows)
		return bad(r, "rows dispatched", part, x->rows, geti(rk, "accounting", "rows"));
	if (geti(rk, "accounting", "pad_rows") != x->pad)
		return bad(r, "pad rows dispatched", "(-T) mod tp per group", x->pad, geti(rk, "accounting", "pad_rows"));
	return NULL;
}

/* The rest: slots, rows per expert, bytes. */
static json_t *check_work(const struct moe_params *p, json_t *rk, int64_t r, const struct expect *x,
			  const int64_t *ex)
{
	const char *strat = moe_strategy_name(p->strategy);
	if (geti(rk, "accounting", "stray_slots"))
		return bad(r, "slots routed to no expert", "routing", 0, geti(rk, "accounting", "stray_slots"));
	if (geti(rk, "slots", "sent") != x->sent)
		return bad(r, "slots sent", "rows x topk", x->sent, geti(rk, "slots", "sent"));
	for (int64_t e = 0; e < p->experts; e++)
		if (hist(rk, "computed", e) != ex[e]) {
			char q[64];
			snprintf(q, sizeof(q), "rows computed by expert %lld", (long long)e);
			return bad(r, q, strat, ex[e], hist(rk, "computed", e));
		}
	if (geti(rk, "slots", "computed") != x->computed)
		return bad(r, "slots computed", strat, x->computed, geti(rk, "slots", "computed"));
	if (geti(rk, "bytes", "logical") != x->logical)
		return bad(r, "logical bytes", strat, x->logical, geti(rk, "bytes", "logical"));
	if (geti(rk, "bytes", "wire") != x->wire)
		return bad(r, "wire bytes", "self-sends excluded", x->wire, geti(rk, "bytes", "wire"));
	if (geti(rk, "bytes", "fetched") != x->fetched)
		return bad(r, "bytes fetched", "(D - 1) x P experts a layer", x->fetched, geti(rk, "bytes", "fetched"));
	return NULL;
}

json_t *moe_accounting_check(const struct moe_params *p, const int64_t *tokens, json_t *ranks)
{
	int64_t R = (int64_t)json_array_size(ranks);
	if (R != p->dp * p->tp || p->experts % R)
		return bad(0, "ranks", "dp x tp", p->dp * p->tp, R);
	for (int64_t r = 0; r < R; r++)
		if (!json_is_object(json_object_get(json_array_get(ranks, (size_t)r), "accounting")))
			return bad(r, "accounting report", "every rank reports its counters", 1, 0);
	int64_t *ex = calloc((size_t)p->experts, sizeof(int64_t));
	if (!ex)
		return bad(0, "accounting", "out of memory", 0, 0);
	json_t *first = NULL;
	/* every rank's rows before anyone's bytes: a rank that dispatches too much is named, not the peer
	 * whose byte count its extra rows inflated */
	for (int pass = 0; pass < 2; pass++)
		for (int64_t r = 0; r < R && !first; r++) {
			struct expect x;
			json_t *rk = json_array_get(ranks, (size_t)r);
			expect_rank(p, tokens, ranks, r, &x, ex);
			first = pass ? check_work(p, rk, r, &x, ex) : check_rows(p, rk, r, &x);
		}
	free(ex);
	return first;
}
