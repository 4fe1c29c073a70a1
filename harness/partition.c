/* Partitions (which rows of its DP group a TP rank dispatches) and the strategy registry. */
#include <string.h>

#include "moe.h"
#include "strategy.h"

int64_t moe_rows_dispatched(const struct moe_params *p, const int64_t *tokens, int rank)
{
	int64_t d = rank / p->tp;
	switch (p->partition) {
	case MOE_PART_REPLICATE: return tokens[d];
	case MOE_PART_LEADER: return rank % p->tp == 0 ? tokens[d] : 0;
	case MOE_PART_SP: {
		int64_t T = tokens[d], pad = (p->tp - T % p->tp) % p->tp;
		return (T + pad) / p->tp;
	}
	}
	return 0;
}

const struct moe_strategy_ops *moe_strategy_find(const char *name)
{
	static const struct moe_strategy_ops *const all[] = {
#define MOE_STRATEGY(n) &moe_strategy_##n,
#include "strategies.def"
#undef MOE_STRATEGY
	};
	for (size_t i = 0; i < MOE_ARRAY_SIZE(all); i++)
		if (!strcmp(all[i]->name, name))
			return all[i];
	return NULL;
}
