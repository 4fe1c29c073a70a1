/* The CUDA backend's ll ops (dispatch, receive, return, wait_return) and ffn_dev with several ranks simulated in
 * one process: every rank's symmetric buffers live on the one GPU and every plan points at all of them. Slots,
 * counts, packed rows, returned outputs, stats and epochs are checked against a host computation, layer after
 * layer, eagerly and replayed from a CUDA graph with new routing. Exits 77 without a GPU. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_iface.h"
#include "kernels.h"
#include "gpu_test.h"
#include "rng.h"

#define MAXR 4

struct ll_case {
	int R;
	int64_t n[MAXR], h, k, epr, cap;
	int scaled, layers, graph;
};

/* One rank: its symmetric buffers, its plan and its layer's inputs and outputs (device), and the host copies. */
struct rank {
	moe_bf16 *recv_x, *ret_y;
	int32_t *recv_e, *recv_cnt;
	float *recv_w;
	uint64_t *sig_disp, *sig_ret, *epoch;
	int64_t *stats;
	struct moe_ll_plan plan;
	moe_bf16 *x, *px, *py;
	int32_t *idx, *slot, *counts, *src;
	float *w, *pw;
	moe_bf16 *hx;
	int32_t *hidx;
	float *hw;
};

/* The pointer tables every plan reads: entry q of each is rank q's buffer (one process: the same addresses). */
static void make_plans(const struct ll_case *c, struct rank *rk, void **tabs)
{
	void *h[7][MAXR];
	for (int q = 0; q < c->R; q++) {
		h[0][q] = rk[q].recv_x, h[1][q] = rk[q].recv_e, h[2][q] = rk[q].recv_w, h[3][q] = rk[q].recv_cnt;
		h[4][q] = rk[q].sig_disp, h[5][q] = rk[q].ret_y, h[6][q] = rk[q].sig_ret;
	}
	for (int f = 0; f < 7; f++)
		tabs[f] = up(h[f], sizeof(void *) * (size_t)c->R);
	for (int r = 0; r < c->R; r++) {
		struct moe_ll_plan p = {r, c->R, c->h, c->k, c->epr * c->R, c->epr, c->cap, c->scaled,
					tabs[0], tabs[1], tabs[2], tabs[3], tabs[4], tabs[5], tabs[6],
					rk[r].epoch, rk[r].stats};
		rk[r].plan = p;
	}
}

static void alloc_rank(const struct ll_case *c, struct rank *r, int64_t n)
{
	int64_t R = c->R, cap = c->cap, H = c->h, K = c->k, rows = R * cap;
	r->recv_x = dalloc((size_t)(rows * H) * 2), r->ret_y = dalloc((size_t)(rows * H) * 2);
	r->recv_e = dalloc((size_t)rows * 4), r->recv_w = dalloc((size_t)rows * 4);
	r->recv_cnt = dalloc((size_t)(R * c->epr) * 4);
	r->sig_disp = dalloc((size_t)R * 8), r->sig_ret = dalloc((size_t)R * 8), r->epoch = dalloc(8);
	r->stats = dalloc((size_t)(MOE_LL_STAT_EXPERT0 + c->epr) * 8);
	r->x = dalloc((size_t)(n * H) * 2), r->idx = dalloc((size_t)(n * K) * 4), r->w = dalloc((size_t)(n * K) * 4);
	r->slot = dalloc((size_t)(n * K) * 4);
	r->px = dalloc((size_t)(rows * H) * 2), r->py = dalloc((size_t)(rows * H) * 2), r->pw = dalloc((size_t)rows * 4);
	r->counts = dalloc((size_t)c->epr * 4), r->src = dalloc((size_t)rows * 4);
	r->hx = malloc((size_t)(n * H) * 2 + 2), r->hidx = malloc((size_t)(n * K) * 4 + 4), r->hw = malloc((size_t)(n * K) * 4 + 4);
}

static void free_rank(struct rank *r)
{
	void *d[] = {r->recv_x, r->ret_y, r->recv_e, r->recv_w, r->recv_cnt, r->sig_disp, r->sig_ret, r->epoch,
		     r->stats, r->x, r->idx, r->w, r->slot, r->px, r->py, r->pw, r->counts, r->src};
	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++)
		C->free(cd, d[i]);
	free(r->hx), free(r->hidx), free(r->hw);
}

/* New routing and rows for layer l: pads (-1) and experts of every rank, skewed so that capacity can overflow. */
static void make_inputs(const struct ll_case *c, struct rank *rk, int l)
{
	int64_t E = c->epr * c->R;
	for (int s = 0; s < c->R; s++) {
		struct rank *r = &rk[s];
		int64_t n = c->n[s];
		for (int64_t i = 0; i < n * c->h; i++)
			r->hx[i] = moe_f32_to_bf16((float)(2.0 * moe_rng_unit(7, 30, (uint32_t)l, (uint64_t)s, (uint64_t)i) - 1.0));
		for (int64_t i = 0; i < n * c->k; i++) {
			uint64_t u = moe_rng_u64(7, 31, (uint32_t)l, (uint64_t)s, (uint64_t)i);
			r->hidx[i] = u % 11 == 0 ? -1 : u % 3 == 0 ? (int32_t)(u / 3 % 2) : (int32_t)(u / 7 % (uint64_t)E);
			r->hw[i] = (float)moe_rng_unit(7, 32, (uint32_t)l, (uint64_t)s, (uint64_t)i) + 0.25f;
		}
		if (n) {
			C->h2d(cd, r->x, r->hx, (size_t)(n * c->h) * 2);
			C->h2d(cd, r->idx, r->hidx, (size_t)(n * c->k) * 4);
			C->h2d(cd, r->w, r->hw, (size_t)(n * c->k) * 4);
		}
		/* stale rows must not pass: outputs start as NaN patterns */
		C->memset(cd, r->px, 0xff, (size_t)(c->R * c->cap * c->h) * 2);
		C->memset(cd, r->ret_y, 0xff, (size_t)(c->R * c->cap * c->h) * 2);
		if (n)
			C->memset(cd, r->slot, 0x7f, (size_t)(n * c->k) * 4);
	}
}

/* One layer for every rank, in the order a shared stream allows: all dispatches before any receive. */
static int run_layer(const struct ll_case *c, struct rank *rk)
{
	int rc = MOE_OK;
	for (int s = 0; s < c->R && rc == MOE_OK; s++)
		rc = C->ll_dispatch(cd, &rk[s].plan, rk[s].x, c->n[s], rk[s].idx, rk[s].w, rk[s].slot);
	for (int d = 0; d < c->R && rc == MOE_OK; d++) {
		struct rank *r = &rk[d];
		rc = C->ll_receive(cd, &r->plan, r->px, r->pw, r->counts, r->src);
		struct moe_ffn_cfg f = {MOE_FFN_SCALE, c->h, 1, c->epr, d * c->epr, NULL, NULL, NULL};
		if (rc == MOE_OK)
			rc = C->ffn_dev(cd, &f, r->px, r->counts, c->R * c->cap, c->scaled ? r->pw : NULL, r->py);
		if (rc == MOE_OK)
			rc = C->ll_return(cd, &r->plan, r->py, r->src, r->counts);
	}
	for (int s = 0; s < c->R && rc == MOE_OK; s++)
		rc = C->ll_wait_return(cd, &rk[s].plan);
	return rc;
}

/* What a layer must produce, from the host's inputs: blk[(o*R + s)*cap + j] = slot i of s placed at j of o's
 * block for s, nblk[o*R + s] rows there; slot[s][i]; totals for the stats. */
struct expect {
	int32_t *blk, *nblk, *slot[MAXR];
	int64_t sent[MAXR], remote[MAXR], dropped[MAXR];
};

static void expect_layer(const struct ll_case *c, const struct rank *rk, struct expect *x)
{
	int R = c->R;
	for (int s = 0; s < R; s++) {
		const int32_t *idx = rk[s].hidx;
		int64_t m = c->n[s] * c->k;
		x->slot[s] = malloc((size_t)m * 4 + 4);
		x->sent[s] = x->remote[s] = x->dropped[s] = 0;
		for (int64_t i = 0; i < m; i++)
			x->slot[s][i] = -1;
		for (int o = 0; o < R; o++) {
			int32_t j = 0;
			for (int64_t le = 0; le < c->epr; le++)
				for (int64_t i = 0; i < m; i++) {
					if (idx[i] != o * c->epr + le)
						continue;
					if (j < c->cap) {
						x->blk[((int64_t)o * R + s) * c->cap + j] = (int32_t)i;
						x->slot[s][i] = (int32_t)(o * c->cap + j);
						x->sent[s]++;
						x->remote[s] += o != s;
					} else
						x->dropped[s]++;
					j++;
				}
			x->nblk[o * R + s] = j < c->cap ? j : (int32_t)c->cap;
		}
	}
}

static float expert_out(const struct ll_case *c, const struct rank *src, int64_t i, int64_t col)
{
	float u = moe_bf16_to_f32(src->hx[(i / c->k) * c->h + col]);
	if (c->scaled)
		u = moe_bf16_to_f32(moe_f32_to_bf16(src->hw[i] * u));
	return moe_bf16_to_f32(moe_f32_to_bf16((float)(src->hidx[i] + 1) * u));
}

/* Receiver d: counts, then packed rows by (local expert, source, j) with their source index and weight. */
static void check_receiver(const struct ll_case *c, struct rank *rk, const struct expect *x, int d, int l)
{
	int R = c->R;
	int64_t H = c->h, rows = R * c->cap;
	int32_t *cnt = down(rk[d].counts, (size_t)c->epr * 4), *src = down(rk[d].src, (size_t)rows * 4);
	moe_bf16 *px = down(rk[d].px, (size_t)(rows * H) * 2);
	float *pw = down(rk[d].pw, (size_t)rows * 4);
	int64_t p = 0, bad = 0;
	for (int64_t le = 0; le < c->epr; le++) {
		int64_t n_le = 0;
		for (int s = 0; s < R; s++)
			for (int32_t j = 0; j < x->nblk[d * R + s]; j++) {
				int32_t i = x->blk[((int64_t)d * R + s) * c->cap + j];
				if (rk[s].hidx[i] % c->epr != le)
					continue;
				n_le++;
				bad += src[p] != s * c->cap + j;
				bad += memcmp(px + p * H, rk[s].hx + (i / c->k) * H, (size_t)H * 2) != 0;
				bad += c->scaled && pw[p] != rk[s].hw[i];
				p++;
			}
		EXPECT(cnt[le] == n_le, "layer %d rank %d: %d rows for local expert %lld, want %lld", l, d, cnt[le],
		       (long long)le, (long long)n_le);
	}
	EXPECT(bad == 0, "layer %d rank %d: %lld packed rows, sources or weights wrong", l, d, (long long)bad);
	free(cnt), free(src), free(px), free(pw);
}

/* Source s: slots, and the outputs its rows came back with. */
static void check_source(const struct ll_case *c, struct rank *rk, const struct expect *x, int s, int l)
{
	int64_t m = c->n[s] * c->k, H = c->h, bad = 0;
	int32_t *slot = down(rk[s].slot, (size_t)m * 4);
	moe_bf16 *ry = down(rk[s].ret_y, (size_t)(c->R * c->cap * H) * 2);
	EXPECT(!memcmp(slot, x->slot[s], (size_t)m * 4), "layer %d rank %d: slots differ", l, s);
	for (int64_t i = 0; i < m; i++) {
		int32_t v = x->slot[s][i];
		for (int64_t col = 0; v >= 0 && col < H; col++)
			bad += moe_bf16_to_f32(ry[(int64_t)v * H + col]) != expert_out(c, &rk[s], i, col);
	}
	EXPECT(bad == 0, "layer %d rank %d: %lld returned values wrong", l, s, (long long)bad);
	free(slot), free(ry);
}

/* Stats and signals after l + 1 layers: stats accumulate, every signal and the epoch read l + 1. */
static void check_state(const struct ll_case *c, struct rank *rk, int s, int l, const int64_t *acc)
{
	int64_t ns = MOE_LL_STAT_EXPERT0 + c->epr;
	int64_t *st = down(rk[s].stats, (size_t)ns * 8);
	uint64_t *sd = down(rk[s].sig_disp, (size_t)c->R * 8), *sr = down(rk[s].sig_ret, (size_t)c->R * 8);
	uint64_t *ep = down(rk[s].epoch, 8);
	EXPECT(!memcmp(st, acc, (size_t)ns * 8), "layer %d rank %d: stats differ (sent %lld want %lld, remote %lld "
	       "want %lld, dropped %lld want %lld)", l, s, (long long)st[0], (long long)acc[0], (long long)st[1],
	       (long long)acc[1], (long long)st[2], (long long)acc[2]);
	EXPECT(*ep == (uint64_t)l + 1, "layer %d rank %d: epoch %llu", l, s, (unsigned long long)*ep);
	for (int q = 0; q < c->R; q++)
		EXPECT(sd[q] == (uint64_t)l + 1 && sr[q] == (uint64_t)l + 1, "layer %d rank %d: signals from %d: %llu %llu",
		       l, s, q, (unsigned long long)sd[q], (unsigned long long)sr[q]);
	free(st), free(sd), free(sr), free(ep);
}

static void accumulate(const struct ll_case *c, const struct rank *rk, const struct expect *x, int64_t acc[][64])
{
	int R = c->R;
	for (int s = 0; s < R; s++) {
		acc[s][MOE_LL_STAT_SENT] += x->sent[s];
		acc[s][MOE_LL_STAT_SENT_REMOTE] += x->remote[s];
		acc[s][MOE_LL_STAT_DROPPED] += x->dropped[s];
	}
	for (int d = 0; d < R; d++)
		for (int s = 0; s < R; s++)
			for (int32_t j = 0; j < x->nblk[d * R + s]; j++)
				acc[d][MOE_LL_STAT_EXPERT0 + rk[s].hidx[x->blk[((int64_t)d * R + s) * c->cap + j]] % c->epr]++;
}

/* Layer 0 runs eagerly; with c->graph the next layers replay one captured layer of every rank, whose counts
 * and epochs are read on the device (new routing each layer). */
static void run_case(const struct ll_case *c)
{
	struct rank rk[MAXR];
	void *tabs[7];
	int R = c->R;
	memset(rk, 0, sizeof(rk));
	for (int r = 0; r < R; r++)
		alloc_rank(c, &rk[r], c->n[r]);
	make_plans(c, rk, tabs);
	static int64_t acc[MAXR][64];
	memset(acc, 0, sizeof(acc));
	struct expect x = {malloc((size_t)(R * R * c->cap) * 4 + 4), malloc((size_t)(R * R) * 4), {0}, {0}, {0}, {0}};
	cudaStream_t st = (cudaStream_t)moe_cuda_stream(cd);
	cudaGraph_t g = NULL;
	cudaGraphExec_t ge = NULL;
	for (int l = 0; l < c->layers; l++) {
		make_inputs(c, rk, l);
		if (l == 1 && c->graph) {
			EXPECT(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
			int rc = run_layer(c, rk);
			EXPECT(rc == MOE_OK, "ll layer failed to record: %d", rc);
			EXPECT(cudaStreamEndCapture(st, &g) == cudaSuccess && g, "end capture");
			EXPECT(g && cudaGraphInstantiate(&ge, g, 0) == cudaSuccess, "instantiate");
			if (!ge)
				break;
		}
		if (l >= 1 && ge)
			EXPECT(cudaGraphLaunch(ge, st) == cudaSuccess, "graph launch");
		else
			EXPECT(run_layer(c, rk) == MOE_OK, "ll layer %d failed", l);
		EXPECT(C->sync(cd) == MOE_OK, "layer %d: the stream failed", l);
		expect_layer(c, rk, &x);
		accumulate(c, rk, &x, acc);
		for (int r = 0; r < R; r++) {
			check_receiver(c, rk, &x, r, l);
			check_source(c, rk, &x, r, l);
			check_state(c, rk, r, l, acc[r]);
			free(x.slot[r]);
		}
	}
	int64_t sent = 0, dropped = 0;
	for (int r = 0; r < R; r++)
		sent += acc[r][MOE_LL_STAT_SENT], dropped += acc[r][MOE_LL_STAT_DROPPED];
	printf("ll: %d ranks, H=%lld K=%lld epr=%lld cap=%lld scaled=%d %s: %lld slots sent, %lld dropped over %d layers\n",
	       R, (long long)c->h, (long long)c->k, (long long)c->epr, (long long)c->cap, c->scaled,
	       c->graph ? "graph" : "eager", (long long)sent, (long long)dropped, c->layers);
	if (ge)
		cudaGraphExecDestroy(ge);
	if (g)
		cudaGraphDestroy(g);
	free(x.blk), free(x.nblk);
	for (int f = 0; f < 7; f++)
		C->free(cd, tabs[f]);
	for (int r = 0; r < R; r++)
		free_rank(&rk[r]);
}

/* ffn_dev against ffn on the same rows: bit for bit (exact kinds on the device, SwiGLU through host counts). */
static void test_ffn_dev(enum moe_ffn_kind kind, int use_scale)
{
	int64_t H = 136, F = 64, ne = 5, counts64[5] = {7, 0, 19, 3, 11}, rows = 40, max_rows = 52;
	int32_t counts32[5];
	for (int j = 0; j < 5; j++)
		counts32[j] = (int32_t)counts64[j];
	moe_bf16 *x = malloc((size_t)(max_rows * H) * 2), *hw[3];
	float *sc = malloc((size_t)max_rows * 4);
	for (int64_t i = 0; i < max_rows * H; i++)
		x[i] = moe_f32_to_bf16((float)(2.0 * moe_rng_unit(3, 40, 0, 0, (uint64_t)i) - 1.0));
	for (int64_t i = 0; i < max_rows; i++)
		sc[i] = (float)moe_rng_unit(3, 41, 0, 0, (uint64_t)i);
	const moe_bf16 *w[3][5];
	void *dw[3];
	for (int mtx = 0; mtx < 3; mtx++) {
		hw[mtx] = malloc((size_t)(ne * H * F) * 2);
		for (int64_t i = 0; i < ne * H * F; i++)
			hw[mtx][i] = moe_f32_to_bf16((float)((moe_rng_unit(3, 42, (uint32_t)mtx, 0, (uint64_t)i) - 0.5) / 8));
		dw[mtx] = up(hw[mtx], (size_t)(ne * H * F) * 2);
		for (int j = 0; j < ne; j++)
			w[mtx][j] = (const moe_bf16 *)dw[mtx] + j * H * F;
	}
	struct moe_ffn_cfg cfg = {kind, H, F, ne, 9, w[0], w[1], w[2]};
	void *dx = up(x, (size_t)(max_rows * H) * 2), *dsc = up(sc, (size_t)max_rows * 4), *dc = up(counts32, sizeof(counts32));
	void *o1 = dalloc((size_t)(max_rows * H) * 2), *o2 = dalloc((size_t)(max_rows * H) * 2);
	EXPECT(C->ffn(cd, &cfg, dx, counts64, use_scale ? dsc : NULL, o1) == MOE_OK, "ffn failed");
	EXPECT(C->ffn_dev(cd, &cfg, dx, dc, max_rows, use_scale ? dsc : NULL, o2) == MOE_OK, "ffn_dev failed");
	moe_bf16 *h1 = down(o1, (size_t)(max_rows * H) * 2), *h2 = down(o2, (size_t)(max_rows * H) * 2);
	EXPECT(!memcmp(h1, h2, (size_t)(rows * H) * 2), "ffn_dev differs from ffn (kind %d, scale %d)", kind, use_scale);
	/* rows past the counts stay untouched (both start zeroed) */
	EXPECT(!memcmp(h2 + rows * H, h1 + rows * H, (size_t)((max_rows - rows) * H) * 2), "ffn_dev wrote past its rows");
#ifndef MOE_HAVE_CUTLASS
	if (kind == MOE_FFN_SWIGLU) { /* without the CUTLASS grouped GEMM: refused, not wrong, while a capture records */
		cudaStream_t st = (cudaStream_t)moe_cuda_stream(cd);
		cudaGraph_t g = NULL;
		cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
		int rc = C->ffn_dev(cd, &cfg, dx, dc, max_rows, NULL, o2);
		cudaStreamEndCapture(st, &g);
		if (g)
			cudaGraphDestroy(g);
		EXPECT(rc == MOE_ERR_UNSUPPORTED, "ffn_dev SwiGLU under capture returned %d", rc);
	}
#endif
	free(x), free(sc), free(h1), free(h2);
	for (int mtx = 0; mtx < 3; mtx++)
		free(hw[mtx]), C->free(cd, dw[mtx]);
	C->free(cd, dx), C->free(cd, dsc), C->free(cd, dc), C->free(cd, o1), C->free(cd, o2);
}

int main(void)
{
	if (gpu_test_open())
		return 77;
	test_ffn_dev(MOE_FFN_SCALE, 0);
	test_ffn_dev(MOE_FFN_SCALE, 1);
	test_ffn_dev(MOE_FFN_IDENTITY, 1);
	test_ffn_dev(MOE_FFN_SWIGLU, 1);
	/* R, tokens per rank, H, K, experts a rank, cap, scaled, layers, graph */
	struct ll_case cases[] = {
		{1, {37}, 256, 4, 8, 400, 0, 2, 0},            /* one rank, room for all */
		{1, {50}, 256, 4, 8, 64, 1, 3, 0},             /* one rank, drops */
		{2, {64, 29}, 512, 8, 4, 600, 1, 3, 0},        /* two ranks, room for all */
		{3, {40, 0, 77}, 250, 4, 3, 90, 0, 3, 0},      /* odd H (2-byte path), a rank with no tokens, drops */
		{4, {128, 128, 5, 60}, 7168, 8, 8, 256, 1, 2, 0}, /* DeepSeek-V3 width */
		{2, {64, 48}, 512, 8, 4, 100, 1, 4, 1},        /* graph: layers 1.. replay one capture */
		{3, {40, 0, 77}, 250, 4, 3, 90, 0, 4, 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
	C->fini(cd);
	printf("%d failures\n", failures);
	return failures ? 1 : 0;
}
