/* Transport registry and group membership shared by every transport. */
#include <string.h>

#include "moe.h"
#include "transport.h"

const struct moe_transport_ops *moe_transport_find(const char *name)
{
	static const struct moe_transport_ops *const all[] = {
#define MOE_TRANSPORT(n) &moe_transport_##n,
#include "transports.def"
#undef MOE_TRANSPORT
	};
	for (size_t i = 0; i < MOE_ARRAY_SIZE(all); i++)
		if (!strcmp(all[i]->name, name))
			return all[i];
	return NULL;
}

int moe_group_members(int rank, int dp, int tp, enum moe_group g, int *members, int *me)
{
	int n = 0;
	if (g == MOE_GROUP_TP) {
		int d = rank / tp;
		for (int t = 0; t < tp; t++)
			members[n++] = d * tp + t;
		*me = rank % tp;
	} else {
		for (int r = 0; r < dp * tp; r++)
			members[n++] = r;
		*me = rank;
	}
	return n;
}
