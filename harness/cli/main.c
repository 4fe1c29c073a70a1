/* moebench's command line: one line a command, each handed to its file (run.c, commands.c) or its room
 * (report/ for compare, history and report); and the hidden __rank entry the launcher execs. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "compare.h"
#include "moe.h"
#include "outfile.h"
#include "params.h"
#include "rank.h"

/* help [keys|env]: the usage, the scenario keys, or the environment variables */
static int help(int argc, char **argv)
{
	const char *topic = argc > 1 ? argv[1] : NULL;
	if (argc > 2 || (topic && strcmp(topic, "keys") && strcmp(topic, "env") && strcmp(topic, "--help") &&
			 strcmp(topic, "-h"))) {
		fprintf(stderr, "moebench: help: expected keys or env, not '%s' (moebench COMMAND --help for a command)\n",
			argc > 2 ? argv[2] : topic);
		return MOE_EXIT_USAGE;
	}
	if (topic && !strcmp(topic, "keys")) {
		printf("scenario keys ([global] sets defaults; a|b sweeps; a,b is a list):\n");
		moe_opts_help(stdout);
		printf("models: %s\n", moe_model_names());
	} else if (topic && !strcmp(topic, "env"))
		moe_cli_usage_env(stdout);
	else if (topic)
		printf("usage: moebench help [keys|env]\n"
		       "  keys   every scenario key with its default\n"
		       "  env    the environment variables moebench reads\n"
		       "moebench COMMAND --help lists what a command accepts.\n");
	else
		moe_cli_usage(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		moe_cli_usage(stderr);
		return MOE_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	moe_out_signals(); /* a file-size limit is a write error naming the file, not a silent SIGXFSZ death */
	if (!strcmp(cmd, "__rank"))
		return moe_rank_main();
	if (!strcmp(cmd, "run")) {
		moe_cli_launcher_without_blas_threads(argv);
		return moe_cli_run(argc - 1, argv + 1);
	}
	if (!strcmp(cmd, "list"))
		return moe_cli_list(argc - 1, argv + 1);
	if (!strcmp(cmd, "topo"))
		return moe_cli_topo(argc - 1, argv + 1);
	if (!strcmp(cmd, "compare"))
		return moe_cmd_compare(argc - 1, argv + 1);
	if (!strcmp(cmd, "history"))
		return moe_cmd_history(argc - 1, argv + 1);
	if (!strcmp(cmd, "report"))
		return moe_cmd_report(argc - 1, argv + 1);
	if (!strcmp(cmd, "calibrate"))
		return moe_cli_calibrate(argc - 1, argv + 1);
	if (!strcmp(cmd, "plot"))
		return moe_cli_plot(argc - 1, argv + 1);
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h"))
		return help(argc - 1, argv + 1);
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		if (argc > 2 && strcmp(argv[2], "--help") && strcmp(argv[2], "-h")) {
			fprintf(stderr, "moebench: version: takes no arguments\n");
			return MOE_EXIT_USAGE;
		}
		printf("moebench %s (commit %s)\n", MOE_VERSION, MOE_GIT_COMMIT);
		return 0;
	}
	fprintf(stderr, "moebench: unknown command '%s'\n\n", cmd);
	moe_cli_usage(stderr);
	return MOE_EXIT_USAGE;
}
