/* The checked writer and input opener (outfile.c) and the text escapes (util.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moe.h"
#include "outfile.h"

static char dir[] = "/tmp/moe_outfile_XXXXXX";

/* files in dir other than . and .. */
static int entries(void)
{
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void slurp(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t k = fread(buf, 1, n - 1, f);
	buf[k] = 0;
	fclose(f);
}

static void test_commit_and_discard(void **state)
{
	(void)state;
	char path[256], err[512], buf[64];
	snprintf(path, sizeof(path), "%s/a.txt", dir);
	assert_int_equal(moe_write_file(path, "old\n", 4, err, sizeof(err)), 0);
	struct moe_outfile *o = moe_out_open(path, err, sizeof(err));
	assert_non_null(o);
	fprintf(moe_out_stream(o), "half");
	moe_out_discard(o);
	slurp(path, buf, sizeof(buf));
	assert_string_equal(buf, "old\n"); /* a dropped write leaves the old file whole */
	o = moe_out_open(path, err, sizeof(err));
	assert_int_equal(moe_out_printf(o, "new %d\n", 7), 0);
	assert_int_equal(moe_out_commit(o, err, sizeof(err)), 0);
	slurp(path, buf, sizeof(buf));
	assert_string_equal(buf, "new 7\n");
	assert_int_equal(entries(), 1); /* no temp file left */
}

static void test_failure_names_path(void **state)
{
	(void)state;
	char path[256], err[512];
	snprintf(path, sizeof(path), "%s/no/such/folder/b.txt", dir);
	assert_int_equal(moe_write_file(path, "x", 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, strerror(ENOENT)));
	/* a file-size limit: the write fails (EFBIG, SIGXFSZ ignored), commit says so and leaves nothing */
	struct rlimit old, lim = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
	getrlimit(RLIMIT_FSIZE, &old);
	lim.rlim_max = old.rlim_max;
	moe_out_signals();
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	snprintf(path, sizeof(path), "%s/c.txt", dir);
	struct moe_outfile *o = moe_out_open(path, err, sizeof(err));
	assert_non_null(o);
	for (int i = 0; i < 1000; i++)
		fprintf(moe_out_stream(o), "%64d\n", i);
	int rc = moe_out_commit(o, err, sizeof(err));
	setrlimit(RLIMIT_FSIZE, &old);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, strerror(EFBIG)));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(entries(), 1);
}

static void test_install(void **state)
{
	(void)state;
	char path[256], tmp[300], err[512];
	snprintf(path, sizeof(path), "%s/p.png", dir);
	assert_int_equal(moe_out_temp_name(path, tmp, sizeof(tmp)), 0);
	assert_true(tmp[0] == '/');
	FILE *f = fopen(tmp, "w"); /* empty: what gnuplot leaves on a full disk */
	fclose(f);
	assert_int_equal(moe_out_install(tmp, path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "wrote nothing"));
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(moe_out_temp_name("rel/p.png", tmp, sizeof(tmp)), 0);
	assert_string_equal(tmp, "./rel/.p.png.tmp.XXXXXX");
	assert_int_equal(moe_out_temp_name("|x;/p.png", tmp, sizeof(tmp)), 0);
	assert_string_equal(tmp, "./|x;/.p.png.tmp.XXXXXX"); /* never read as a pipe */
}

static void test_safe_path_and_escapes(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(moe_safe_path_arg("<touch X;", out, sizeof(out)), 0);
	assert_string_equal(out, "./<touch X;");
	assert_int_equal(moe_safe_path_arg("/abs", out, sizeof(out)), 0);
	assert_string_equal(out, "/abs");
	assert_int_equal(moe_safe_path_arg("a\nb", out, sizeof(out)), -1);
	assert_int_equal(errno, EINVAL);
	assert_string_equal(moe_tsv_escape("a\tb\nc\\d\x01\xff", out, sizeof(out)), "a\\tb\\nc\\\\d\\x01\xff");
	char *e = moe_line_escape("x\n@corrupt=0:0\\n\r");
	assert_null(strchr(e, '\n'));
	assert_string_equal(e, "x\\n@corrupt=0:0\\\\n\\r");
	moe_line_unescape(e);
	assert_string_equal(e, "x\n@corrupt=0:0\\n\r");
	free(e);
	e = moe_utf8_escape("ok \xc3\xa9 bad\xff\xfe \xed\xa0\x80");
	assert_string_equal(e, "ok \xc3\xa9 bad\\xff\\xfe \\xed\\xa0\\x80");
	free(e);
}

static void test_open_input(void **state)
{
	(void)state;
	char path[256], err[512];
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_null(moe_open_input(path, 0, err, sizeof(err))); /* returns at once: no writer needed */
	assert_non_null(strstr(err, "FIFO"));
	unlink(path);
	assert_null(moe_open_input("/dev/zero", 0, err, sizeof(err)));
	assert_non_null(strstr(err, "device"));
	snprintf(path, sizeof(path), "%s/big", dir);
	assert_int_equal(moe_write_file(path, "0123456789", 10, err, sizeof(err)), 0);
	assert_null(moe_open_input(path, 9, err, sizeof(err)));
	assert_int_equal(errno, EFBIG);
	FILE *f = moe_open_input(path, 10, err, sizeof(err));
	assert_non_null(f);
	assert_int_equal(fgetc(f), '0');
	fclose(f);
	unlink(path);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commit_and_discard), cmocka_unit_test(test_failure_names_path),
		cmocka_unit_test(test_install), cmocka_unit_test(test_safe_path_and_escapes),
		cmocka_unit_test(test_open_input),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
