/* The accounting check passes a layout whose counters are derived here by hand, and names the rank and
 * the quantity when a rank moves or computes more, or less, than its strategy and partition require. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "accounting.h"

/* One rank's report: counters, its routing histogram and what its experts computed (E = 4). */
static json_t *rank(int64_t rows, int64_t pad, const int64_t *routed, const int64_t *computed, int64_t sent,
		    int64_t ncomp, int64_t logical, int64_t wire)
{
	json_t *jr = json_array(), *jc = json_array();
	for (int e = 0; e < 4; e++) {
		json_array_append_new(jr, json_integer(routed[e]));
		json_array_append_new(jc, json_integer(computed[e]));
	}
	return json_pack("{s:{s:I,s:I,s:I,s:o,s:o},s:{s:I,s:I},s:{s:I,s:I,s:I}}", "accounting", "rows",
			 (json_int_t)rows, "pad_rows", (json_int_t)pad, "stray_slots", (json_int_t)0, "routed", jr,
			 "computed", jc, "slots", "sent", (json_int_t)sent, "computed", (json_int_t)ncomp, "bytes",
			 "logical", (json_int_t)logical, "wire", (json_int_t)wire, "fetched", (json_int_t)0);
}

/* a2a, dp = 1, tp = 2, sp with mask pads, T = 3, E = 4, topk = 1, hidden = 8 (16-byte rows), one layer.
 * Slices of L = 2 rows: rank 0 holds tokens 0, 1 (routed to experts 0, 3), rank 1 token 2 (expert 2) and
 * one pad (expert 0). Rank 0 owns experts 0, 1, rank 1 experts 2, 3. An a2a slot carries 16 + 4 bytes out
 * and 16 back. Rank 0: to itself 20 + 16 (one out, one back), to rank 1 20 + 16, TP merge of its 2 real
 * rows 32 x 2 receivers: logical 136, wire 36 + 32 = 68. Rank 1: 36 to rank 0, 36 to itself, merge 16 x 2:
 * logical 104, wire 36 + 16 = 52. */
static struct moe_params params(void)
{
	struct moe_params p;
	moe_params_defaults(&p);
	p.strategy = MOE_STRAT_A2A;
	p.partition = MOE_PART_SP;
	p.pad = MOE_PAD_MASK;
	p.dp = 1;
	p.tp = 2;
	p.experts = 4;
	p.topk = 1;
	p.hidden = 8;
	p.layers = 1;
	p.score_before_experts = false;
	return p;
}

static json_t *ranks(int64_t pad1, int64_t wire0, int64_t comp13)
{
	json_t *a = json_array();
	json_array_append_new(a, rank(2, 0, (int64_t[]){1, 0, 0, 1}, (int64_t[]){2, 0, 0, 0}, 2, 2, 136, wire0));
	json_array_append_new(a, rank(1 + pad1, pad1, (int64_t[]){1, 0, 1, 0}, (int64_t[]){0, 0, 1, comp13}, 2,
				      1 + comp13, 104, 52));
	return a;
}

static void expect_bad(json_t *fb, int rank, const char *quantity, int64_t want, int64_t got)
{
	assert_non_null(fb);
	assert_int_equal(json_integer_value(json_object_get(fb, "rank")), rank);
	assert_string_equal(json_string_value(json_object_get(fb, "quantity")), quantity);
	assert_int_equal(json_integer_value(json_object_get(fb, "expected")), want);
	assert_int_equal(json_integer_value(json_object_get(fb, "counted")), got);
	json_decref(fb);
}

static void test_consistent_passes(void **state)
{
	(void)state;
	struct moe_params p = params();
	json_t *a = ranks(1, 68, 1);
	assert_null(moe_accounting_check(&p, (int64_t[]){3}, a));
	json_decref(a);
}

static void test_extra_pad_rows_fail(void **state)
{
	(void)state;
	struct moe_params p = params();
	json_t *a = ranks(2, 68, 1); /* the pad count rounded up too far: one more pad row dispatched */
	expect_bad(moe_accounting_check(&p, (int64_t[]){3}, a), 1, "rows dispatched", 2, 3);
	json_decref(a);
}

static void test_bytes_and_experts_fail(void **state)
{
	(void)state;
	struct moe_params p = params();
	json_t *a = ranks(1, 68 + 20, 1); /* one slot too many on the wire */
	expect_bad(moe_accounting_check(&p, (int64_t[]){3}, a), 0, "wire bytes", 68, 88);
	json_decref(a);
	a = ranks(1, 68 - 16, 1); /* one row fewer */
	expect_bad(moe_accounting_check(&p, (int64_t[]){3}, a), 0, "wire bytes", 68, 52);
	json_decref(a);
	a = ranks(1, 68, 2); /* expert 3 computed a row nobody routed to it */
	expect_bad(moe_accounting_check(&p, (int64_t[]){3}, a), 1, "rows computed by expert 3", 1, 2);
	json_decref(a);
}

static void test_leader_non_leader_dispatch_fails(void **state)
{
	(void)state;
	struct moe_params p = params();
	p.partition = MOE_PART_LEADER;
	json_t *a = json_array();
	int64_t z[4] = {0};
	json_array_append_new(a, rank(3, 0, z, z, 3, 0, 0, 0));
	json_array_append_new(a, rank(3, 0, z, z, 3, 0, 0, 0)); /* a non-leader TP rank dispatching too */
	expect_bad(moe_accounting_check(&p, (int64_t[]){3}, a), 1, "rows dispatched", 0, 3);
	json_decref(a);
}

static void test_missing_report_fails(void **state)
{
	(void)state;
	struct moe_params p = params();
	json_t *a = ranks(1, 68, 1);
	json_object_del(json_array_get(a, 1), "accounting");
	expect_bad(moe_accounting_check(&p, (int64_t[]){3}, a), 1, "accounting report", 1, 0);
	json_decref(a);
}

/* ll on the same layout: the same rows and ids as a2a, plus per layer to each of the 2 ranks its epr = 2
 * int32 counts and an 8-byte signal, and an 8-byte signal back: 24 bytes a rank, of which the one to itself
 * is not wire. Rank 0: logical 136 + 48 = 184, wire 68 + 24 = 92; rank 1: 104 + 48 = 152, 52 + 24 = 76. */
static void test_ll_control_bytes(void **state)
{
	(void)state;
	struct moe_params p = params();
	p.strategy = MOE_STRAT_LL;
	json_t *a = json_array();
	json_array_append_new(a, rank(2, 0, (int64_t[]){1, 0, 0, 1}, (int64_t[]){2, 0, 0, 0}, 2, 2, 184, 92));
	json_array_append_new(a, rank(2, 1, (int64_t[]){1, 0, 1, 0}, (int64_t[]){0, 0, 1, 1}, 2, 2, 152, 76));
	assert_null(moe_accounting_check(&p, (int64_t[]){3}, a));
	json_decref(a);
	a = ranks(1, 68, 1); /* a2a's figures: the counts and signals are missing */
	expect_bad(moe_accounting_check(&p, (int64_t[]){3}, a), 0, "logical bytes", 184, 136);
	json_decref(a);
	/* two layers (the histograms count both): the rows' 72 bytes, the merge's 64 and the control's 48 a
	 * layer give rank 0 296 logical bytes; control bytes counted for one layer only fail */
	p.layers = 2;
	a = json_array();
	json_array_append_new(a, rank(4, 0, (int64_t[]){1, 0, 0, 1}, (int64_t[]){2, 0, 0, 0}, 4, 2, 296 - 48, 92));
	json_array_append_new(a, rank(4, 2, (int64_t[]){1, 0, 1, 0}, (int64_t[]){0, 0, 1, 1}, 4, 2, 152, 76));
	expect_bad(moe_accounting_check(&p, (int64_t[]){3}, a), 0, "logical bytes", 296, 296 - 48);
	json_decref(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_consistent_passes),
		cmocka_unit_test(test_extra_pad_rows_fail),
		cmocka_unit_test(test_bytes_and_experts_fail),
		cmocka_unit_test(test_leader_non_leader_dispatch_fails),
		cmocka_unit_test(test_missing_report_fails),
		cmocka_unit_test(test_ll_control_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
