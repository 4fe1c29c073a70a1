/* How busy the machine was: CPUs this process may use, the load average and the CPU clock, read around each
 * case so that run.json and compare can say when timings were taken on an oversubscribed or loaded machine. */
#include <jansson.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int moe_cli_cpus_available(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set); /* a container's or taskset's share, not the host's count */
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

int moe_cli_loadavg(double la[3])
{
	la[0] = la[1] = la[2] = -1;
	FILE *f = fopen("/proc/loadavg", "r");
	if (!f)
		return -1;
	int n = fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]);
	fclose(f);
	return n == 3 ? 0 : -1;
}

double moe_cli_cpu_mhz(void)
{
	double v = 0;
	FILE *f = fopen("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "r");
	if (f) {
		long khz = 0;
		if (fscanf(f, "%ld", &khz) == 1 && khz > 0)
			v = khz / 1000.0;
		fclose(f);
	}
	if (v > 0 || !(f = fopen("/proc/cpuinfo", "r")))
		return v;
	char line[256];
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "cpu MHz", 7)) {
			const char *c = strchr(line, ':');
			if (c && sscanf(c + 1, "%lf", &v) != 1)
				v = 0;
			break;
		}
	fclose(f);
	return v;
}

static json_t *triple(const double la[3])
{
	return la[0] < 0 ? json_null() : json_pack("[f,f,f]", la[0], la[1], la[2]);
}

json_t *moe_cli_load_json(int ranks, int cpus, const double before[3], const double after[3], double mhz)
{
	json_t *j = json_pack("{s:i,s:i,s:f,s:o,s:o,s:b,s:b}", "ranks", ranks, "cpus", cpus, "ranks_per_core",
			      (double)ranks / cpus, "loadavg_before", triple(before), "loadavg_after", triple(after),
			      "oversubscribed", ranks > cpus, "loaded", before[0] > cpus || after[0] > cpus);
	if (mhz > 0)
		json_object_set_new(j, "cpu_mhz", json_real(mhz));
	return j;
}
