/* Run results: run.json (jansson, versioned schema), TSV files for gnuplot, and the text table. */
#ifndef MOE_RESULTS_H
#define MOE_RESULTS_H

#include <jansson.h>
#include <stdio.h>

#include "outfile.h"

#define MOE_SCHEMA "moebench.run/1"

/* run.json, cases.tsv, samples.tsv and ranks.tsv into dir, each through the checked writer (whole or not at
 * all). Returns 0, or -1 with the first failure ("PATH: reason") in err; the other files are still tried. */
int moe_results_write(const char *dir, json_t *run, char *err, size_t errlen);
/* The text table: header, one row per case, footer. */
void moe_results_header(FILE *f, json_t *env);
void moe_results_row(FILE *f, json_t *case_json);
void moe_results_footer(FILE *f, json_t *cases);

#endif
