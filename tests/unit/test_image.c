/* test_image.c: unit tests of thumbnail geometry (each fit on 16:9, 4:3 and portrait), cache names, parameter
 * parsing, the storyboard layout and its WebVTT track, and poster candidate times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../lib/image.h"
#include "../../worker/kinds.h"
#include "../../worker/storyboard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect_geometry(int sw, int sh, int w, int h, enum image_fit fit, int ow, int oh, int scw, int sch,
			    int x, int y)
{
	struct image_geometry g;
	image_geometry(sw, sh, w, h, fit, &g);
	assert_int_equal(g.out_w, ow);
	assert_int_equal(g.out_h, oh);
	assert_int_equal(g.scaled_w, scw);
	assert_int_equal(g.scaled_h, sch);
	assert_int_equal(g.x, x);
	assert_int_equal(g.y, y);
}

static void test_geometry_wide(void **state)
{
	(void)state;
	expect_geometry(1920, 1080, 0, 0, IMAGE_FIT_PRESERVE, 1920, 1080, 1920, 1080, 0, 0);
	expect_geometry(3840, 2160, 0, 0, IMAGE_FIT_PRESERVE, 1920, 1080, 1920, 1080, 0, 0);
	expect_geometry(1920, 1080, 320, 0, IMAGE_FIT_CROP, 320, 180, 320, 180, 0, 0);
	expect_geometry(1920, 1080, 0, 90, IMAGE_FIT_PRESERVE, 160, 90, 160, 90, 0, 0);
	expect_geometry(1920, 1080, 320, 320, IMAGE_FIT_PRESERVE, 320, 180, 320, 180, 0, 0);
	expect_geometry(1920, 1080, 320, 320, IMAGE_FIT_CROP, 320, 320, 569, 320, -124, 0);
	expect_geometry(1920, 1080, 320, 320, IMAGE_FIT_PAD, 320, 320, 320, 180, 0, 70);
}

static void test_geometry_four_three_and_portrait(void **state)
{
	(void)state;
	expect_geometry(640, 480, 320, 180, IMAGE_FIT_PRESERVE, 240, 180, 240, 180, 0, 0);
	expect_geometry(640, 480, 320, 180, IMAGE_FIT_CROP, 320, 180, 320, 240, 0, -30);
	expect_geometry(640, 480, 320, 180, IMAGE_FIT_PAD, 320, 180, 240, 180, 40, 0);
	expect_geometry(360, 640, 320, 180, IMAGE_FIT_PRESERVE, 101, 180, 101, 180, 0, 0);
	expect_geometry(360, 640, 320, 180, IMAGE_FIT_PAD, 320, 180, 101, 180, 109, 0);
	expect_geometry(360, 640, 320, 180, IMAGE_FIT_CROP, 320, 180, 320, 569, 0, -194);
	/* One side given and the other over the limit: shrunk to fit. */
	expect_geometry(360, 640, 1920, 0, IMAGE_FIT_PRESERVE, 1080, 1920, 1080, 1920, 0, 0);
	/* Tiny results never reach 0. */
	expect_geometry(1920, 10, 1, 0, IMAGE_FIT_PRESERVE, 1, 1, 1, 1, 0, 0);
}

static void test_names_and_parsing(void **state)
{
	(void)state;
	char name[128];
	image_cache_name(name, sizeof name, -1, 320, 0, IMAGE_FIT_PRESERVE, IMAGE_JPG);
	assert_string_equal(name, "thumbs/auto-320x0-preserve.jpg");
	image_cache_name(name, sizeof name, 4500, 96, 96, IMAGE_FIT_CROP, IMAGE_WEBP);
	assert_string_equal(name, "thumbs/t4500-96x96-crop.webp");
	assert_int_equal(image_fit_parse("pad"), IMAGE_FIT_PAD);
	assert_int_equal(image_fit_parse("Pad"), -1);
	assert_int_equal(image_format_parse("png"), IMAGE_PNG);
	assert_int_equal(image_format_parse("jpeg"), IMAGE_JPG);
	assert_int_equal(image_format_parse("gif"), -1);
	assert_string_equal(image_format_mime(IMAGE_WEBP), "image/webp");
}

static void test_storyboard_layout(void **state)
{
	(void)state;
	struct storyboard_layout l;
	assert_int_equal(storyboard_layout(0, 640, 360, &l), -1);
	/* Short, hour-long and day-long sources: 50 to 100 tiles. */
	const double durations[] = {6, 59.9, 100, 3605.2, 7200, 86400};
	for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
		assert_int_equal(storyboard_layout(durations[i], 1920, 1080, &l), 0);
		assert_true(l.count >= 50 && l.count <= 100);
		assert_true(l.count * l.interval_s >= durations[i] - 1e-6);
		assert_int_equal(l.tile_w, 160);
		assert_int_equal(l.tile_h, 90);
		assert_int_equal(l.columns, 10);
		assert_int_equal(l.rows, (l.count + 9) / 10);
	}
	assert_int_equal(storyboard_layout(3605.2, 360, 640, &l), 0);
	assert_int_equal(l.tile_h, 160);
	assert_int_equal(l.tile_w, 90);
	assert_int_equal(storyboard_layout(2, 640, 360, &l), 0);
	assert_int_equal(l.count, 20);
	assert_int_equal(l.columns, 10);
}

static void test_storyboard_vtt_covers_everything(void **state)
{
	(void)state;
	struct storyboard_layout l;
	struct vtp_buf vtt = {0};
	assert_int_equal(storyboard_layout(3605.2, 1280, 720, &l), 0);
	long long prev_end = 0, start, end;
	for (int i = 0; i < l.count; i++) {
		storyboard_tile_span(&l, i, &start, &end);
		assert_true(start == prev_end);
		assert_true(end > start);
		prev_end = end;
	}
	assert_true(prev_end == 3605200);
	storyboard_vtt(&l, "storyboard.jpg", &vtt);
	assert_true(strncmp(vtt.data, "WEBVTT\n\n00:00:00.000 --> 00:01:00.000\nstoryboard.jpg#xywh=0,0,160,90\n",
			    69) == 0);
	assert_non_null(strstr(vtt.data, "01:00:00.000 --> 01:00:05.200\nstoryboard.jpg#xywh="));
	vtp_buf_free(&vtt);
}

static void test_poster_candidates(void **state)
{
	(void)state;
	double t[24];
	int n = thumbnail_candidates(6, t, 24);
	assert_true(n >= 5);
	assert_true(t[0] == 0.5);
	for (int i = 1; i < n; i++) {
		assert_true(t[i] > t[i - 1]);
		assert_true(t[i] < 6);
	}
	/* A black start of 30 s in an hour: candidates after it come early. */
	n = thumbnail_candidates(3600, t, 24);
	int after = 0;
	for (int i = 0; i < n; i++)
		after += t[i] > 30 && t[i] < 120;
	assert_true(after >= 2);
	n = thumbnail_candidates(0, t, 24);
	assert_int_equal(n, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_geometry_wide),
		cmocka_unit_test(test_geometry_four_three_and_portrait),
		cmocka_unit_test(test_names_and_parsing),
		cmocka_unit_test(test_storyboard_layout),
		cmocka_unit_test(test_storyboard_vtt_covers_everything),
		cmocka_unit_test(test_poster_candidates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
