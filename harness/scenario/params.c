/* The option table (one row per scenario key), model presets, validation and serialisation. */
#include "params.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"
#include "rng.h"
#include "strategy.h"

#define OFF(f) offsetof(struct moe_params, f)

static const char *const w_score[] = {"softmax", "sigmoid", NULL};
static const char *const w_strategy[] = {"a2a", "agrs", "dwdp", "ll", NULL};
static const char *const w_partition[] = {"replicate", "leader", "sp", NULL};
static const char *const w_pad[] = {"mask", "buffer", "zero_token", NULL};
static const char *const w_expert[] = {"swiglu", "scale", "identity", NULL};
static const char *const w_dtype[] = {"bf16", NULL};
static const char *const w_transport[] = {"auto", "shm", "ipc", "nccl", "mpi", NULL};
static const char *const w_backend[] = {"auto", "host", "cuda", NULL};

static int parse_i64(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s)
		return -1;
	while (isspace((unsigned char)*end))
		end++;
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int parse_dbl(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v))
		return -1;
	while (isspace((unsigned char)*end))
		end++;
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int parse_tokens(const char *val, void *field, char *err, size_t errlen)
{
	struct moe_tokens_spec *t = field;
	memset(t, 0, sizeof(*t));
	if (!strncmp(val, "uniform:", 8) || !strncmp(val, "lognormal:", 10)) {
		int uni = val[0] == 'u';
		const char *a = strchr(val, ':') + 1;
		const char *c = strchr(a, ':');
		char abuf[64];
		if (!c || (size_t)(c - a) >= sizeof(abuf))
			goto bad_dist;
		memcpy(abuf, a, (size_t)(c - a));
		abuf[c - a] = 0;
		if (parse_dbl(abuf, &t->a) || parse_dbl(c + 1, &t->b))
			goto bad_dist;
		t->kind = uni ? MOE_TOKENS_UNIFORM : MOE_TOKENS_LOGNORMAL;
		if (uni && (t->a < 0 || t->b < t->a || t->b > 1e9 || t->a != floor(t->a) || t->b != floor(t->b))) {
			snprintf(err, errlen, "uniform:A:B needs whole numbers 0 <= A <= B <= 1e9, got '%s'", val);
			return -1;
		}
		if (!uni && (t->b < 0 || t->a > 20)) {
			snprintf(err, errlen, "lognormal:MU:SIGMA needs SIGMA >= 0 and MU <= 20, got '%s'", val);
			return -1;
		}
		return 0;
	bad_dist:
		snprintf(err, errlen, "expected uniform:A:B or lognormal:MU:SIGMA with numbers, got '%s'", val);
		return -1;
	}
	t->kind = MOE_TOKENS_LIST;
	const char *s = val;
	while (*s) {
		char buf[64];
		const char *c = strchr(s, ',');
		size_t n = c ? (size_t)(c - s) : strlen(s);
		if (n == 0 || n >= sizeof(buf)) {
			snprintf(err, errlen, "expected a token count or a comma-separated list of counts, got '%s'", val);
			return -1;
		}
		memcpy(buf, s, n);
		buf[n] = 0;
		int64_t v;
		if (parse_i64(buf, &v)) {
			snprintf(err, errlen, "expected an integer token count, got '%s'", buf);
			return -1;
		}
		if (v < 0 || v > 100000000) {
			snprintf(err, errlen, "token count %lld out of range [0, 100000000]", (long long)v);
			return -1;
		}
		if (t->n == MOE_MAX_DP) {
			snprintf(err, errlen, "more than %d token counts", MOE_MAX_DP);
			return -1;
		}
		t->list[t->n++] = v;
		s += n;
		if (*s == ',' && !*++s) { /* "4096," would silently mean one count for every group */
			snprintf(err, errlen, "expected a token count after the last comma, got '%s'", val);
			return -1;
		}
	}
	if (t->n == 0) {
		snprintf(err, errlen, "expected a token count, got nothing");
		return -1;
	}
	return 0;
}

static void render_tokens(const void *field, char *buf, size_t len)
{
	const struct moe_tokens_spec *t = field;
	if (t->kind == MOE_TOKENS_UNIFORM) {
		snprintf(buf, len, "uniform:%.17g:%.17g", t->a, t->b);
		return;
	}
	if (t->kind == MOE_TOKENS_LOGNORMAL) {
		snprintf(buf, len, "lognormal:%.17g:%.17g", t->a, t->b);
		return;
	}
	size_t o = 0;
	buf[0] = 0;
	for (int i = 0; i < t->n && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "", (long long)t->list[i]);
}

static int parse_routing(const char *val, void *field, char *err, size_t errlen)
{
	struct moe_routing_spec *r = field;
	memset(r, 0, sizeof(*r));
	if (!strcmp(val, "router"))
		r->kind = MOE_ROUTE_ROUTER;
	else if (!strcmp(val, "uniform"))
		r->kind = MOE_ROUTE_UNIFORM;
	else if (!strcmp(val, "balanced"))
		r->kind = MOE_ROUTE_BALANCED;
	else if (!strncmp(val, "zipf:", 5)) {
		r->kind = MOE_ROUTE_ZIPF;
		if (parse_dbl(val + 5, &r->arg) || r->arg < 0 || r->arg > 10) {
			snprintf(err, errlen, "zipf:S needs an exponent S in [0, 10], got '%s'", val);
			return -1;
		}
	} else if (!strncmp(val, "hot:", 4)) {
		r->kind = MOE_ROUTE_HOT;
		if (parse_dbl(val + 4, &r->arg) || r->arg < 0 || r->arg > 1) {
			snprintf(err, errlen, "hot:F needs a fraction F in [0, 1], got '%s'", val);
			return -1;
		}
	} else if (!strncmp(val, "trace:", 6)) {
		r->kind = MOE_ROUTE_TRACE;
		if (!val[6] || strlen(val + 6) >= sizeof(r->trace)) {
			snprintf(err, errlen, "trace:FILE needs a file name");
			return -1;
		}
		snprintf(r->trace, sizeof(r->trace), "%s", val + 6);
	} else {
		snprintf(err, errlen, "expected router, uniform, balanced, zipf:S, hot:F or trace:FILE, got '%s'", val);
		return -1;
	}
	return 0;
}

static void render_routing(const void *field, char *buf, size_t len)
{
	const struct moe_routing_spec *r = field;
	switch (r->kind) {
	case MOE_ROUTE_ROUTER: snprintf(buf, len, "router"); break;
	case MOE_ROUTE_UNIFORM: snprintf(buf, len, "uniform"); break;
	case MOE_ROUTE_BALANCED: snprintf(buf, len, "balanced"); break;
	case MOE_ROUTE_ZIPF: snprintf(buf, len, "zipf:%.17g", r->arg); break;
	case MOE_ROUTE_HOT: snprintf(buf, len, "hot:%.17g", r->arg); break;
	case MOE_ROUTE_TRACE: snprintf(buf, len, "trace:%s", r->trace); break;
	}
}

static int parse_check(const char *val, void *field, char *err, size_t errlen)
{
	struct moe_check_spec *c = field;
	c->sample = 0;
	if (!strcmp(val, "full"))
		c->kind = MOE_CHECK_FULL;
	else if (!strcmp(val, "off"))
		c->kind = MOE_CHECK_OFF;
	else if (!strncmp(val, "sample:", 7) && !parse_i64(val + 7, &c->sample) && c->sample >= 1)
		c->kind = MOE_CHECK_SAMPLE;
	else {
		snprintf(err, errlen, "expected full, sample:N (N >= 1) or off, got '%s'", val);
		return -1;
	}
	return 0;
}

static void render_check(const void *field, char *buf, size_t len)
{
	const struct moe_check_spec *c = field;
	if (c->kind == MOE_CHECK_SAMPLE)
		snprintf(buf, len, "sample:%lld", (long long)c->sample);
	else
		snprintf(buf, len, "%s", c->kind == MOE_CHECK_FULL ? "full" : "off");
}

static int parse_model(const char *val, void *field, char *err, size_t errlen)
{
	(void)field;
	struct moe_params tmp;
	memset(&tmp, 0, sizeof(tmp));
	if (moe_model_apply(&tmp, val)) {
		snprintf(err, errlen, "unknown model '%s'; known: %s", val, moe_model_names());
		return -1;
	}
	return 0; /* applied by moe_param_set, which sees the whole struct */
}

static void render_str(const void *field, char *buf, size_t len)
{
	snprintf(buf, len, "%s", (const char *)field);
}

#define I(n, d, lo, hi, h) {#n, MOE_OPT_INT, OFF(n), d, lo, hi, NULL, h, NULL, NULL}
#define D(n, d, lo, hi, h) {#n, MOE_OPT_DOUBLE, OFF(n), d, lo, hi, NULL, h, NULL, NULL}
#define B(n, d, h) {#n, MOE_OPT_BOOL, OFF(n), d, 0, 1, NULL, h, NULL, NULL}
#define E(n, d, w, h) {#n, MOE_OPT_ENUM, OFF(n), d, 0, 0, w, h, NULL, NULL}
#define S(n, d, p, r, h) {#n, MOE_OPT_SPECIAL, OFF(n), d, 0, 0, NULL, h, p, r}

/* Order matters: model comes first so that explicit shape keys given after it win. */
const struct moe_opt moe_opts[] = {
	S(model, "qwen3-debug", parse_model, render_str, "preset for hidden, ffn, experts, topk and the router keys"),
	I(hidden, "256", 1, 65536, "H: token width"),
	I(ffn, "128", 1, 262144, "F: expert intermediate width"),
	I(experts, "16", 1, 4096, "E: routed experts"),
	I(topk, "4", 1, 64, "K: experts per token"),
	E(score, "softmax", w_score, "router score function: softmax or sigmoid"),
	B(route_norm, "true", "normalise the top-K weights to sum to 1"),
	D(route_scale, "1", 0, 1e6, "multiply the top-K weights by this"),
	B(route_bias, "false", "add a seeded per-expert selection bias (DeepSeek's correction bias)"),
	I(groups, "1", 1, 4096, "expert groups for group-limited routing (1 = off)"),
	I(topk_groups, "1", 1, 4096, "groups kept by group-limited routing"),
	I(shared_experts, "0", 0, 64, "shared experts applied to every token"),
	B(score_before_experts, "false", "apply the routing weight to the input, f(w*x), instead of the output"),
	E(strategy, "a2a", w_strategy, "a2a (EP all-to-all), agrs (all-gather / reduce-scatter), dwdp (weights fetched), ll (low latency: "
	  "kernels write rows and signals into peers' buffers, no host round trip; shm or ipc)"),
	E(partition, "replicate", w_partition, "how a DP group's tokens are shared among its TP ranks"),
	E(pad, "mask", w_pad, "sp padding: mask, buffer or zero_token"),
	I(dp, "1", 1, MOE_MAX_DP, "DP groups"),
	I(tp, "1", 1, 64, "TP ranks per DP group (ranks = dp*tp)"),
	I(dwdp_size, "0", 0, 4096, "DWDP group size D (0 = all ranks); dwdp needs tp = 1 and ranks a multiple of D"),
	I(experts_per_worker, "0", 0, 4096, "DWDP: experts held by each rank, W; the layout needs W + (D-1)*P = experts"),
	I(prefetch_experts, "0", 0, 4096, "DWDP: experts fetched from each peer, P, with 1 <= P <= W"),
	I(ll_capacity, "0", 0, 1e9, "ll: rows one rank may send one rank per layer (0 = the worst case, never "
	  "overflows); rows past it are dropped, counted, and the case is refused"),
	S(tokens, "128", parse_tokens, render_tokens, "tokens per DP group: N, a list N0,N1,..., uniform:A:B or lognormal:MU:SIGMA"),
	S(routing, "router", parse_routing, render_routing, "router, uniform, balanced, zipf:S, hot:F or trace:FILE"),
	E(expert, "swiglu", w_expert, "expert function: swiglu, scale ((e+1)*u, exact) or identity (exact)"),
	I(layers, "1", 1, 1024, "MoE layers run back to back"),
	E(dtype, "bf16", w_dtype, "activation and weight type"),
	I(seed, "1", 0, 9007199254740991.0, "seed of every generated tensor"),
	I(iters, "20", 1, 1000000, "timed iterations"),
	I(warmup, "3", 0, 1000000, "discarded warm-up iterations"),
	S(check, "full", parse_check, render_check, "verification: full, sample:N (tokens per rank) or off"),
	D(tolerance, "1", 0, 1000000, "multiplier on the oracle's derived error bounds (docs/VERIFICATION.md)"),
	D(timeout, "120", 0.1, 86400, "seconds a case may take before its ranks are killed"),
	E(transport, "auto", w_transport, "shm (host), ipc (CUDA IPC), nccl, mpi (host, under mpirun/srun), or auto"),
	E(backend, "auto", w_backend, "host, cuda, or auto (cuda when a GPU is present)"),
	B(l2_flush, "false", "flush caches before every timed iteration"),
	B(graph, "off", "on: capture each rank's iteration once and replay it (strategies with a host round trip refuse)"),
};
const size_t moe_nopts = MOE_ARRAY_SIZE(moe_opts);

const struct moe_opt *moe_opt_find(const char *name)
{
	for (size_t i = 0; i < moe_nopts; i++)
		if (!strcmp(moe_opts[i].name, name))
			return &moe_opts[i];
	return NULL;
}

const char *moe_word(const struct moe_opt *o, int v)
{
	return o->words[v];
}

const char *moe_strategy_name(enum moe_strategy_id s) { return w_strategy[s]; }
const char *moe_partition_name(enum moe_partition s) { return w_partition[s]; }
const char *moe_transport_name(enum moe_transport_id t) { return w_transport[t]; }
const char *moe_backend_name(enum moe_backend_id b) { return w_backend[b]; }

static void trim_copy(char *dst, size_t len, const char *src)
{
	while (isspace((unsigned char)*src))
		src++;
	snprintf(dst, len, "%s", src);
	size_t n = strlen(dst);
	while (n && isspace((unsigned char)dst[n - 1]))
		dst[--n] = 0;
}

int moe_param_set(struct moe_params *p, const char *key, const char *rawval, char *err, size_t errlen)
{
	const struct moe_opt *o = moe_opt_find(key);
	char val[4096];
	if (!o) {
		snprintf(err, errlen, "unknown key '%s' (moebench help keys lists them)", key);
		return -1;
	}
	trim_copy(val, sizeof(val), rawval);
	void *field = (char *)p + o->off;
	switch (o->type) {
	case MOE_OPT_INT: {
		int64_t v;
		if (parse_i64(val, &v)) {
			snprintf(err, errlen, "expected an integer, got '%s'", val);
			return -1;
		}
		if ((double)v < o->min || (double)v > o->max) {
			snprintf(err, errlen, "%lld out of range [%.0f, %.0f]", (long long)v, o->min, o->max);
			return -1;
		}
		*(int64_t *)field = v;
		return 0;
	}
	case MOE_OPT_DOUBLE: {
		double v;
		if (parse_dbl(val, &v)) {
			snprintf(err, errlen, "expected a number, got '%s'", val);
			return -1;
		}
		if (v < o->min || v > o->max) {
			snprintf(err, errlen, "%g out of range [%g, %g]", v, o->min, o->max);
			return -1;
		}
		*(double *)field = v;
		return 0;
	}
	case MOE_OPT_BOOL:
		if (!strcmp(val, "true") || !strcmp(val, "1") || !strcmp(val, "yes") || !strcmp(val, "on"))
			*(bool *)field = true;
		else if (!strcmp(val, "false") || !strcmp(val, "0") || !strcmp(val, "no") || !strcmp(val, "off"))
			*(bool *)field = false;
		else {
			snprintf(err, errlen, "expected true or false, got '%s'", val);
			return -1;
		}
		return 0;
	case MOE_OPT_ENUM:
		for (int i = 0; o->words[i]; i++)
			if (!strcmp(o->words[i], val)) {
				*(int *)field = i;
				return 0;
			}
		{
			size_t n = (size_t)snprintf(err, errlen, "expected one of");
			for (int i = 0; o->words[i] && n < errlen; i++)
				n += (size_t)snprintf(err + n, errlen - n, "%s %s", i ? "," : "", o->words[i]);
			if (n < errlen)
				snprintf(err + n, errlen - n, "; got '%s'", val);
		}
		return -1;
	case MOE_OPT_STR:
		snprintf((char *)field, 64, "%s", val);
		return 0;
	case MOE_OPT_SPECIAL:
		if (o->parse(val, field, err, errlen))
			return -1;
		if (o->off == OFF(model)) {
			moe_model_apply(p, val);
			snprintf(p->model, sizeof(p->model), "%s", val);
		}
		return 0;
	}
	return -1;
}

void moe_param_render(const struct moe_params *p, const struct moe_opt *o, char *buf, size_t len)
{
	const void *field = (const char *)p + o->off;
	switch (o->type) {
	case MOE_OPT_INT: snprintf(buf, len, "%lld", (long long)*(const int64_t *)field); break;
	case MOE_OPT_DOUBLE: snprintf(buf, len, "%.17g", *(const double *)field); break;
	case MOE_OPT_BOOL: snprintf(buf, len, "%s", *(const bool *)field ? "true" : "false"); break;
	case MOE_OPT_ENUM: snprintf(buf, len, "%s", o->words[*(const int *)field]); break;
	case MOE_OPT_STR: snprintf(buf, len, "%s", (const char *)field); break;
	case MOE_OPT_SPECIAL: o->render(field, buf, len); break;
	}
}

void moe_params_defaults(struct moe_params *p)
{
	char err[256];
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < moe_nopts; i++)
		if (moe_param_set(p, moe_opts[i].name, moe_opts[i].def, err, sizeof(err)))
			abort(); /* a bad default is a programming error */
}

/* Real shapes from the models' published configurations. */
struct moe_model {
	const char *name;
	int64_t hidden, ffn, experts, topk, groups, topk_groups, shared;
	enum moe_score score;
	bool norm, bias, before;
	double scale;
};

static const struct moe_model models[] = {
	{"qwen3-debug", 256, 128, 16, 4, 1, 1, 0, MOE_SCORE_SOFTMAX, true, false, false, 1.0},
	{"qwen3-30b-a3b", 2048, 768, 128, 8, 1, 1, 0, MOE_SCORE_SOFTMAX, true, false, false, 1.0},
	{"deepseek-v3", 7168, 2048, 256, 8, 8, 4, 1, MOE_SCORE_SIGMOID, true, true, false, 2.5},
	{"llama4-scout", 5120, 8192, 16, 1, 1, 1, 1, MOE_SCORE_SIGMOID, false, false, true, 1.0},
};

int moe_model_apply(struct moe_params *p, const char *name)
{
	for (size_t i = 0; i < MOE_ARRAY_SIZE(models); i++) {
		const struct moe_model *m = &models[i];
		if (strcmp(m->name, name))
			continue;
		p->hidden = m->hidden;
		p->ffn = m->ffn;
		p->experts = m->experts;
		p->topk = m->topk;
		p->groups = m->groups;
		p->topk_groups = m->topk_groups;
		p->shared_experts = m->shared;
		p->score = m->score;
		p->route_norm = m->norm;
		p->route_bias = m->bias;
		p->score_before_experts = m->before;
		p->route_scale = m->scale;
		return 0;
	}
	return -1;
}

const char *moe_model_names(void)
{
	return "qwen3-debug, qwen3-30b-a3b, deepseek-v3, llama4-scout";
}

#define FAIL(k, ...)                                          \
	do {                                                  \
		snprintf(key_out, keylen, "%s", k);           \
		snprintf(err, errlen, __VA_ARGS__);           \
		return -1;                                    \
	} while (0)

/* graph = on: every step of a layer must be capturable, so the strategy and the TP merge must not wait on
 * the host (the backend's capture ops are checked by the rank, once the backend is chosen). */
static int graph_validate(const struct moe_params *p, char *key_out, size_t keylen, char *err, size_t errlen)
{
	if (!p->graph)
		return 0;
	if (p->partition != MOE_PART_REPLICATE)
		FAIL("graph", "graph = on: partition = %s cannot be captured: its TP merge exchanges the TP ranks' rows "
		     "through transport calls that synchronise with the host; use partition = replicate",
		     moe_partition_name(p->partition));
	const struct moe_strategy_ops *st = moe_strategy_find(moe_strategy_name(p->strategy));
	if (st && st->no_graph)
		FAIL("graph", "graph = on: %s cannot be captured: %s", st->name, st->no_graph);
	return 0;
}

int moe_params_validate(const struct moe_params *p, char *key_out, size_t keylen, char *err, size_t errlen)
{
	int64_t ranks = p->dp * p->tp;
	if (ranks > 4096)
		FAIL("dp", "dp*tp = %lld ranks is more than 4096", (long long)ranks);
	if (p->topk > p->experts)
		FAIL("topk", "topk = %lld must be <= experts = %lld", (long long)p->topk, (long long)p->experts);
	if (p->tokens.kind == MOE_TOKENS_LIST && p->tokens.n != 1 && p->tokens.n != p->dp)
		FAIL("tokens", "a list of %d token counts needs dp = %d (one per DP group), but dp = %lld", p->tokens.n,
		     p->tokens.n, (long long)p->dp);
	if (p->experts % p->groups)
		FAIL("groups", "experts = %lld must be divisible by groups = %lld", (long long)p->experts, (long long)p->groups);
	if (p->topk_groups > p->groups)
		FAIL("topk_groups", "topk_groups = %lld must be <= groups = %lld", (long long)p->topk_groups, (long long)p->groups);
	if (p->groups > 1 && p->experts / p->groups < 2)
		FAIL("groups", "group-limited routing needs at least 2 experts per group (group score = sum of its top 2)");
	if (p->groups > 1 && p->topk > p->topk_groups * (p->experts / p->groups))
		FAIL("topk", "topk = %lld exceeds the experts in the kept groups (topk_groups*experts/groups = %lld)",
		     (long long)p->topk, (long long)(p->topk_groups * (p->experts / p->groups)));
	if (p->strategy != MOE_STRAT_DWDP && p->experts % ranks)
		FAIL("experts", "experts = %lld must be divisible by ep = dp*tp = %lld (expert e lives on rank e/(E/ep))",
		     (long long)p->experts, (long long)ranks);
	if (p->strategy == MOE_STRAT_DWDP) {
		int64_t d = p->dwdp_size ? p->dwdp_size : ranks;
		if (p->tp != 1)
			FAIL("tp", "dwdp needs tp = 1, got tp = %lld", (long long)p->tp);
		if (ranks % d)
			FAIL("dwdp_size", "ranks = %lld must be a multiple of dwdp_size = %lld", (long long)ranks, (long long)d);
		int64_t w = p->experts_per_worker, pf = p->prefetch_experts;
		if (pf < 1 || pf > w)
			FAIL("prefetch_experts", "dwdp needs 1 <= prefetch_experts <= experts_per_worker, got P = %lld, W = %lld",
			     (long long)pf, (long long)w);
		if (w + (d - 1) * pf != p->experts)
			FAIL("experts_per_worker", "dwdp layout needs W + (D-1)*P = E, got %lld + %lld*%lld = %lld != %lld",
			     (long long)w, (long long)(d - 1), (long long)pf, (long long)(w + (d - 1) * pf), (long long)p->experts);
	}
	if (p->partition == MOE_PART_SP && p->pad == MOE_PAD_ZERO_TOKEN && p->routing.kind == MOE_ROUTE_TRACE)
		FAIL("pad", "pad = zero_token routes pad rows like tokens, which a trace cannot name; use mask or buffer");
	return graph_validate(p, key_out, keylen, err, errlen);
}

char *moe_params_serialize(const struct moe_params *p)
{
	size_t cap = 1 << 16, n = 0;
	char *s = moe_xmalloc(cap);
	char val[8192];
	s[0] = 0;
	for (size_t i = 0; i < moe_nopts; i++) {
		const struct moe_opt *o = &moe_opts[i];
		if (o->off == OFF(model))
			continue; /* the shape keys carry the preset; re-applying it would undo overrides */
		moe_param_render(p, o, val, sizeof(val));
		char *ev = moe_line_escape(val); /* a trace path may hold a newline: it stays on its line */
		size_t need = strlen(o->name) + strlen(ev) + 8;
		if (n + need >= cap) {
			cap = 2 * cap + need;
			char *t = realloc(s, cap);
			if (!t)
				abort();
			s = t;
		}
		n += (size_t)snprintf(s + n, cap - n, "%s = %s\n", o->name, ev);
		free(ev);
	}
	return s;
}

void moe_tokens_resolve(const struct moe_params *p, int64_t *out)
{
	const struct moe_tokens_spec *t = &p->tokens;
	for (int64_t d = 0; d < p->dp; d++) {
		double u = moe_rng_unit((uint64_t)p->seed, MOE_T_TOKENS, 0, (uint64_t)d, 0);
		switch (t->kind) {
		case MOE_TOKENS_LIST: out[d] = t->n == 1 ? t->list[0] : t->list[d]; break;
		case MOE_TOKENS_UNIFORM: out[d] = (int64_t)floor(t->a + u * (t->b - t->a + 1)); if (out[d] > (int64_t)t->b) out[d] = (int64_t)t->b; break;
		case MOE_TOKENS_LOGNORMAL: {
			double u2 = moe_rng_unit((uint64_t)p->seed, MOE_T_TOKENS, 0, (uint64_t)d, 1);
			double z = sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * u2);
			double v = exp(t->a + t->b * z);
			out[d] = v > 1e8 ? 100000000 : (int64_t)llround(v);
			break;
		}
		}
	}
}

void moe_opts_help(FILE *f)
{
	for (size_t i = 0; i < moe_nopts; i++) {
		const struct moe_opt *o = &moe_opts[i];
		fprintf(f, "  %-22s %s (default %s)\n", o->name, o->help, o->def);
	}
}
