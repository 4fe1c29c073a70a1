/* The nightly history command: record a run (one transaction), list, trend, and the explicit baselines
 * (accept, pin, unpin) with when and why; the database side is history_db.c. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "compare.h"
#include "history.h"
#include "moe.h"
#include "outfile.h"
#include "plot.h"
#include "results.h"

/* One case's per-phase statistics and samples, under run id. Returns 0 or -1 (sqlite3_errmsg). */
static int record_case(sqlite3_stmt *ps, sqlite3_stmt *sm, sqlite3_int64 id, json_t *c)
{
	const char *name = json_string_value(json_object_get(c, "name"));
	const char *ph;
	json_t *st;
	json_object_foreach(json_object_get(c, "phases"), ph, st)
	{
		sqlite3_reset(ps);
		sqlite3_bind_int64(ps, 1, id);
		sqlite3_bind_text(ps, 2, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(ps, 3, ph, -1, SQLITE_STATIC);
		sqlite3_bind_double(ps, 4, json_number_value(json_object_get(st, "p50_us")));
		sqlite3_bind_double(ps, 5, json_number_value(json_object_get(st, "p99_us")));
		sqlite3_bind_text(ps, 6, json_string_value(json_object_get(c, "digest")), -1, SQLITE_STATIC);
		if (sqlite3_step(ps) != SQLITE_DONE)
			return -1;
	}
	json_t *arr;
	json_object_foreach(json_object_get(c, "samples"), ph, arr)
	{
		size_t k;
		json_t *v;
		json_array_foreach(arr, k, v)
		{
			sqlite3_reset(sm);
			sqlite3_bind_int64(sm, 1, id);
			sqlite3_bind_text(sm, 2, name, -1, SQLITE_STATIC);
			sqlite3_bind_text(sm, 3, ph, -1, SQLITE_STATIC);
			sqlite3_bind_int(sm, 4, (int)k);
			sqlite3_bind_double(sm, 5, json_number_value(v));
			if (sqlite3_step(sm) != SQLITE_DONE)
				return -1;
		}
	}
	return 0;
}

static int record(sqlite3 *db, json_t *run, int regressions, json_t *cmp, char *err, size_t errlen)
{
	char *text = json_dumps(run, JSON_COMPACT);
	json_t *fpj = moe_env_fingerprint(run);
	char *fp = json_dumps(fpj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(fpj);
	json_t *env = json_object_get(run, "env");
	int ncases = 0, nok = 0, rc = -1;
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(run, "cases"), i, c)
	{
		ncases++;
		nok += !strcmp(json_string_value(json_object_get(c, "verdict")), "ok");
	}
	sqlite3_stmt *r = NULL, *ps = NULL, *sm = NULL, *vd = NULL;
	/* one transaction: a run killed halfway leaves the history as it was */
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_prepare_v2(db, "INSERT INTO runs (run_id, recorded_at, git_commit, host, fingerprint, cases, cases_ok,"
				   " regressions, run_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
			       -1, &r, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO phase_stats (run, name, phase, p50_us, p99_us, digest) VALUES"
				   " (?1, ?2, ?3, ?4, ?5, ?6)", -1, &ps, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO samples VALUES (?1, ?2, ?3, ?4, ?5)", -1, &sm, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO verdicts VALUES (?1, ?2, ?3, ?4, ?5)", -1, &vd, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_bind_text(r, 1, json_string_value(json_object_get(run, "run_id")), -1, SQLITE_STATIC);
	sqlite3_bind_int64(r, 2, (sqlite3_int64)time(NULL));
	const char *commit = json_string_value(json_object_get(env, "git_commit"));
	const char *host = json_string_value(json_object_get(env, "host"));
	sqlite3_bind_text(r, 3, commit ? commit : "unknown", -1, SQLITE_STATIC);
	sqlite3_bind_text(r, 4, host ? host : "unknown", -1, SQLITE_STATIC);
	sqlite3_bind_text(r, 5, fp, -1, SQLITE_STATIC);
	sqlite3_bind_int(r, 6, ncases);
	sqlite3_bind_int(r, 7, nok);
	sqlite3_bind_int(r, 8, regressions);
	sqlite3_bind_text(r, 9, text, -1, SQLITE_STATIC);
	if (sqlite3_step(r) != SQLITE_DONE)
		goto fail;
	sqlite3_int64 id = sqlite3_last_insert_rowid(db);
	json_array_foreach(json_object_get(run, "cases"), i, c) if (record_case(ps, sm, id, c)) goto fail;
	json_array_foreach(json_object_get(cmp, "rows"), i, c)
	{
		sqlite3_reset(vd);
		sqlite3_bind_int64(vd, 1, id);
		sqlite3_bind_text(vd, 2, json_string_value(json_object_get(c, "case")), -1, SQLITE_STATIC);
		sqlite3_bind_text(vd, 3, json_string_value(json_object_get(c, "phase")), -1, SQLITE_STATIC);
		sqlite3_bind_text(vd, 4, json_string_value(json_object_get(c, "verdict")), -1, SQLITE_STATIC);
		sqlite3_bind_double(vd, 5, json_number_value(json_object_get(c, "change_pct")));
		if (sqlite3_step(vd) != SQLITE_DONE)
			goto fail;
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	rc = 0;
fail:
	if (rc) {
		snprintf(err, errlen, "recording the run: %s", sqlite3_errmsg(db));
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	}
	sqlite3_finalize(r);
	sqlite3_finalize(ps);
	sqlite3_finalize(sm);
	sqlite3_finalize(vd);
	free(text);
	free(fp);
	return rc;
}

/* Each verb's usage line, in the order of verbs[] below; and the options each takes (bits of opt_bits). */
static const char *const verb_usage[] = {
	"moebench history record RUN [--regressions N] [--compare FILE.json] [--db FILE]",
	"moebench history list [--db FILE]",
	"moebench history trend [--phase PHASE|all] [--out FILE.tsv] [--db FILE]",
	"moebench history accept RUN --reason TEXT [--db FILE]",
	"moebench history pin RUN --reason TEXT [--db FILE]",
	"moebench history unpin [--reason TEXT] [--db FILE]",
	"moebench history baseline [--db FILE]",
};

static void usage_history(FILE *f)
{
	for (size_t i = 0; i < MOE_ARRAY_SIZE(verb_usage); i++)
		fprintf(f, "%s%s\n", i ? "       " : "usage: ", verb_usage[i]);
	fprintf(f, "RUN is a results folder or its run.json (accept and pin also take a recorded run id); the default db\n"
		   "is results/history.db. Only record creates it: the other commands refuse a file that does not exist\n"
		   "(exit 2) and open it read-only where they only read. Writers wait for each other.\n"
		   "--compare keeps the verdicts of `moebench compare --json FILE` with the run (the regression count\n"
		   "is then taken from it), so that the trend marks the cases that regressed, not the whole run.\n"
		   "The baseline (`moebench compare history:baseline NEW`) is, per case (matched by its parameter\n"
		   "digest) and phase, the run whose median is the median of the last %d good runs of NEW's\n"
		   "environment (every case ok, no regression). accept RUN makes RUN good and starts the window at it\n"
		   "(a change that was meant); pin RUN makes RUN the baseline until unpin. Each is recorded with the\n"
		   "time and --reason; `history baseline` shows them.\n", MOE_BASELINE_RUNS);
}

/* A run id from a recorded id, a results folder or a run.json. */
static void run_id_of(const char *arg, char *out, size_t len)
{
	struct stat sb;
	snprintf(out, len, "%s", arg);
	if (stat(arg, &sb) != 0)
		return;
	char err[256];
	int rc;
	json_t *j = moe_history_load(arg, "", NULL, 0, err, sizeof(err), &rc);
	const char *id = json_string_value(json_object_get(j, "run_id"));
	if (id)
		snprintf(out, len, "%s", id);
	json_decref(j);
}

static int cmd_record(sqlite3 *db, const char *db_path, const char *what, const char *cmp_path, int regressions)
{
	char err[1024];
	int rc;
	json_t *run = moe_history_load(what, db_path, NULL, 0, err, sizeof(err), &rc), *cmp = NULL;
	if (run && !json_is_string(json_object_get(run, "run_id"))) {
		snprintf(err, sizeof(err), "%.700s: no \"run_id\"", what);
		json_decref(run);
		run = NULL;
	}
	if (run && cmp_path) {
		json_error_t je;
		cmp = json_load_file(cmp_path, 0, &je);
		if (!cmp || !json_is_array(json_object_get(cmp, "rows"))) {
			snprintf(err, sizeof(err), "%.700s: not a compare report (%.160s)", cmp_path, cmp ? "no rows" : je.text);
			json_decref(run);
			run = NULL;
		} else
			regressions = (int)json_integer_value(json_object_get(cmp, "regressions"));
	}
	if (!run) {
		fprintf(stderr, "moebench: history record: %s\n", err);
		json_decref(cmp);
		return MOE_EXIT_USAGE;
	}
	rc = MOE_EXIT_OK;
	if (record(db, run, regressions, cmp, err, sizeof(err))) {
		fprintf(stderr, "moebench: history record: %s: %s\n", db_path, err);
		rc = MOE_EXIT_FAIL;
	} else
		printf("recorded %s in %s\n", json_string_value(json_object_get(run, "run_id")), db_path);
	json_decref(run);
	json_decref(cmp);
	return rc;
}

/* After a loop of sqlite3_step: the error, if the loop did not end with SQLITE_DONE. */
static int step_done(sqlite3 *db, int r, const char *db_path, const char *verb)
{
	if (r == SQLITE_DONE)
		return MOE_EXIT_OK;
	fprintf(stderr, "moebench: history %s: %s: %s\n", verb, db_path, sqlite3_errmsg(db));
	return MOE_EXIT_FAIL;
}

static int cmd_list(sqlite3 *db, const char *db_path)
{
	sqlite3_stmt *st;
	char pin[512];
	moe_history_pinned(db, pin, sizeof(pin));
	int acc = moe_history_has_column(db, "baseline_events", "action");
	if (sqlite3_prepare_v2(db, acc ? "SELECT run_id, datetime(recorded_at, 'unixepoch'), git_commit, host, cases_ok, cases,"
					 " regressions, EXISTS (SELECT 1 FROM baseline_events e WHERE e.action = 'accept'"
					 " AND e.run_id = runs.run_id) FROM runs ORDER BY id"
				       : "SELECT run_id, datetime(recorded_at, 'unixepoch'), git_commit, host, cases_ok, cases,"
					 " regressions, 0 FROM runs ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK)
		return step_done(db, SQLITE_ERROR, db_path, "list");
	printf("# run_id\trecorded (UTC)\tcommit\thost\tcases ok\tregressions\tbaseline\n");
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		printf("%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\n", id, sqlite3_column_text(st, 1), sqlite3_column_text(st, 2),
		       sqlite3_column_text(st, 3), sqlite3_column_int(st, 4), sqlite3_column_int(st, 5),
		       sqlite3_column_int(st, 6), !strcmp(id, pin) ? "pinned" : sqlite3_column_int(st, 7) ? "accepted" : "-");
	}
	sqlite3_finalize(st);
	return step_done(db, r, db_path, "list");
}

static int cmd_trend(sqlite3 *db, const char *db_path, const char *phase, const char *out)
{
	sqlite3_stmt *st;
	/* a case is marked where its run's comparison found it slower in any phase; runs recorded
	 * without their comparison mark every case when the run had a regression */
	if (sqlite3_prepare_v2(db, "SELECT r.run_id, r.recorded_at, s.name, s.phase, s.p50_us,"
				   " CASE WHEN EXISTS (SELECT 1 FROM verdicts v WHERE v.run = r.id)"
				   " THEN EXISTS (SELECT 1 FROM verdicts v WHERE v.run = r.id AND v.name = s.name"
				   " AND v.verdict = 'slower') ELSE r.regressions > 0 END FROM"
				   " phase_stats s JOIN runs r ON r.id = s.run WHERE s.phase = ?1 OR ?1 = 'all'"
				   " ORDER BY r.id, s.name",
			       -1, &st, NULL) != SQLITE_OK)
		return step_done(db, SQLITE_ERROR, db_path, "trend");
	char werr[1200];
	struct moe_outfile *of = out ? moe_out_open(out, werr, sizeof(werr)) : NULL;
	if (out && !of) {
		fprintf(stderr, "moebench: history trend: cannot write %s\n", werr);
		sqlite3_finalize(st);
		return MOE_EXIT_FAIL;
	}
	FILE *f = of ? moe_out_stream(of) : stdout;
	sqlite3_bind_text(st, 1, phase, -1, SQLITE_STATIC);
	fprintf(f, "# run_id\tunix_time\tcase\tphase\tp50_us\tregression\n");
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		char name[4 * MOE_TSV_NAME_MAX]; /* a tab or newline in a case name would shift or split the row */
		const unsigned char *raw = sqlite3_column_text(st, 2);
		moe_tsv_escape(raw ? (const char *)raw : "", name, sizeof(name));
		fprintf(f, "%s\t%lld\t%s\t%s\t%.3f\t%d\n", sqlite3_column_text(st, 0), (long long)sqlite3_column_int64(st, 1),
			name, sqlite3_column_text(st, 3), sqlite3_column_double(st, 4), sqlite3_column_int(st, 5));
	}
	sqlite3_finalize(st);
	int rc = step_done(db, r, db_path, "trend");
	if (of && rc) {
		moe_out_discard(of);
	} else if (of ? moe_out_commit(of, werr, sizeof(werr)) : fflush(f)) {
		fprintf(stderr, "moebench: history trend: cannot write %s\n", of ? werr : "stdout");
		rc = MOE_EXIT_INCOMPLETE;
	}
	return rc;
}

/* accept, pin and unpin: one row of baseline_events, with when and why. */
static int cmd_mark(sqlite3 *db, const char *db_path, const char *verb, const char *run, const char *reason)
{
	char id[512] = "";
	sqlite3_stmt *st = NULL;
	if (run) {
		run_id_of(run, id, sizeof(id));
		if (sqlite3_prepare_v2(db, "SELECT 1 FROM runs WHERE run_id = ?1", -1, &st, NULL) != SQLITE_OK)
			return step_done(db, SQLITE_ERROR, db_path, verb);
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		int r = sqlite3_step(st);
		sqlite3_finalize(st);
		if (r == SQLITE_DONE) {
			fprintf(stderr, "moebench: history %s: %s: no such run in %s (record it first)\n", verb, id, db_path);
			return MOE_EXIT_USAGE;
		}
		if (r != SQLITE_ROW)
			return step_done(db, r, db_path, verb);
	}
	if (sqlite3_prepare_v2(db, "INSERT INTO baseline_events (at, action, run_id, reason) VALUES (?1, ?2, ?3, ?4)", -1,
			       &st, NULL) != SQLITE_OK)
		return step_done(db, SQLITE_ERROR, db_path, verb);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)time(NULL));
	sqlite3_bind_text(st, 2, verb, -1, SQLITE_STATIC);
	if (run)
		sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, reason ? reason : "", -1, SQLITE_STATIC);
	int r = sqlite3_step(st);
	sqlite3_finalize(st);
	if (r == SQLITE_DONE)
		printf("%s%s%s in %s\n", !strcmp(verb, "accept") ? "accepted" : !strcmp(verb, "pin") ? "pinned" : "unpinned",
		       run ? " " : "", id, db_path);
	return step_done(db, r, db_path, verb);
}

static int cmd_baseline(sqlite3 *db, const char *db_path)
{
	char pin[512];
	moe_history_pinned(db, pin, sizeof(pin));
	if (*pin)
		printf("# baseline: run %s (pinned)\n", pin);
	else
		printf("# baseline: per case and phase, the median of the last %d good runs of the environment, from its "
		       "newest accepted run on\n", MOE_BASELINE_RUNS);
	sqlite3_stmt *st;
	if (!moe_history_has_column(db, "baseline_events", "action"))
		return MOE_EXIT_OK;
	if (sqlite3_prepare_v2(db, "SELECT datetime(at, 'unixepoch'), action, coalesce(run_id, '-'), reason FROM"
				   " baseline_events ORDER BY id", -1, &st, NULL) != SQLITE_OK)
		return step_done(db, SQLITE_ERROR, db_path, "baseline");
	printf("# at (UTC)\taction\trun_id\treason\n");
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW)
		printf("%s\t%s\t%s\t%s\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1), sqlite3_column_text(st, 2),
		       sqlite3_column_text(st, 3));
	sqlite3_finalize(st);
	return step_done(db, r, db_path, "baseline");
}

/* One verb on an open history; the argument count was checked by the caller. */
static int history_verb(sqlite3 *db, const char *db_path, const char *verb, char **args, const char *phase,
			const char *out, const char *cmp_path, const char *reason, int regressions)
{
	if (!strcmp(verb, "record"))
		return cmd_record(db, db_path, args[0], cmp_path, regressions);
	if (!strcmp(verb, "list"))
		return cmd_list(db, db_path);
	if (!strcmp(verb, "trend"))
		return cmd_trend(db, db_path, phase, out);
	if (!strcmp(verb, "baseline"))
		return cmd_baseline(db, db_path);
	return cmd_mark(db, db_path, verb, strcmp(verb, "unpin") ? args[0] : NULL, reason);
}

int moe_cmd_history(int argc, char **argv)
{
	const char *db_path = "results/history.db", *phase = "total", *out = NULL, *cmp_path = NULL, *reason = NULL;
	int regressions = 0;
	static const struct option lo[] = {
		{"db", required_argument, NULL, 'd'},	       {"phase", required_argument, NULL, 'p'},
		{"out", required_argument, NULL, 'o'},	       {"regressions", required_argument, NULL, 'r'},
		{"compare", required_argument, NULL, 'c'}, {"reason", required_argument, NULL, 'R'},
		{"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0}};
	/* the options each verb takes, in verbs[] order: d db, p phase, o out, r regressions, c compare, R reason */
	static const char *const verbs[] = {"record", "list", "trend", "accept", "pin", "unpin", "baseline"};
	static const char *const takes[] = {"drc", "d", "dpo", "dR", "dR", "dR", "d"};
	static const int nargs[] = {1, 0, 0, 1, 1, 0, 0};
	char seen[8] = "";
	int c, li = -1, help = 0;
	const char *names[8] = {0};
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, &li)) != -1) {
		if (c != 'h' && c != '?' && !strchr(seen, c) && strlen(seen) < 7) {
			names[strlen(seen)] = li >= 0 ? lo[li].name : "?";
			seen[strlen(seen)] = (char)c;
		}
		li = -1;
		switch (c) {
		case 'd': db_path = optarg; break;
		case 'p': phase = optarg; break;
		case 'o': out = optarg; break;
		case 'r': regressions = atoi(optarg); break;
		case 'c': cmp_path = optarg; break;
		case 'R': reason = optarg; break;
		case 'h': help = 1; break;
		default: usage_history(stderr); return MOE_EXIT_USAGE;
		}
	}
	int v = -1;
	for (int i = 0; optind < argc && i < (int)MOE_ARRAY_SIZE(verbs); i++)
		if (!strcmp(argv[optind], verbs[i]))
			v = i;
	if (help) { /* history --help: every verb; history VERB --help: that verb's line */
		if (v >= 0)
			printf("usage: %s\n(moebench history --help says more)\n", verb_usage[v]);
		else
			usage_history(stdout);
		return MOE_EXIT_OK;
	}
	for (int i = 0; v >= 0 && seen[i]; i++)
		if (!strchr(takes[v], seen[i])) {
			fprintf(stderr, "moebench: history %s: option --%s is not accepted by history %s\nusage: %s\n",
				verbs[v], names[i], verbs[v], verb_usage[v]);
			return MOE_EXIT_USAGE;
		}
	if (v < 0 || argc - optind - 1 != nargs[v]) {
		if (optind < argc && v < 0)
			fprintf(stderr, "moebench: history: unknown command '%s'\n", argv[optind]);
		else if (v >= 0)
			fprintf(stderr, "moebench: history %s: takes %d argument%s\n", verbs[v], nargs[v], nargs[v] == 1 ? "" : "s");
		usage_history(stderr);
		return MOE_EXIT_USAGE;
	}
	if ((v == 3 || v == 4) && (!reason || !*reason)) {
		fprintf(stderr, "moebench: history %s: --reason TEXT is required (it is kept with the baseline)\n", verbs[v]);
		return MOE_EXIT_USAGE;
	}
	char err[1024];
	int rc, write = v == 0 || v == 3 || v == 4 || v == 5;
	struct stat sb;
	if (v != 0 && stat(db_path, &sb) != 0) {
		fprintf(stderr, "moebench: history %s: %s: no such history file (only `history record` creates one)\n",
			verbs[v], db_path);
		return MOE_EXIT_USAGE;
	}
	sqlite3 *db = moe_history_open(db_path, write, err, sizeof(err), &rc);
	if (!db) {
		fprintf(stderr, "moebench: history %s: %s\n", verbs[v], err);
		return rc;
	}
	rc = history_verb(db, db_path, verbs[v], argv + optind + 1, phase, out, cmp_path, reason, regressions);
	if (sqlite3_close(db) != SQLITE_OK && !rc) {
		fprintf(stderr, "moebench: history %s: %s: %s\n", verbs[v], db_path, sqlite3_errmsg(db));
		rc = MOE_EXIT_FAIL;
	}
	return rc;
}
