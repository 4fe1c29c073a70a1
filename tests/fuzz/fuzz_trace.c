/* libFuzzer target for the routing-trace reader (moe_trace_load / moe_trace_free). */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "workload.h"

/* Input layout: two bytes choose the expert count (1..4096, the range the experts key allows),
 * the rest is the trace file. */
static int fd = -1;
static char path[128];

static void cleanup(void)
{
	if (path[0])
		unlink(path);
}

static void open_scratch(void)
{
	const char *dirs[] = {"/dev/shm", getenv("TMPDIR"), "/tmp"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && fd < 0; i++) {
		if (!dirs[i])
			continue;
		snprintf(path, sizeof(path), "%s/moebench-fuzz-trace-%ld.trace", dirs[i], (long)getpid());
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		perror("fuzz_trace: scratch file");
		abort();
	}
	atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fd < 0)
		open_scratch();
	if (size < 2)
		return 0;
	int64_t experts = 1 + (int64_t)((data[0] | (unsigned)data[1] << 8) % 4096);
	data += 2;
	size -= 2;
	if (ftruncate(fd, 0) || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
		perror("fuzz_trace: write");
		abort();
	}
	struct moe_trace tr;
	char err[512];
	err[0] = 0;
	if (moe_trace_load(path, experts, &tr, err, sizeof(err))) {
		if (!memchr(err, 0, sizeof(err)) || !err[0] || tr.ids || tr.ntokens)
			__builtin_trap();
	} else {
		if (tr.ntokens < 1 || tr.topk < 1 || tr.topk > 64 || !tr.ids)
			__builtin_trap();
		for (int64_t i = 0; i < tr.ntokens * tr.topk; i++)
			if (tr.ids[i] < 0 || tr.ids[i] >= experts)
				__builtin_trap();
	}
	moe_trace_free(&tr);
	if (tr.ids || tr.ntokens)
		__builtin_trap();
	return 0;
}
