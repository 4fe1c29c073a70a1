/* What run.json says about where it ran: the host, the libraries, the GPUs and the topology's shape. */
#include <glob.h>
#include <hwloc.h>
#include <jansson.h>
#include <papi.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifdef MOE_HAVE_CUDA_BACKEND
#include <cuda_runtime_api.h>
#include <nccl.h>
#endif
#include "cli.h"

/* The first line of a file (driver version, GPU model), or "" */
static void first_line(const char *path, const char *prefix, char *out, size_t len)
{
	out[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f))
		if (!prefix || !strncmp(line, prefix, strlen(prefix))) {
			const char *v = prefix ? line + strlen(prefix) : line;
			while (*v == ' ' || *v == '\t')
				v++;
			snprintf(out, len, "%s", v);
			out[strcspn(out, "\n")] = 0;
			break;
		}
	fclose(f);
}

/* What a comparison needs to know about the machine: GPUs (read from the driver's /proc files, so the
 * launcher still never initialises CUDA), library versions, and a digest of the hwloc topology. */
void moe_cli_env_machine(json_t *env, hwloc_topology_t topo, int ngpus)
{
	char model[256] = "", driver[256] = "", gpu[320];
	first_line("/proc/driver/nvidia/version", "NVRM version:", driver, sizeof(driver));
	glob_t g;
	if (glob("/proc/driver/nvidia/gpus/*/information", 0, NULL, &g) == 0) {
		if (g.gl_pathc)
			first_line(g.gl_pathv[0], "Model:", model, sizeof(model));
		globfree(&g);
	}
	snprintf(gpu, sizeof(gpu), "%d x %s", ngpus, ngpus ? (model[0] ? model : "NVIDIA GPU") : "none");
	json_object_set_new(env, "gpu", json_string(gpu));
	json_object_set_new(env, "driver", json_string(driver));
#ifdef MOE_HAVE_CUDA_BACKEND
	char v[32];
	snprintf(v, sizeof(v), "%d.%d", CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
	json_object_set_new(env, "cuda_built", json_string(v));
	snprintf(v, sizeof(v), "%d.%d.%d", NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
	json_object_set_new(env, "nccl_built", json_string(v));
#endif
	/* structure only: memory sizes change while a VM runs (some grow their RAM on use) */
	char shape[256];
	snprintf(shape, sizeof(shape), "packages=%d numa=%d cores=%d pus=%d gpus=%d",
		 hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE), hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE),
		 hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE), hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU), ngpus);
	json_object_set_new(env, "topology", json_string(shape));
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *q = shape; *q; q++)
		h = (h ^ (unsigned char)*q) * 0x100000001b3ull;
	char d[24];
	snprintf(d, sizeof(d), "%016llx", (unsigned long long)h);
	json_object_set_new(env, "topology_digest", json_string(d));
}

/* The host, the date, the libraries' versions and the command line of this run. */
json_t *moe_cli_env_json(int argc, char **argv)
{
	struct utsname u;
	uname(&u);
	char host[256] = "?", date[64], cpu[256] = "unknown";
	gethostname(host, sizeof(host));
	time_t now = time(NULL);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		char line[512];
		while (fgets(line, sizeof(line), f))
			if (!strncmp(line, "model name", 10)) {
				char *c = strchr(line, ':');
				if (c) {
					snprintf(cpu, sizeof(cpu), "%s", c + 2);
					cpu[strcspn(cpu, "\n")] = 0;
				}
				break;
			}
		fclose(f);
	}
	json_t *cmd = json_array();
	for (int i = 0; i < argc; i++)
		json_array_append_new(cmd, json_string(argv[i]));
	char hw[32], papi[32];
	unsigned hv = hwloc_get_api_version();
	snprintf(hw, sizeof(hw), "%u.%u.%u", hv >> 16, (hv >> 8) & 0xff, hv & 0xff);
	snprintf(papi, sizeof(papi), "%d.%d.%d", PAPI_VERSION_MAJOR(PAPI_VERSION), PAPI_VERSION_MINOR(PAPI_VERSION),
		 PAPI_VERSION_REVISION(PAPI_VERSION));
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:o}", "version", MOE_VERSION, "git_commit",
			 MOE_GIT_COMMIT, "host", host, "kernel", u.release, "date", date, "cpu", cpu, "ncpus",
			 (int)sysconf(_SC_NPROCESSORS_ONLN), "hwloc", hw, "papi", papi, "jansson", JANSSON_VERSION,
			 "command", cmd);
}
