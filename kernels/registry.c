/* The list of kernel backends built into this binary. */
#include <string.h>

#include "kernels.h"

const struct moe_backend_ops *moe_backend_find(const char *name)
{
	static const struct moe_backend_ops *const all[] = {
#define MOE_BACKEND(n) &moe_backend_##n,
#include "backends.def"
#undef MOE_BACKEND
	};
	for (size_t i = 0; i < MOE_ARRAY_SIZE(all); i++)
		if (!strcmp(all[i]->name, name))
			return all[i];
	return NULL;
}
