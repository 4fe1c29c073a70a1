/* Framed messages over the launcher's socketpairs: [type u32][length u32][payload]. */
#include "boot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = 0;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int moe_msg_send(int fd, uint32_t type, const void *buf, size_t len)
{
	uint32_t hdr[2] = {type, (uint32_t)len};
	if (len > UINT32_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if (write_all(fd, hdr, sizeof(hdr)))
		return -1;
	return write_all(fd, buf, len);
}

int moe_msg_recv(int fd, uint32_t *type, char **buf, size_t *len)
{
	uint32_t hdr[2];
	*buf = NULL;
	if (read_all(fd, hdr, sizeof(hdr)))
		return -1;
	if (hdr[1] > (1u << 30)) {
		errno = EMSGSIZE;
		return -1;
	}
	char *b = malloc((size_t)hdr[1] + 1);
	if (!b)
		return -1;
	if (read_all(fd, b, hdr[1])) {
		int e = errno;
		free(b);
		errno = e ? e : EPIPE;
		return -1;
	}
	b[hdr[1]] = 0;
	*type = hdr[0];
	*buf = b;
	*len = hdr[1];
	return 0;
}

int moe_boot_allgather(int fd, const void *blob, size_t len, void *out, int nranks)
{
	uint32_t type;
	char *buf;
	size_t n;
	if (moe_msg_send(fd, MOE_MSG_ALLGATHER, blob, len))
		return -1;
	if (moe_msg_recv(fd, &type, &buf, &n))
		return -1;
	if (type != MOE_MSG_ALLGATHER || n != len * (size_t)nranks) {
		free(buf);
		errno = EPROTO;
		return -1;
	}
	memcpy(out, buf, n);
	free(buf);
	return 0;
}
