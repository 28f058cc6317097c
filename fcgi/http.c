/* http.c: building answers (problems, JSON), serialising them, and reading query strings. */
#include "http.h"

#include "../lib/db.h"
#include "app.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void utf8_sanitise(const char *s, struct vtp_buf *out);

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 503: return "Service Unavailable";
	default: return status >= 500 ? "Internal Server Error" : "Error";
	}
}

void http_header(struct vtp_ctx *ctx, const char *name, const char *fmt, ...)
{
	char value[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(value, sizeof value, fmt, ap);
	va_end(ap);
	/* A value never carries a line break: that would split the header block. */
	for (char *p = value; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	vtp_buf_printf(&ctx->resp.headers, "%s: %s\r\n", name, value);
}

static void set_body(struct vtp_ctx *ctx, int status, const char *content_type, json_object *body)
{
	ctx->resp.status = status;
	vtp_buf_reset(&ctx->resp.body);
	if (body) {
		size_t len;
		const char *s = json_object_to_json_string_length(
			body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
		vtp_buf_append(&ctx->resp.body, s, len);
		http_header(ctx, "Content-Type", "%s", content_type);
		json_object_put(body);
	}
}

void http_json(struct vtp_ctx *ctx, int status, json_object *body)
{
	set_body(ctx, status, "application/json; charset=utf-8", body);
}

void http_json_text(struct vtp_ctx *ctx, int status, struct vtp_buf *body)
{
	ctx->resp.status = status;
	vtp_buf_free(&ctx->resp.body);
	ctx->resp.body = *body; /* taken over, not copied */
	*body = (struct vtp_buf){0};
	vtp_buf_puts(&ctx->resp.headers, "Content-Type: application/json; charset=utf-8\r\n");
}

void http_problem(struct vtp_ctx *ctx, int status, const char *code, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("about:blank"));
	json_object_object_add(o, "title", json_object_new_string(http_reason(status)));
	json_object_object_add(o, "status", json_object_new_int(status));
	json_object_object_add(o, "code", json_object_new_string(code));
	struct vtp_buf clean = {0};
	utf8_sanitise(detail, &clean);
	json_object_object_add(o, "detail", json_object_new_string(clean.data ? clean.data : ""));
	vtp_buf_free(&clean);
	/* A problem replaces whatever headers a handler had prepared. */
	vtp_buf_reset(&ctx->resp.headers);
	if (status == 401)
		http_header(ctx, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
	if (status == 503)
		http_header(ctx, "Retry-After", "%ld", ctx->app ? ctx->app->cfg.retry_after_s : 5L);
	set_body(ctx, status, "application/problem+json", o);
}

PGresult *http_query(struct vtp_ctx *ctx, const char *sql, int nparams, const char *const *params)
{
	PGresult *res = NULL;
	enum vtp_db_status st = vtp_db_query(ctx->db, &res, sql, nparams, params);
	if (st == VTP_DB_UNAVAILABLE)
		http_problem(ctx, 503, "db_unavailable", "the database is unavailable; try again shortly");
	else if (st != VTP_DB_OK)
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
	return res;
}

bool http_has_body(const struct vtp_response *resp)
{
	return resp->status != 204 && resp->status != 304 && !resp->head_only;
}

void http_serialise_head(const struct vtp_response *resp, struct vtp_buf *out)
{
	/* snprintf into a line, not vtp_buf_printf: that formats twice, and this runs for every request. */
	char line[96];
	int n = snprintf(line, sizeof line, "Status: %d %s\r\n", resp->status, http_reason(resp->status));
	vtp_buf_append(out, line, (size_t)n);
	vtp_buf_append(out, resp->headers.data ? resp->headers.data : "", resp->headers.len);
	if (resp->status != 204 && resp->status != 304) {
		n = snprintf(line, sizeof line, "Content-Length: %lld\r\n", (long long)resp->body.len + resp->stream_len);
		vtp_buf_append(out, line, (size_t)n);
	}
	/* Answers are private and not stored, unless the handler said otherwise
	 * (images and files that carry an ETag). */
	if (!resp->headers.data || !strstr(resp->headers.data, "Cache-Control:"))
		vtp_buf_puts(out, "Cache-Control: no-store\r\n");
	vtp_buf_puts(out, "X-Content-Type-Options: nosniff\r\n\r\n");
}

void http_ctx_free(struct vtp_ctx *ctx)
{
	free(ctx->req.path);
	vtp_buf_free(&ctx->req.body);
	vtp_buf_free(&ctx->resp.headers);
	vtp_buf_free(&ctx->resp.body);
	free(ctx->param_storage);
	free(ctx->share);
	free(ctx->query_storage);
	memset(ctx, 0, sizeof *ctx);
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes [s, s+len) into out ('+' is a space). Returns -1 when
 * malformed, decodes to a NUL byte, or does not fit. */
static int percent_decode(const char *s, size_t len, char *out, size_t out_size)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			if (i + 2 >= len)
				return -1;
			int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			i += 2;
			if (c == '\0')
				return -1;
		}
		if (n + 1 >= out_size)
			return -1;
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

/* The length of the well-formed UTF-8 character at s (1 to 4), or 0 when
 * it is not one (overlong forms, surrogates, past U+10FFFF, cut short). */
static size_t utf8_char_length(const unsigned char *s)
{
	unsigned c = s[0];
	size_t n;
	unsigned min;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0)
		n = 1, min = 0x80, c &= 0x1f;
	else if ((c & 0xf0) == 0xe0)
		n = 2, min = 0x800, c &= 0x0f;
	else if ((c & 0xf8) == 0xf0)
		n = 3, min = 0x10000, c &= 0x07;
	else
		return 0;
	for (size_t i = 1; i <= n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return n + 1;
}

/* PostgreSQL and JSON parsers refuse anything but well-formed UTF-8. */
static bool valid_utf8(const unsigned char *s)
{
	for (size_t n; *s; s += n)
		if ((n = utf8_char_length(s)) == 0)
			return false;
	return true;
}

/* Copies s into out as well-formed UTF-8: a byte that starts no valid
 * character becomes U+FFFD. Problem details quote what clients sent. */
static void utf8_sanitise(const char *s, struct vtp_buf *out)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t n; *p; p += n ? n : 1) {
		n = utf8_char_length(p);
		if (n)
			vtp_buf_append(out, p, n);
		else
			vtp_buf_puts(out, "\xef\xbf\xbd");
	}
}

int http_query_get(const char *query, const char *name, char *out, size_t out_size)
{
	size_t name_len = strlen(name);
	const char *p = query ? query : "";
	while (*p) {
		const char *end = strchr(p, '&');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t key_len = eq ? (size_t)(eq - p) : len;
		if (key_len == name_len && memcmp(p, name, name_len) == 0) {
			const char *v = eq ? eq + 1 : p + len;
			size_t vlen = (size_t)(p + len - v);
			if (percent_decode(v, vlen, out, out_size) < 0 || !valid_utf8((const unsigned char *)out))
				return -1;
			return 1;
		}
		p += len;
		if (*p == '&')
			p++;
	}
	return 0;
}

char *http_query_check(const char *query, const char *const *allowed)
{
	const char *p = query ? query : "";
	size_t seen = 0; /* bit i: allowed[i] was given */
	while (*p) {
		const char *end = strchr(p, '&');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t key_len = eq ? (size_t)(eq - p) : len;
		if (key_len > 0) {
			size_t i = 0;
			while (allowed[i] && !(strlen(allowed[i]) == key_len && memcmp(allowed[i], p, key_len) == 0))
				i++;
			if (!allowed[i])
				return xasprintf("unknown query parameter \"%.*s\"", (int)(key_len > 64 ? 64 : key_len), p);
			if (seen & ((size_t)1 << i))
				return xasprintf("query parameter \"%s\" is given more than once", allowed[i]);
			seen |= (size_t)1 << i;
		}
		p += len;
		if (*p == '&')
			p++;
	}
	return NULL;
}

int http_query_only(struct vtp_ctx *ctx, const char *const *allowed)
{
	char *bad = http_query_check(ctx->req.query, allowed);
	if (!bad)
		return 0;
	http_problem(ctx, 400, "invalid_query", "%s", bad);
	free(bad);
	return -1;
}

int http_query_filter(struct vtp_ctx *ctx, const char *name, char *buf, size_t size)
{
	int found = http_query_get(ctx->req.query, name, buf, size);
	if (found < 0) {
		http_problem(ctx, 400, "invalid_query", "query parameter %s is malformed or longer than %zu bytes", name,
			     size - 1);
		return -1;
	}
	return found == 1 && buf[0] != '\0';
}

int http_query_limit(struct vtp_ctx *ctx, long *limit)
{
	char text[16], *end;
	int given = http_query_filter(ctx, "limit", text, sizeof text);
	*limit = 20;
	if (given <= 0)
		return given;
	errno = 0;
	*limit = strtol(text, &end, 10);
	if (errno || *end || end == text || *limit < 1 || *limit > 100) {
		http_problem(ctx, 400, "invalid_query", "limit must be an integer from 1 to 100");
		return -1;
	}
	return 0;
}

void http_page(struct vtp_ctx *ctx, json_object *items, const char *next_cursor)
{
	json_object *page = json_object_new_object();
	json_object_object_add(page, "items", items);
	json_object_object_add(page, "next_cursor", next_cursor ? json_object_new_string(next_cursor) : NULL);
	http_json(ctx, 200, page);
}
