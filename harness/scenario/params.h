/* Case parameters: the option table that drives scenario files, --set and the help text. */
#ifndef MOE_PARAMS_H
#define MOE_PARAMS_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#define MOE_MAX_DP 1024
#define MOE_NAME_MAX 256
#define MOE_PATH_MAX 1024

enum moe_score { MOE_SCORE_SOFTMAX, MOE_SCORE_SIGMOID };
enum moe_strategy_id { MOE_STRAT_A2A, MOE_STRAT_AGRS, MOE_STRAT_DWDP, MOE_STRAT_LL };
enum moe_partition { MOE_PART_REPLICATE, MOE_PART_LEADER, MOE_PART_SP };
enum moe_pad { MOE_PAD_MASK, MOE_PAD_BUFFER, MOE_PAD_ZERO_TOKEN };
enum moe_expert_kind { MOE_EXPERT_SWIGLU, MOE_EXPERT_SCALE, MOE_EXPERT_IDENTITY };
enum moe_dtype { MOE_DTYPE_BF16 };
enum moe_transport_id { MOE_TRANSPORT_AUTO, MOE_TRANSPORT_SHM, MOE_TRANSPORT_IPC, MOE_TRANSPORT_NCCL, MOE_TRANSPORT_MPI };
enum moe_backend_id { MOE_BACKEND_AUTO, MOE_BACKEND_HOST, MOE_BACKEND_CUDA };
enum moe_routing_kind { MOE_ROUTE_ROUTER, MOE_ROUTE_UNIFORM, MOE_ROUTE_BALANCED, MOE_ROUTE_ZIPF, MOE_ROUTE_HOT, MOE_ROUTE_TRACE };
enum moe_tokens_kind { MOE_TOKENS_LIST, MOE_TOKENS_UNIFORM, MOE_TOKENS_LOGNORMAL };
enum moe_check_kind { MOE_CHECK_FULL, MOE_CHECK_SAMPLE, MOE_CHECK_OFF };

/* The token-count specification of a case, as written. */
struct moe_tokens_spec {
	enum moe_tokens_kind kind;
	int n;                 /* list length (LIST) */
	int64_t list[MOE_MAX_DP];
	double a, b;           /* uniform:A:B or lognormal:MU:SIGMA */
};

struct moe_routing_spec {
	enum moe_routing_kind kind;
	double arg;            /* zipf exponent, hot fraction */
	char trace[MOE_PATH_MAX];
};

struct moe_check_spec {
	enum moe_check_kind kind;
	int64_t sample;        /* tokens per rank for sample:N */
};

struct moe_params {
	char model[64];
	int64_t hidden, ffn, experts, topk;
	enum moe_score score;
	bool route_norm;
	double route_scale;
	bool route_bias;
	int64_t groups, topk_groups, shared_experts;
	bool score_before_experts;
	enum moe_strategy_id strategy;
	enum moe_partition partition;
	enum moe_pad pad;
	int64_t dp, tp;
	int64_t dwdp_size, experts_per_worker, prefetch_experts;
	int64_t ll_capacity;   /* ll: rows one source may send one destination per layer (0 = the worst case) */
	struct moe_tokens_spec tokens;
	struct moe_routing_spec routing;
	enum moe_expert_kind expert;
	int64_t layers;
	enum moe_dtype dtype;
	int64_t seed, iters, warmup;
	struct moe_check_spec check;
	double tolerance;
	double timeout;
	enum moe_transport_id transport;
	enum moe_backend_id backend;
	bool l2_flush;
	bool graph;       /* capture each rank's iteration once, replay it (harness/rank/graph.c) */
	char base_dir[MOE_PATH_MAX]; /* folder of the scenario file: relative paths resolve here */
};

enum moe_opt_type { MOE_OPT_INT, MOE_OPT_DOUBLE, MOE_OPT_BOOL, MOE_OPT_ENUM, MOE_OPT_STR, MOE_OPT_SPECIAL };

/* One row of the option table (fio's shape): the same row parses, renders and documents a key. */
struct moe_opt {
	const char *name;
	enum moe_opt_type type;
	size_t off;
	const char *def;       /* default, as it would be written in a scenario */
	double min, max;       /* range for INT and DOUBLE */
	const char *const *words; /* ENUM: NULL-terminated words, index = enum value */
	const char *help;
	/* SPECIAL: parse and render hooks */
	int (*parse)(const char *val, void *field, char *err, size_t errlen);
	void (*render)(const void *field, char *buf, size_t len);
};

extern const struct moe_opt moe_opts[];
extern const size_t moe_nopts;

const struct moe_opt *moe_opt_find(const char *name);
void moe_params_defaults(struct moe_params *p);
/* Set one key from its text. Returns 0, or -1 with a reason ("expected ...") in err. */
int moe_param_set(struct moe_params *p, const char *key, const char *val, char *err, size_t errlen);
/* Render one key's value as it would be written. */
void moe_param_render(const struct moe_params *p, const struct moe_opt *o, char *buf, size_t len);
/* Apply a model preset's shape and router keys. Returns -1 if unknown. */
int moe_model_apply(struct moe_params *p, const char *model);
const char *moe_model_names(void);
/* Cross-key validation. Returns 0, or -1 with the failed rule and the key it concerns. */
int moe_params_validate(const struct moe_params *p, char *key_out, size_t keylen, char *err, size_t errlen);
/* Serialise every key as "key = value\n" lines (the form sent to rank processes). */
char *moe_params_serialize(const struct moe_params *p);

const char *moe_word(const struct moe_opt *o, int v);
const char *moe_strategy_name(enum moe_strategy_id s);
const char *moe_partition_name(enum moe_partition s);
const char *moe_transport_name(enum moe_transport_id t);
const char *moe_backend_name(enum moe_backend_id b);

/* Tokens per DP group, resolved (seeded distributions drawn deterministically). out has dp entries. */
void moe_tokens_resolve(const struct moe_params *p, int64_t *out);

void moe_opts_help(FILE *f);

#endif
