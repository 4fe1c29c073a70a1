/* libFuzzer target for the scenario parser (moe_scenario_load with --set values) and moe_param_set. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "scratch.h"
#include "scenario.h"

/* Input layout: scenario file text, then optionally a NUL byte followed by --set lines
 * ("KEY=VALUE", one per line, at most MAX_SETS). Each set line is also fed to moe_param_set. */
#define MAX_SETS 8

static void check_err(const char *err, size_t len)
{
	/* an error must be reported, NUL-terminated, in the buffer */
	if (!memchr(err, 0, len) || !err[0])
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t flen = nul ? (size_t)(nul - data) : size;
	const char *path = scratch_write("scenario.ini", data, flen);

	/* --set lines: NUL-terminated copies */
	char *sets[MAX_SETS];
	int nsets = 0;
	char *tail = NULL;
	if (nul) {
		size_t tlen = size - flen - 1;
		tail = malloc(tlen + 1);
		memcpy(tail, nul + 1, tlen);
		tail[tlen] = 0; /* embedded NULs just cut a line short */
		char *save = NULL;
		for (char *l = strtok_r(tail, "\n", &save); l && nsets < MAX_SETS; l = strtok_r(NULL, "\n", &save))
			sets[nsets++] = l;
	}

	char err[1024];
	for (int i = 0; i < nsets; i++) {
		struct moe_params p;
		moe_params_defaults(&p);
		char key[128];
		const char *eq = strchr(sets[i], '=');
		size_t kl = eq ? (size_t)(eq - sets[i]) : strlen(sets[i]);
		if (kl >= sizeof(key))
			kl = sizeof(key) - 1;
		memcpy(key, sets[i], kl);
		key[kl] = 0;
		err[0] = 0;
		if (moe_param_set(&p, key, eq ? eq + 1 : "", err, sizeof(err)))
			check_err(err, sizeof(err));
		else {
			char k2[64], e2[512];
			(void)moe_params_validate(&p, k2, sizeof(k2), e2, sizeof(e2));
		}
	}

	struct moe_caselist cl;
	memset(&cl, 0, sizeof(cl));
	err[0] = 0;
	int rc = moe_scenario_load(path, sets, nsets, &cl, err, sizeof(err));
	if (rc) {
		check_err(err, sizeof(err));
	} else {
		if (cl.n < 1)
			__builtin_trap();
		for (int i = 0; i < cl.n; i++) {
			const struct moe_case *c = &cl.v[i];
			char k2[64], e2[512];
			/* every case that came back has passed validation and has a terminated name */
			if (!memchr(c->name, 0, sizeof(c->name)) || !c->name[0] ||
			    moe_params_validate(&c->p, k2, sizeof(k2), e2, sizeof(e2)))
				__builtin_trap();
		}
	}
	moe_caselist_free(&cl);
	free(tail);
	return 0;
}
