/* The rank's verification hand-off: the last iteration against the oracle, the workspaces' canaries and
 * the repeat digest, the --dump, and the result record sent to the launcher. */
#include "rank_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "accounting.h"
#include "boot.h"
#ifdef MOE_HAVE_CUDA_BACKEND
#include "cuda_iface.h"
#endif
#include "oracle.h"
#include "rng.h"
#include "status.h"

/* FNV-1a over every layer's merged output: equal digests mean bit-identical outputs. */
uint64_t moe_rank_output_digest(struct rank_run *r)
{
	struct moe_ctx *ctx = &r->ctx;
	size_t bytes = (size_t)(r->T * r->p.hidden) * sizeof(moe_bf16);
	unsigned char *h = malloc(bytes + 1);
	uint64_t d = 0xcbf29ce484222325ull;
	for (int l = 0; l < r->p.layers && h; l++) {
		ctx->be->d2h(ctx->dev, h, r->Y[l], bytes);
		for (size_t i = 0; i < bytes; i++)
			d = (d ^ h[i]) * 0x100000001b3ull;
	}
	free(h);
	return d;
}

/* The merged output must carry this rank's real rows unchanged. */
static void check_merged(const struct rank_run *r, struct moe_oracle *orc, const moe_bf16 *yfull, const moe_bf16 *y,
			 struct moe_verdict *v)
{
	int64_t H = r->p.hidden;
	for (int64_t i = 0; !v->bad && i < r->sl.nreal; i++)
		for (int64_t c = 0; c < H; c++)
			if (yfull[(r->sl.s0 + i) * H + c] != y[i * H + c]) {
				v->bad = 1;
				v->token = i;
				v->gid = moe_oracle_gid(orc, i);
				v->col = c;
				v->mismatched = 1;
				snprintf(v->what, sizeof(v->what), "tp_merge: row %lld of the merged output differs from the slice",
					 (long long)(r->sl.s0 + i));
				break;
			}
}

/* The first wrong element the oracle found, where and what. */
static json_t *first_bad(int rank, int layer, const struct moe_verdict *v)
{
	json_t *fb = json_object();
	json_object_set_new(fb, "rank", json_integer(rank));
	json_object_set_new(fb, "layer", json_integer(layer));
	json_object_set_new(fb, "token", json_integer(v->token));
	json_object_set_new(fb, "global_token", json_integer(v->gid));
	json_object_set_new(fb, "column", json_integer(v->col));
	json_object_set_new(fb, "what", json_string(v->what));
	json_object_set_new(fb, "mismatched_tokens", json_integer(v->mismatched));
	return fb;
}

/* The last iteration against the independent oracle, layer by layer; *mismatch is 1 for a wrong output,
 * 2 when the oracle itself failed. */
static json_t *verify(struct rank_run *r, int *mismatch)
{
	struct moe_ctx *ctx = &r->ctx;
	const struct moe_params *p = &r->p;
	int64_t H = p->hidden, K = p->topk, n = r->n;
	json_t *jv = json_object();
	*mismatch = 0;
	if (p->check.kind == MOE_CHECK_OFF) {
		json_object_set_new(jv, "verdict", json_string("unchecked"));
		json_object_set_new(jv, "checked", json_integer(0));
		json_object_set_new(jv, "note", json_string("check = off: not verified"));
		return jv;
	}
	moe_bf16 *x = malloc((size_t)(n * H + 1) * 2), *y = malloc((size_t)(n * H + 1) * 2);
	moe_bf16 *yfull = malloc((size_t)(r->T * H + 1) * 2);
	int32_t *idx = malloc((size_t)(n * K + 1) * 4);
	float *w = malloc((size_t)(n * K + 1) * 4);
	int64_t *rows = NULL, nrows = n;
	double t_open = moe_now_us();
	/* the oracle derives the slice from the layout itself and carries each token's input across layers */
	struct moe_oracle *orc = moe_oracle_open(p, ctx->tokens, ctx->rank,
						 p->routing.kind == MOE_ROUTE_TRACE ? &r->trace : NULL);
	if (p->check.kind == MOE_CHECK_SAMPLE && p->check.sample < n) {
		/* a seeded choice of distinct rows, the same on every run */
		nrows = p->check.sample;
		rows = malloc((size_t)nrows * 8);
		for (int64_t j = 0, i = 0; i < n && j < nrows; i++) {
			double u = moe_rng_unit((uint64_t)p->seed, MOE_T_SAMPLE, 0, (uint64_t)(r->g0 + r->sl.s0 + i), 0);
			if (u * (double)(n - i) < (double)(nrows - j))
				rows[j++] = i;
		}
	}
	if (getenv("MOEBENCH_ORACLE_TIMES")) /* see oracle.c */
		fprintf(stderr, "oracle: rank %d: open %.3f s\n", ctx->rank, (moe_now_us() - t_open) * 1e-6);
	double max_err = 0;
	int64_t checked = 0;
	for (int l = 0; l < p->layers && !*mismatch; l++) {
		ctx->be->d2h(ctx->dev, x, r->xs[l], (size_t)(n * H) * 2);
		ctx->be->d2h(ctx->dev, y, r->ys[l], (size_t)(n * H) * 2);
		ctx->be->d2h(ctx->dev, yfull, r->Y[l], (size_t)(r->T * H) * 2);
		ctx->be->d2h(ctx->dev, idx, r->idx[l], (size_t)(n * K) * 4);
		ctx->be->d2h(ctx->dev, w, r->w[l], (size_t)(n * K) * 4);
		if (l == p->layers - 1 && r->corrupt_token >= 0 && r->corrupt_token < n && r->corrupt_col < H) {
			/* test aid: flip one output element so the checker must catch it */
			y[r->corrupt_token * H + r->corrupt_col] ^= 0x0100;
		}
		struct moe_verdict v;
		int rc = orc ? moe_oracle_check(orc, (uint32_t)l, n, x, idx, w, y, rows, nrows, &v) : MOE_ERR_NOMEM;
		if (rc == MOE_OK && !v.bad)
			check_merged(r, orc, yfull, y, &v);
		if (rc != MOE_OK) {
			json_object_set_new(jv, "verdict", json_string("error"));
			json_object_set_new(jv, "reason", json_string("oracle failed (out of memory?)"));
			*mismatch = 2;
			break;
		}
		checked += v.checked;
		if (v.max_err > max_err)
			max_err = v.max_err;
		if (v.bad) {
			*mismatch = 1;
			json_object_set_new(jv, "first_bad", first_bad(ctx->rank, l, &v));
		}
	}
	if (*mismatch != 2)
		json_object_set_new(jv, "verdict", json_string(*mismatch ? "mismatch" : "ok"));
	json_object_set_new(jv, "checked", json_integer(checked));
	json_object_set_new(jv, "max_err", json_real(max_err));
	free(x);
	free(y);
	free(yfull);
	free(idx);
	free(w);
	free(rows);
	moe_oracle_close(orc);
	return jv;
}

/* Each timed phase's samples, the time inside transport data calls ("xfer") and dwdp's fetch. */
static json_t *samples_json(struct rank_run *r, int iters)
{
	json_t *s = json_object();
	for (int ph = 0; ph < MOE_PH_COUNT; ph++) {
		if (!r->samples[ph])
			continue;
		json_t *a = json_array();
		for (int i = 0; i < iters; i++)
			json_array_append_new(a, json_real(r->samples[ph][i]));
		json_object_set_new(s, ph == MOE_PH_done ? "total" : moe_phase_name(ph), a);
	}
	json_t *a = json_array();
	for (int i = 0; i < iters; i++)
		json_array_append_new(a, json_real(r->xfer[i]));
	json_object_set_new(s, "xfer", a);
	a = json_array();
	for (int i = 0; i < iters; i++)
		json_array_append_new(a, json_real(r->fetch[i]));
	json_object_set_new(s, "fetch", a);
	return s;
}

/* The workspaces' canaries: a strategy that wrote outside its buffers fails the case. */
static void check_workspaces(struct rank_run *r, json_t *res, int *mismatch)
{
	struct moe_ctx *ctx = &r->ctx;
	char why[512];
	int wrc = moe_ws_check(ctx, why, sizeof(why));
	json_object_set_new(res, "workspace", json_pack("{s:I,s:i,s:s}", "bytes", (json_int_t)ctx->ws_bytes, "buffers",
							 ctx->nws, "canaries", wrc == MOE_OK ? "intact" : why));
	if (wrc != MOE_OK) {
		*mismatch = 1;
		json_object_set_new(res, "verdict", json_string("mismatch"));
		json_object_set_new(res, "first_bad", json_pack("{s:i,s:i,s:i,s:i,s:s}", "rank", ctx->rank, "layer", -1,
							      "token", -1, "column", -1, "what", why));
	}
}

/* Every timed iteration computes the same thing: the first and last outputs must be bit-identical. */
static void check_repeat(struct rank_run *r, json_t *res, int *mismatch)
{
	uint64_t dg = moe_rank_output_digest(r);
	char hex[17];
	snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)dg);
	json_object_set_new(res, "digest", json_string(hex));
	json_object_set_new(res, "repeat_identical", json_boolean(dg == r->digest_first));
	if (dg != r->digest_first && !*mismatch) {
		*mismatch = 1;
		json_object_set_new(res, "verdict", json_string("mismatch"));
		json_object_set_new(res, "first_bad", json_pack("{s:i,s:i,s:i,s:i,s:s}", "rank", r->ctx.rank, "layer", -1,
							      "token", -1, "column", -1, "what",
							      "repeat: the last timed iteration's output differs from the first"));
	}
}

/* The PAPI counters per phase, averaged over the timed iterations. */
static json_t *counters_json(struct rank_run *r, int iters)
{
	json_t *jc = json_object();
	json_object_set_new(jc, "available", json_boolean(r->ctr.available));
	if (r->ctr.why[0])
		json_object_set_new(jc, "note", json_string(r->ctr.why));
	json_t *evs = json_array(), *per = json_object();
	for (int i = 0; i < r->ctr.nevents; i++)
		json_array_append_new(evs, json_string(r->ctr.names[i]));
	for (int ph = 0; ph < MOE_PH_COUNT && r->ctr.nevents; ph++) {
		if (!r->samples[ph] || ph == MOE_PH_done)
			continue;
		json_t *o = json_object();
		for (int i = 0; i < r->ctr.nevents; i++)
			json_object_set_new(o, r->ctr.names[i], json_real((double)r->ctr_phase[ph][i] / iters));
		json_object_set_new(per, moe_phase_name(ph), o);
	}
	json_object_set_new(jc, "events", evs);
	json_object_set_new(jc, "per_iteration", per);
	return jc;
}

/* What the rank did: its rows, slots, samples, bytes, counters and memory. */
static void result_fields(struct rank_run *r, json_t *res, const struct moe_bytes *bytes)
{
	struct moe_ctx *ctx = &r->ctx;
	int iters = (int)r->p.iters;
	json_object_set_new(res, "rank", json_integer(ctx->rank));
	json_object_set_new(res, "dp_group", json_integer(ctx->d));
	json_object_set_new(res, "pid", json_integer(getpid()));
	json_object_set_new(res, "rows", json_integer(r->n));
	json_object_set_new(res, "pad_rows", json_integer(r->n - r->sl.nreal));
	json_object_set_new(res, "slots", json_pack("{s:I,s:I}", "sent", (json_int_t)ctx->slots_sent, "computed",
						     (json_int_t)ctx->slots_computed));
	json_object_set_new(res, "tokens", json_integer(r->T));
	json_object_set_new(res, "samples_us", samples_json(r, iters));
	json_object_set_new(res, "graph", json_boolean(r->graph != NULL));
	if (isfinite(r->period_us)) /* steady state: iterations back to back, elapsed / iters */
		json_object_set_new(res, "period_us", json_real(r->period_us));
	json_t *jb = json_object();
	json_object_set_new(jb, "logical", json_integer(bytes->logical));
	json_object_set_new(jb, "wire", json_integer(bytes->wire));
	json_object_set_new(jb, "fetched", json_integer(bytes->fetched));
	json_object_set_new(res, "bytes", jb);
}

int moe_rank_report(struct rank_run *r, const struct moe_bytes *bytes)
{
	struct moe_ctx *ctx = &r->ctx;
	moe_phase(ctx, MOE_PH_verify);
	int mismatch;
	json_t *res = verify(r, &mismatch);
	check_workspaces(r, res, &mismatch);
	if (r->dump[0]) {
		char derr[512];
		if (moe_dump_case(ctx, r->dump, r->T, r->n, r->X, r->Y, r->idx, r->w, derr, sizeof(derr))) {
			json_decref(res);
			return moe_rank_send_error(r->boot_fd, "%s", derr), MOE_EXIT_USAGE;
		}
	}
	moe_phase(ctx, MOE_PH_report);
	check_repeat(r, res, &mismatch);
	result_fields(r, res, bytes);
	json_t *acct = moe_accounting_report(ctx, r->n, r->idx);
	if (!acct)
		return moe_rank_send_error(r->boot_fd, "accounting report: out of memory or a failed copy"), MOE_EXIT_RANK;
	json_object_set_new(res, "accounting", acct);
	json_object_set_new(res, "counters", counters_json(r, (int)r->p.iters));
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	json_object_set_new(res, "peak_rss_kib", json_integer(ru.ru_maxrss));
	json_object_set_new(res, "memory_estimate_bytes", json_integer((json_int_t)r->mem_estimate));
#ifdef MOE_HAVE_CUDA_BACKEND
	if (!strcmp(ctx->be->name, "cuda"))
		json_object_set_new(res, "peak_device_bytes", json_integer((json_int_t)moe_cuda_peak_bytes(ctx->dev)));
#endif
	char *out = json_dumps(res, JSON_COMPACT);
	json_decref(res);
	if (!out || moe_msg_send(r->boot_fd, MOE_MSG_RESULT, out, strlen(out))) {
		free(out);
		return MOE_EXIT_RANK;
	}
	free(out);
	moe_phase(ctx, MOE_PH_done);
	r->done = 1;
	return mismatch == 1 ? MOE_EXIT_FAIL : MOE_EXIT_OK;
}
