/* test_files.c: unit tests of byte range parsing (RFC 9110) and ETag matching for file answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../fcgi/download.h"
#include "../../fcgi/files.h"

#include <string.h>

static int parse(const char *header, long long size, struct byte_range *r)
{
	return files_parse_range(header, size, r);
}

static void test_single_ranges(void **state)
{
	(void)state;
	struct byte_range r[FILES_MAX_RANGES];
	assert_int_equal(parse("bytes=0-0", 100, r), 1); /* first byte */
	assert_true(r[0].first == 0 && r[0].last == 0);
	assert_int_equal(parse("bytes=99-99", 100, r), 1); /* last byte */
	assert_true(r[0].first == 99 && r[0].last == 99);
	assert_int_equal(parse("bytes=-1", 100, r), 1); /* suffix */
	assert_true(r[0].first == 99 && r[0].last == 99);
	assert_int_equal(parse("bytes=-500", 100, r), 1); /* suffix longer than the file */
	assert_true(r[0].first == 0 && r[0].last == 99);
	assert_int_equal(parse("bytes=10-", 100, r), 1);
	assert_true(r[0].first == 10 && r[0].last == 99);
	assert_int_equal(parse("bytes=50-1000", 100, r), 1); /* end beyond the file */
	assert_true(r[0].first == 50 && r[0].last == 99);
	assert_int_equal(parse("BYTES = 1-2", 100, r), -1); /* not the unit "bytes=" */
	assert_int_equal(parse("Bytes=1-2", 100, r), 1);
}

static void test_unsatisfiable_and_invalid(void **state)
{
	(void)state;
	struct byte_range r[FILES_MAX_RANGES];
	assert_int_equal(parse("bytes=100-", 100, r), 0);
	assert_int_equal(parse("bytes=100-200", 100, r), 0);
	assert_int_equal(parse("bytes=-0", 100, r), 0);
	assert_int_equal(parse("bytes=0-0", 0, r), 0);
	assert_int_equal(parse("bytes=5-1", 100, r), 0);
	assert_int_equal(parse("bytes=", 100, r), 0);
	assert_int_equal(parse("bytes=a-b", 100, r), 0);
	assert_int_equal(parse("items=0-1", 100, r), -1);
	assert_int_equal(parse("bytes=0-1,", 100, r), 0);
	assert_int_equal(parse("bytes=1234567890123456789-", 100, r), 0);
	assert_int_equal(parse("bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20,22-22,24-24,26-26,"
			       "28-28,30-30,32-32", 100, r), -1);
}

static void test_multiple_ranges_merge(void **state)
{
	(void)state;
	struct byte_range r[FILES_MAX_RANGES];
	assert_int_equal(parse("bytes=0-9, 20-29", 100, r), 2);
	assert_true(r[0].first == 0 && r[0].last == 9 && r[1].first == 20 && r[1].last == 29);
	assert_int_equal(parse("bytes=20-29,0-9", 100, r), 2); /* put in file order */
	assert_true(r[0].first == 0 && r[1].first == 20);
	assert_int_equal(parse("bytes=0-50,40-60,-10", 100, r), 2); /* overlapping */
	assert_true(r[0].first == 0 && r[0].last == 60 && r[1].first == 90 && r[1].last == 99);
	assert_int_equal(parse("bytes=0-9,10-19", 100, r), 1); /* adjacent */
	assert_true(r[0].first == 0 && r[0].last == 19);
	assert_int_equal(parse("bytes=0-9,200-300", 100, r), 1); /* one unsatisfiable: dropped */
}

static void test_etag_matching(void **state)
{
	(void)state;
	assert_true(files_etag_matches("\"a-1\"", "\"a-1\""));
	assert_true(files_etag_matches("\"x\", W/\"a-1\"", "\"a-1\""));
	assert_true(files_etag_matches("*", "\"a-1\""));
	assert_false(files_etag_matches("\"a-12\"", "\"a-1\""));
	assert_false(files_etag_matches(NULL, "\"a-1\""));
	assert_false(files_etag_matches("", "\"a-1\""));
}

static void expect_name(const char *title, const char *ext, const char *utf8, const char *ascii)
{
	struct vtp_buf u = {0}, a = {0};
	download_filename(title, ext, &u, &a);
	assert_string_equal(u.data, utf8);
	assert_string_equal(a.data, ascii);
	vtp_buf_free(&u);
	vtp_buf_free(&a);
}

static void test_download_names(void **state)
{
	(void)state;
	expect_name("Algebra I \xe2\x80\x93 week 3", "mp4", "Algebra I \xe2\x80\x93 week 3.mp4", "Algebra I _ week 3.mp4");
	expect_name("../../etc/passwd", "mkv", "etc passwd.mkv", "etc passwd.mkv");
	expect_name("a\r\nSet-Cookie: x=1;\"\\", "mp4", "a Set-Cookie x=1.mp4", "a Set-Cookie x=1.mp4");
	expect_name("", "webm", "recording.webm", "recording.webm");
	expect_name("\xe6\x95\xb0\xe5\xad\xa6", "mp4", "\xe6\x95\xb0\xe5\xad\xa6.mp4", "recording.mp4");
	expect_name("bad \xff byte", NULL, "bad byte", "bad byte");
	char long_title[400];
	memset(long_title, 'x', sizeof long_title - 1);
	long_title[sizeof long_title - 1] = '\0';
	struct vtp_buf u = {0}, a = {0};
	download_filename(long_title, "mp4", &u, &a);
	assert_int_equal(u.len, 124);
	vtp_buf_free(&u);
	vtp_buf_free(&a);
	download_disposition("Week 3: 50% \xe2\x80\x93 done", "mp4", &u);
	assert_string_equal(u.data, "attachment; filename=\"Week 3 50 _ done.mp4\"; "
				    "filename*=UTF-8''Week%203%2050%20%E2%80%93%20done.mp4");
	vtp_buf_free(&u);
}

static void test_rendition_files(void **state)
{
	(void)state;
	char name[64];
	assert_int_equal(download_rendition_file("original", "source.mp4", name, sizeof name), 0);
	assert_string_equal(name, "source.mp4");
	assert_int_equal(download_rendition_file("original", NULL, name, sizeof name), -1);
	assert_int_equal(download_rendition_file("720p", NULL, name, sizeof name), 0);
	assert_string_equal(name, "mp4/720p.mp4");
	assert_int_equal(download_rendition_file("../x", NULL, name, sizeof name), -1);
	assert_int_equal(download_rendition_file("", NULL, name, sizeof name), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_ranges),
		cmocka_unit_test(test_unsatisfiable_and_invalid),
		cmocka_unit_test(test_multiple_ranges_merge),
		cmocka_unit_test(test_etag_matching),
		cmocka_unit_test(test_download_names),
		cmocka_unit_test(test_rendition_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
