/* The one scratch file through which a fuzz target hands its input to a reader that takes a path. */
#ifndef MOE_FUZZ_SCRATCH_H
#define MOE_FUZZ_SCRATCH_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int scratch_fd = -1;
static char scratch_path[128];

static void scratch_cleanup(void)
{
	if (scratch_path[0])
		unlink(scratch_path);
}

/* Replace the file's content with d[0..n) and return its path; the file is made (in /dev/shm when it can
 * be) on the first call and removed at exit. `name` tells the targets' files apart. */
static const char *scratch_write(const char *name, const uint8_t *d, size_t n)
{
	const char *dirs[] = {"/dev/shm", getenv("TMPDIR"), "/tmp"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && scratch_fd < 0; i++) {
		if (!dirs[i])
			continue;
		snprintf(scratch_path, sizeof(scratch_path), "%s/moebench-fuzz-%s-%ld", dirs[i], name, (long)getpid());
		scratch_fd = open(scratch_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (scratch_fd >= 0)
			atexit(scratch_cleanup);
	}
	if (scratch_fd < 0 || ftruncate(scratch_fd, 0) || (n && pwrite(scratch_fd, d, n, 0) != (ssize_t)n)) {
		fprintf(stderr, "fuzz: scratch file %s: ", scratch_path);
		perror(NULL);
		abort();
	}
	return scratch_path;
}

#endif
