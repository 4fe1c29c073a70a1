/* Run results: run.json (jansson, versioned schema), TSV files for gnuplot, and the text table. */
#ifndef MOE_RESULTS_H
#define MOE_RESULTS_H

#include <jansson.h>
#include <stdio.h>

#include "outfile.h"

#define MOE_SCHEMA "moebench.run/1"

/* A case's identity across runs: a 16-hex-digit FNV-1a digest of its resolved params (run.json's "params",
 * sorted by key) without the keys that change how long or how carefully it runs, not what it runs:
 * iters, warmup, check, tolerance, timeout. Returns 0, or -1 when the case has no params object. */
int moe_case_digest(json_t *case_json, char out[17]);
/* A JSON string of s: s itself when it is valid UTF-8, else with every byte of an invalid sequence
 * written as the four characters \xNN; never NULL. */
json_t *moe_json_text(const char *s);

/* Check a loaded run.json before any use: an object of schema MOE_SCHEMA whose cases are objects with a
 * string name, verdict and a params object, no name twice. Cases written before digests existed get one
 * from their params. Returns 0, or -1 with "WHAT: reason" in err. */
int moe_run_validate(json_t *run, const char *what, char *err, size_t errlen);
/* src on one line: control bytes written as \xNN (names and reasons reach stderr one a line). */
void moe_oneline(char *dst, size_t len, const char *src);

/* run.json, cases.tsv, samples.tsv and ranks.tsv into dir, each through the checked writer (whole or not at
 * all). Returns 0, or -1 with the first failure ("PATH: reason") in err; the other files are still tried. */
int moe_results_write(const char *dir, json_t *run, char *err, size_t errlen);
/* The text table: header, one row per case, footer. */
void moe_results_header(FILE *f, json_t *env);
void moe_results_row(FILE *f, json_t *case_json);
void moe_results_footer(FILE *f, json_t *cases);

#endif
