/* The history's database side: schema and migrations, opening (read-only for readers), and the
 * baseline that compare reads from it (the last good runs, accept, pin). */
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compare.h"
#include "history.h"
#include "moe.h"
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

int moe_history_has_column(sqlite3 *db, const char *table, const char *col)
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
	if (rc == SQLITE_OK && !moe_history_has_column(db, "phase_stats", "digest"))
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
sqlite3 *moe_history_open(const char *path, int write, char *err, size_t errlen, int *rc)
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
void moe_history_pinned(sqlite3 *db, char *out, size_t len)
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
	if (!moe_history_has_column(db, "phase_stats", "digest") || !moe_history_has_column(db, "baseline_events", "action"))
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
	sqlite3 *db = moe_history_open(dbpath, 0, err, errlen, rc);
	if (!db)
		return NULL;
	const char *id = what + 8;
	char pin[512] = "";
	if (!strcmp(id, "baseline")) {
		moe_history_pinned(db, pin, sizeof(pin));
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
	char err[1024];
	if (nruns < MOE_BAND_MIN_RUNS || stat(dbpath, &sb) != 0)
		return NULL;
	sqlite3 *db = moe_history_open(dbpath, 0, err, sizeof(err), &rc);
	if (!db) {
		moe_err("no noise band: %s", err);
		return NULL;
	}
	json_t *fpj = moe_env_fingerprint(run);
	char *fp = json_dumps(fpj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(fpj);
	json_t *bands = json_object();
	int failed = !fp || window_stats(db, fp, nruns, bands, NULL, err, sizeof(err));
	if (failed && fp)
		moe_err("no noise band: %s: %s", dbpath, err);
	if (failed || !json_object_size(bands)) {
		json_decref(bands);
		bands = NULL;
	}
	sqlite3_close(db);
	free(fp);
	return bands;
}

