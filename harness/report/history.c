/* The nightly history: every recorded run in SQLite (STRICT tables, one transaction per record), the
 * baseline that compare reads from it (accept, pin), and the trend that the nightly plot draws. */
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
#include "plot.h"
#include "results.h"

static const char *schema =
	"CREATE TABLE IF NOT EXISTS runs ("
	" id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, recorded_at INTEGER NOT NULL, git_commit TEXT NOT NULL,"
	" host TEXT NOT NULL, fingerprint TEXT NOT NULL, cases INTEGER NOT NULL, cases_ok INTEGER NOT NULL,"
	" regressions INTEGER NOT NULL, run_json TEXT NOT NULL) STRICT;"
	/* digest: the case's identity (moe_case_digest); NULL in rows recorded before it existed, which no
	 * baseline uses */
	"CREATE TABLE IF NOT EXISTS phase_stats ("
	" run INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, phase TEXT NOT NULL, p50_us REAL NOT NULL,"
	" p99_us REAL NOT NULL, digest TEXT, PRIMARY KEY (run, name, phase)) STRICT;"
	"CREATE TABLE IF NOT EXISTS samples ("
	" run INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, phase TEXT NOT NULL, iter INTEGER NOT NULL,"
	" us REAL NOT NULL) STRICT;"
	/* the comparison a run was judged by (history record --compare): which case and phase regressed */
	"CREATE TABLE IF NOT EXISTS verdicts ("
	" run INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, phase TEXT NOT NULL, verdict TEXT NOT NULL,"
	" change_pct REAL NOT NULL, PRIMARY KEY (run, name, phase)) STRICT;"
	/* explicit baselines: accept (a run starts a new window of good runs), pin (one run is the baseline)
	 * and unpin, each with when and why */
	"CREATE TABLE IF NOT EXISTS baseline_events ("
	" id INTEGER PRIMARY KEY, at INTEGER NOT NULL, action TEXT NOT NULL, run_id TEXT, reason TEXT NOT NULL) STRICT;";

/* Writers wait this long for another writer instead of failing with "database is locked". */
#define BUSY_MS 600000

static int has_column(sqlite3 *db, const char *table, const char *col)
{
	sqlite3_stmt *st;
	char q[128];
	snprintf(q, sizeof(q), "SELECT 1 FROM pragma_table_info('%s') WHERE name = ?1", table);
	if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, col, -1, SQLITE_STATIC);
	int r = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return r;
}

/* Tables and the migrations of older histories, in one write transaction so that concurrent openers
 * wait for each other instead of both altering. */
static int migrate(sqlite3 *db, char **e)
{
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, e) != SQLITE_OK)
		return -1;
	int rc = sqlite3_exec(db, schema, NULL, NULL, e);
	if (rc == SQLITE_OK && !has_column(db, "phase_stats", "digest"))
		rc = sqlite3_exec(db, "ALTER TABLE phase_stats ADD COLUMN digest TEXT", NULL, NULL, e);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "CREATE INDEX IF NOT EXISTS samples_by_case ON samples (run, name, phase)", NULL, NULL, e);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, e);
	if (rc != SQLITE_OK)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : -1;
}

/* Readers (write = 0) open an existing history read-only, so that a read-only file or folder can be
 * listed and compared; they never create one. Writers create it and migrate it. NULL with err and *rc. */
static sqlite3 *open_db(const char *path, int write, char *err, size_t errlen, int *rc)
{
	struct stat sb;
	*rc = MOE_EXIT_USAGE;
	if (!write && stat(path, &sb) != 0) {
		snprintf(err, errlen, "%.700s: no such history file (only `history record` creates one)", path);
		return NULL;
	}
	sqlite3 *db = NULL;
	int flags = write ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
	if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%.700s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, BUSY_MS);
	char *e = NULL;
	*rc = MOE_EXIT_FAIL;
	/* a rollback journal, not WAL: a WAL history cannot be read from a read-only folder */
	if (write && (sqlite3_exec(db, "PRAGMA journal_mode=DELETE; PRAGMA foreign_keys=ON;", NULL, NULL, &e) != SQLITE_OK ||
		      migrate(db, &e))) {
		snprintf(err, errlen, "%.700s: %s", path, e ? e : sqlite3_errmsg(db));
		sqlite3_free(e);
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM runs", -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%.700s: not a moebench history (%s)", path, sqlite3_errmsg(db));
		*rc = MOE_EXIT_USAGE;
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_finalize(st);
	return db;
}

static int db_error(sqlite3 *db, const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(db));
	return -1;
}

/* The pinned run's id into out (when the last pin or unpin was a pin), else "". */
static void pinned(sqlite3 *db, char *out, size_t len)
{
	sqlite3_stmt *st;
	out[0] = 0;
	if (sqlite3_prepare_v2(db, "SELECT action, run_id FROM baseline_events WHERE action IN ('pin', 'unpin') "
				   "ORDER BY id DESC LIMIT 1", -1, &st, NULL) != SQLITE_OK)
		return; /* a history from before baselines, opened read-only */
	if (sqlite3_step(st) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(st, 0), "pin"))
		snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 1));
	sqlite3_finalize(st);
}

/* The last nruns good runs of fingerprint fp, from the newest accepted run of it on (accepted runs are good
 * whatever their verdicts): as an SQL set for the statistics below. ?1 fp, ?2 nruns. */
#define WINDOW                                                                                                      \
	"WITH acc AS (SELECT coalesce(max(r.id), 0) AS id FROM baseline_events e JOIN runs r ON r.run_id = e.run_id" \
	" WHERE e.action = 'accept' AND r.fingerprint = ?1),"                                                       \
	" w AS (SELECT id FROM runs WHERE fingerprint = ?1 AND id >= (SELECT id FROM acc) AND"                      \
	" ((cases = cases_ok AND regressions = 0) OR id = (SELECT id FROM acc)) ORDER BY id DESC LIMIT ?2) "

/* The samples of one case and phase of one run into the baseline's case of that digest and name. */
static int add_baseline_samples(sqlite3 *db, sqlite3_stmt *sm, json_t *cases, const char *dg, const char *nm,
				const char *ph, sqlite3_int64 run, char *err, size_t errlen)
{
	char ck[700];
	snprintf(ck, sizeof(ck), "%s\t%s", dg, nm);
	json_t *c = json_object_get(cases, ck);
	if (!c) {
		c = json_pack("{s:s,s:s,s:s,s:{},s:{},s:{}}", "name", nm, "digest", dg, "verdict", "ok", "params", "samples",
			      "baseline_runs");
		json_object_set_new(cases, ck, c);
	}
	json_t *arr = json_array();
	sqlite3_reset(sm);
	sqlite3_bind_int64(sm, 1, run);
	sqlite3_bind_text(sm, 2, nm, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(sm, 3, ph, -1, SQLITE_TRANSIENT);
	int r;
	while ((r = sqlite3_step(sm)) == SQLITE_ROW)
		json_array_append_new(arr, json_real(sqlite3_column_double(sm, 0)));
	json_object_set_new(json_object_get(c, "samples"), ph, arr);
	json_object_set_new(json_object_get(c, "baseline_runs"), ph, json_integer(run));
	return r == SQLITE_DONE ? 0 : db_error(db, "reading the baseline's samples", err, errlen);
}

/* Per case (digest and name) and phase over the window: the noise band into bands ({"DIGEST\tPHASE": pct})
 * and, when cases is given, the samples of the run whose median is the median of the window's medians
 * (a typical run, never the luckiest) into cases ({"DIGEST\tNAME": case}). */
static int window_stats(sqlite3 *db, const char *fp, int nruns, json_t *bands, json_t *cases, char *err, size_t errlen)
{
	if (!has_column(db, "phase_stats", "digest") || !has_column(db, "baseline_events", "action"))
		return 0; /* recorded before digests: no row is comparable */
	sqlite3_stmt *st = NULL, *sm = NULL;
	if (sqlite3_prepare_v2(db, WINDOW "SELECT p.digest, p.name, p.phase, p.p50_us, p.run FROM phase_stats p WHERE"
					  " p.run IN (SELECT id FROM w) AND p.digest IS NOT NULL ORDER BY 1, 2, 3, 4",
			       -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT us FROM samples WHERE run = ?1 AND name = ?2 AND phase = ?3 ORDER BY iter", -1,
			       &sm, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		return db_error(db, "reading the baseline", err, errlen);
	}
	sqlite3_bind_text(st, 1, fp, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, nruns);
	double *v = moe_xmalloc((size_t)nruns * sizeof(double) + 8);
	sqlite3_int64 *runs = moe_xmalloc((size_t)nruns * sizeof(sqlite3_int64) + 8);
	char key[1200] = "", dg[64] = "", nm[600] = "", ph[64] = "";
	size_t n = 0;
	int r, rc = 0;
	do {
		r = sqlite3_step(st);
		char k[1200] = "";
		if (r == SQLITE_ROW)
			snprintf(k, sizeof(k), "%s\t%s\t%s", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
				 sqlite3_column_text(st, 2));
		if (n && strcmp(k, key)) { /* a group ends */
			char bk[200];
			snprintf(bk, sizeof(bk), "%s\t%s", dg, ph);
			double b = moe_noise_band(v, n);
			if (b > 0)
				json_object_set_new(bands, bk, json_real(b));
			if (cases && (rc = add_baseline_samples(db, sm, cases, dg, nm, ph, runs[(n - 1) / 2], err, errlen)))
				break;
			n = 0;
		}
		if (r == SQLITE_ROW) {
			if (!n) {
				snprintf(key, sizeof(key), "%s", k);
				snprintf(dg, sizeof(dg), "%s", sqlite3_column_text(st, 0));
				snprintf(nm, sizeof(nm), "%s", sqlite3_column_text(st, 1));
				snprintf(ph, sizeof(ph), "%s", sqlite3_column_text(st, 2));
			}
			if (n < (size_t)nruns) {
				v[n] = sqlite3_column_double(st, 3);
				runs[n++] = sqlite3_column_int64(st, 4);
			}
		}
	} while (r == SQLITE_ROW);
	if (!rc && r != SQLITE_DONE)
		rc = db_error(db, "reading the baseline", err, errlen);
	free(v);
	free(runs);
	sqlite3_finalize(st);
	sqlite3_finalize(sm);
	return rc;
}
/* A validated run.json text. */
static json_t *parse_run(const char *text, const char *what, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	if (!j)
		snprintf(err, errlen, "%.700s: %.160s", what, je.text);
	else if (moe_run_validate(j, what, err, errlen)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* history:baseline without a pin: per case and phase the typical run of the last nruns good ones of like's
 * environment (window_stats), as one run.json whose env is that environment's fingerprint. */
static json_t *baseline_run(sqlite3 *db, const char *dbpath, json_t *like, int nruns, char *err, size_t errlen, int *rc)
{
	json_t *fpj = moe_env_fingerprint(like);
	char *fp = json_dumps(fpj, JSON_COMPACT | JSON_SORT_KEYS);
	json_t *cases = json_object(), *bands = json_object(), *run = NULL;
	*rc = MOE_EXIT_FAIL;
	if (fp && !window_stats(db, fp, nruns, bands, cases, err, errlen)) {
		if (!json_object_size(cases)) {
			snprintf(err, errlen, "history:baseline: no good run of this environment in %.700s (record one, or "
					      "`history accept` one)", dbpath);
			*rc = MOE_EXIT_INCOMPLETE;
		} else {
			json_t *arr = json_array();
			const char *k;
			json_t *c;
			json_object_foreach(cases, k, c) json_array_append(arr, c);
			run = json_pack("{s:s,s:s,s:O,s:o,s:O}", "schema", MOE_SCHEMA, "run_id", "history:baseline", "env", fpj,
					"cases", arr, "bands", bands);
		}
	}
	json_decref(cases);
	json_decref(bands);
	json_decref(fpj);
	free(fp);
	return run;
}

/* A run stored in the history: history:RUN_ID, history:last-good or history:baseline (the pinned run when
 * one is pinned). */
static json_t *load_stored(const char *what, const char *dbpath, json_t *like, int nruns, char *err, size_t errlen,
			   int *rc)
{
	sqlite3 *db = open_db(dbpath, 0, err, errlen, rc);
	if (!db)
		return NULL;
	const char *id = what + 8;
	char pin[512] = "";
	if (!strcmp(id, "baseline")) {
		pinned(db, pin, sizeof(pin));
		if (!*pin) {
			json_t *j = like ? baseline_run(db, dbpath, like, nruns, err, errlen, rc) : NULL;
			sqlite3_close(db);
			return j;
		}
		id = pin;
	}
	sqlite3_stmt *st;
	int last_good = !strcmp(id, "last-good");
	*rc = MOE_EXIT_FAIL;
	if (sqlite3_prepare_v2(db,
			       last_good ? "SELECT run_json FROM runs WHERE cases = cases_ok AND regressions = 0 "
					   "ORDER BY id DESC LIMIT 1"
					 : "SELECT run_json FROM runs WHERE run_id = ?1",
			       -1, &st, NULL) != SQLITE_OK) {
		db_error(db, dbpath, err, errlen);
		sqlite3_close(db);
		return NULL;
	}
	if (!last_good)
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int r = sqlite3_step(st);
	json_t *j = NULL;
	if (r == SQLITE_ROW) {
		*rc = MOE_EXIT_USAGE;
		j = parse_run((const char *)sqlite3_column_text(st, 0), what, err, errlen);
	} else if (r == SQLITE_DONE) {
		*rc = last_good ? MOE_EXIT_INCOMPLETE : MOE_EXIT_USAGE;
		snprintf(err, errlen, "%.200s%s: no such run in %.700s", what, *pin ? " (pinned)" : "", dbpath);
	} else
		db_error(db, dbpath, err, errlen);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return j;
}

json_t *moe_history_load(const char *what, const char *dbpath, json_t *like, int nruns, char *err, size_t errlen,
			 int *rc)
{
	if (!strncmp(what, "history:", 8))
		return load_stored(what, dbpath, like, nruns, err, errlen, rc);
	*rc = MOE_EXIT_USAGE;
	char path[900];
	struct stat sb;
	if (stat(what, &sb) == 0 && S_ISDIR(sb.st_mode))
		snprintf(path, sizeof(path), "%s/run.json", what);
	else
		snprintf(path, sizeof(path), "%s", what);
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (!j) /* jansson's text is at most 160 characters: keep room for it */
		snprintf(err, errlen, "%.700s: %.160s (line %d)", path, je.text, je.line);
	else if (moe_run_validate(j, path, err, errlen)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

json_t *moe_history_bands(const char *dbpath, json_t *run, int nruns)
{
	struct stat sb;
	int rc;
	char err[256];
	if (nruns < MOE_BAND_MIN_RUNS || stat(dbpath, &sb) != 0)
		return NULL;
	sqlite3 *db = open_db(dbpath, 0, err, sizeof(err), &rc);
	if (!db)
		return NULL;
	json_t *fpj = moe_env_fingerprint(run);
	char *fp = json_dumps(fpj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(fpj);
	json_t *bands = json_object();
	if (!fp || window_stats(db, fp, nruns, bands, NULL, err, sizeof(err)) || !json_object_size(bands)) {
		json_decref(bands);
		bands = NULL;
	}
	sqlite3_close(db);
	free(fp);
	return bands;
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
	json_array_foreach(json_object_get(run, "cases"), i, c)
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
				goto fail;
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
					goto fail;
			}
		}
	}
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

static void usage_history(FILE *f)
{
	fprintf(f, "usage: moebench history record RUN [--regressions N] [--compare FILE.json] [--db FILE]\n"
		   "       moebench history list [--db FILE]\n"
		   "       moebench history trend [--phase PHASE] [--out FILE.tsv] [--db FILE]\n"
		   "       moebench history accept RUN --reason TEXT [--db FILE]\n"
		   "       moebench history pin RUN --reason TEXT [--db FILE]\n"
		   "       moebench history unpin [--reason TEXT] [--db FILE]\n"
		   "       moebench history baseline [--db FILE]\n"
		   "RUN is a results folder or its run.json (accept and pin also take a recorded run id); the default db\n"
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
	pinned(db, pin, sizeof(pin));
	int acc = has_column(db, "baseline_events", "action");
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
				   " phase_stats s JOIN runs r ON r.id = s.run WHERE s.phase = ?1 ORDER BY r.id, s.name",
			       -1, &st, NULL) != SQLITE_OK)
		return step_done(db, SQLITE_ERROR, db_path, "trend");
	FILE *f = out ? fopen(out, "w") : stdout;
	if (!f) {
		fprintf(stderr, "moebench: history trend: cannot write %s: %s\n", out, strerror(errno));
		sqlite3_finalize(st);
		return MOE_EXIT_FAIL;
	}
	sqlite3_bind_text(st, 1, phase, -1, SQLITE_STATIC);
	fprintf(f, "# run_id\tunix_time\tcase\tphase\tp50_us\tregression\n");
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW)
		fprintf(f, "%s\t%lld\t%s\t%s\t%.3f\t%d\n", sqlite3_column_text(st, 0), (long long)sqlite3_column_int64(st, 1),
			sqlite3_column_text(st, 2), sqlite3_column_text(st, 3), sqlite3_column_double(st, 4),
			sqlite3_column_int(st, 5));
	sqlite3_finalize(st);
	int rc = step_done(db, r, db_path, "trend");
	if ((out ? fclose(f) : fflush(f)) && !rc) {
		fprintf(stderr, "moebench: history trend: writing %s: %s\n", out ? out : "stdout", strerror(errno));
		rc = MOE_EXIT_FAIL;
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
	pinned(db, pin, sizeof(pin));
	if (*pin)
		printf("# baseline: run %s (pinned)\n", pin);
	else
		printf("# baseline: per case and phase, the median of the last %d good runs of the environment, from its "
		       "newest accepted run on\n", MOE_BASELINE_RUNS);
	sqlite3_stmt *st;
	if (!has_column(db, "baseline_events", "action"))
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
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'd': db_path = optarg; break;
		case 'p': phase = optarg; break;
		case 'o': out = optarg; break;
		case 'r': regressions = atoi(optarg); break;
		case 'c': cmp_path = optarg; break;
		case 'R': reason = optarg; break;
		case 'h': usage_history(stdout); return 0;
		default: usage_history(stderr); return MOE_EXIT_USAGE;
		}
	}
	static const char *const verbs[] = {"record", "list", "trend", "accept", "pin", "unpin", "baseline"};
	static const int nargs[] = {1, 0, 0, 1, 1, 0, 0};
	int v = -1;
	for (int i = 0; optind < argc && i < (int)MOE_ARRAY_SIZE(verbs); i++)
		if (!strcmp(argv[optind], verbs[i]))
			v = i;
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
	sqlite3 *db = open_db(db_path, write, err, sizeof(err), &rc);
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
