/* Invariants across the cases of one run (DESIGN §4): equalities that must hold bit for bit. */
#ifndef MOE_INVARIANTS_H
#define MOE_INVARIANTS_H

#include <jansson.h>

/* Check every invariant that applies to the cases (run.json case records). Returns a new array of
 * {"invariant", "cases", "passed", "detail"}; *failed receives how many failed. */
json_t *moe_invariants_check(json_t *cases, int *failed);

#endif
