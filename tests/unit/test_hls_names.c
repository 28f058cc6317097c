/* test_hls_names.c: unit tests of the rendition and segment names the stream endpoints accept (fcgi/hls_names.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../fcgi/hls_names.h"

static void test_renditions(void **state)
{
	(void)state;
	const char *good[] = {"360p", "1080p", "720p_hi", "a", "A-b_9", "abcdefghijklmno"};
	const char *bad[] = {"", "..", ".", "../", "%2e%2e", "360p/..", "-x", ".hidden", "abcdefghijklmnop",
			     "360p ", "a.b", "a\\b", "\xc3\xa9", "360p%00", "a/b"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		assert_true(valid_rendition(good[i]));
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_false(valid_rendition(bad[i]));
}

static void test_segments(void **state)
{
	(void)state;
	assert_string_equal(segment_type("init.mp4"), "video/mp4");
	assert_string_equal(segment_type("seg_00000.m4s"), "video/mp4");
	assert_string_equal(segment_type("seg_99999.ts"), "video/mp2t");
	const char *bad[] = {"", "..", "../init.mp4", "init.mp4/", "seg_0000.m4s", "seg_000000.m4s", "seg_0000a.ts",
			     "seg_00000.mp4", "seg_00000.m4s.bak", "seg_00000.ts\n", "index.m3u8", "master.m3u8",
			     "%2e%2e", "seg_-0000.ts", "seg_+0000.ts", "seg_ 0000.ts", "SEG_00000.ts", "seg_00000.TS",
			     "./init.mp4", "init.mp4%00"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_null(segment_type(bad[i]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_renditions),
		cmocka_unit_test(test_segments),
	};
	return cmocka_run_group_tests_name("hls names", tests, NULL, NULL);
}
