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

char *moe_line_escape(const char *in)
{
	size_t n = 1;
	for (const char *p = in; *p; p++)
		n += *p == '\\' || *p == '\n' || *p == '\r' ? 2 : 1;
	char *out = moe_xmalloc(n), *q = out;
	for (const char *p = in; *p; p++) {
		if (*p == '\\' || *p == '\n' || *p == '\r') {
			*q++ = '\\';
			*q++ = *p == '\\' ? '\\' : *p == '\n' ? 'n' : 'r';
		} else
			*q++ = *p;
	}
	*q = 0;
	return out;
}

void moe_line_unescape(char *s)
{
	char *q = s;
	for (char *p = s; *p; p++) {
		if (*p == '\\' && (p[1] == '\\' || p[1] == 'n' || p[1] == 'r')) {
			p++;
			*q++ = *p == '\\' ? '\\' : *p == 'n' ? '\n' : '\r';
		} else
			*q++ = *p;
	}
	*q = 0;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when the bytes there are not one */
static size_t utf8_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	size_t n = p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if (n == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0)))
		return 0; /* overlong, or a UTF-16 surrogate */
	if (n == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90)))
		return 0;
	return n;
}

char *moe_utf8_escape(const char *in)
{
	static const char hex[] = "0123456789abcdef";
	char *out = moe_xmalloc(4 * strlen(in) + 1), *q = out;
	for (const unsigned char *p = (const unsigned char *)in; *p;) {
		size_t n = utf8_len(p);
		if (n) {
			memcpy(q, p, n);
			q += n;
			p += n;
		} else {
			*q++ = '\\', *q++ = 'x', *q++ = hex[*p >> 4], *q++ = hex[*p & 15];
			p++;
		}
	}
	*q = 0;
	return out;
}
