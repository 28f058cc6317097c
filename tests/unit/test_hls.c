/* test_hls.c: unit tests of the ladder's profile parser, the segment measurement and our master playlist. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../worker/hls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void profiles(void **state)
{
	(void)state;
	struct hls_profile p[HLS_MAX_RUNGS];
	char why[128];
	assert_int_equal(hls_parse_profiles("1080p:1920x1080:5000:5350:7500,360p:640x360:500:535:750", p, HLS_MAX_RUNGS,
					    why, sizeof why),
			 2);
	assert_string_equal(p[0].name, "1080p");
	assert_int_equal(p[0].width, 1920);
	assert_int_equal(p[1].height, 360);
	assert_int_equal(p[1].max_kbps, 535);
	assert_int_equal(p[1].level, 0);
	assert_int_equal(hls_parse_profiles("720p:1280x720:2800:2996:4200:3.1,360p:640x360:500:535:750", p, HLS_MAX_RUNGS,
					    why, sizeof why),
			 2);
	assert_int_equal(p[0].level, 31);
	assert_int_equal(p[1].level, 0);
	assert_string_equal(p[0].preset, "");
	assert_int_equal(hls_parse_profiles("1080p:1920x1080:5000:5350:7500:4.0:superfast,360p:640x360:500:535:750:ultrafast",
					    p, HLS_MAX_RUNGS, why, sizeof why),
			 2);
	assert_int_equal(p[0].level, 40);
	assert_string_equal(p[0].preset, "superfast");
	assert_int_equal(p[1].level, 0);
	assert_string_equal(p[1].preset, "ultrafast");
	const char *bad[] = {"", "360p", "360p:640x360:500:535", "360p:640x360:500:535:750,",
			     "360p:640x360:500:400:750", "360p:8x8:500:535:750", "a/b:640x360:500:535:750",
			     "x:640x360:500:535:750,x:320x180:200:250:300", "360p:640x360:500:535:750junk",
			     "360p:640x360:500:535:750:", "360p:640x360:500:535:750:31", "360p:640x360:500:535:750:7.0",
			     "360p:640x360:500:535:750:3.10", "360p:640x360:500:535:750:0.9",
			     "360p:640x360:500:535:750:quick", "360p:640x360:500:535:750:ultrafast:3.1",
			     "360p:640x360:500:535:750:3.1:ultrafast:", "360p:640x360:500:535:750:Ultrafast",
			     "360p:640x360:500:535:750:ultrafastultrafast", "360p:640x360:500:535:750:3.1:"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(hls_parse_profiles(bad[i], p, HLS_MAX_RUNGS, why, sizeof why), -1);
	assert_int_equal(hls_parse_profiles("a:64x64:100:100:100,b:64x64:100:100:100", p, 1, why, sizeof why), -1);
}

static void write_file(const char *dir, const char *name, const char *text, size_t size)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	if (text)
		fputs(text, f);
	else
		for (size_t i = 0; i < size; i++)
			fputc('x', f);
	fclose(f);
}

static void measure_and_master(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_hls.XXXXXX", path[600], text[2048];
	assert_non_null(mkdtemp(dir));
	/* 2 s of 1000 bytes (+ 500 init) = 6000 b/s, then 1 s of 1500 bytes = 12000 b/s. */
	write_file(dir, "index.m3u8",
		   "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.000000,\nseg_00000.m4s\n#EXTINF:1.0,\nseg_00001.m4s\n"
		   "#EXT-X-ENDLIST\n",
		   0);
	write_file(dir, "init.mp4", NULL, 500);
	write_file(dir, "seg_00000.m4s", NULL, 1000);
	write_file(dir, "seg_00001.m4s", NULL, 1500);
	struct hls_variant v[2];
	memset(v, 0, sizeof v);
	assert_int_equal(hls_measure(dir, &v[0]), 0);
	assert_int_equal(v[0].peak_bps, 12000);
	assert_int_equal(v[0].avg_bps, (500 + 1000 + 1500) * 8 / 3);
	snprintf(v[0].name, sizeof v[0].name, "360p");
	v[0].width = 640, v[0].height = 360, v[0].frame_rate = 30;
	snprintf(v[0].codecs, sizeof v[0].codecs, "avc1.64001e,mp4a.40.2");
	snprintf(v[1].name, sizeof v[1].name, "720p");
	v[1].width = 1280, v[1].height = 720, v[1].frame_rate = 29.97, v[1].peak_bps = 3000000, v[1].avg_bps = 2500000;
	snprintf(v[1].codecs, sizeof v[1].codecs, "avc1.64001f,mp4a.40.2");
	snprintf(path, sizeof path, "%s/master.m3u8", dir);
	assert_int_equal(hls_write_master(path, v, 2), 0);
	FILE *f = fopen(path, "r");
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	assert_string_equal(text, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
				  "#EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2500000,CODECS=\"avc1.64001f,mp4a.40.2\","
				  "RESOLUTION=1280x720,FRAME-RATE=29.970\n720p/index.m3u8\n"
				  "#EXT-X-STREAM-INF:BANDWIDTH=12000,AVERAGE-BANDWIDTH=8000,CODECS=\"avc1.64001e,mp4a.40.2\","
				  "RESOLUTION=640x360,FRAME-RATE=30.000\n360p/index.m3u8\n");
	/* A playlist naming a missing segment cannot be measured. */
	write_file(dir, "index.m3u8", "#EXTM3U\n#EXTINF:2.0,\nseg_00009.m4s\n", 0);
	assert_int_equal(hls_measure(dir, &v[0]), -1);
	const char *names[] = {"index.m3u8", "init.mp4", "seg_00000.m4s", "seg_00001.m4s", "master.m3u8"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(profiles),
		cmocka_unit_test(measure_and_master),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
