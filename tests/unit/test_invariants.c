/* Each invariant checker passes on consistent results and fails when fed a wrong one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "invariants.h"

/* A minimal case record: params, verdict, digests, ranks with slots and repeat flags. */
static json_t *mk(const char *name, const char *strategy, const char *partition, const char *pad, const char *tp,
		  const char *digest, int64_t tokens)
{
	json_t *params = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "strategy", strategy, "partition", partition,
				   "pad", pad, "tp", tp, "dp", "1", "topk", "2", "layers", "1", "iters", "5");
	json_t *ranks = json_array();
	json_array_append_new(ranks, json_pack("{s:b,s:{s:I,s:I},s:I,s:I}", "repeat_identical", 1, "slots", "sent",
					       (json_int_t)(tokens * 2), "computed", (json_int_t)(tokens * 2), "rows",
					       (json_int_t)tokens, "pad_rows", (json_int_t)0));
	return json_pack("{s:s,s:o,s:s,s:[s],s:[I],s:o}", "name", name, "params", params, "verdict", "ok", "digests",
			 digest, "tokens", (json_int_t)tokens, "ranks", ranks);
}

static int count(json_t *inv, const char *name, int passed)
{
	int n = 0;
	size_t i;
	json_t *v;
	json_array_foreach(inv, i, v) n += !strcmp(json_string_value(json_object_get(v, "invariant")), name) &&
					   json_is_true(json_object_get(v, "passed")) == passed;
	return n;
}

static void run(json_t *cases, const char *name, int want_pass, int want_fail)
{
	int failed;
	json_t *inv = moe_invariants_check(cases, &failed);
	assert_int_equal(count(inv, name, 1), want_pass);
	assert_int_equal(count(inv, name, 0), want_fail);
	json_decref(inv);
	json_decref(cases);
}

static void test_leader(void **s)
{
	(void)s;
	run(json_pack("[o,o]", mk("a", "a2a", "leader", "mask", "2", "aa", 8), mk("b", "a2a", "replicate", "mask", "2", "aa", 8)),
	    "leader_equals_replicate", 1, 0);
	run(json_pack("[o,o]", mk("a", "a2a", "leader", "mask", "2", "aa", 8), mk("b", "a2a", "replicate", "mask", "2", "ab", 8)),
	    "leader_equals_replicate", 0, 1);
	/* different shapes are not compared at all */
	run(json_pack("[o,o]", mk("a", "a2a", "leader", "mask", "2", "aa", 8), mk("b", "a2a", "replicate", "mask", "4", "ab", 8)),
	    "leader_equals_replicate", 0, 0);
}

/* a case with graph = VALUE (the key as run.json renders it) */
static json_t *with_graph(json_t *c, const char *value)
{
	json_object_set_new(json_object_get(c, "params"), "graph", json_string(value));
	return c;
}

static void test_graph(void **s)
{
	(void)s;
	run(json_pack("[o,o]", with_graph(mk("g", "ll", "replicate", "mask", "1", "aa", 8), "true"),
		      with_graph(mk("e", "ll", "replicate", "mask", "1", "aa", 8), "false")),
	    "graph_equals_eager", 1, 0);
	run(json_pack("[o,o]", with_graph(mk("g", "ll", "replicate", "mask", "1", "aa", 8), "true"),
		      with_graph(mk("e", "ll", "replicate", "mask", "1", "ab", 8), "false")),
	    "graph_equals_eager", 0, 1);
	/* another strategy is another computation */
	run(json_pack("[o,o]", with_graph(mk("g", "ll", "replicate", "mask", "1", "aa", 8), "true"),
		      with_graph(mk("e", "a2a", "replicate", "mask", "1", "ab", 8), "false")),
	    "graph_equals_eager", 0, 0);
}

static void test_mask_buffer(void **s)
{
	(void)s;
	run(json_pack("[o,o]", mk("a", "a2a", "sp", "mask", "2", "x", 7), mk("b", "a2a", "sp", "buffer", "2", "x", 7)),
	    "mask_equals_buffer", 1, 0);
	run(json_pack("[o,o]", mk("a", "a2a", "sp", "mask", "2", "x", 7), mk("b", "a2a", "sp", "buffer", "2", "y", 7)),
	    "mask_equals_buffer", 0, 1);
}

static void test_padding(void **s)
{
	(void)s;
	/* T % tp == 0: compared */
	run(json_pack("[o,o]", mk("a", "a2a", "sp", "zero_token", "2", "x", 8), mk("b", "a2a", "replicate", "mask", "2", "z", 8)),
	    "padding_equals_unpadded", 0, 1);
	/* T % tp != 0: not required */
	run(json_pack("[o,o]", mk("a", "a2a", "sp", "zero_token", "2", "x", 7), mk("b", "a2a", "replicate", "mask", "2", "z", 7)),
	    "padding_equals_unpadded", 0, 0);
}

static void test_dwdp(void **s)
{
	(void)s;
	run(json_pack("[o,o]", mk("a", "dwdp", "replicate", "mask", "1", "q", 8), mk("b", "a2a", "replicate", "mask", "1", "q", 8)),
	    "dwdp_equals_local", 1, 0);
	run(json_pack("[o,o]", mk("a", "dwdp", "replicate", "mask", "1", "q", 8), mk("b", "a2a", "replicate", "mask", "1", "r", 8)),
	    "dwdp_equals_local", 0, 1);
}

static void test_ll(void **s)
{
	(void)s;
	run(json_pack("[o,o]", mk("a", "ll", "sp", "mask", "2", "q", 7), mk("b", "a2a", "sp", "mask", "2", "q", 7)),
	    "ll_equals_a2a", 1, 0);
	run(json_pack("[o,o]", mk("a", "ll", "sp", "mask", "2", "q", 7), mk("b", "a2a", "sp", "mask", "2", "r", 7)),
	    "ll_equals_a2a", 0, 1);
	/* a capacity set on the ll case alone does not change what is computed */
	json_t *a = mk("a", "ll", "leader", "mask", "2", "q", 7);
	json_object_set_new(json_object_get(a, "params"), "ll_capacity", json_string("64"));
	json_t *b = mk("b", "a2a", "leader", "mask", "2", "q", 7);
	json_object_set_new(json_object_get(b, "params"), "ll_capacity", json_string("0"));
	run(json_pack("[o,o]", a, b), "ll_equals_a2a", 1, 0);
	/* another strategy, or another partition, is not compared */
	run(json_pack("[o,o]", mk("a", "ll", "sp", "mask", "2", "q", 7), mk("b", "agrs", "sp", "mask", "2", "r", 7)),
	    "ll_equals_a2a", 0, 0);
	run(json_pack("[o,o]", mk("a", "ll", "sp", "mask", "2", "q", 7), mk("b", "a2a", "leader", "mask", "2", "r", 7)),
	    "ll_equals_a2a", 0, 0);
}

static void test_repeat_and_conservation(void **s)
{
	(void)s;
	json_t *a = mk("a", "a2a", "replicate", "mask", "1", "q", 8);
	json_object_set_new(json_array_get(json_object_get(a, "ranks"), 0), "repeat_identical", json_false());
	run(json_pack("[o]", a), "repeat_identical", 0, 1);
	json_t *b = mk("b", "a2a", "replicate", "mask", "1", "q", 8);
	json_object_set_new(json_object_get(json_array_get(json_object_get(b, "ranks"), 0), "slots"), "computed",
			    json_integer(15));
	run(json_pack("[o]", b), "conservation", 0, 1);
	run(json_pack("[o]", mk("c", "a2a", "replicate", "mask", "1", "q", 8)), "conservation", 1, 0);
	/* the same case twice must agree */
	run(json_pack("[o,o]", mk("a", "a2a", "replicate", "mask", "1", "q", 8), mk("a2", "a2a", "replicate", "mask", "1", "w", 8)),
	    "repeat_identical", 2, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_leader), cmocka_unit_test(test_graph), cmocka_unit_test(test_mask_buffer), cmocka_unit_test(test_padding),
		cmocka_unit_test(test_dwdp), cmocka_unit_test(test_ll), cmocka_unit_test(test_repeat_and_conservation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
