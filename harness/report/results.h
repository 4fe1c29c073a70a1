/* Run results: run.json (jansson, versioned schema), TSV files for gnuplot, and the text table. */
#ifndef MOE_RESULTS_H
#define MOE_RESULTS_H

#include <jansson.h>
#include <stdio.h>

#define MOE_SCHEMA "moebench.run/1"

/* Write text atomically: a temporary file in the same folder, fsync, rename. Returns 0 or -1 (errno). */
int moe_write_atomic(const char *path, const char *text, size_t len);
/* run.json, cases.tsv and samples.tsv into dir. Returns 0 or -1 with a message logged. */
int moe_results_write(const char *dir, json_t *run);
/* The text table: header, one row per case, footer. */
void moe_results_header(FILE *f, json_t *env);
void moe_results_row(FILE *f, json_t *case_json);
void moe_results_footer(FILE *f, json_t *cases);

#endif
