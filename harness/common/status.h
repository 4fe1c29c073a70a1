/* The per-case shared segment's status area: what each rank is doing, readable by the launcher. */
#ifndef MOE_STATUS_H
#define MOE_STATUS_H

#include <stdatomic.h>
#include <stdint.h>

#define MOE_MAX_RANKS 1024
#define MOE_STATUS_MAGIC 0x6d6f6562u

/* Phases a rank can be in; named in failure reports. */
#define MOE_PHASES(X) \
	X(start) X(setup) X(route) X(dispatch) X(expert) X(combine) X(tp_merge) X(fetch_wait) X(verify) X(report) X(done)

enum moe_phase {
#define X(n) MOE_PH_##n,
	MOE_PHASES(X)
#undef X
	MOE_PH_COUNT
};
const char *moe_phase_name(int ph);

struct moe_status_area {
	uint32_t magic;
	uint32_t nranks;
	_Atomic int32_t phase[MOE_MAX_RANKS];
	_Atomic int64_t iter[MOE_MAX_RANKS];
};

#define MOE_STATUS_BYTES ((sizeof(struct moe_status_area) + 4095) & ~(size_t)4095)

/* Bytes of shm transport control for a layout (the launcher sizes the segment with it). */
size_t moe_shm_ctl_bytes(int nranks, int dp);

#endif
