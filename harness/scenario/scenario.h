/* Scenario files: INI (libinih) with [global] defaults, sweeps (a|b) and lists (a,b), expanded into cases. */
#ifndef MOE_SCENARIO_H
#define MOE_SCENARIO_H

#include "params.h"

struct moe_case {
	char name[MOE_NAME_MAX];
	char file[MOE_PATH_MAX];
	int line; /* the section header */
	struct moe_params p;
};

struct moe_caselist {
	struct moe_case *v;
	int n, cap;
};

/* Parse path and expand every case; sets (KEY=VALUE, applied to every case after the file) may sweep too.
 * Returns 0, or -1 with "file:line: key 'k': reason" in err. */
int moe_scenario_load(const char *path, char *const *sets, int nsets, struct moe_caselist *out, char *err,
		      size_t errlen);
void moe_caselist_free(struct moe_caselist *l);

#endif
