/* The command line's own rooms: what main.c dispatches to, and what the commands share. */
#ifndef MOE_CLI_H
#define MOE_CLI_H

/* CMake passes both; a build outside it still says something */
#ifndef MOE_VERSION
#define MOE_VERSION "0.0.0"
#endif
#ifndef MOE_GIT_COMMIT
#define MOE_GIT_COMMIT "unknown"
#endif

#include <hwloc.h>
#include <jansson.h>
#include <stdio.h>

#include "launcher.h"
#include "scenario.h"

/* The commands whose options options.c parses (each --help lists only its own). */
enum moe_cli_cmd { MOE_CMD_RUN, MOE_CMD_LIST, MOE_CMD_TOPO, MOE_CMD_CALIBRATE };

/* options.c: the help text, a command's own, and the environment variables (help env) */
void moe_cli_usage(FILE *f);
void moe_cli_usage_of(FILE *f, enum moe_cli_cmd cmd);
void moe_cli_usage_env(FILE *f);
/* options.c: the options of run, list, topo or calibrate; -1 after saying what is wrong on stderr (an option
 * the command does not take included), 1 after printing the command's --help, else 0 */
int moe_cli_parse_opts(int argc, char **argv, struct moe_run_opts *o, enum moe_cli_cmd cmd);
/* options.c: what moe_cli_parse_opts allocated (every command that parses options frees them, on every path) */
void moe_cli_free_opts(struct moe_run_opts *o);
/* options.c: options, then the scenario files' cases: what list and run both start with */
int moe_cli_prepare(int argc, char **argv, struct moe_run_opts *o, struct moe_caselist *cases, enum moe_cli_cmd cmd);
/* options.c: mkdir -p */
int moe_cli_mkdir_p(const char *path);

/* env.c: run.json's "env": host, date, libraries, command line; and the machine's GPUs and topology */
json_t *moe_cli_env_json(int argc, char **argv);
void moe_cli_env_machine(json_t *env, hwloc_topology_t topo, int ngpus);

/* load.c: the CPUs this process may use, the load average (-1s and -1 when unreadable), the CPU clock in MHz
 * (0 when unreadable), and a case's "load" record: oversubscribed when ranks > cpus, loaded when the 1-minute
 * load average before or after the case exceeds cpus */
int moe_cli_cpus_available(void);
int moe_cli_loadavg(double la[3]);
double moe_cli_cpu_mhz(void);
json_t *moe_cli_load_json(int ranks, int cpus, const double before[3], const double after[3], double mhz);

/* run.c: the commands run and list */
int moe_cli_run(int argc, char **argv);
int moe_cli_list(int argc, char **argv);
/* run.c: re-exec once without OpenBLAS's thread pool before run forks its ranks */
void moe_cli_launcher_without_blas_threads(char **argv);

/* commands.c: topo, calibrate and plot */
int moe_cli_topo(int argc, char **argv);
int moe_cli_calibrate(int argc, char **argv);
int moe_cli_plot(int argc, char **argv);

#endif
