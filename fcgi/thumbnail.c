/* thumbnail.c: GET /api/v1/recordings/{id}/thumbnail: a picture of the recording at a time and size, from the
 * disk cache, or rendered on the spot by a short-lived child process. */
#include "routes.h"

#include "../lib/db.h"
#include "../lib/image.h"
#include "../lib/log.h"
#include "../lib/storage.h"
#include "access.h"
#include "app.h"
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Cold renders decode hostile media, so they never run inside vtp-api: a
 * child process (this program, re-executed with --render-thumbnail) does it,
 * and a crash or a hang there fails one request, never the API. At most
 * RENDER_SLOTS run at once per vtp-api process, each for at most
 * RENDER_TIMEOUT_MS; a request that cannot get a slot within that time gets
 * 503 with Retry-After. */
#define RENDER_SLOTS 2
#define RENDER_TIMEOUT_MS 10000
/* Rendered pictures kept per recording (thumbs/), beyond which new ones are not kept. */
#define CACHE_MAX_FILES 2000

static sem_t render_slots;
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;

static void init_slots(void)
{
	sem_init(&render_slots, 0, RENDER_SLOTS);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the render child; returns 0 when out was written, 1 when the child
 * failed (its reason in why), 2 on timeout (no slot, or the child ran out
 * of time and was killed). */
static int render(const char *source, const char *out, long long time_ms, int w, int h, enum image_fit fit,
		  enum image_format fmt, char *why, size_t why_size)
{
	char t[24], ws[16], hs[16];
	int pipefd[2] = {-1, -1}, ret = 1, status;
	posix_spawn_file_actions_t actions;
	pid_t pid = -1;
	long long deadline = now_ms() + RENDER_TIMEOUT_MS;
	size_t got = 0;

	why[0] = '\0';
	pthread_once(&slots_once, init_slots);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += RENDER_TIMEOUT_MS / 1000;
	while (sem_timedwait(&render_slots, &until) < 0)
		if (errno != EINTR)
			return 2;
	snprintf(t, sizeof t, "%lld", time_ms);
	snprintf(ws, sizeof ws, "%d", w);
	snprintf(hs, sizeof hs, "%d", h);
	char prog[] = "vtp-api", flag[] = "--render-thumbnail", fits[16], fmts[8];
	snprintf(fits, sizeof fits, "%s", image_fit_name(fit));
	snprintf(fmts, sizeof fmts, "%s", image_format_ext(fmt));
	char *src_copy = xstrdup(source), *out_copy = xstrdup(out);
	char *argv[] = {prog, flag, src_copy, out_copy, t, ws, hs, fits, fmts, NULL};
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		snprintf(why, why_size, "pipe: %s", strerror(errno));
		goto out;
	}
	/* The child's stdin is /dev/null, not the FastCGI socket; its stderr
	 * is our pipe, so we can log why a render failed. */
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
	/* Nothing else: other requests' sockets must not outlive their answers. */
	posix_spawn_file_actions_addclosefrom_np(&actions, 3);
	int e = posix_spawn(&pid, "/proc/self/exe", &actions, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&actions);
	close(pipefd[1]);
	pipefd[1] = -1;
	if (e != 0) {
		pid = -1;
		snprintf(why, why_size, "cannot start the renderer: %s", strerror(e));
		goto out;
	}
	/* Read its messages until it closes stderr (it exits) or time is up. */
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0) {
			kill(pid, SIGKILL);
			ret = 2;
			break;
		}
		struct pollfd p = {pipefd[0], POLLIN, 0};
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		char buf[256];
		ssize_t n = read(pipefd[0], buf, sizeof buf);
		if (n <= 0)
			break;
		size_t room = why_size - 1 - got;
		size_t take = (size_t)n < room ? (size_t)n : room;
		memcpy(why + got, buf, take);
		got += take;
		why[got] = '\0';
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (ret != 2)
		ret = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
	pid = -1;
out:
	why[strcspn(why, "\n")] = '\0';
	free(src_copy);
	free(out_copy);
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	sem_post(&render_slots);
	return ret;
}

/* Files in the folder at path, counting up to limit. */
static int count_files(const char *path, int limit)
{
	DIR *d = opendir(path);
	int n = 0;
	if (!d)
		return 0;
	for (struct dirent *e; n < limit && (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Answers with the picture at path from memory (no ETag: it is not kept). */
static int send_once(struct vtp_ctx *ctx, const char *path, const char *mime)
{
	char buf[16384];
	size_t n;
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	vtp_buf_reset(&ctx->resp.body);
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		vtp_buf_append(&ctx->resp.body, buf, n);
	fclose(f);
	ctx->resp.status = 200;
	http_header(ctx, "Content-Type", "%s", mime);
	return 0;
}

/* A query number: 1 when given (into *v), 0 when absent, -1 after answering 400. */
static int query_number(struct vtp_ctx *ctx, const char *name, double *v)
{
	char buf[32], *end;
	int got = http_query_get(ctx->req.query, name, buf, sizeof buf);
	if (got == 0)
		return 0;
	errno = 0;
	*v = got > 0 ? strtod(buf, &end) : 0;
	if (got < 0 || !buf[0] || *end || errno || !isfinite(*v) || strchr(buf, 'x') || strchr(buf, 'X')) {
		http_problem(ctx, 400, "invalid_query", "%s must be a number", name);
		return -1;
	}
	return 1;
}

static int query_size(struct vtp_ctx *ctx, const char *name, int *v)
{
	double d = 0;
	int got = query_number(ctx, name, &d);
	if (got <= 0)
		return got;
	if (d != floor(d)) {
		http_problem(ctx, 400, "invalid_query", "%s must be a whole number of pixels", name);
		return -1;
	}
	if (d < 1 || d > IMAGE_MAX_SIDE) {
		http_problem(ctx, 422, "invalid_value", "%s must be from 1 to %d pixels", name, IMAGE_MAX_SIDE);
		return -1;
	}
	*v = (int)d;
	return 1;
}

static int query_choice(struct vtp_ctx *ctx, const char *name, int (*parse)(const char *), const char *allowed,
			int *v)
{
	char buf[16];
	int got = http_query_get(ctx->req.query, name, buf, sizeof buf);
	if (got == 0)
		return 0;
	if (got < 0 || (*v = parse(buf)) < 0) {
		http_problem(ctx, 422, "invalid_value", "%s must be one of %s", name, allowed);
		return -1;
	}
	return 1;
}

void thumbnail_get(struct vtp_ctx *ctx)
{
	static const char *const allowed[] = {"time", "width", "height", "fit", "format", NULL};
	static const char sql[] =
		"SELECT r.duration_s, r.poster_s, r.source_file, r.media_info IS NOT NULL AS probed,"
		" jsonb_typeof(r.media_info -> 'video') = 'object' AS has_video"
		" FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL";
	const char *id = ctx->params[0];
	char name[128], why[512];
	char *out = NULL, *source = NULL;
	PGresult *res = NULL;
	double t = 0;
	int w = 0, h = 0, fit = IMAGE_FIT_PRESERVE, fmt = IMAGE_JPG, has_time;

	if (http_query_only(ctx, allowed) < 0)
		goto out;
	if ((has_time = query_number(ctx, "time", &t)) < 0 || query_size(ctx, "width", &w) < 0 ||
	    query_size(ctx, "height", &h) < 0 ||
	    query_choice(ctx, "fit", image_fit_parse, "preserve, crop, pad", &fit) < 0 ||
	    query_choice(ctx, "format", image_format_parse, "jpg, webp, png", &fmt) < 0)
		goto out;
	if (has_time && t < 0) {
		http_problem(ctx, 422, "invalid_value", "time must not be negative");
		goto out;
	}
	/* A ?share= link is checked, not counted as a view: pictures come
	 * along with the page that shows the recording. */
	if (!(res = access_query(ctx, id, ACCESS_PROGRESS, sql)))
		goto out;
	const char *duration = vtp_db_get(res, 0, "duration_s"), *poster = vtp_db_get(res, 0, "poster_s");
	const char *has_video = vtp_db_get(res, 0, "has_video");
	if (strcmp(vtp_db_get(res, 0, "probed"), "t") == 0 && (!has_video || strcmp(has_video, "t") != 0)) {
		http_problem(ctx, 404, "no_video", "the recording has no video, so no thumbnail");
		goto out;
	}
	if (has_time && !duration) {
		http_problem(ctx, 409, "thumbnail_not_ready",
			     "the recording's media has not been read yet; try again once it is ready");
		goto out;
	}
	if (!has_time && !poster) {
		http_problem(ctx, 409, "thumbnail_not_ready",
			     "the recording's poster has not been chosen yet; try again once it is ready");
		goto out;
	}
	/* To the millisecond: the same picture has one cache file. */
	/* The poster is the frame at poster_s: it shares its cache files with
	 * requests for that time, and a new poster gets new files. */
	long long time_ms = llround((has_time ? t : strtod(poster, NULL)) * 1000.0);
	if (has_time && t > strtod(duration, NULL) + 0.0005) {
		http_problem(ctx, 422, "invalid_value", "time must be within the recording's %.3f s", strtod(duration, NULL));
		goto out;
	}
	image_cache_name(name, sizeof name, time_ms, w, h, fit, fmt);
	struct file_answer a = {.content_type = image_format_mime(fmt), .cache_control = "private, no-cache"};
	if (files_answer(ctx, id, name, &a) == 0)
		goto out;

	/* Not cached: render it now. */
	const char *source_file = vtp_db_get(res, 0, "source_file");
	char *thumbs = storage_path(&ctx->app->cfg, id, "thumbs");
	source = source_file ? storage_path(&ctx->app->cfg, id, source_file) : NULL;
	out = storage_path(&ctx->app->cfg, id, name);
	if (!thumbs || !source || !out || image_mkdir(thumbs) < 0) {
		log_error("recording %s: no source or thumbnail folder: %s", id, strerror(errno));
		free(thumbs);
		http_problem(ctx, 500, "internal_error", "the thumbnail could not be made");
		goto out;
	}
	/* Each time and size a reader asks for would otherwise stay on disk
	 * for good: past CACHE_MAX_FILES pictures, new ones are made, sent
	 * and removed. */
	bool cache = count_files(thumbs, CACHE_MAX_FILES) < CACHE_MAX_FILES;
	free(thumbs);
	if (!cache) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		free(out);
		out = storage_path(&ctx->app->cfg, id, "thumbs");
		char *once = xasprintf("%s/once-%ld-%ld.%s", out, (long)getpid(), now.tv_nsec, image_format_ext(fmt));
		free(out);
		out = once;
	}
	int r = render(source, out, time_ms, w, h, fit, fmt, why, sizeof why);
	if (r == 2) {
		log_warn("recording %s: rendering %s took too long", id, name);
		http_problem(ctx, 503, "thumbnail_busy", "the thumbnail could not be made in time; try again shortly");
		goto out;
	}
	if (!cache) {
		if (r != 0 || send_once(ctx, out, image_format_mime(fmt)) < 0) {
			log_error("recording %s: rendering %s failed: %s", id, name, why);
			http_problem(ctx, 500, "internal_error", "the thumbnail could not be made");
		}
		unlink(out);
		goto out;
	}
	if (r != 0 || files_answer(ctx, id, name, &a) < 0) {
		log_error("recording %s: rendering %s failed: %s", id, name, why);
		http_problem(ctx, 500, "internal_error", "the thumbnail could not be made");
		goto out;
	}
out:
	free(out);
	free(source);
	PQclear(res);
}
