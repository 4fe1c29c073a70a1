/* The one checked writer: temp file in the target's folder, every write checked, fsync, rename, or nothing. */
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUT_PATH_MAX 4096

struct moe_outfile {
	FILE *f;
	int fd;
	int werr; /* errno of the first failed write: stdio alone would only say "an error happened" */
	char path[OUT_PATH_MAX];
	char tmp[OUT_PATH_MAX + 32];
};

/* What open(..., 0666) would give: mkstemp makes 0600, but outputs are read by others (plots, a web server) */
static mode_t file_mode(void)
{
	mode_t m = umask(022);
	umask(m);
	return 0666 & ~m;
}

static void say(char *err, size_t errlen, const char *path, int e)
{
	if (err && errlen)
		snprintf(err, errlen, "%s: %s", path, strerror(e));
}

/* The folder of path, for the temp file and the fsync after rename ("." for a bare name). */
static void folder_of(const char *path, char *dir, size_t n)
{
	char buf[OUT_PATH_MAX];
	snprintf(buf, sizeof(buf), "%s", path);
	snprintf(dir, n, "%s", dirname(buf));
}

int moe_out_temp_name(const char *path, char *tmp, size_t n)
{
	char dir[OUT_PATH_MAX], buf[OUT_PATH_MAX];
	if (strlen(path) >= OUT_PATH_MAX - 1) {
		errno = ENAMETOOLONG;
		return -1;
	}
	folder_of(path, dir, sizeof(dir));
	snprintf(buf, sizeof(buf), "%s", path);
	const char *base = basename(buf);
	/* a leading '/' or "./": no program that opens "|cmd" or "<cmd" can take the name for a command */
	int k = snprintf(tmp, n, "%s%s/.%s.tmp.XXXXXX", dir[0] == '/' ? "" : (dir[0] == '.' && dir[1] == '/') ||
							    !strcmp(dir, ".") ? "" : "./", dir, base);
	if (k < 0 || (size_t)k >= n) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static ssize_t cookie_write(void *cookie, const char *buf, size_t len)
{
	struct moe_outfile *o = cookie;
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(o->fd, buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (!o->werr)
				o->werr = w < 0 ? errno : ENOSPC;
			return off ? (ssize_t)off : -1;
		}
		off += (size_t)w;
	}
	return (ssize_t)len;
}

static int cookie_close(void *cookie)
{
	struct moe_outfile *o = cookie;
	int rc = o->fd >= 0 ? close(o->fd) : 0;
	o->fd = -1;
	return rc;
}

struct moe_outfile *moe_out_open(const char *path, char *err, size_t errlen)
{
	struct moe_outfile *o = calloc(1, sizeof(*o));
	if (!o) {
		say(err, errlen, path, ENOMEM);
		return NULL;
	}
	snprintf(o->path, sizeof(o->path), "%s", path);
	if (moe_out_temp_name(path, o->tmp, sizeof(o->tmp))) {
		say(err, errlen, path, errno);
		free(o);
		return NULL;
	}
	int fd = mkostemp(o->tmp, O_CLOEXEC);
	if (fd < 0) {
		say(err, errlen, path, errno);
		free(o);
		return NULL;
	}
	fchmod(fd, file_mode());
	o->fd = fd;
	o->f = fopencookie(o, "w", (cookie_io_functions_t){.write = cookie_write, .close = cookie_close});
	if (!o->f) {
		int e = errno;
		close(fd);
		unlink(o->tmp);
		say(err, errlen, path, e);
		free(o);
		return NULL;
	}
	return o;
}

FILE *moe_out_stream(struct moe_outfile *o)
{
	return o->f;
}

int moe_out_printf(struct moe_outfile *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int k = vfprintf(o->f, fmt, ap);
	va_end(ap);
	return k < 0 ? -1 : 0;
}

int moe_out_write(struct moe_outfile *o, const void *buf, size_t len)
{
	return len && fwrite(buf, 1, len, o->f) != len ? -1 : 0;
}

void moe_out_discard(struct moe_outfile *o)
{
	if (!o)
		return;
	int e = errno;
	fclose(o->f);
	unlink(o->tmp);
	free(o);
	errno = e;
}

/* The rename is durable only once the folder's entry is on disk too. */
static void sync_folder(const char *path)
{
	char dir[OUT_PATH_MAX];
	folder_of(path, dir, sizeof(dir));
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd); /* some file systems refuse a folder fsync (EINVAL): the file's data is safe already */
		close(fd);
	}
}

int moe_out_commit(struct moe_outfile *o, char *err, size_t errlen)
{
	int e = 0;
	/* a stdio error is sticky: any failed write since open shows here, with the first failed write's errno */
	if (fflush(o->f) || ferror(o->f))
		e = o->werr ? o->werr : EIO;
	else if (fsync(o->fd))
		e = errno;
	if (fclose(o->f) && !e)
		e = o->werr ? o->werr : errno ? errno : EIO;
	if (!e && rename(o->tmp, o->path))
		e = errno;
	if (e) {
		unlink(o->tmp);
		say(err, errlen, o->path, e);
		free(o);
		errno = e;
		return -1;
	}
	sync_folder(o->path);
	free(o);
	return 0;
}

int moe_write_file(const char *path, const void *buf, size_t len, char *err, size_t errlen)
{
	struct moe_outfile *o = moe_out_open(path, err, errlen);
	if (!o)
		return -1;
	moe_out_write(o, buf, len); /* a failed write is sticky: the commit reports it with the path */
	return moe_out_commit(o, err, errlen);
}

int moe_write_atomic(const char *path, const char *text, size_t len)
{
	return moe_write_file(path, text, len, NULL, 0);
}

int moe_out_install(const char *tmp, const char *path, char *err, size_t errlen)
{
	struct stat st;
	int e = 0;
	int fd = open(tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		e = errno;
	else if (fstat(fd, &st))
		e = errno;
	else if (!S_ISREG(st.st_mode) || st.st_size == 0)
		e = ENODATA; /* the program said it succeeded but wrote nothing usable */
	else if (fchmod(fd, file_mode()) || fsync(fd))
		e = errno;
	if (fd >= 0)
		close(fd);
	if (!e && rename(tmp, path))
		e = errno;
	if (e) {
		unlink(tmp);
		if (e == ENODATA && err && errlen)
			snprintf(err, errlen, "%s: the program exited 0 but wrote nothing (a full disk?)", path);
		else
			say(err, errlen, path, e);
		errno = e;
		return -1;
	}
	sync_folder(path);
	return 0;
}

int moe_safe_path_arg(const char *path, char *out, size_t n)
{
	for (const unsigned char *p = (const unsigned char *)path; *p; p++)
		if (*p < 0x20 || *p == 0x7f) {
			errno = EINVAL;
			return -1;
		}
	int k = snprintf(out, n, "%s%s", path[0] == '/' || (path[0] == '.' && path[1] == '/') ? "" : "./", path);
	if (k < 0 || (size_t)k >= n) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

void moe_out_signals(void)
{
	signal(SIGXFSZ, SIG_IGN);
}

char *moe_tsv_escape(const char *in, char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t k = 0;
	if (!n)
		return out;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		char e[5] = {0};
		if (*p == '\\' || *p == '\t' || *p == '\n' || *p == '\r') {
			e[0] = '\\';
			e[1] = *p == '\\' ? '\\' : *p == '\t' ? 't' : *p == '\n' ? 'n' : 'r';
		} else if (*p < 0x20 || *p == 0x7f) {
			e[0] = '\\', e[1] = 'x', e[2] = hex[*p >> 4], e[3] = hex[*p & 15];
		} else
			e[0] = (char)*p;
		size_t m = strlen(e);
		if (k + m >= n)
			break;
		memcpy(out + k, e, m);
		k += m;
	}
	out[k] = 0;
	return out;
}

FILE *moe_open_input(const char *path, long long max_bytes, char *err, size_t errlen)
{
	struct stat st;
	/* O_NONBLOCK: opening a FIFO with no writer would block forever before fstat could say what it is */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st)) {
		int e = errno;
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		if (fd >= 0)
			close(fd);
		errno = e;
		return NULL;
	}
	const char *what = S_ISREG(st.st_mode)    ? NULL
			   : S_ISDIR(st.st_mode)  ? "a folder"
			   : S_ISFIFO(st.st_mode) ? "a FIFO"
			   : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
			   : S_ISSOCK(st.st_mode) ? "a socket"
						  : "not a regular file";
	if (what || (max_bytes > 0 && st.st_size > max_bytes)) {
		if (err && errlen) {
			if (what)
				snprintf(err, errlen, "%s: cannot open: %s, not a regular file", path, what);
			else
				snprintf(err, errlen, "%s: cannot open: %lld bytes, more than the limit of %lld", path,
					 (long long)st.st_size, max_bytes);
		}
		close(fd);
		errno = what ? EINVAL : EFBIG;
		return NULL;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	FILE *f = fdopen(fd, "r");
	if (!f) {
		say(err, errlen, path, errno);
		close(fd);
	}
	return f;
}
