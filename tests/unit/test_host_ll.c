/* The host backend's ll ops on two simulated ranks in one process: rows land in each destination's block in
 * (local expert, token, slot) order, are packed by (local expert, source, j), come back to the slots that
 * sent them, and rows past the capacity are dropped, counted and left out of the counts. The expected
 * layouts are written out by hand from the routing below. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels.h"

enum { R = 2, E = 4, EPR = 2, K = 2, H = 3, MAXCAP = 8 };

/* Rank 0: t0 -> {3, 0}, t1 -> {1, 2}, t2 -> {0, -1 (skipped)}; rank 1: t0 -> {2, 1}, t1 -> {0, 3}.
 * Experts 0, 1 live on rank 0, experts 2, 3 on rank 1. */
static const int32_t idx0[] = {3, 0, 1, 2, 0, -1}, idx1[] = {2, 1, 0, 3};
static const int64_t nrows[R] = {3, 2};

struct world {
	moe_bf16 x[R][3 * H];
	float w[R][3 * K];
	moe_bf16 recv_x[R][R * MAXCAP * H], ret_y[R][R * MAXCAP * H];
	int32_t recv_e[R][R * MAXCAP], recv_cnt[R][R * EPR];
	float recv_w[R][R * MAXCAP];
	uint64_t sig_disp[R][R], sig_ret[R][R], epoch[R];
	int64_t stats[R][MOE_LL_STAT_EXPERT0 + EPR];
	moe_bf16 *tx[R], *ty[R];
	int32_t *te[R], *tc[R];
	float *tw[R];
	uint64_t *tsd[R], *tsr[R];
	struct moe_ll_plan pl[R];
	int32_t slot[R][3 * K];
};

/* Row t of rank q holds 10 q + t in every column; slot (t, k)'s weight is q + t / 4 + k / 8. */
static struct world *make(int64_t cap, int scaled)
{
	struct world *wd = calloc(1, sizeof(*wd));
	assert_non_null(wd);
	for (int q = 0; q < R; q++) {
		for (int t = 0; t < 3; t++) {
			for (int c = 0; c < H; c++)
				wd->x[q][t * H + c] = moe_f32_to_bf16((float)(10 * q + t));
			for (int k = 0; k < K; k++)
				wd->w[q][t * K + k] = (float)q + (float)t / 4 + (float)k / 8;
		}
		wd->tx[q] = wd->recv_x[q];
		wd->ty[q] = wd->ret_y[q];
		wd->te[q] = wd->recv_e[q];
		wd->tc[q] = wd->recv_cnt[q];
		wd->tw[q] = wd->recv_w[q];
		wd->tsd[q] = wd->sig_disp[q];
		wd->tsr[q] = wd->sig_ret[q];
	}
	for (int q = 0; q < R; q++)
		wd->pl[q] = (struct moe_ll_plan){
			.rank = q, .nranks = R, .hidden = H, .topk = K, .experts = E, .epr = EPR, .cap = cap, .scaled = scaled,
			.recv_x = wd->tx, .recv_e = wd->te, .recv_w = wd->tw, .recv_cnt = wd->tc, .sig_disp = wd->tsd,
			.ret_y = wd->ty, .sig_ret = wd->tsr, .d_epoch = &wd->epoch[q], .d_stats = wd->stats[q],
		};
	return wd;
}

static const struct moe_backend_ops *be(void)
{
	const struct moe_backend_ops *b = moe_backend_find("host");
	assert_non_null(b);
	assert_non_null(b->ll_dispatch);
	return b;
}

static void dispatch_all(struct world *wd)
{
	assert_int_equal(be()->ll_dispatch(NULL, &wd->pl[0], wd->x[0], nrows[0], idx0, wd->w[0], wd->slot[0]), MOE_OK);
	assert_int_equal(be()->ll_dispatch(NULL, &wd->pl[1], wd->x[1], nrows[1], idx1, wd->w[1], wd->slot[1]), MOE_OK);
}

static float row_value(const moe_bf16 *rows, int64_t i)
{
	for (int c = 1; c < H; c++)
		assert_int_equal(rows[i * H + c], rows[i * H]);
	return moe_bf16_to_f32(rows[i * H]);
}

static void test_dispatch_order_and_slots(void **state)
{
	(void)state;
	int64_t cap = 4;
	struct world *wd = make(cap, 1);
	dispatch_all(wd);
	/* rank 0 -> rank 0: le 0 = (t0,k1), (t2,k0); le 1 = (t1,k0). rank 0 -> rank 1: le 0 = (t1,k1); le 1 = (t0,k0) */
	const int32_t want0[] = {cap + 1, 0, 2, cap + 0, 1, -1};
	/* rank 1 -> rank 0: le 0 = (t1,k0); le 1 = (t0,k1). rank 1 -> rank 1: le 0 = (t0,k0); le 1 = (t1,k1) */
	const int32_t want1[] = {cap + 0, 1, 0, cap + 1};
	assert_memory_equal(wd->slot[0], want0, sizeof(want0));
	assert_memory_equal(wd->slot[1], want1, sizeof(want1));
	/* rank 1's block from source 0: rows of t1 then t0, local experts 0 then 1, weights travel (scaled) */
	assert_true(row_value(wd->recv_x[1], 0 * cap + 0) == 1.0f && row_value(wd->recv_x[1], 0 * cap + 1) == 0.0f);
	assert_int_equal(wd->recv_e[1][0], 0);
	assert_int_equal(wd->recv_e[1][1], 1);
	assert_true(wd->recv_w[1][0] == wd->w[0][1 * K + 1] && wd->recv_w[1][1] == wd->w[0][0]);
	/* counts per (source, local expert), the signals at epoch 1 */
	const int32_t cnt0[] = {2, 1, 1, 1}, cnt1[] = {1, 1, 1, 1};
	assert_memory_equal(wd->recv_cnt[0], cnt0, sizeof(cnt0));
	assert_memory_equal(wd->recv_cnt[1], cnt1, sizeof(cnt1));
	for (int q = 0; q < R; q++)
		for (int s = 0; s < R; s++)
			assert_int_equal(wd->sig_disp[q][s], 1);
	assert_int_equal(wd->stats[0][MOE_LL_STAT_SENT], 5);
	assert_int_equal(wd->stats[0][MOE_LL_STAT_SENT_REMOTE], 2);
	assert_int_equal(wd->stats[1][MOE_LL_STAT_SENT_REMOTE], 2);
	assert_int_equal(wd->stats[0][MOE_LL_STAT_DROPPED], 0);
	free(wd);
}

static void test_receive_return_roundtrip(void **state)
{
	(void)state;
	int64_t cap = 4;
	struct world *wd = make(cap, 1);
	dispatch_all(wd);
	moe_bf16 px[R][R * 4 * H], py[R][R * 4 * H];
	float pw[R][R * 4];
	int32_t cnt[R][EPR], src[R][R * 4];
	for (int q = 0; q < R; q++)
		assert_int_equal(be()->ll_receive(NULL, &wd->pl[q], px[q], pw[q], cnt[q], src[q]), MOE_OK);
	/* rank 0 packs le 0: s0 j0, j1, s1 j0; le 1: s0 j2, s1 j1 */
	const int32_t src0[] = {0, 1, cap + 0, 2, cap + 1}, cnt0[] = {3, 2};
	const float val0[] = {0, 2, 11, 1, 10};
	assert_memory_equal(src[0], src0, sizeof(src0));
	assert_memory_equal(cnt[0], cnt0, sizeof(cnt0));
	for (int i = 0; i < 5; i++)
		assert_true(row_value(px[0], i) == val0[i]);
	assert_true(pw[0][2] == wd->w[1][1 * K + 0]); /* rank 1's (t1, k0) */
	assert_int_equal(wd->stats[0][MOE_LL_STAT_EXPERT0 + 0], 3);
	assert_int_equal(wd->stats[0][MOE_LL_STAT_EXPERT0 + 1], 2);
	/* the experts' output: the packed row plus 100 x its owner, so a row returned to the wrong place shows */
	for (int q = 0; q < R; q++) {
		for (int i = 0; i < cnt[q][0] + cnt[q][1]; i++)
			for (int c = 0; c < H; c++)
				py[q][i * H + c] = moe_f32_to_bf16(row_value(px[q], i) + 100.0f * (float)q);
		assert_int_equal(be()->ll_return(NULL, &wd->pl[q], py[q], src[q], cnt[q]), MOE_OK);
	}
	for (int q = 0; q < R; q++) {
		assert_int_equal(be()->ll_wait_return(NULL, &wd->pl[q]), MOE_OK);
		assert_int_equal(wd->epoch[q], 1);
	}
	/* every slot finds its own token's row, computed by its expert's owner, at ret_y[d_slot] */
	for (int q = 0; q < R; q++) {
		const int32_t *idx = q ? idx1 : idx0;
		for (int i = 0; i < nrows[q] * K; i++) {
			if (idx[i] < 0)
				continue;
			float want = (float)(10 * q + i / K) + 100.0f * (float)(idx[i] / EPR);
			assert_true(row_value(wd->ret_y[q], wd->slot[q][i]) == want);
		}
	}
	free(wd);
}

static void test_overflow_dropped_and_counted(void **state)
{
	(void)state;
	struct world *wd = make(1, 0);
	dispatch_all(wd);
	/* cap 1: rank 0 keeps (t0,k1) for rank 0 and (t1,k1) for rank 1, drops the other three */
	const int32_t want0[] = {-1, 0, -1, 1, -1, -1};
	assert_memory_equal(wd->slot[0], want0, sizeof(want0));
	assert_int_equal(wd->stats[0][MOE_LL_STAT_DROPPED], 3);
	assert_int_equal(wd->stats[0][MOE_LL_STAT_SENT], 2);
	/* what landed is what the counts say: rank 0's block at rank 0 holds one row of local expert 0 */
	assert_int_equal(wd->recv_cnt[0][0], 1);
	assert_int_equal(wd->recv_cnt[0][1], 0);
	assert_int_equal(wd->recv_cnt[1][0], 1);
	assert_int_equal(wd->recv_cnt[1][1], 0);
	assert_int_equal(wd->stats[1][MOE_LL_STAT_DROPPED], 2);
	free(wd);
}

static void test_ffn_dev_reads_counts(void **state)
{
	(void)state;
	const struct moe_backend_ops *b = be();
	moe_bf16 x[4 * H], y[4 * H];
	for (int i = 0; i < 4 * H; i++)
		x[i] = moe_f32_to_bf16((float)(i / H + 1));
	struct moe_ffn_cfg fc = {.kind = MOE_FFN_SCALE, .hidden = H, .ffn = 1, .nexperts = 2, .first_expert = 2};
	int32_t cnt[2] = {1, 3};
	assert_int_equal(b->ffn_dev(NULL, &fc, x, cnt, 4, NULL, y), MOE_OK);
	/* row 0 by expert 2 (x3), rows 1-3 by expert 3 (x4) */
	assert_true(moe_bf16_to_f32(y[0]) == 3.0f && moe_bf16_to_f32(y[1 * H]) == 8.0f && moe_bf16_to_f32(y[3 * H]) == 16.0f);
	cnt[1] = 4; /* more rows than the buffers hold */
	assert_int_not_equal(b->ffn_dev(NULL, &fc, x, cnt, 4, NULL, y), MOE_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dispatch_order_and_slots),
		cmocka_unit_test(test_receive_return_roundtrip),
		cmocka_unit_test(test_overflow_dropped_and_counted),
		cmocka_unit_test(test_ffn_dev_reads_counts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
