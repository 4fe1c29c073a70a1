/* What the host backend's files share: the op table host.c fills, which host_graph.c wraps into the
 * exported moe_backend_host so that a capture records the ops instead of running them. */
#ifndef MOE_HOST_INTERNAL_H
#define MOE_HOST_INTERNAL_H

#include "kernels.h"

/* host.c (and host_ll.c's entries): every op, run at once */
extern const struct moe_backend_ops moe_host_raw;
/* host.c: where the recording in progress of this device lives (NULL while not capturing) */
void **moe_host_capture_slot(struct moe_dev *dev);

#endif
