/* Bootstrap channel between the launcher and one rank: framed messages over a socketpair. */
#ifndef MOE_BOOT_H
#define MOE_BOOT_H

#include <stddef.h>
#include <stdint.h>

enum moe_msg_type {
	MOE_MSG_CASE = 1,      /* launcher -> rank: serialised case parameters */
	MOE_MSG_ALLGATHER = 2, /* rank -> launcher: my blob; launcher -> rank: every rank's blob, in rank order */
	MOE_MSG_RESULT = 3,    /* rank -> launcher: the case result, JSON */
	MOE_MSG_ERROR = 4,     /* rank -> launcher: why this rank gave up (text) */
	MOE_MSG_LOG = 5,       /* rank -> launcher: a warning to show */
};

/* Send one frame. Returns 0 or -1 (errno set). */
int moe_msg_send(int fd, uint32_t type, const void *buf, size_t len);
/* Receive one frame into a malloc'd buffer (NUL-terminated for convenience). Returns 0, or -1 on
 * error / end of file (errno 0 at a clean end of file). */
int moe_msg_recv(int fd, uint32_t *type, char **buf, size_t *len);

/* Rank side: exchange a blob with every rank through the launcher. out receives nranks*len bytes. */
int moe_boot_allgather(int fd, const void *blob, size_t len, void *out, int nranks);

#endif
