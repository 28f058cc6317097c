/* test_storage.c: unit tests of the local storage layout: canonical names only, durable publish, safe removal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../lib/storage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ID "5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f"

/* A fresh folder per test: base/storage is STORAGE_PATH, base/outside is
 * what a symlink in the storage points at and must survive. */
struct fixture {
	char base[64];
	char *storage, *outside;
	struct vtp_config cfg;
};

static char *join(const char *a, const char *b)
{
	char *s = malloc(strlen(a) + strlen(b) + 2);
	assert_non_null(s);
	sprintf(s, "%s/%s", a, b);
	return s;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);
	assert_non_null(fx);
	strcpy(fx->base, "/tmp/vtp-storage-XXXXXX");
	assert_non_null(mkdtemp(fx->base));
	fx->storage = join(fx->base, "storage");
	fx->outside = join(fx->base, "outside");
	assert_int_equal(mkdir(fx->storage, 0700), 0);
	assert_int_equal(mkdir(fx->outside, 0700), 0);
	char *precious = join(fx->outside, "precious");
	write_file(precious, "keep me");
	free(precious);
	fx->cfg.storage_path = fx->storage;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char *cmd = NULL;
	assert_true(asprintf(&cmd, "rm -rf '%s'", fx->base) > 0);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(fx->storage);
	free(fx->outside);
	free(fx);
	return 0;
}

static void test_ids(void **state)
{
	(void)state;
	assert_true(storage_valid_id(ID));
	assert_false(storage_valid_id("5D0C9F2E-8A1B-4C3D-9E7F-0A1B2C3D4E5F"));
	assert_false(storage_valid_id(ID "/"));
	assert_false(storage_valid_id("5d0c9f2e8a1b4c3d9e7f0a1b2c3d4e5f"));
	assert_false(storage_valid_id(".."));
	assert_false(storage_valid_id(""));
}

static void test_names(void **state)
{
	(void)state;
	const char *good[] = {"source.mp4", "source.upload.tmp", "hls/720p/index.m3u8", "thumbs/t_0001.jpg", "a"};
	const char *bad[] = {"", ".", "..", "../x", "a/../b", "a/..", "/etc/passwd", "a//b", "a/", ".hidden",
			     "hls/.tmp", "a b", "a\nb", "a\\b", "é.mp4", "a%2f.."};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		assert_true(storage_valid_name(good[i]));
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_false(storage_valid_name(bad[i]));
	char longname[STORAGE_NAME_MAX + 2];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	assert_false(storage_valid_name(longname));
}

static void test_paths(void **state)
{
	struct fixture *fx = *state;
	char *p = storage_path(&fx->cfg, ID, "source.mp4");
	char *want = NULL;
	assert_true(asprintf(&want, "%s/%s/source.mp4", fx->storage, ID) > 0);
	assert_string_equal(p, want);
	free(p);
	/* A trailing slash on STORAGE_PATH does not double. */
	char slash_path[] = "/srv/vtp/";
	struct vtp_config slash = {.storage_path = slash_path};
	p = storage_path(&slash, ID, NULL);
	assert_string_equal(p, "/srv/vtp/" ID);
	free(p);
	errno = 0;
	assert_null(storage_path(&fx->cfg, ID, "../../etc/passwd"));
	assert_int_equal(errno, EINVAL);
	assert_null(storage_path(&fx->cfg, "..", NULL));
	assert_null(storage_path(&fx->cfg, "../" ID, "source.mp4"));
	free(want);
}

static void test_write_and_publish(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(storage_create_recording(&fx->cfg, ID), 0);
	assert_int_equal(storage_create_recording(&fx->cfg, ID), 0); /* again: fine */
	int fd = storage_create_temp(&fx->cfg, ID, "source.upload.tmp");
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "media", 5), 5);
	/* The temporary name is exclusive. */
	errno = 0;
	assert_int_equal(storage_create_temp(&fx->cfg, ID, "source.upload.tmp"), -1);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(storage_publish(&fx->cfg, ID, fd, "source.upload.tmp", "source.mp4"), 0);
	char *tmp = storage_path(&fx->cfg, ID, "source.upload.tmp");
	char *final = storage_path(&fx->cfg, ID, "source.mp4");
	assert_false(exists(tmp));
	struct stat st;
	assert_int_equal(stat(final, &st), 0);
	assert_int_equal(st.st_size, 5);
	assert_int_equal(st.st_mode & 0777, 0640);
	char *dir = storage_path(&fx->cfg, ID, NULL);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0750);
	/* A rename across folders is refused (and the descriptor still closed). */
	fd = storage_create_temp(&fx->cfg, ID, "other.tmp");
	assert_true(fd >= 0);
	errno = 0;
	assert_int_equal(storage_publish(&fx->cfg, ID, fd, "other.tmp", "hls/other"), -1);
	assert_int_equal(errno, EXDEV);
	assert_int_equal(close(fd), -1);
	free(tmp);
	free(final);
	free(dir);
}

static void test_create_refuses_a_file_in_place(void **state)
{
	struct fixture *fx = *state;
	char *dir = storage_path(&fx->cfg, ID, NULL);
	write_file(dir, "not a folder");
	errno = 0;
	assert_int_equal(storage_create_recording(&fx->cfg, ID), -1);
	assert_int_equal(errno, ENOTDIR);
	free(dir);
}

static void test_remove_is_idempotent(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(storage_create_recording(&fx->cfg, ID), 0);
	char *dir = storage_path(&fx->cfg, ID, NULL);
	char *hls = join(dir, "hls");
	char *rung = join(hls, "720p");
	assert_int_equal(mkdir(hls, 0750), 0);
	assert_int_equal(mkdir(rung, 0750), 0);
	char *seg = join(rung, "seg_001.ts");
	write_file(seg, "x");
	char *src = join(dir, "source.mp4");
	write_file(src, "y");
	assert_int_equal(storage_remove_recording(&fx->cfg, ID), 0);
	assert_false(exists(dir));
	assert_true(exists(fx->storage));
	assert_int_equal(storage_remove_recording(&fx->cfg, ID), 0); /* gone already: success */
	free(dir);
	free(hls);
	free(rung);
	free(seg);
	free(src);
}

static void test_remove_does_not_follow_symlinks(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(storage_create_recording(&fx->cfg, ID), 0);
	char *dir = storage_path(&fx->cfg, ID, NULL);
	char *link_dir = join(dir, "escape");
	char *link_file = join(dir, "escape-file");
	char *precious = join(fx->outside, "precious");
	assert_int_equal(symlink(fx->outside, link_dir), 0);
	assert_int_equal(symlink(precious, link_file), 0);
	assert_int_equal(storage_remove_recording(&fx->cfg, ID), 0);
	assert_false(exists(dir));
	assert_true(exists(precious));
	assert_true(exists(fx->outside));

	/* The recording's folder itself a symlink: the link goes, not its target. */
	assert_int_equal(symlink(fx->outside, dir), 0);
	assert_int_equal(storage_remove_recording(&fx->cfg, ID), 0);
	assert_false(exists(dir));
	assert_true(exists(precious));
	free(dir);
	free(link_dir);
	free(link_file);
	free(precious);
}

static void test_remove_refuses_bad_ids_and_missing_storage(void **state)
{
	struct fixture *fx = *state;
	errno = 0;
	assert_int_equal(storage_remove_recording(&fx->cfg, ".."), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(storage_remove_recording(&fx->cfg, "../outside"), -1);
	assert_true(exists(fx->outside));
	char missing_path[] = "/nonexistent/vtp-storage";
	struct vtp_config missing = {.storage_path = missing_path};
	errno = 0;
	assert_int_equal(storage_remove_recording(&missing, ID), -1);
	assert_int_equal(errno, ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_names),
		cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_and_publish, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_refuses_a_file_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_is_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_does_not_follow_symlinks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_refuses_bad_ids_and_missing_storage, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
