/* storyboard.c: the storyboard job: one sprite of evenly spaced tiles, its WebVTT track (#xywh cues) and a JSON form. */
#include "storyboard.h"

#include "kinds.h"

#include "../lib/frames.h"
#include "../lib/image.h"
#include "../lib/storage.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Round tile intervals in seconds; each at most twice the one before, so the
 * first that needs no more than 100 tiles needs more than 50. */
static const double intervals[] = {0.1, 0.2,  0.25, 0.5, 1,   2,   3,   5,    6,    10,   15,
				   20,  30,   60,   90,  120, 180, 300, 600, 900, 1800, 3600, 7200};

int storyboard_layout(double duration_s, int src_w, int src_h, struct storyboard_layout *l)
{
	memset(l, 0, sizeof *l);
	if (!(duration_s > 0) || src_w <= 0 || src_h <= 0)
		return -1;
	l->duration_s = duration_s;
	size_t n = sizeof intervals / sizeof intervals[0];
	l->interval_s = duration_s / STORYBOARD_MAX_TILES; /* beyond the list: exactly 100 tiles */
	for (size_t i = 0; i < n; i++)
		if (ceil(duration_s / intervals[i] - 1e-9) <= STORYBOARD_MAX_TILES) {
			l->interval_s = intervals[i];
			break;
		}
	l->count = (int)ceil(duration_s / l->interval_s - 1e-9);
	if (l->count < 1)
		l->count = 1;
	l->columns = l->count < STORYBOARD_COLUMNS ? l->count : STORYBOARD_COLUMNS;
	l->rows = (l->count + l->columns - 1) / l->columns;
	/* Even sizes; landscape tiles are TILE_W wide, portrait ones that high. */
	if (src_w >= src_h) {
		l->tile_w = STORYBOARD_TILE_W;
		l->tile_h = 2 * (int)lround((double)STORYBOARD_TILE_W * src_h / src_w / 2);
	} else {
		l->tile_h = STORYBOARD_TILE_W;
		l->tile_w = 2 * (int)lround((double)STORYBOARD_TILE_W * src_w / src_h / 2);
	}
	l->tile_w = l->tile_w < 2 ? 2 : l->tile_w;
	l->tile_h = l->tile_h < 2 ? 2 : l->tile_h;
	return 0;
}

void storyboard_tile_span(const struct storyboard_layout *l, int i, long long *start_ms, long long *end_ms)
{
	long long total = llround(l->duration_s * 1000.0);
	*start_ms = llround(i * l->interval_s * 1000.0);
	*end_ms = i == l->count - 1 ? total : llround((i + 1) * l->interval_s * 1000.0);
	if (*end_ms > total)
		*end_ms = total;
	if (*start_ms > *end_ms)
		*start_ms = *end_ms;
}

static void vtt_time(struct vtp_buf *out, long long ms)
{
	vtp_buf_printf(out, "%02lld:%02lld:%02lld.%03lld", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, ms % 1000);
}

void storyboard_vtt(const struct storyboard_layout *l, const char *image, struct vtp_buf *out)
{
	vtp_buf_puts(out, "WEBVTT\n");
	for (int i = 0; i < l->count; i++) {
		long long start, end;
		storyboard_tile_span(l, i, &start, &end);
		vtp_buf_puts(out, "\n");
		vtt_time(out, start);
		vtp_buf_puts(out, " --> ");
		vtt_time(out, end);
		vtp_buf_printf(out, "\n%s#xywh=%d,%d,%d,%d\n", image, i % l->columns * l->tile_w,
			       i / l->columns * l->tile_h, l->tile_w, l->tile_h);
	}
}

static json_object *seconds(double v)
{
	char text[32];
	snprintf(text, sizeof text, "%.3f", v);
	return json_object_new_double_s(round(v * 1000.0) / 1000.0, text);
}

/* The JSON form (docs/openapi.yaml, Storyboard). */
static json_object *layout_json(const struct storyboard_layout *l)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "image_url", json_object_new_string("storyboard.jpg"));
	json_object_object_add(o, "vtt_url", json_object_new_string("storyboard.vtt"));
	json_object_object_add(o, "duration_s", seconds(l->duration_s));
	json_object_object_add(o, "interval_s", seconds(l->interval_s));
	json_object_object_add(o, "count", json_object_new_int(l->count));
	json_object_object_add(o, "columns", json_object_new_int(l->columns));
	json_object_object_add(o, "rows", json_object_new_int(l->rows));
	json_object_object_add(o, "tile_width", json_object_new_int(l->tile_w));
	json_object_object_add(o, "tile_height", json_object_new_int(l->tile_h));
	json_object_object_add(o, "width", json_object_new_int(l->columns * l->tile_w));
	json_object_object_add(o, "height", json_object_new_int(l->rows * l->tile_h));
	json_object *tiles = json_object_new_array();
	for (int i = 0; i < l->count; i++) {
		long long start, end;
		storyboard_tile_span(l, i, &start, &end);
		json_object *t = json_object_new_object();
		json_object_object_add(t, "start_s", seconds((double)start / 1000.0));
		json_object_object_add(t, "end_s", seconds((double)end / 1000.0));
		json_object_object_add(t, "x", json_object_new_int(i % l->columns * l->tile_w));
		json_object_object_add(t, "y", json_object_new_int(i / l->columns * l->tile_h));
		json_object_array_add(tiles, t);
	}
	json_object_object_add(o, "tiles", tiles);
	return o;
}

/* Writes name in the recording's folder. */
static int save(struct job *job, const char *name, const void *data, size_t len)
{
	char *path = storage_path(job->cfg, job->recording_id, name);
	int ret = path ? image_save(path, data, len) : -1;
	if (ret < 0)
		job_error(job, "cannot write %s: %s", name, strerror(errno));
	free(path);
	return ret;
}

int storyboard_run(struct job *job)
{
	struct frames *f = NULL;
	struct rgb_image *tiles = NULL;
	struct storyboard_layout l = {0};
	struct vtp_buf vtt = {0};
	unsigned char *sprite = NULL;
	size_t sprite_len = 0;
	char *src = NULL;
	const char *text;
	json_object *form = NULL;
	char err[256];
	int ret = -1, no_video = 0, w, h;

	job_progress(job, 0);
	src = job_source_path(job);
	if (!src)
		goto out;
	if (frames_open(&f, src, job_interrupt_cb, job, &no_video, err, sizeof err) < 0) {
		if (no_video) { /* audio only: nothing to show */
			job_result_none(job, "storyboard");
			ret = 0;
			goto out;
		}
		job_error(job, "%s", err);
		goto out;
	}
	frames_size(f, &w, &h);
	if (storyboard_layout(frames_duration(f), w, h, &l) < 0) {
		job_error(job, "the source's duration is unknown");
		goto out;
	}
	tiles = xcalloc((size_t)l.count, sizeof *tiles);
	for (int i = 0; i < l.count; i++) {
		long long start, end;
		if (job_stop_requested()) {
			job_error(job, "stopped");
			goto out;
		}
		storyboard_tile_span(&l, i, &start, &end);
		/* The middle of the span the tile stands for; a frame that
		 * cannot be decoded leaves its tile black. */
		if (frames_grab(f, (double)(start + end) / 2000.0, l.tile_w, l.tile_h, &tiles[i], err, sizeof err) < 0)
			rgb_image_free(&tiles[i]);
		job_progress(job, 0.9 * (i + 1) / l.count);
	}
	if (image_sprite(tiles, l.count, l.columns, l.tile_w, l.tile_h, &sprite, &sprite_len, err, sizeof err) < 0) {
		job_error(job, "%s", err);
		goto out;
	}
	storyboard_vtt(&l, "storyboard.jpg", &vtt);
	form = layout_json(&l);
	text = json_object_to_json_string_ext(form, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	/* The sprite before the track that points into it. */
	if (save(job, "storyboard.jpg", sprite, sprite_len) < 0 || save(job, "storyboard.vtt", vtt.data, vtt.len) < 0 ||
	    save(job, "storyboard.json", text, strlen(text)) < 0)
		goto out;
	json_object *result = json_object_new_object();
	json_object_object_add(result, "storyboard", form);
	form = NULL;
	job_result(job, result);
	ret = 0;
out:
	if (form)
		json_object_put(form);
	if (tiles)
		for (int i = 0; i < l.count; i++)
			rgb_image_free(&tiles[i]);
	free(tiles);
	free(sprite);
	vtp_buf_free(&vtt);
	free(src);
	frames_close(&f);
	return ret;
}
