/* Rooflines measured on this machine: copy bandwidth (and, on GPUs, GEMM rate). */
#ifndef MOE_CALIBRATE_H
#define MOE_CALIBRATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

struct moe_calibration {
	size_t copy_bytes;
	int copy_reps;
	double copy_GBps_p50; /* bytes copied per second, 1e9 units (bytes read + written is twice this) */
	double copy_GBps_max;
	int checksum;
};

/* memcpy of `bytes` between two touched buffers, reps times, one core. */
int moe_calibrate_host(size_t bytes, int reps, struct moe_calibration *out);

/* calib_torch.c: the figures of calibrate's text (KEY<TAB>NUMBER lines) as one JSON object */
json_t *moe_calib_parse_text(const char *text);
/* calib_torch.c: what scripts/torch_anchor.py is to time (the shapes and models calibrate times), as JSON */
json_t *moe_torch_anchor_spec(void);
/* calib_torch.c: runs the PyTorch anchors (MOEBENCH_PYTHON or python3, MOEBENCH_TORCH_TIMEOUT seconds) and
 * merges them into cal: "torch" (its figures under calibrate's names), "torch_env", "torch_status"; prints the
 * ratio lines, or why there are none, on out. Never fails: torch is optional. */
void moe_torch_anchors(json_t *cal, FILE *out);
/* calib_torch.c: the ratio lines, moebench / torch, of a calibration that has "torch" */
void moe_torch_anchor_ratios(json_t *cal, FILE *out);

#endif
