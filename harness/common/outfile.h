/* Checked file I/O: the one writer for every output file (temp file beside the target, every write checked, fsync,
 * rename) and the opener of input files that refuses FIFOs, devices and oversized files. */
#ifndef MOE_OUTFILE_H
#define MOE_OUTFILE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/*
 * Nothing lost, nothing half-written. A file is written as PATH's folder/.NAME.tmp.XXXXXX and renamed over PATH
 * only once every byte reached the disk (fflush, fsync, fclose all checked), so a reader sees the old file or
 * the whole new one, never a truncated one. On any failure the temp file is unlinked and err (when not NULL)
 * holds "PATH: strerror(errno)" — a message that names the path and the reason, for the caller to print.
 *
 *   struct moe_outfile *o = moe_out_open(path, err, sizeof(err));
 *   if (!o) ...;                                  // folder missing, read-only, ...
 *   fprintf(moe_out_stream(o), "...", ...);       // any stdio call; errors are sticky and caught at commit
 *   if (moe_out_commit(o, err, sizeof(err))) ...; // o is freed either way
 *
 * moe_out_discard(o) drops a file half way (temp unlinked, PATH untouched). Processes that write outputs
 * should ignore SIGXFSZ (moe_out_signals) so that a file-size limit is a write error (EFBIG) that names the
 * path, not a silent death.
 */
struct moe_outfile;

struct moe_outfile *moe_out_open(const char *path, char *err, size_t errlen);
FILE *moe_out_stream(struct moe_outfile *o);
int moe_out_printf(struct moe_outfile *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int moe_out_write(struct moe_outfile *o, const void *buf, size_t len);
/* Returns 0 once PATH holds the whole file, -1 with err set (and errno kept) otherwise. Frees o. */
int moe_out_commit(struct moe_outfile *o, char *err, size_t errlen);
void moe_out_discard(struct moe_outfile *o);

/* A whole buffer in one call: open, write, commit. Returns 0, or -1 with err set and errno kept. */
int moe_write_file(const char *path, const void *buf, size_t len, char *err, size_t errlen);
/* The same without a message: returns 0 or -1 with errno set (older callers print their own). */
int moe_write_atomic(const char *path, const char *text, size_t len);

/*
 * For files that another program writes (gnuplot): moe_out_temp_name gives a fresh temp name beside PATH
 * (an absolute path or one starting "./", so that no program reads it as a command); after the program
 * exited cleanly, moe_out_install checks the temp file is a non-empty regular file, fsyncs it and renames
 * it over PATH (temp unlinked on failure). Returns 0 or -1 with err set.
 */
int moe_out_temp_name(const char *path, char *tmp, size_t n);
int moe_out_install(const char *tmp, const char *path, char *err, size_t errlen);

/*
 * A path as an argument that cannot be read as a command by programs that treat a leading '|' or '<' as a
 * pipe (gnuplot's set output, plot "<cmd"): absolute paths as they are, others with "./" in front.
 * Returns 0, or -1 (errno EINVAL) for a path holding a control character and ENAMETOOLONG when n is short.
 */
int moe_safe_path_arg(const char *path, char *out, size_t n);

/*
 * Open an input file (scenario, trace) for reading, refusing what is not a regular file — a FIFO would block
 * forever, /dev/zero would never end — and one over max_bytes (0: no limit). Returns the stream, or NULL with
 * err naming the path and the reason (errno EINVAL: not a regular file, EFBIG: too large, else open's).
 */
FILE *moe_open_input(const char *path, long long max_bytes, char *err, size_t errlen);

/* SIGXFSZ ignored (a file-size limit becomes EFBIG from write, reported with the path). */
void moe_out_signals(void);

/*
 * A field of a tab-separated file: '\\' -> "\\\\", tab -> "\\t", newline -> "\\n", CR -> "\\r", other control
 * bytes -> "\\xHH"; every other byte (UTF-8 or not) kept. Writes at most n-1 bytes and a NUL; returns out.
 */
char *moe_tsv_escape(const char *in, char *out, size_t n);
#define MOE_TSV_NAME_MAX 1024 /* names longer than this are cut in TSVs; out buffers of 4x hold any escape */

#endif
