/* Unit tests for the option table (params.c) and the scenario loader (scenario.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moe.h"
#include "params.h"
#include "strategy.h"
#include "scenario.h"

#define assert_contains(hay, needle)                                                      \
	do {                                                                              \
		if (!strstr((hay), (needle)))                                             \
			fail_msg("expected '%s' to contain '%s'", (hay), (needle));       \
	} while (0)

static void set_ok(struct moe_params *p, const char *key, const char *val)
{
	char err[512] = "";
	if (moe_param_set(p, key, val, err, sizeof(err)))
		fail_msg("%s = %s rejected: %s", key, val, err);
}

/* The key must be refused with a message containing want, and the struct left usable. */
static void set_bad(struct moe_params *p, const char *key, const char *val, const char *want)
{
	char err[512] = "";
	if (!moe_param_set(p, key, val, err, sizeof(err)))
		fail_msg("%s = %s accepted, expected an error containing '%s'", key, val, want);
	assert_contains(err, want);
}

static void defaults(struct moe_params *p)
{
	moe_params_defaults(p);
}

/* Validation must fail on key with a message containing want. */
static void invalid(const struct moe_params *p, const char *key, const char *want)
{
	char k[64] = "", err[512] = "";
	if (!moe_params_validate(p, k, sizeof(k), err, sizeof(err)))
		fail_msg("validation passed, expected key '%s': %s", key, want);
	assert_string_equal(k, key);
	assert_contains(err, want);
}

static void valid(const struct moe_params *p)
{
	char k[64] = "", err[512] = "";
	if (moe_params_validate(p, k, sizeof(k), err, sizeof(err)))
		fail_msg("validation failed on key '%s': %s", k, err);
}

/* ---- option table ---- */

/* graph = on: refused, with the reason, for a strategy that says why it cannot be captured and for a TP
 * merge that goes through the transport; off by default. */
static void test_graph_refusals(void **state)
{
	(void)state;
	struct moe_params p;
	char err[256];
	defaults(&p);
	assert_false(p.graph);
	assert_int_equal(moe_param_set(&p, "graph", "on", err, sizeof(err)), 0);
	assert_true(p.graph);
	static const char *const names[] = {"a2a", "agrs", "dwdp"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct moe_strategy_ops *st = moe_strategy_find(names[i]);
		assert_non_null(st);
		assert_non_null(st->no_graph);
		p.strategy = (enum moe_strategy_id)i;
		assert_string_equal(moe_strategy_name(p.strategy), names[i]);
		if (p.strategy == MOE_STRAT_DWDP)
			break; /* its layout keys would be refused first; the reason is checked above */
		char want[512];
		snprintf(want, sizeof(want), "graph = on: %s cannot be captured: %s", names[i], st->no_graph);
		invalid(&p, "graph", want);
	}
	p.strategy = MOE_STRAT_A2A;
	p.partition = MOE_PART_SP;
	invalid(&p, "graph", "partition = sp cannot be captured: its TP merge exchanges");
	p.graph = false;
	valid(&p);
}

static void test_defaults_valid(void **state)
{
	(void)state;
	struct moe_params p;
	defaults(&p);
	valid(&p);
	assert_string_equal(p.model, "qwen3-debug");
	assert_int_equal(p.hidden, 256);
	assert_int_equal(p.ffn, 128);
	assert_int_equal(p.experts, 16);
	assert_int_equal(p.topk, 4);
	assert_int_equal(p.dp, 1);
	assert_int_equal(p.tp, 1);
	assert_int_equal(p.tokens.kind, MOE_TOKENS_LIST);
	assert_int_equal(p.tokens.n, 1);
	assert_int_equal(p.tokens.list[0], 128);
	assert_int_equal(p.routing.kind, MOE_ROUTE_ROUTER);
	assert_int_equal(p.check.kind, MOE_CHECK_FULL);
	assert_true(p.route_norm);
	assert_false(p.route_bias);
	/* every table default parses (moe_params_defaults aborts otherwise) and every key is findable */
	for (size_t i = 0; i < moe_nopts; i++)
		assert_ptr_equal(moe_opt_find(moe_opts[i].name), &moe_opts[i]);
	assert_null(moe_opt_find("nosuchkey"));
}

static void test_set_int(void **state)
{
	(void)state;
	struct moe_params p;
	defaults(&p);
	set_ok(&p, "hidden", "64");
	assert_int_equal(p.hidden, 64);
	set_ok(&p, "hidden", "  65536 ");
	assert_int_equal(p.hidden, 65536);
	set_bad(&p, "hidden", "0", "0 out of range [1, 65536]");
	set_bad(&p, "hidden", "65537", "65537 out of range [1, 65536]");
	set_bad(&p, "hidden", "12x", "expected an integer, got '12x'");
	set_bad(&p, "hidden", "", "expected an integer, got ''");
	set_bad(&p, "hidden", "1.5", "expected an integer");
	set_bad(&p, "tp", "65", "out of range [1, 64]");
	set_bad(&p, "seed", "-1", "out of range [0, ");
	assert_int_equal(p.hidden, 65536); /* a refused value leaves the field as it was */
	set_bad(&p, "nosuchkey", "1", "unknown key 'nosuchkey'");
}

static void test_set_double_bool_enum(void **state)
{
	(void)state;
	struct moe_params p;
	defaults(&p);
	set_ok(&p, "route_scale", "2.5");
	assert_true(p.route_scale == 2.5);
	set_bad(&p, "route_scale", "-1", "out of range");
	set_bad(&p, "tolerance", "abc", "expected a number, got 'abc'");
	set_bad(&p, "tolerance", "nan", "expected a number");
	set_bad(&p, "timeout", "0", "out of range");

	const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
	for (int i = 0; i < 4; i++) {
		set_ok(&p, "route_bias", yes[i]);
		assert_true(p.route_bias);
		set_ok(&p, "route_bias", no[i]);
		assert_false(p.route_bias);
	}
	set_bad(&p, "route_bias", "maybe", "expected true or false, got 'maybe'");
	set_bad(&p, "l2_flush", "TRUE", "expected true or false");

	set_ok(&p, "score", "sigmoid");
	assert_int_equal(p.score, MOE_SCORE_SIGMOID);
	set_ok(&p, "strategy", "ll");
	assert_int_equal(p.strategy, MOE_STRAT_LL);
	set_ok(&p, "ll_capacity", "12");
	assert_int_equal(p.ll_capacity, 12);
	set_bad(&p, "ll_capacity", "-1", "");
	set_ok(&p, "strategy", "dwdp");
	assert_int_equal(p.strategy, MOE_STRAT_DWDP);
	set_ok(&p, "pad", "zero_token");
	assert_int_equal(p.pad, MOE_PAD_ZERO_TOKEN);
	set_ok(&p, "transport", "nccl");
	assert_int_equal(p.transport, MOE_TRANSPORT_NCCL);
	set_bad(&p, "score", "tanh", "expected one of softmax, sigmoid; got 'tanh'");
	set_bad(&p, "strategy", "ep", "expected one of a2a, agrs, dwdp, ll; got 'ep'");
	set_bad(&p, "expert", "relu", "swiglu, scale, identity");
	set_bad(&p, "backend", "Host", "auto, host, cuda");
	assert_int_equal(p.score, MOE_SCORE_SIGMOID);
	assert_int_equal(p.strategy, MOE_STRAT_DWDP);
}

static void test_set_tokens(void **state)
{
	(void)state;
	struct moe_params p;
	defaults(&p);
	set_ok(&p, "tokens", "4096,17");
	assert_int_equal(p.tokens.kind, MOE_TOKENS_LIST);
	assert_int_equal(p.tokens.n, 2);
	assert_int_equal(p.tokens.list[0], 4096);
	assert_int_equal(p.tokens.list[1], 17);
	set_ok(&p, "tokens", "0");
	assert_int_equal(p.tokens.n, 1);
	assert_int_equal(p.tokens.list[0], 0);
	set_ok(&p, "tokens", "uniform:1:10");
	assert_int_equal(p.tokens.kind, MOE_TOKENS_UNIFORM);
	assert_true(p.tokens.a == 1 && p.tokens.b == 10);
	set_ok(&p, "tokens", "lognormal:3:1");
	assert_int_equal(p.tokens.kind, MOE_TOKENS_LOGNORMAL);
	assert_true(p.tokens.a == 3 && p.tokens.b == 1);

	set_bad(&p, "tokens", "-1", "token count -1 out of range [0, 100000000]");
	set_bad(&p, "tokens", "4,x", "expected an integer token count, got 'x'");
	set_bad(&p, "tokens", "4,,5", "comma-separated list");
	set_bad(&p, "tokens", "4,", "expected a token count after the last comma, got '4,'");
	set_bad(&p, "tokens", "100000001", "out of range");
	set_bad(&p, "tokens", "uniform:5:1", "uniform:A:B needs whole numbers 0 <= A <= B <= 1e9, got 'uniform:5:1'");
	set_bad(&p, "tokens", "uniform:-1:5", "needs whole numbers 0 <= A");
	set_bad(&p, "tokens", "uniform:1.5:2", "needs whole numbers");
	set_bad(&p, "tokens", "uniform:1", "expected uniform:A:B or lognormal:MU:SIGMA");
	set_bad(&p, "tokens", "uniform:a:b", "expected uniform:A:B or lognormal:MU:SIGMA");
	set_bad(&p, "tokens", "lognormal:3:-1", "SIGMA >= 0");
}

static void test_set_routing_check(void **state)
{
	(void)state;
	struct moe_params p;
	defaults(&p);
	const char *kinds[] = {"router", "uniform", "balanced"};
	enum moe_routing_kind want[] = {MOE_ROUTE_ROUTER, MOE_ROUTE_UNIFORM, MOE_ROUTE_BALANCED};
	for (int i = 0; i < 3; i++) {
		set_ok(&p, "routing", kinds[i]);
		assert_int_equal(p.routing.kind, want[i]);
	}
	set_ok(&p, "routing", "zipf:1.2");
	assert_int_equal(p.routing.kind, MOE_ROUTE_ZIPF);
	assert_true(p.routing.arg == 1.2);
	set_ok(&p, "routing", "hot:0.5");
	assert_int_equal(p.routing.kind, MOE_ROUTE_HOT);
	assert_true(p.routing.arg == 0.5);
	set_ok(&p, "routing", "trace:x.txt");
	assert_int_equal(p.routing.kind, MOE_ROUTE_TRACE);
	assert_string_equal(p.routing.trace, "x.txt");
	set_bad(&p, "routing", "hot:2", "hot:F needs a fraction F in [0, 1], got 'hot:2'");
	set_bad(&p, "routing", "hot:", "hot:F needs a fraction");
	set_bad(&p, "routing", "zipf:-1", "zipf:S needs an exponent S in [0, 10]");
	set_bad(&p, "routing", "zipf:x", "zipf:S needs");
	set_bad(&p, "routing", "trace:", "trace:FILE needs a file name");
	set_bad(&p, "routing", "random", "expected router, uniform, balanced, zipf:S, hot:F or trace:FILE, got 'random'");

	set_ok(&p, "check", "full");
	assert_int_equal(p.check.kind, MOE_CHECK_FULL);
	set_ok(&p, "check", "sample:8");
	assert_int_equal(p.check.kind, MOE_CHECK_SAMPLE);
	assert_int_equal(p.check.sample, 8);
	set_ok(&p, "check", "off");
	assert_int_equal(p.check.kind, MOE_CHECK_OFF);
	set_bad(&p, "check", "sample:0", "expected full, sample:N (N >= 1) or off, got 'sample:0'");
	set_bad(&p, "check", "sample:", "expected full, sample:N");
	set_bad(&p, "check", "some", "expected full, sample:N");
}

static void test_models(void **state)
{
	(void)state;
	struct moe_params p;
	defaults(&p);
	set_ok(&p, "model", "deepseek-v3");
	assert_string_equal(p.model, "deepseek-v3");
	assert_int_equal(p.hidden, 7168);
	assert_int_equal(p.ffn, 2048);
	assert_int_equal(p.experts, 256);
	assert_int_equal(p.topk, 8);
	assert_int_equal(p.groups, 8);
	assert_int_equal(p.topk_groups, 4);
	assert_int_equal(p.shared_experts, 1);
	assert_int_equal(p.score, MOE_SCORE_SIGMOID);
	assert_true(p.route_norm);
	assert_true(p.route_bias);
	assert_true(p.route_scale == 2.5);
	valid(&p);

	set_ok(&p, "model", "qwen3-30b-a3b");
	assert_int_equal(p.hidden, 2048);
	assert_int_equal(p.ffn, 768);
	assert_int_equal(p.experts, 128);
	assert_int_equal(p.topk, 8);
	assert_int_equal(p.score, MOE_SCORE_SOFTMAX);
	assert_int_equal(p.groups, 1); /* switching presets resets deepseek's router keys */
	assert_int_equal(p.shared_experts, 0);
	assert_true(p.route_scale == 1.0);
	valid(&p);

	set_ok(&p, "model", "llama4-scout");
	assert_int_equal(p.hidden, 5120);
	assert_int_equal(p.ffn, 8192);
	assert_int_equal(p.experts, 16);
	assert_int_equal(p.topk, 1);
	valid(&p);

	/* a shape key set after the model wins */
	set_ok(&p, "hidden", "64");
	assert_int_equal(p.hidden, 64);
	assert_int_equal(p.ffn, 8192);

	set_bad(&p, "model", "gpt-5", "unknown model 'gpt-5'; known: qwen3-debug, qwen3-30b-a3b, deepseek-v3");
	assert_string_equal(p.model, "llama4-scout");
	assert_int_equal(p.hidden, 64);
	assert_int_equal(moe_model_apply(&p, "nope"), -1);
}

static void test_validate_rules(void **state)
{
	(void)state;
	struct moe_params p;

	defaults(&p);
	set_ok(&p, "topk", "17");
	invalid(&p, "topk", "topk = 17 must be <= experts = 16");
	set_ok(&p, "topk", "16");
	valid(&p);

	defaults(&p);
	set_ok(&p, "dp", "3");
	invalid(&p, "experts", "experts = 16 must be divisible by ep = dp*tp = 3");
	set_ok(&p, "dp", "2");
	set_ok(&p, "tp", "4");
	valid(&p);
	set_ok(&p, "tp", "16");
	invalid(&p, "experts", "divisible by ep = dp*tp = 32");

	defaults(&p);
	set_ok(&p, "dp", "2");
	set_ok(&p, "tokens", "1,2,3");
	invalid(&p, "tokens", "a list of 3 token counts needs dp = 3 (one per DP group), but dp = 2");
	set_ok(&p, "tokens", "1,2");
	valid(&p);
	set_ok(&p, "tokens", "5"); /* one value is for every group */
	valid(&p);

	defaults(&p);
	set_ok(&p, "groups", "3");
	invalid(&p, "groups", "experts = 16 must be divisible by groups = 3");
	set_ok(&p, "groups", "4");
	set_ok(&p, "topk_groups", "5");
	invalid(&p, "topk_groups", "topk_groups = 5 must be <= groups = 4");
	set_ok(&p, "topk_groups", "2");
	valid(&p);
	set_ok(&p, "topk", "9"); /* 2 kept groups of 4 experts hold only 8 */
	invalid(&p, "topk", "exceeds the experts in the kept groups");
	set_ok(&p, "topk", "4");
	set_ok(&p, "groups", "16");
	invalid(&p, "groups", "at least 2 experts per group");

	/* dwdp: W + (D-1)P = E, 1 <= P <= W, tp = 1 */
	defaults(&p);
	set_ok(&p, "strategy", "dwdp");
	set_ok(&p, "dp", "4");
	set_ok(&p, "experts_per_worker", "4");
	set_ok(&p, "prefetch_experts", "4");
	valid(&p); /* 4 + 3*4 = 16 */
	set_ok(&p, "prefetch_experts", "2");
	invalid(&p, "experts_per_worker", "W + (D-1)*P = E, got 4 + 3*2 = 10 != 16");
	set_ok(&p, "experts_per_worker", "10");
	valid(&p); /* 10 + 3*2 = 16 */
	set_ok(&p, "prefetch_experts", "0");
	invalid(&p, "prefetch_experts", "1 <= prefetch_experts <= experts_per_worker");
	set_ok(&p, "experts_per_worker", "1");
	set_ok(&p, "prefetch_experts", "5"); /* 1 + 3*5 = 16 but P > W */
	invalid(&p, "prefetch_experts", "got P = 5, W = 1");
	set_ok(&p, "experts_per_worker", "4");
	set_ok(&p, "prefetch_experts", "4");
	set_ok(&p, "tp", "2");
	set_ok(&p, "dp", "2");
	invalid(&p, "tp", "dwdp needs tp = 1, got tp = 2");
	set_ok(&p, "tp", "1");
	set_ok(&p, "dp", "6");
	set_ok(&p, "dwdp_size", "4");
	invalid(&p, "dwdp_size", "ranks = 6 must be a multiple of dwdp_size = 4");
	set_ok(&p, "dp", "8"); /* two groups of 4: W + 3P = 16 still holds; E need not divide ranks */
	valid(&p);
}

/* Parse "key = value" lines back into a fresh struct. */
static void parse_back(const char *text, struct moe_params *q)
{
	char *copy = strdup(text), *save = NULL;
	assert_non_null(copy);
	int n = 0;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strstr(line, " = ");
		if (!eq)
			fail_msg("serialised line without ' = ': '%s'", line);
		*eq = 0;
		moe_line_unescape(eq + 3); /* as the rank does */
		set_ok(q, line, eq + 3);
		n++;
	}
	free(copy);
	assert_int_equal(n, (int)moe_nopts - 1); /* every key but model */
}

static void roundtrip(struct moe_params *p)
{
	struct moe_params q;
	memset(p->base_dir, 0, sizeof(p->base_dir));
	char *s = moe_params_serialize(p);
	assert_null(strstr(s, "model = "));
	defaults(&q);
	parse_back(s, &q);
	memcpy(q.model, p->model, sizeof(q.model)); /* not serialised: the shape keys carry it */
	memset(q.base_dir, 0, sizeof(q.base_dir));
	if (memcmp(p, &q, sizeof(q)))
		fail_msg("serialise/parse round trip changed the params; text:\n%s", s);
	char *s2 = moe_params_serialize(&q);
	assert_string_equal(s, s2);
	free(s);
	free(s2);
}

static void test_serialize_roundtrip(void **state)
{
	(void)state;
	struct moe_params p;
	defaults(&p);
	roundtrip(&p);

	defaults(&p);
	set_ok(&p, "model", "deepseek-v3");
	set_ok(&p, "hidden", "64"); /* an override the preset must not undo on the other side */
	set_ok(&p, "dp", "2");
	set_ok(&p, "tokens", "4096,17");
	set_ok(&p, "routing", "zipf:1.2");
	set_ok(&p, "check", "sample:8");
	set_ok(&p, "tolerance", "0.1");
	set_ok(&p, "timeout", "0.3");
	set_ok(&p, "route_scale", "2.0000000000000004");
	set_ok(&p, "strategy", "agrs");
	set_ok(&p, "partition", "sp");
	set_ok(&p, "pad", "buffer");
	set_ok(&p, "expert", "scale");
	set_ok(&p, "l2_flush", "true");
	set_ok(&p, "seed", "9007199254740991");
	roundtrip(&p);
	char *s = moe_params_serialize(&p);
	assert_contains(s, "hidden = 64\n");
	assert_contains(s, "tokens = 4096,17\n");
	assert_contains(s, "routing = zipf:1.2\n");
	assert_contains(s, "check = sample:8\n");
	assert_contains(s, "score = sigmoid\n");
	free(s);

	defaults(&p);
	set_ok(&p, "tokens", "lognormal:3.3:0.7");
	set_ok(&p, "routing", "trace:some dir/t.txt");
	set_ok(&p, "check", "off");
	roundtrip(&p);
	set_ok(&p, "tokens", "uniform:0:1000");
	set_ok(&p, "routing", "hot:0.1");
	roundtrip(&p);

	/* a newline in a path stays inside its value: no line of its own reaches the rank */
	defaults(&p);
	set_ok(&p, "routing", "trace:x\niters = 999\\n\r.txt");
	s = moe_params_serialize(&p);
	assert_null(strstr(s, "\niters = 999"));
	assert_contains(s, "routing = trace:x\\niters = 999\\\\n\\r.txt\n");
	free(s);
	roundtrip(&p);
}

static void test_tokens_resolve(void **state)
{
	(void)state;
	struct moe_params p;
	int64_t a[8], b[8], c[8];
	defaults(&p);
	set_ok(&p, "dp", "8");
	set_ok(&p, "tokens", "uniform:0:1000");
	moe_tokens_resolve(&p, a);
	moe_tokens_resolve(&p, b);
	assert_memory_equal(a, b, sizeof(a));
	set_ok(&p, "seed", "2");
	moe_tokens_resolve(&p, c);
	assert_memory_not_equal(a, c, sizeof(a));
	for (int d = 0; d < 8; d++) {
		assert_in_range(a[d], 0, 1000);
		assert_in_range(c[d], 0, 1000);
	}
	/* the groups of one case differ too (not one draw copied to all) */
	int same = 1;
	for (int d = 1; d < 8; d++)
		same &= a[d] == a[0];
	assert_false(same);

	/* both ends of uniform:A:B are reachable, nothing outside */
	set_ok(&p, "tokens", "uniform:1:10");
	int seen[11] = {0};
	for (int s = 0; s < 300; s++) {
		char v[16];
		snprintf(v, sizeof(v), "%d", s);
		set_ok(&p, "seed", v);
		moe_tokens_resolve(&p, a);
		for (int d = 0; d < 8; d++) {
			assert_in_range(a[d], 1, 10);
			seen[a[d]]++;
		}
	}
	for (int v = 1; v <= 10; v++)
		if (!seen[v])
			fail_msg("uniform:1:10 never drew %d in 2400 draws", v);

	set_ok(&p, "tokens", "uniform:7:7");
	moe_tokens_resolve(&p, a);
	for (int d = 0; d < 8; d++)
		assert_int_equal(a[d], 7);

	set_ok(&p, "tokens", "lognormal:3:1");
	moe_tokens_resolve(&p, a);
	moe_tokens_resolve(&p, b);
	assert_memory_equal(a, b, sizeof(a));
	for (int d = 0; d < 8; d++)
		assert_in_range(a[d], 0, 100000000);
	set_ok(&p, "tokens", "lognormal:3:0"); /* sigma 0: exactly e^3 */
	moe_tokens_resolve(&p, a);
	for (int d = 0; d < 8; d++)
		assert_int_equal(a[d], 20);

	set_ok(&p, "tokens", "5");
	moe_tokens_resolve(&p, a);
	for (int d = 0; d < 8; d++)
		assert_int_equal(a[d], 5);
	set_ok(&p, "tokens", "1,2,3,4,5,6,7,8");
	moe_tokens_resolve(&p, a);
	for (int d = 0; d < 8; d++)
		assert_int_equal(a[d], d + 1);
}

/* ---- scenario loader ---- */

static char tmpdir[256];

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/moe_test_params.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *write_scn(const char *name, const char *text)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void load_ok(const char *path, char *const *sets, int nsets, struct moe_caselist *l)
{
	char err[2048] = "";
	memset(l, 0, sizeof(*l));
	if (moe_scenario_load(path, sets, nsets, l, err, sizeof(err)))
		fail_msg("loading %s: %s", path, err);
}

static void load_bad(const char *path, char *const *sets, int nsets, const char *want)
{
	char err[2048] = "";
	struct moe_caselist l = {0};
	if (!moe_scenario_load(path, sets, nsets, &l, err, sizeof(err)))
		fail_msg("loading %s succeeded, expected '%s'", path, want);
	assert_contains(err, want);
	moe_caselist_free(&l);
}

static void test_scn_global(void **state)
{
	(void)state;
	const char *path = write_scn("global.ini", "; defaults\n"
						   "[global]\n"
						   "hidden = 64\n"
						   "topk = 2\n"
						   "\n"
						   "[a]\n"
						   "topk = 3\n"
						   "[b]\n"
						   "hidden = 32\n");
	struct moe_caselist l;
	load_ok(path, NULL, 0, &l);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[0].name, "a");
	assert_int_equal(l.v[0].p.hidden, 64);
	assert_int_equal(l.v[0].p.topk, 3);
	assert_int_equal(l.v[0].line, 6);
	assert_string_equal(l.v[1].name, "b");
	assert_int_equal(l.v[1].p.hidden, 32);
	assert_int_equal(l.v[1].p.topk, 2);
	assert_int_equal(l.v[1].line, 8);
	assert_string_equal(l.v[1].file, path);
	assert_string_equal(l.v[0].p.base_dir, tmpdir);
	assert_int_equal(l.v[1].p.ffn, 128); /* untouched keys keep the defaults */
	moe_caselist_free(&l);
	assert_int_equal(l.n, 0);
	assert_null(l.v);
}

static void test_scn_sweep(void **state)
{
	(void)state;
	const char *path = write_scn("sweep.ini", "[base]\n"
						  "tp = 1|2\n"
						  "dp = 2\n"
						  "tokens = 8|16\n");
	struct moe_caselist l;
	load_ok(path, NULL, 0, &l);
	assert_int_equal(l.n, 4);
	/* the first swept key varies fastest */
	const char *names[] = {"base/tp=1/tokens=8", "base/tp=2/tokens=8", "base/tp=1/tokens=16", "base/tp=2/tokens=16"};
	const int64_t tp[] = {1, 2, 1, 2}, tok[] = {8, 8, 16, 16};
	for (int i = 0; i < 4; i++) {
		assert_string_equal(l.v[i].name, names[i]);
		assert_int_equal(l.v[i].p.tp, tp[i]);
		assert_int_equal(l.v[i].p.dp, 2);
		assert_int_equal(l.v[i].p.tokens.n, 1);
		assert_int_equal(l.v[i].p.tokens.list[0], tok[i]);
		assert_int_equal(l.v[i].line, 1);
	}
	moe_caselist_free(&l);

	/* a sweep in [global] sweeps every case; spaces around elements are dropped */
	path = write_scn("gsweep.ini", "[global]\n"
				       "topk = 1 | 2 | 4\n"
				       "[x]\n"
				       "[y]\n"
				       "topk = 8\n");
	load_ok(path, NULL, 0, &l);
	assert_int_equal(l.n, 4);
	assert_string_equal(l.v[0].name, "x/topk=1");
	assert_string_equal(l.v[1].name, "x/topk=2");
	assert_string_equal(l.v[2].name, "x/topk=4");
	assert_int_equal(l.v[2].p.topk, 4);
	assert_string_equal(l.v[3].name, "y"); /* the section's single value replaces the sweep */
	assert_int_equal(l.v[3].p.topk, 8);
	moe_caselist_free(&l);
}

static void test_scn_set(void **state)
{
	(void)state;
	const char *path = write_scn("set.ini", "[c]\n"
						"topk = 2\n"
						"[d]\n"
						"hidden = 32\n");
	struct moe_caselist l;
	char *one[] = {"topk=3"};
	load_ok(path, one, 1, &l);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[0].name, "c");
	assert_int_equal(l.v[0].p.topk, 3);
	assert_int_equal(l.v[1].p.topk, 3); /* applies to every case */
	assert_int_equal(l.v[1].p.hidden, 32);
	moe_caselist_free(&l);

	char *sweep[] = {"topk=1|2", "hidden=48"};
	load_ok(path, sweep, 2, &l);
	assert_int_equal(l.n, 4);
	assert_string_equal(l.v[0].name, "c/topk=1");
	assert_string_equal(l.v[1].name, "c/topk=2");
	assert_string_equal(l.v[2].name, "d/topk=1");
	assert_string_equal(l.v[3].name, "d/topk=2");
	assert_int_equal(l.v[1].p.topk, 2);
	assert_int_equal(l.v[3].p.hidden, 48);
	moe_caselist_free(&l);

	char *bad_key[] = {"nosuchkey=1"};
	load_bad(path, bad_key, 1, "--set nosuchkey=1: unknown key 'nosuchkey'");
	char *no_eq[] = {"topk"};
	load_bad(path, no_eq, 1, "--set topk: expected KEY=VALUE");
	char *bad_val[] = {"topk=99"};
	load_bad(path, bad_val, 1, "--set topk: key 'topk': 99 out of range [1, 64]");
	char *invalid_v[] = {"topk=32"};
	load_bad(path, invalid_v, 1, "--set topk: key 'topk': topk = 32 must be <= experts = 16 (case c)");
}

static void test_scn_empty_section_and_list(void **state)
{
	(void)state;
	const char *path = write_scn("empty.ini", "[global]\n"
						  "dp = 2\n"
						  "[empty]\n"
						  "[list]\n"
						  "tokens = 4096,17\n"
						  "\n"
						  "[last]\n");
	struct moe_caselist l;
	load_ok(path, NULL, 0, &l);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].name, "empty");
	assert_int_equal(l.v[0].line, 3);
	assert_int_equal(l.v[0].p.dp, 2);
	assert_string_equal(l.v[1].name, "list"); /* a list is one value, not a sweep */
	assert_int_equal(l.v[1].line, 4);
	assert_int_equal(l.v[1].p.tokens.n, 2);
	assert_int_equal(l.v[1].p.tokens.list[0], 4096);
	assert_int_equal(l.v[1].p.tokens.list[1], 17);
	assert_string_equal(l.v[2].name, "last");
	assert_int_equal(l.v[2].line, 7);
	moe_caselist_free(&l);

	/* a list swept against another list */
	path = write_scn("listsweep.ini", "[s]\ndp = 2\ntokens = 1,2|3,4\n");
	load_ok(path, NULL, 0, &l);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[0].name, "s/tokens=1,2");
	assert_string_equal(l.v[1].name, "s/tokens=3,4");
	assert_int_equal(l.v[1].p.tokens.list[1], 4);
	moe_caselist_free(&l);
}

static void test_scn_model_first(void **state)
{
	(void)state;
	const char *path = write_scn("model.ini", "[global]\n"
						  "ffn = 96\n"
						  "[ds]\n"
						  "hidden = 64\n"
						  "model = deepseek-v3\n"
						  "[qwen]\n"
						  "model = qwen3-30b-a3b\n");
	struct moe_caselist l;
	load_ok(path, NULL, 0, &l);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.v[0].p.hidden, 64);
	assert_int_equal(l.v[0].p.ffn, 96); /* a [global] shape key beats a section's model too */
	assert_int_equal(l.v[0].p.experts, 256);
	assert_int_equal(l.v[0].p.topk, 8);
	assert_string_equal(l.v[0].p.model, "deepseek-v3");
	assert_int_equal(l.v[1].p.hidden, 2048);
	assert_int_equal(l.v[1].p.ffn, 96);
	assert_int_equal(l.v[1].p.experts, 128);
	moe_caselist_free(&l);
}

static void test_scn_errors(void **state)
{
	(void)state;
	char want[600];
	const char *path;

	path = write_scn("e1.ini", "[c]\nexperts = 16\n\ntopk = 20\n");
	snprintf(want, sizeof(want), "%s:4: key 'topk': topk = 20 must be <= experts = 16 (case c)", path);
	load_bad(path, NULL, 0, want);

	/* a rule on a key the file does not name points at the section header */
	path = write_scn("e2.ini", "; x\n[c]\ndp = 1|3\n");
	snprintf(want, sizeof(want), "%s:2: key 'experts': experts = 16 must be divisible by ep = dp*tp = 3 (expert e lives on rank e/(E/ep)) (case c/dp=3)",
		 path);
	load_bad(path, NULL, 0, want);

	/* a rule broken by a [global] key points at its line */
	path = write_scn("e3.ini", "[global]\ntopk = 32\n[c]\nexperts = 64\n[d]\n");
	snprintf(want, sizeof(want), "%s:2: key 'topk': topk = 32 must be <= experts = 16 (case d)", path);
	load_bad(path, NULL, 0, want);

	path = write_scn("e4.ini", "[c]\ntp = 1||2\n");
	snprintf(want, sizeof(want), "%s:2: key 'tp': empty element in sweep '1||2'", path);
	load_bad(path, NULL, 0, want);
	path = write_scn("e5.ini", "[c]\ntp = 1|\n");
	load_bad(path, NULL, 0, ":2: key 'tp': empty element in sweep '1|'");
	path = write_scn("e6.ini", "[c]\ntp = 1|x\n");
	load_bad(path, NULL, 0, ":2: key 'tp': expected an integer, got 'x'");

	path = write_scn("e7.ini", "[global]\n");
	snprintf(want, sizeof(want), "%s: no cases", path);
	load_bad(path, NULL, 0, want);
	path = write_scn("e8.ini", "");
	load_bad(path, NULL, 0, ": no cases");
	path = write_scn("e9.ini", "[c]\n[ c ]\n");
	load_bad(path, NULL, 0, ":2: section [c] appears twice (first on line 1)");
	path = write_scn("e10.ini", "[c]\n[]\n");
	load_bad(path, NULL, 0, ":2: empty section name");
	path = write_scn("e11.ini", "[c]\nhidden\n");
	load_bad(path, NULL, 0, ":2: not INI syntax");

	snprintf(want, sizeof(want), "%s/nope.ini", tmpdir);
	load_bad(want, NULL, 0, "nope.ini: cannot open: No such file or directory");
}

/* A line of len characters: head, then fill characters up to len. */
static void long_line(char *buf, size_t len, const char *head)
{
	size_t h = strlen(head);
	memcpy(buf, head, h);
	memset(buf + h, 'x', len - h);
	buf[len] = 0;
}

/* inih reads a line into 200 bytes: 199 characters and the line end are the most a line may have. A
 * longer line is an error on its own line; the lines after one at the limit keep their numbers. */
static void test_scn_long_lines(void **state)
{
	(void)state;
	char comment[1024], key[256], text[4096], want[600];
	const char *path;
	struct moe_caselist l;
	long_line(comment, 199, "; ");
	long_line(key, 199, "topk = 2 ; "); /* an inline comment fills the key's line */

	snprintf(text, sizeof(text), "[a]\n%s\n%s\n[b]\ntopk = 3\n", comment, key);
	path = write_scn("l1.ini", text);
	load_ok(path, NULL, 0, &l);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.v[0].p.topk, 2);
	assert_int_equal(l.v[1].line, 4);
	assert_int_equal(l.v[1].p.topk, 3);
	moe_caselist_free(&l);

	/* an error after them names its own line */
	snprintf(text, sizeof(text), "[a]\n%s\n%s\nscore = tanh\n", comment, key);
	path = write_scn("l2.ini", text);
	snprintf(want, sizeof(want), "%s:4: key 'score': expected one of softmax, sigmoid; got 'tanh'", path);
	load_bad(path, NULL, 0, want);

	/* the same with CRLF line ends, and at the end of a file without a line end */
	snprintf(text, sizeof(text), "[a]\r\n%s\r\n%s\r\n[b]\r\n%s", comment, key, comment);
	path = write_scn("l3.ini", text);
	load_ok(path, NULL, 0, &l);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.v[0].p.topk, 2);
	assert_int_equal(l.v[1].line, 4);
	moe_caselist_free(&l);

	/* one character more, as a comment or a key, or far more */
	long_line(comment, 200, "; ");
	snprintf(text, sizeof(text), "[a]\ntopk = 2\n%s\n[b]\n", comment);
	path = write_scn("l4.ini", text);
	snprintf(want, sizeof(want), "%s:3: line is longer than 199 characters (the limit of the INI reader)", path);
	load_bad(path, NULL, 0, want);
	long_line(key, 200, "topk = 2 ; ");
	snprintf(text, sizeof(text), "[a]\r\n%s\r\n", key);
	path = write_scn("l5.ini", text);
	load_bad(path, NULL, 0, ":2: line is longer than 199 characters");
	long_line(comment, 1000, "; ");
	snprintf(text, sizeof(text), "[a]\n%s\n%s", comment, key);
	path = write_scn("l6.ini", text);
	load_bad(path, NULL, 0, ":2: line is longer than 199 characters");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_valid),
		cmocka_unit_test(test_graph_refusals),
		cmocka_unit_test(test_set_int),
		cmocka_unit_test(test_set_double_bool_enum),
		cmocka_unit_test(test_set_tokens),
		cmocka_unit_test(test_set_routing_check),
		cmocka_unit_test(test_models),
		cmocka_unit_test(test_validate_rules),
		cmocka_unit_test(test_serialize_roundtrip),
		cmocka_unit_test(test_tokens_resolve),
		cmocka_unit_test(test_scn_global),
		cmocka_unit_test(test_scn_sweep),
		cmocka_unit_test(test_scn_set),
		cmocka_unit_test(test_scn_empty_section_and_list),
		cmocka_unit_test(test_scn_model_first),
		cmocka_unit_test(test_scn_errors),
		cmocka_unit_test(test_scn_long_lines),
	};
	return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
