/* thumbnail.c: the thumbnail job: chooses the poster frame (skipping black and blank ones) and renders its common sizes into thumbs/
 * (named by the poster's time, as the API names any picture: fcgi/thumbnail.c). */
#include "kinds.h"

#include "../lib/frames.h"
#include "../lib/image.h"
#include "../lib/storage.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Size at which candidate frames are judged: enough to tell a slide from a
 * black screen, small enough to judge twenty of them in a moment. */
#define PROBE_W 96
#define PROBE_H 54
#define MAX_CANDIDATES 24

/* The sizes that lists and players ask for, rendered ahead of time
 * (width x height, 0: follows the aspect; all "preserve", JPEG). */
static const int common_sizes[][2] = {{0, 0}, {320, 0}, {640, 0}, {1280, 0}};

/* Candidate poster times for a source of duration d (0: unknown): early
 * ones first, at growing distances (0.5, 1, 2, 3, 5, 8, 13, ... s), then
 * spread over the whole recording, so a class whose first minutes are
 * black still gets a poster from soon after they end. Returns how many. */
int thumbnail_candidates(double d, double *out, int max)
{
	int n = 0;
	if (d <= 0) {
		out[n++] = 0;
		return n;
	}
	double a = 0.5, b = 1;
	out[n++] = d > 1 ? 0.5 : d / 2;
	while (n < max / 2 && b < d - 0.05) {
		out[n++] = b;
		double c = a + b;
		a = b;
		b = c;
	}
	for (int k = 1; k <= 9 && n < max; k++) {
		double t = d * k / 10.0;
		if (t > out[n - 1])
			out[n++] = t;
	}
	return n;
}

int thumbnail_run(struct job *job)
{
	struct frames *f = NULL;
	struct rgb_image probe = {0}, poster = {0};
	unsigned char *data = NULL;
	char *src = NULL, *dir = NULL, *path = NULL;
	char err[256];
	double times[MAX_CANDIDATES];
	int ret = -1, no_video = 0;

	job_progress(job, 0);
	src = job_source_path(job);
	if (!src)
		goto out;
	if (frames_open(&f, src, job_interrupt_cb, job, &no_video, err, sizeof err) < 0) {
		if (no_video) { /* an audio-only class: no poster, and that is fine */
			job_result_none(job, "poster_s");
			ret = 0;
			goto out;
		}
		job_error(job, "%s", err);
		goto out;
	}

	/* The first candidate that is neither dark nor near-uniform; when all
	 * are, the most varied of them. */
	int n = thumbnail_candidates(frames_duration(f), times, MAX_CANDIDATES);
	double chosen = -1, best_var = -1, best_t = 0;
	for (int i = 0; i < n && chosen < 0; i++) {
		if (job_stop_requested()) {
			job_error(job, "stopped");
			goto out;
		}
		if (frames_grab(f, times[i], PROBE_W, PROBE_H, &probe, err, sizeof err) < 0)
			continue;
		double mean, stddev;
		frames_luma_stats(&probe, &mean, &stddev);
		if (!frames_is_blank(&probe))
			chosen = times[i];
		else if (stddev > best_var) {
			best_var = stddev;
			best_t = times[i];
		}
		rgb_image_free(&probe);
		job_progress(job, 0.5 * (i + 1) / n);
	}
	if (chosen < 0)
		chosen = best_t;
	/* Millisecond precision: the same time names the same cached files. */
	chosen = floor(chosen * 1000.0) / 1000.0;
	if (frames_grab(f, chosen, 0, 0, &poster, err, sizeof err) < 0) {
		job_error(job, "%s", err);
		goto out;
	}

	dir = storage_path(job->cfg, job->recording_id, "thumbs");
	if (!dir || image_mkdir(dir) < 0) {
		job_error(job, "cannot create the thumbnail folder: %s", strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < sizeof common_sizes / sizeof common_sizes[0]; i++) {
		char name[128];
		size_t len = 0;
		image_cache_name(name, sizeof name, llround(chosen * 1000.0), common_sizes[i][0], common_sizes[i][1],
				 IMAGE_FIT_PRESERVE,
				 IMAGE_JPG);
		if (image_encode(&poster, common_sizes[i][0], common_sizes[i][1], IMAGE_FIT_PRESERVE, IMAGE_JPG, &data,
				 &len, err, sizeof err) < 0) {
			job_error(job, "%s", err);
			goto out;
		}
		free(path);
		path = storage_path(job->cfg, job->recording_id, name);
		if (!path || image_save(path, data, len) < 0) {
			job_error(job, "cannot write %s: %s", name, strerror(errno));
			goto out;
		}
		free(data);
		data = NULL;
		job_progress(job, 0.5 + 0.5 * (double)(i + 1) / (sizeof common_sizes / sizeof common_sizes[0]));
	}

	json_object *result = json_object_new_object();
	char text[32];
	snprintf(text, sizeof text, "%.3f", chosen);
	json_object_object_add(result, "poster_s", json_object_new_double_s(chosen, text));
	job_result(job, result);
	ret = 0;
out:
	free(data);
	free(path);
	free(dir);
	free(src);
	rgb_image_free(&probe);
	rgb_image_free(&poster);
	frames_close(&f);
	return ret;
}
