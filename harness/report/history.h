/* The SQLite history as compare reads it: runs by id, the baseline of the last good runs, noise bands. */
#ifndef MOE_HISTORY_H
#define MOE_HISTORY_H

#include <jansson.h>
#include <sqlite3.h>
#include <stddef.h>

/* The runs a default baseline is made from: the last this many good runs of one environment. */
#define MOE_BASELINE_RUNS 10

/* A run to compare: a results folder, a run.json, or history:RUN_ID, history:last-good or history:baseline
 * from dbpath (history:baseline needs `like`, the run it will be compared with, for its environment).
 * Returns the validated run, or NULL with err and *rc: MOE_EXIT_USAGE for an unreadable or invalid input
 * or a history file that does not exist, MOE_EXIT_INCOMPLETE when the history has no baseline. */
json_t *moe_history_load(const char *what, const char *dbpath, json_t *like, int nruns, char *err, size_t errlen,
			 int *rc);
/* {"DIGEST\tPHASE": percent} for the cases of run's environment from the last nruns good runs in dbpath
 * (moe_noise_band), or NULL when the history knows too little or does not exist; never creates it. */
json_t *moe_history_bands(const char *dbpath, json_t *run, int nruns);

/* Shared with the history command (history.c). Readers (write = 0) open an existing history read-only and
 * never create one; writers create and migrate it, and wait for each other. NULL with err and *rc. */
sqlite3 *moe_history_open(const char *path, int write, char *err, size_t errlen, int *rc);
int moe_history_has_column(sqlite3 *db, const char *table, const char *col);
/* The pinned run's id into out, or "" when none is pinned. */
void moe_history_pinned(sqlite3 *db, char *out, size_t len);

#endif
