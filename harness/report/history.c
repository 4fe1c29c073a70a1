/* The nightly history: every recorded run in SQLite (STRICT tables, one transaction per record), the
 * comparison command, and the trend that the nightly plot draws. */
#include <getopt.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "compare.h"
#include "moe.h"
#include "plot.h"
#include "results.h"

static const char *schema =
	"CREATE TABLE IF NOT EXISTS runs ("
	" id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, recorded_at INTEGER NOT NULL, git_commit TEXT NOT NULL,"
	" host TEXT NOT NULL, fingerprint TEXT NOT NULL, cases INTEGER NOT NULL, cases_ok INTEGER NOT NULL,"
	" regressions INTEGER NOT NULL, run_json TEXT NOT NULL) STRICT;"
	"CREATE TABLE IF NOT EXISTS phase_stats ("
	" run INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, phase TEXT NOT NULL, p50_us REAL NOT NULL,"
	" p99_us REAL NOT NULL, PRIMARY KEY (run, name, phase)) STRICT;"
	"CREATE TABLE IF NOT EXISTS samples ("
	" run INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, phase TEXT NOT NULL, iter INTEGER NOT NULL,"
	" us REAL NOT NULL) STRICT;"
	/* the comparison a run was judged by (history record --compare): which case and phase regressed */
	"CREATE TABLE IF NOT EXISTS verdicts ("
	" run INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, phase TEXT NOT NULL, verdict TEXT NOT NULL,"
	" change_pct REAL NOT NULL, PRIMARY KEY (run, name, phase)) STRICT;";

static sqlite3 *open_db(const char *path, char *err, size_t errlen)
{
	sqlite3 *db;
	if (sqlite3_open(path, &db) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	char *e = NULL;
	if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;", NULL, NULL, &e) != SQLITE_OK ||
	    sqlite3_exec(db, schema, NULL, NULL, &e) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, e ? e : "schema");
		sqlite3_free(e);
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

/* A run from a results folder, a run.json, or `history:RUN_ID` / `history:last-good` in db. */
static json_t *load_run(const char *what, const char *dbpath, char *err, size_t errlen)
{
	if (!strncmp(what, "history:", 8)) {
		sqlite3 *db = open_db(dbpath, err, errlen);
		if (!db)
			return NULL;
		const char *id = what + 8;
		sqlite3_stmt *st;
		int last_good = !strcmp(id, "last-good");
		sqlite3_prepare_v2(db,
				   last_good ? "SELECT run_json FROM runs WHERE cases = cases_ok AND regressions = 0 "
					       "ORDER BY id DESC LIMIT 1"
					     : "SELECT run_json FROM runs WHERE run_id = ?1",
				   -1, &st, NULL);
		if (!last_good)
			sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		json_t *j = NULL;
		if (sqlite3_step(st) == SQLITE_ROW)
			j = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
		else
			snprintf(err, errlen, "%s: no such run in %s", what, dbpath);
		sqlite3_finalize(st);
		sqlite3_close(db);
		return j;
	}
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
	return j;
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
	    sqlite3_prepare_v2(db, "INSERT INTO phase_stats VALUES (?1, ?2, ?3, ?4, ?5)", -1, &ps, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO samples VALUES (?1, ?2, ?3, ?4, ?5)", -1, &sm, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO verdicts VALUES (?1, ?2, ?3, ?4, ?5)", -1, &vd, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_bind_text(r, 1, json_string_value(json_object_get(run, "run_id")), -1, SQLITE_STATIC);
	sqlite3_bind_int64(r, 2, (sqlite3_int64)time(NULL));
	sqlite3_bind_text(r, 3, json_string_value(json_object_get(env, "git_commit")), -1, SQLITE_STATIC);
	sqlite3_bind_text(r, 4, json_string_value(json_object_get(env, "host")), -1, SQLITE_STATIC);
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
		   "RUN is a results folder or its run.json; the default db is results/history.db.\n"
		   "--compare keeps the verdicts of `moebench compare --json FILE` with the run (the regression count\n"
		   "is then taken from it), so that the trend marks the cases that regressed, not the whole run.\n");
}

int moe_cmd_history(int argc, char **argv)
{
	const char *db_path = "results/history.db", *phase = "total", *out = NULL, *cmp_path = NULL;
	int regressions = 0;
	static const struct option lo[] = {{"db", required_argument, NULL, 'd'},
					   {"phase", required_argument, NULL, 'p'},
					   {"out", required_argument, NULL, 'o'},
					   {"regressions", required_argument, NULL, 'r'},
					   {"compare", required_argument, NULL, 'c'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'd': db_path = optarg; break;
		case 'p': phase = optarg; break;
		case 'o': out = optarg; break;
		case 'r': regressions = atoi(optarg); break;
		case 'c': cmp_path = optarg; break;
		case 'h': usage_history(stdout); return 0;
		default: usage_history(stderr); return MOE_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage_history(stderr);
		return MOE_EXIT_USAGE;
	}
	const char *verb = argv[optind];
	char err[1024];
	sqlite3 *db = open_db(db_path, err, sizeof(err));
	if (!db) {
		fprintf(stderr, "moebench: history: %s\n", err);
		return MOE_EXIT_FAIL;
	}
	int rc = 0;
	if (!strcmp(verb, "record")) {
		if (optind + 1 >= argc) {
			usage_history(stderr);
			rc = MOE_EXIT_USAGE;
		} else {
			json_t *run = load_run(argv[optind + 1], db_path, err, sizeof(err)), *cmp = NULL;
			json_error_t je;
			if (run && cmp_path) {
				cmp = json_load_file(cmp_path, 0, &je);
				if (!cmp || !json_is_array(json_object_get(cmp, "rows"))) {
					snprintf(err, sizeof(err), "%.700s: not a compare report (%.160s)", cmp_path,
						 cmp ? "no rows" : je.text);
					json_decref(run);
					run = NULL;
				} else
					regressions = (int)json_integer_value(json_object_get(cmp, "regressions"));
			}
			if (!run || record(db, run, regressions, cmp, err, sizeof(err))) {
				fprintf(stderr, "moebench: history record: %s\n", err);
				rc = MOE_EXIT_FAIL;
			} else
				printf("recorded %s in %s\n", json_string_value(json_object_get(run, "run_id")), db_path);
			json_decref(run);
			json_decref(cmp);
		}
	} else if (!strcmp(verb, "list")) {
		sqlite3_stmt *st;
		sqlite3_prepare_v2(db, "SELECT run_id, datetime(recorded_at, 'unixepoch'), git_commit, host, cases_ok, cases,"
				       " regressions FROM runs ORDER BY id", -1, &st, NULL);
		printf("# run_id\trecorded (UTC)\tcommit\thost\tcases ok\tregressions\n");
		while (sqlite3_step(st) == SQLITE_ROW)
			printf("%s\t%s\t%s\t%s\t%d/%d\t%d\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
			       sqlite3_column_text(st, 2), sqlite3_column_text(st, 3), sqlite3_column_int(st, 4),
			       sqlite3_column_int(st, 5), sqlite3_column_int(st, 6));
		sqlite3_finalize(st);
	} else if (!strcmp(verb, "trend")) {
		char werr[1200];
		struct moe_outfile *of = out ? moe_out_open(out, werr, sizeof(werr)) : NULL;
		FILE *f = of ? moe_out_stream(of) : stdout;
		if (out && !of) {
			fprintf(stderr, "moebench: history trend: cannot write %s\n", werr);
			rc = MOE_EXIT_INCOMPLETE;
		} else {
			sqlite3_stmt *st;
			/* a case is marked where its run's comparison found it slower in any phase; runs recorded
			 * without their comparison mark every case when the run had a regression */
			sqlite3_prepare_v2(db, "SELECT r.run_id, r.recorded_at, s.name, s.phase, s.p50_us,"
					       " CASE WHEN EXISTS (SELECT 1 FROM verdicts v WHERE v.run = r.id)"
					       " THEN EXISTS (SELECT 1 FROM verdicts v WHERE v.run = r.id AND v.name = s.name"
					       " AND v.verdict = 'slower') ELSE r.regressions > 0 END FROM"
					       " phase_stats s JOIN runs r ON r.id = s.run WHERE s.phase = ?1 ORDER BY r.id, s.name",
					   -1, &st, NULL);
			sqlite3_bind_text(st, 1, phase, -1, SQLITE_STATIC);
			fprintf(f, "# run_id\tunix_time\tcase\tphase\tp50_us\tregression\n");
			while (sqlite3_step(st) == SQLITE_ROW) {
				/* a tab or newline in a case name must not shift or split the row */
				char name[4096];
				const unsigned char *raw = sqlite3_column_text(st, 2);
				moe_tsv_escape(raw ? (const char *)raw : "", name, sizeof(name));
				fprintf(f, "%s\t%lld\t%s\t%s\t%.3f\t%d\n", sqlite3_column_text(st, 0),
					(long long)sqlite3_column_int64(st, 1), name, sqlite3_column_text(st, 3),
					sqlite3_column_double(st, 4), sqlite3_column_int(st, 5));
			}
			sqlite3_finalize(st);
			if (of && moe_out_commit(of, werr, sizeof(werr))) {
				fprintf(stderr, "moebench: history trend: cannot write %s\n", werr);
				rc = MOE_EXIT_INCOMPLETE;
			}
		}
	} else {
		usage_history(stderr);
		rc = MOE_EXIT_USAGE;
	}
	sqlite3_close(db);
	return rc;
}

/* Each case's and phase's run-to-run noise band from the medians of the last `nruns` runs in db that share
 * BASE's environment and had every case ok: {"CASE\tPHASE": percent}, for those with enough runs. NULL when
 * the history does not exist or knows too little; it is never created here. */
static json_t *history_bands(const char *dbpath, json_t *base, int nruns)
{
	struct stat sb;
	if (nruns < MOE_BAND_MIN_RUNS || stat(dbpath, &sb) != 0)
		return NULL;
	sqlite3 *db;
	if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	json_t *fpj = moe_env_fingerprint(base);
	char *fp = json_dumps(fpj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(fpj);
	sqlite3_stmt *st = NULL;
	json_t *bands = NULL;
	if (fp && sqlite3_prepare_v2(db, "SELECT name, phase, p50_us FROM phase_stats WHERE run IN (SELECT id FROM runs "
					 "WHERE fingerprint = ?1 AND cases = cases_ok ORDER BY id DESC LIMIT ?2) "
					 "ORDER BY name, phase",
				     -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, fp, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 2, nruns);
		bands = json_object();
		double *v = moe_xmalloc((size_t)nruns * sizeof(double));
		char key[512] = "";
		size_t n = 0;
		for (int more = 1; more;) {
			more = sqlite3_step(st) == SQLITE_ROW;
			char k[512] = "";
			if (more)
				snprintf(k, sizeof(k), "%s\t%s", (const char *)sqlite3_column_text(st, 0),
					 (const char *)sqlite3_column_text(st, 1));
			if (!more || strcmp(k, key)) { /* a group ends */
				double b = moe_noise_band(v, n);
				if (b > 0)
					json_object_set_new(bands, key, json_real(b));
				snprintf(key, sizeof(key), "%s", k);
				n = 0;
			}
			if (more && n < (size_t)nruns)
				v[n++] = sqlite3_column_double(st, 2);
		}
		free(v);
		if (!json_object_size(bands)) {
			json_decref(bands);
			bands = NULL;
		}
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(fp);
	return bands;
}

static void usage_compare(FILE *f)
{
	fprintf(f,
		"usage: moebench compare BASE NEW [--phases LIST] [--alpha A] [--threshold PCT] [--noise PCT] [--force]\n"
		"                        [--band-runs N] [--json FILE] [--markdown FILE] [--db FILE]\n"
		"BASE and NEW are results folders, run.json files, or history:RUN_ID / history:last-good.\n"
		"Per case and phase: medians, change, Mann-Whitney U p-value, 95%% bootstrap interval of the ratio of\n"
		"medians, and a verdict: slower or faster when p < alpha, |change| >= threshold and the whole\n"
		"interval clears 1 +- threshold/2; else noisy when the interval is wider than noise; else same.\n"
		"Noise band: when the history (--db) holds at least %d runs of BASE's environment with every case ok,\n"
		"the medians of the last N of them (--band-runs, 0 turns it off) give each case and phase its\n"
		"run-to-run noise, 3 sqrt(2) x 1.4826 MAD / median; the threshold becomes the larger of the two, and a\n"
		"significant change inside the band is noisy, not slower.\n"
		"Defaults: --phases total, --alpha 0.01, --threshold 3, --noise 20, --band-runs 10,\n"
		"--db results/history.db. Exit 1 when anything is slower.\n", MOE_BAND_MIN_RUNS);
}

static void markdown(FILE *f, json_t *rep, json_t *base, json_t *neww)
{
	json_t *eb = json_object_get(base, "env"), *en = json_object_get(neww, "env");
	fprintf(f, "# moebench comparison\n\n");
	fprintf(f, "| | base | new |\n|---|---|---|\n");
	static const char *const keys[] = {"run_id", "git_commit", "host",	    "cpu", "kernel", "gpu", "driver",
					   "date",   "topology",   "placement_summary"};
	for (size_t i = 0; i < MOE_ARRAY_SIZE(keys); i++) {
		json_t *a = json_object_get(eb, keys[i]), *b = json_object_get(en, keys[i]);
		if (!i) {
			a = json_object_get(base, "run_id");
			b = json_object_get(neww, "run_id");
		}
		fprintf(f, "| %s | %s | %s |\n", keys[i], a ? json_string_value(a) : "", b ? json_string_value(b) : "");
	}
	fprintf(f, "\n| case | phase | base p50 (µs) | new p50 (µs) | change | p-value | 95%% CI of ratio | noise band | verdict |\n");
	fprintf(f, "|---|---|---|---|---|---|---|---|---|\n");
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(rep, "rows"), i, r)
	{
		const char *v = json_string_value(json_object_get(r, "verdict"));
		double band = json_number_value(json_object_get(r, "band_pct"));
		char bs[16] = "–";
		if (band > 0)
			snprintf(bs, sizeof(bs), "±%.1f%%", band);
		fprintf(f, "| %s | %s | %.1f | %.1f | %+.1f%% | %.2g | [%.3f, %.3f] | %s | %s%s%s |\n",
			json_string_value(json_object_get(r, "case")), json_string_value(json_object_get(r, "phase")),
			json_number_value(json_object_get(r, "base_p50_us")), json_number_value(json_object_get(r, "new_p50_us")),
			json_number_value(json_object_get(r, "change_pct")), json_number_value(json_object_get(r, "p_value")),
			json_number_value(json_object_get(r, "ratio_lo")), json_number_value(json_object_get(r, "ratio_hi")), bs,
			!strcmp(v, "slower") ? "**" : "", v, !strcmp(v, "slower") ? "**" : "");
	}
	int n = (int)json_integer_value(json_object_get(rep, "regressions"));
	fprintf(f, "\n%d regression%s.\n", n, n == 1 ? "" : "s");
}

/* report: the comparison, the environment and the plots of NEW in one Markdown page. */
static int report(json_t *rep, json_t *base, json_t *neww, const char *new_dir, const char *md_path)
{
	char dir[1024], plots[1100], err[512];
	snprintf(dir, sizeof(dir), "%s", md_path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof(dir), ".");
	snprintf(plots, sizeof(plots), "%s/plots", dir);
	int drew = new_dir && moe_plot_run(new_dir, plots, NULL, err, sizeof(err)) == 0;
	if (new_dir && !drew)
		fprintf(stderr, "moebench: report: plots not drawn: %s\n", err);
	char werr[1200];
	struct moe_outfile *of = moe_out_open(md_path, werr, sizeof(werr));
	if (!of) {
		fprintf(stderr, "moebench: report: cannot write %s\n", werr);
		return -1;
	}
	FILE *f = moe_out_stream(of);
	markdown(f, rep, base, neww);
	if (drew) {
		static const char *const names[] = {"latency", "phases", "cdf"};
		fprintf(f, "\n## Plots of the new run\n\n");
		for (size_t i = 0; i < MOE_ARRAY_SIZE(names); i++) {
			char png[1200];
			snprintf(png, sizeof(png), "%s/%s.png", plots, names[i]);
			struct stat sb;
			if (stat(png, &sb) == 0)
				fprintf(f, "![%s](plots/%s.png)\n\n", names[i], names[i]);
		}
	}
	if (moe_out_commit(of, werr, sizeof(werr))) {
		fprintf(stderr, "moebench: report: cannot write %s\n", werr);
		return -1;
	}
	printf("# report: %s\n", md_path);
	return 0;
}

int moe_cmd_report(int argc, char **argv)
{
	if (argc < 3 || !strcmp(argv[1], "--help")) {
		fprintf(argc < 3 ? stderr : stdout,
			"usage: moebench report BASE NEW [--out FILE.md] [compare options]\n"
			"A Markdown page for a review: the environment of both runs, the comparison table (moebench\n"
			"compare) and the plots of NEW, drawn next to the page (default report.md in NEW's folder).\n");
		return argc < 3 ? MOE_EXIT_USAGE : 0;
	}
	/* compare's options, plus --out; the page is written by compare's --markdown path */
	char **av = moe_xcalloc((size_t)argc + 3, sizeof(char *));
	int ac = 0;
	const char *out = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else
			av[ac++] = argv[i];
	}
	char def[1100];
	if (!out) {
		struct stat sb;
		if (stat(argv[2], &sb) == 0 && S_ISDIR(sb.st_mode))
			snprintf(def, sizeof(def), "%s/report.md", argv[2]);
		else
			snprintf(def, sizeof(def), "report.md");
		out = def;
	}
	av[ac++] = "--report-page";
	av[ac++] = (char *)out;
	int rc = moe_cmd_compare(ac, av);
	free(av);
	return rc;
}

int moe_cmd_compare(int argc, char **argv)
{
	struct moe_compare_opts o = {.alpha = 0.01, .threshold = 3.0, .noise = 20.0, .phases = "total"};
	const char *json_out = NULL, *md_out = NULL, *db_path = "results/history.db", *page = NULL;
	static const struct option lo[] = {
		{"phases", required_argument, NULL, 'p'}, {"alpha", required_argument, NULL, 'a'},
		{"threshold", required_argument, NULL, 't'}, {"noise", required_argument, NULL, 'n'},
		{"force", no_argument, NULL, 'f'}, {"json", required_argument, NULL, 'j'},
		{"markdown", required_argument, NULL, 'm'}, {"db", required_argument, NULL, 'd'},
		{"report-page", required_argument, NULL, 'R'}, {"band-runs", required_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int band_runs = 10;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'p': o.phases = optarg; break;
		case 'a': o.alpha = atof(optarg); break;
		case 't': o.threshold = atof(optarg); break;
		case 'n': o.noise = atof(optarg); break;
		case 'f': o.force = 1; break;
		case 'j': json_out = optarg; break;
		case 'm': md_out = optarg; break;
		case 'd': db_path = optarg; break;
		case 'R': page = optarg; break;
		case 'b': band_runs = atoi(optarg); break;
		case 'h': usage_compare(stdout); return 0;
		default: usage_compare(stderr); return MOE_EXIT_USAGE;
		}
	}
	if (argc - optind != 2 || !(o.alpha > 0 && o.alpha < 1) || o.threshold < 0 || o.noise <= 0 || band_runs < 0) {
		usage_compare(stderr);
		return MOE_EXIT_USAGE;
	}
	char err[1024];
	json_t *base = load_run(argv[optind], db_path, err, sizeof(err)), *neww = NULL, *rep = NULL;
	int rc = MOE_EXIT_USAGE;
	if (base)
		o.bands = history_bands(db_path, base, band_runs);
	if (!base || !(neww = load_run(argv[optind + 1], db_path, err, sizeof(err))) ||
	    !(rep = moe_compare_runs(base, neww, &o, err, sizeof(err)))) {
		fprintf(stderr, "moebench: compare: %s\n", err);
		goto out;
	}
	moe_compare_print(stdout, rep);
	int lost = 0; /* an output not written whole: the exit says so (MOE_EXIT_INCOMPLETE), stderr says which */
	char werr[1200];
	if (json_out) {
		char *s = json_dumps(rep, JSON_INDENT(1));
		if (!s || moe_write_file(json_out, s, strlen(s), werr, sizeof(werr))) {
			fprintf(stderr, "moebench: compare: cannot write %s\n", s ? werr : json_out);
			lost = 1;
		}
		free(s);
	}
	if (md_out) {
		struct moe_outfile *of = moe_out_open(md_out, werr, sizeof(werr));
		if (of)
			markdown(moe_out_stream(of), rep, base, neww);
		if (!of || moe_out_commit(of, werr, sizeof(werr))) {
			fprintf(stderr, "moebench: compare: cannot write %s\n", werr);
			lost = 1;
		}
	}
	if (page) {
		struct stat sb;
		const char *nd = stat(argv[optind + 1], &sb) == 0 && S_ISDIR(sb.st_mode) ? argv[optind + 1] : NULL;
		if (report(rep, base, neww, nd, page)) {
			rc = MOE_EXIT_INCOMPLETE;
			goto out;
		}
	}
	rc = json_integer_value(json_object_get(rep, "regressions")) ? MOE_EXIT_FAIL : MOE_EXIT_OK;
	if (lost && rc == MOE_EXIT_OK)
		rc = MOE_EXIT_INCOMPLETE;
out:
	json_decref(o.bands);
	json_decref(base);
	json_decref(neww);
	json_decref(rep);
	return rc;
}
