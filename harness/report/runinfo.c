/* Names a run in one line for plot titles: which scenario, which run, which machine, which backend. */
#include "runinfo.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* Append word to a " + " list in buf unless it is there already; past max words, count the rest */
static void add_word(char *buf, size_t n, const char *word, int *count, int max)
{
	char probe[512];
	snprintf(probe, sizeof(probe), "%s", word);
	for (const char *at = buf; (at = strstr(at, probe)); at++) {
		size_t l = strlen(probe);
		if ((at == buf || at[-1] == ' ') && (at[l] == 0 || at[l] == ' '))
			return;
	}
	if (++*count > max)
		return;
	size_t len = strlen(buf);
	snprintf(buf + len, n - len, "%s%s", len ? " + " : "", word);
}

static const char *base(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

void moe_run_subtitle(const char *run_dir, char *out, size_t n)
{
	char path[4096], scen[512] = "", be[256] = "";
	int nscen = 0, nbe = 0;
	snprintf(path, sizeof(path), "%s/run.json", run_dir);
	json_t *run = json_load_file(path, 0, NULL);
	if (!run) {
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s", run_dir);
		for (size_t l = strlen(dir); l > 1 && dir[l - 1] == '/'; l--)
			dir[l - 1] = 0;
		snprintf(out, n, "run %s", base(dir));
		return;
	}
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(run, "cases"), i, c)
	{
		const char *f = json_string_value(json_object_get(c, "file"));
		json_t *p = json_object_get(c, "params");
		char b[128];
		add_word(scen, sizeof(scen), f ? base(f) : "?", &nscen, 3);
		snprintf(b, sizeof(b), "%s/%s", json_string_value(json_object_get(p, "backend")) ?: "?",
			 json_string_value(json_object_get(p, "transport")) ?: "?");
		add_word(be, sizeof(be), b, &nbe, 3);
	}
	if (nscen > 3)
		snprintf(scen + strlen(scen), sizeof(scen) - strlen(scen), " + %d more", nscen - 3);
	json_t *env = json_object_get(run, "env");
	const char *gpu = json_string_value(json_object_get(env, "gpu"));
	snprintf(out, n, "%s · run %s · %s, %lld CPUs, %s · %s", nscen ? scen : "no cases",
		 json_string_value(json_object_get(run, "run_id")) ?: "?",
		 json_string_value(json_object_get(env, "host")) ?: "?",
		 (long long)json_integer_value(json_object_get(env, "ncpus")),
		 gpu && strncmp(gpu, "0 x", 3) ? gpu : "no GPU", nbe ? be : "-");
	json_decref(run);
}
