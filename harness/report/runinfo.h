/* One line that names a run for plot titles and report headers: scenario, run id, machine, backend. */
#ifndef MOE_RUNINFO_H
#define MOE_RUNINFO_H

#include <stddef.h>

/* From RUN_DIR/run.json: "SCENARIO · run RUN-ID · HOST, N CPUs, GPUS · BACKEND/TRANSPORT". Falls back
 * to "run DIRNAME" when run.json cannot be read. Always fills out (NUL-terminated). */
void moe_run_subtitle(const char *run_dir, char *out, size_t n);

#endif
