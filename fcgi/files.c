/* files.c: answering with a file of a recording's folder: ETag, If-None-Match, byte ranges, and delivery by
 * nginx (X-Accel-Redirect), Apache (X-Sendfile) or by streaming it from vtp-api. */
#include "files.h"

#include "../lib/log.h"
#include "../lib/storage.h"
#include "app.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define STREAM_CHUNK (64 * 1024)

void files_etag(const struct stat *st, char *out, size_t size)
{
	snprintf(out, size, "\"%llx-%llx\"", (unsigned long long)st->st_mtime, (unsigned long long)st->st_size);
}

bool files_etag_matches(const char *header, const char *etag)
{
	if (!header)
		return false;
	size_t n = strlen(etag);
	const char *p = header;
	while (*p) {
		p += strspn(p, " \t,");
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\t'))
			return true;
		p += strcspn(p, ",");
	}
	return false;
}

/* A run of 1 to 18 digits at *p (advanced past it) into *v. */
static bool digits(const char **p, long long *v)
{
	size_t n = strspn(*p, "0123456789");
	if (n == 0 || n > 18)
		return false;
	*v = 0;
	for (size_t i = 0; i < n; i++)
		*v = *v * 10 + ((*p)[i] - '0');
	*p += n;
	return true;
}

static int by_first(const void *a, const void *b)
{
	const struct byte_range *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

int files_parse_range(const char *header, long long size, struct byte_range *out)
{
	struct byte_range r[FILES_MAX_RANGES];
	int n = 0, specs = 0;
	const char *p = header;
	if (!p || strncasecmp(p, "bytes=", 6) != 0)
		return -1;
	p += 6;
	for (;;) {
		long long a = -1, b = -1;
		p += strspn(p, " \t");
		/* A malformed set of ranges is refused (416), as nginx does
		 * when it sends the file: the answer does not depend on the
		 * web server. */
		if (*p == '-') { /* suffix: the last b bytes */
			p++;
			if (!digits(&p, &b))
				return 0;
		} else {
			if (!digits(&p, &a) || *p++ != '-')
				return 0;
			if (*p >= '0' && *p <= '9' && (!digits(&p, &b) || b < a))
				return 0;
		}
		if (++specs > FILES_MAX_RANGES)
			return -1; /* a flood of ranges is ignored: the whole file is sent */
		if (a < 0 && b > 0 && size > 0) {
			r[n].first = b >= size ? 0 : size - b;
			r[n++].last = size - 1;
		} else if (a >= 0 && a < size) {
			r[n].first = a;
			r[n++].last = b < 0 || b >= size ? size - 1 : b;
		}
		p += strspn(p, " \t");
		if (*p == '\0')
			break;
		if (*p++ != ',')
			return 0;
	}
	/* Overlapping and adjacent ranges become one, in file order. */
	qsort(r, (size_t)n, sizeof r[0], by_first);
	int m = 0;
	for (int i = 0; i < n; i++) {
		if (m > 0 && r[i].first <= out[m - 1].last + 1) {
			if (r[i].last > out[m - 1].last)
				out[m - 1].last = r[i].last;
		} else {
			out[m++] = r[i];
		}
	}
	return m;
}

/* What vtp-api streams itself: parts of one open file, each after a prefix. */
struct file_stream {
	int fd;
	int count;
	struct {
		long long off, len;
		char *prefix;
	} parts[FILES_MAX_RANGES];
	char *trailer;
};

static int write_all(http_write_fn write, void *io, const char *s, size_t n)
{
	return n ? write(io, s, n) : 0;
}

static int stream_parts(void *arg, http_write_fn write, void *io)
{
	struct file_stream *s = arg;
	char *buf = xmalloc(STREAM_CHUNK);
	int ret = -1;
	for (int i = 0; i < s->count; i++) {
		if (s->parts[i].prefix && write_all(write, io, s->parts[i].prefix, strlen(s->parts[i].prefix)) < 0)
			goto out;
		long long off = s->parts[i].off, left = s->parts[i].len;
		while (left > 0) {
			ssize_t n = pread(s->fd, buf, left < STREAM_CHUNK ? (size_t)left : STREAM_CHUNK, off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) { /* the file shrank: the client sees a short answer */
				log_error("reading a file to send: %s", n < 0 ? strerror(errno) : "unexpected end");
				goto out;
			}
			if (write(io, buf, (size_t)n) < 0)
				goto out;
			off += n;
			left -= n;
		}
	}
	if (s->trailer && write_all(write, io, s->trailer, strlen(s->trailer)) < 0)
		goto out;
	ret = 0;
out:
	free(buf);
	return ret;
}

static void stream_free(void *arg)
{
	struct file_stream *s = arg;
	if (s->fd >= 0)
		close(s->fd);
	for (int i = 0; i < s->count; i++)
		free(s->parts[i].prefix);
	free(s->trailer);
	free(s);
}

int files_answer(struct vtp_ctx *ctx, const char *id, const char *name, struct file_answer *a)
{
	struct byte_range ranges[FILES_MAX_RANGES];
	struct file_stream *s = NULL;
	char etag[64];
	struct stat st;
	int ret = -1, n = -1;
	char *path = storage_path(&ctx->app->cfg, id, name);
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;

	a->bytes = 0;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0 || (errno != ENOENT && errno != ENOTDIR))
			log_error("recording %s: cannot open %s: %s", id, name, strerror(errno));
		goto out;
	}
	files_etag(&st, etag, sizeof etag);
	http_header(ctx, "ETag", "%s", etag);
	http_header(ctx, "Cache-Control", "%s", a->cache_control ? a->cache_control : "private, no-cache");
	if (files_etag_matches(http_param(ctx, "HTTP_IF_NONE_MATCH"), etag)) {
		ctx->resp.status = 304;
		ret = 0;
		goto out;
	}
	if (a->ranges) {
		http_header(ctx, "Accept-Ranges", "bytes");
		const char *range = http_param(ctx, "HTTP_RANGE");
		n = range ? files_parse_range(range, (long long)st.st_size, ranges) : -1;
		if (n == 0) {
			http_problem(ctx, 416, "range_not_satisfiable",
				     "no range of the Range header lies within the file's %lld bytes",
				     (long long)st.st_size);
			http_header(ctx, "Content-Range", "bytes */%lld", (long long)st.st_size);
			ret = 0;
			goto out;
		}
	}
	a->bytes = (long long)st.st_size;
	if (n > 0) {
		a->bytes = 0;
		for (int i = 0; i < n; i++)
			a->bytes += ranges[i].last - ranges[i].first + 1;
	}
	if (a->disposition)
		http_header(ctx, "Content-Disposition", "%s", a->disposition);

	/* The web server sends the file (and answers Range itself, as above). */
	const char *accel = http_param(ctx, FILES_ACCEL_PARAM), *sendfile = http_param(ctx, FILES_SENDFILE_PARAM);
	if ((accel && accel[0] == '/') || (sendfile && strcasecmp(sendfile, "on") == 0)) {
		http_header(ctx, "Content-Type", "%s", a->content_type);
		if (accel && accel[0] == '/')
			http_header(ctx, "X-Accel-Redirect", "%s%s%s/%s", accel,
				    accel[strlen(accel) - 1] == '/' ? "" : "/", id, name);
		else
			http_header(ctx, "X-Sendfile", "%s", path);
		ctx->resp.status = 200;
		ret = 0;
		goto out;
	}

	s = xcalloc(1, sizeof *s);
	s->fd = fd;
	fd = -1;
	if (n <= 0) {
		ctx->resp.status = 200;
		http_header(ctx, "Content-Type", "%s", a->content_type);
		s->count = 1;
		s->parts[0].off = 0;
		s->parts[0].len = (long long)st.st_size;
	} else if (n == 1) {
		ctx->resp.status = 206;
		http_header(ctx, "Content-Type", "%s", a->content_type);
		http_header(ctx, "Content-Range", "bytes %lld-%lld/%lld", ranges[0].first, ranges[0].last,
			    (long long)st.st_size);
		s->count = 1;
		s->parts[0].off = ranges[0].first;
		s->parts[0].len = ranges[0].last - ranges[0].first + 1;
	} else {
		/* multipart/byteranges (RFC 9110 14.6): each part with its own
		 * Content-Type and Content-Range, after a boundary line. */
		char boundary[40];
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		snprintf(boundary, sizeof boundary, "vtp-%08lx%08lx", (unsigned long)now.tv_nsec,
			 (unsigned long)now.tv_sec ^ (unsigned long)st.st_ino);
		ctx->resp.status = 206;
		http_header(ctx, "Content-Type", "multipart/byteranges; boundary=%s", boundary);
		s->count = n;
		for (int i = 0; i < n; i++) {
			s->parts[i].off = ranges[i].first;
			s->parts[i].len = ranges[i].last - ranges[i].first + 1;
			s->parts[i].prefix = xasprintf("%s--%s\r\nContent-Type: %s\r\nContent-Range: bytes %lld-%lld/%lld\r\n\r\n",
						       i ? "\r\n" : "", boundary, a->content_type, ranges[i].first,
						       ranges[i].last, (long long)st.st_size);
		}
		s->trailer = xasprintf("\r\n--%s--\r\n", boundary);
	}
	for (int i = 0; i < s->count; i++)
		ctx->resp.stream_len += s->parts[i].len + (s->parts[i].prefix ? (long long)strlen(s->parts[i].prefix) : 0);
	ctx->resp.stream_len += s->trailer ? (long long)strlen(s->trailer) : 0;
	vtp_buf_reset(&ctx->resp.body);
	ctx->resp.stream = stream_parts;
	ctx->resp.stream_free = stream_free;
	ctx->resp.stream_arg = s;
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return ret;
}
