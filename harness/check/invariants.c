/* Cross-case invariants: leader == replicate, mask == buffer, padding == unpadded (tp = 1 or T % tp = 0),
 * dwdp == the all-local layer (a2a's slot-order sums), ll == a2a (the same slot-order sums, moved by
 * device-initiated writes instead of host-sized all-to-alls), repeated runs identical, token counts conserved,
 * pad rows inert, graph = on == graph = off. Each compares the output digests the ranks reported. */
#include "invariants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys that do not change what is computed. */
static const char *const neutral[] = {"iters", "warmup", "timeout", "check", "transport", "backend", "l2_flush", "graph",
				      "tolerance", "model", NULL};

static int in(const char *k, const char *const *set)
{
	for (int i = 0; set && set[i]; i++)
		if (!strcmp(set[i], k))
			return 1;
	return 0;
}

static const char *param(json_t *c, const char *k)
{
	const char *v = json_string_value(json_object_get(json_object_get(c, "params"), k));
	return v ? v : "";
}

/* Same computation apart from the keys in `differ`? */
static int same_but(json_t *a, json_t *b, const char *const *differ)
{
	json_t *pa = json_object_get(a, "params"), *pb = json_object_get(b, "params");
	const char *k;
	json_t *v;
	json_object_foreach(pa, k, v)
	{
		if (in(k, neutral) || in(k, differ))
			continue;
		const char *w = json_string_value(json_object_get(pb, k));
		if (!w || strcmp(w, json_string_value(v)))
			return 0;
	}
	return 1;
}

static int ok(json_t *c)
{
	const char *v = json_string_value(json_object_get(c, "verdict"));
	return v && (!strcmp(v, "ok") || !strcmp(v, "unchecked")); /* unchecked outputs are still its outputs */
}

static void add(json_t *out, const char *name, json_t *a, json_t *b, int passed, const char *detail, int *failed)
{
	json_t *names = json_array();
	json_array_append_new(names, json_string(json_string_value(json_object_get(a, "name"))));
	if (b)
		json_array_append_new(names, json_string(json_string_value(json_object_get(b, "name"))));
	json_array_append_new(out, json_pack("{s:s,s:o,s:b,s:s}", "invariant", name, "cases", names, "passed", passed,
					     "detail", detail));
	*failed += !passed;
}

static int digests_equal(json_t *a, json_t *b)
{
	return json_equal(json_object_get(a, "digests"), json_object_get(b, "digests"));
}

static int divisible(json_t *c)
{
	long tp = atol(param(c, "tp"));
	size_t i;
	json_t *t;
	if (tp <= 1)
		return 1;
	json_array_foreach(json_object_get(c, "tokens"), i, t) if (json_integer_value(t) % tp) return 0;
	return 1;
}

json_t *moe_invariants_check(json_t *cases, int *failed)
{
	json_t *out = json_array();
	*failed = 0;
	size_t n = json_array_size(cases);
	for (size_t i = 0; i < n; i++) {
		json_t *a = json_array_get(cases, i);
		if (!ok(a) && strcmp(json_string_value(json_object_get(a, "verdict")), "mismatch"))
			continue; /* skipped and errored cases have nothing to compare */
		/* within a case: repeated iterations identical, slots conserved, pads inert */
		int rep = 1;
		json_int_t sent = 0, computed = 0, rows = 0, pads = 0;
		size_t r;
		json_t *rk;
		json_array_foreach(json_object_get(a, "ranks"), r, rk)
		{
			rep &= json_is_true(json_object_get(rk, "repeat_identical"));
			sent += json_integer_value(json_object_get(json_object_get(rk, "slots"), "sent"));
			computed += json_integer_value(json_object_get(json_object_get(rk, "slots"), "computed"));
			rows += json_integer_value(json_object_get(rk, "rows"));
			pads += json_integer_value(json_object_get(rk, "pad_rows"));
		}
		add(out, "repeat_identical", a, NULL, rep,
		    rep ? "every rank's last timed iteration matched its first bit for bit"
			: "a rank's output changed between timed iterations",
		    failed);
		char d[256];
		long K = atol(param(a, "topk")), L = atol(param(a, "layers"));
		int cons = sent == computed && sent == rows * K * L;
		snprintf(d, sizeof(d), "slots sent %lld, computed %lld, rows dispatched %lld x topk %ld x layers %ld",
			 (long long)sent, (long long)computed, (long long)rows, K, L);
		add(out, "conservation", a, NULL, cons, d, failed);
		if (pads) {
			snprintf(d, sizeof(d), "%lld pad rows routed as their mode says and output zero", (long long)pads);
			add(out, "pad_inert", a, NULL, ok(a), ok(a) ? d : "the oracle found a pad row that was not inert",
			    failed);
		}
		for (size_t j = 0; j < n; j++) {
			json_t *b = json_array_get(cases, j);
			if (j == i || (!ok(b) && strcmp(json_string_value(json_object_get(b, "verdict")), "mismatch")))
				continue;
			const char *pa = param(a, "partition"), *pb = param(b, "partition");
			const char *sa = param(a, "strategy"), *sb = param(b, "strategy");
			if (!strcmp(param(a, "graph"), "true") && !strcmp(param(b, "graph"), "false") &&
			    same_but(a, b, NULL))
				add(out, "graph_equals_eager", a, b, digests_equal(a, b),
				    digests_equal(a, b) ? "the replayed graph's outputs are bit-identical" : "outputs differ",
				    failed);
			if (!strcmp(pa, "leader") && !strcmp(pb, "replicate") &&
			    same_but(a, b, (const char *const[]){"partition", "pad", NULL}))
				add(out, "leader_equals_replicate", a, b, digests_equal(a, b),
				    digests_equal(a, b) ? "outputs bit-identical" : "outputs differ", failed);
			if (!strcmp(pa, "sp") && !strcmp(pb, "sp") && !strcmp(param(a, "pad"), "mask") &&
			    !strcmp(param(b, "pad"), "buffer") && same_but(a, b, (const char *const[]){"pad", NULL}))
				add(out, "mask_equals_buffer", a, b, digests_equal(a, b),
				    digests_equal(a, b) ? "real rows bit-identical" : "real rows differ", failed);
			if (!strcmp(pa, "sp") && !strcmp(pb, "replicate") && divisible(a) &&
			    same_but(a, b, (const char *const[]){"partition", "pad", NULL}))
				add(out, "padding_equals_unpadded", a, b, digests_equal(a, b),
				    digests_equal(a, b) ? "tp = 1 or T % tp = 0: bit-identical to the unpadded path"
							: "differs from the unpadded path",
				    failed);
			if (!strcmp(sa, "dwdp") && !strcmp(sb, "a2a") &&
			    same_but(a, b,
				     (const char *const[]){"strategy", "dwdp_size", "experts_per_worker", "prefetch_experts",
							   NULL}))
				add(out, "dwdp_equals_local", a, b, digests_equal(a, b),
				    digests_equal(a, b) ? "bit-identical to the all-local layer (a2a's slot-order sums)"
							: "differs from the all-local layer",
				    failed);
			if (!strcmp(sa, "ll") && !strcmp(sb, "a2a") &&
			    same_but(a, b, (const char *const[]){"strategy", "ll_capacity", NULL}))
				add(out, "ll_equals_a2a", a, b, digests_equal(a, b),
				    digests_equal(a, b) ? "bit-identical to a2a (the same slot-order sums)" : "differs from a2a",
				    failed);
			if (j > i && same_but(a, b, NULL))
				add(out, "repeat_identical", a, b, digests_equal(a, b),
				    digests_equal(a, b) ? "the same case twice: bit-identical" : "the same case twice: outputs differ",
				    failed);
		}
	}
	return out;
}
