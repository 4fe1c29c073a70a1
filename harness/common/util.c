/* Small shared helpers: logging, allocation that cannot fail quietly, clocks, phase names. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "moe.h"
#include "status.h"

int moe_log_rank = -1;
int moe_log_verbosity = MOE_LOG_WARN;

void moe_log(enum moe_log_level lvl, const char *fmt, ...)
{
	static const char *const tag[] = {"error", "warning", "info", "debug"};
	if ((int)lvl > moe_log_verbosity)
		return;
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (moe_log_rank >= 0)
		fprintf(stderr, "moebench: rank %d: %s: %s\n", moe_log_rank, tag[lvl], buf);
	else
		fprintf(stderr, "moebench: %s: %s\n", tag[lvl], buf);
}

static void oom(size_t n)
{
	fprintf(stderr, "moebench: out of memory allocating %zu bytes\n", n);
	abort();
}

void *moe_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *moe_xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p)
		oom(n * sz);
	return p;
}

char *moe_xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		oom(strlen(s));
	return p;
}

double moe_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

const char *moe_phase_name(int ph)
{
	static const char *const names[] = {
#define X(n) #n,
		MOE_PHASES(X)
#undef X
	};
	return ph >= 0 && ph < MOE_PH_COUNT ? names[ph] : "none";
}
