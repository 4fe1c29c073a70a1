/* Common definitions for every moebench module: status codes, logging, error macros, bf16. */
#ifndef MOE_H
#define MOE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* One status enum for the whole project; values double as process exit codes where they map. */
enum moe_status {
	MOE_OK = 0,
	MOE_ERR_MISMATCH = 1, /* a result disagreed with the oracle */
	MOE_ERR_USAGE = 2,    /* bad command line or scenario */
	MOE_ERR_RANK = 3,     /* a rank crashed, hung or timed out */
	MOE_ERR_SYSTEM = 4,   /* a system call or library failed */
	MOE_ERR_NOMEM = 5,
	MOE_ERR_UNSUPPORTED = 77, /* nothing runnable here */
};

#define MOE_EXIT_OK 0
#define MOE_EXIT_FAIL 1
#define MOE_EXIT_USAGE 2
#define MOE_EXIT_RANK 3
#define MOE_EXIT_INCOMPLETE 4 /* something was not checked, compared or saved: the results are not whole */
#define MOE_EXIT_SKIP 77

/* Logging: library code logs to stderr through these, never to stdout. */
enum moe_log_level { MOE_LOG_ERROR, MOE_LOG_WARN, MOE_LOG_INFO, MOE_LOG_DEBUG };
extern int moe_log_rank;  /* -1 in the launcher */
extern int moe_log_verbosity;
void moe_log(enum moe_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define moe_err(...) moe_log(MOE_LOG_ERROR, __VA_ARGS__)
#define moe_warn(...) moe_log(MOE_LOG_WARN, __VA_ARGS__)
#define moe_info(...) moe_log(MOE_LOG_INFO, __VA_ARGS__)
#define moe_debug(...) moe_log(MOE_LOG_DEBUG, __VA_ARGS__)

/* Check a moebench call; on failure log where and return its status up. */
#define MOE_CHECK(call)                                                                        \
	do {                                                                                   \
		int moe_rc_ = (call);                                                          \
		if (moe_rc_ != MOE_OK) {                                                       \
			moe_err("%s failed: status %d (%s:%d)", #call, moe_rc_, __FILE__, __LINE__); \
			return moe_rc_;                                                        \
		}                                                                              \
	} while (0)

/* Check a libc call that returns -1 and sets errno. */
#define MOE_SYS(call)                                                                          \
	do {                                                                                   \
		if ((call) == -1) {                                                            \
			moe_err("%s failed: %s (%s:%d)", #call, strerror(errno), __FILE__, __LINE__); \
			return MOE_ERR_SYSTEM;                                                 \
		}                                                                              \
	} while (0)

#define MOE_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MOE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MOE_MAX(a, b) ((a) > (b) ? (a) : (b))

/* bf16 storage: round-to-nearest-even from float, exact widening back. */
typedef uint16_t moe_bf16;
static inline float moe_bf16_to_f32(moe_bf16 v)
{
	uint32_t u = (uint32_t)v << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static inline moe_bf16 moe_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) /* NaN stays NaN */
		return (moe_bf16)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (moe_bf16)(u >> 16);
}

void *moe_xmalloc(size_t n); /* aborts on failure: only for small bookkeeping */
void *moe_xcalloc(size_t n, size_t sz);
char *moe_xstrdup(const char *s);
double moe_now_us(void); /* CLOCK_MONOTONIC in microseconds */
/* One value on one line of the launcher-to-rank text: '\\', newline and CR escaped (malloc'd); and back, in place.
 * A path or name with a newline must not end its line early and plant a line of its own. */
char *moe_line_escape(const char *in);
void moe_line_unescape(char *s);
/* in with every byte that is not part of valid UTF-8 written as \xHH (malloc'd): JSON strings must be UTF-8,
 * and a name that jansson refuses would otherwise vanish from run.json */
char *moe_utf8_escape(const char *in);

#endif
