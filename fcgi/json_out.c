/* json_out.c: JSON text written straight into a buffer (see json_out.h). */
#include "json_out.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void json_out_chars(struct vtp_buf *b, const char *s, size_t len)
{
	const char *end = s + len;
	while (s < end) {
		/* Runs of characters that need no escape are copied at once. */
		const char *run = s;
		while (s < end && *s != '"' && *s != '\\' && (unsigned char)*s >= 0x20)
			s++;
		vtp_buf_append(b, run, (size_t)(s - run));
		if (s == end)
			break;
		char esc[8];
		switch (*s) {
		case '"': snprintf(esc, sizeof esc, "\\\""); break;
		case '\\': snprintf(esc, sizeof esc, "\\\\"); break;
		case '\b': snprintf(esc, sizeof esc, "\\b"); break;
		case '\f': snprintf(esc, sizeof esc, "\\f"); break;
		case '\n': snprintf(esc, sizeof esc, "\\n"); break;
		case '\r': snprintf(esc, sizeof esc, "\\r"); break;
		case '\t': snprintf(esc, sizeof esc, "\\t"); break;
		default: snprintf(esc, sizeof esc, "\\u%04x", (unsigned)(unsigned char)*s); break;
		}
		vtp_buf_puts(b, esc);
		s++;
	}
}

#define MAX_KEY 60

/* Writes ,"key": (the comma unless b ends an opening { or [) into out, which
 * has room for key and 4 more bytes; returns the length. */
static size_t key_text(const struct vtp_buf *b, const char *key, char *out)
{
	size_t n = 0, len = strnlen(key, MAX_KEY); /* keys are short literals, never cut in practice */
	char last = b->len ? b->data[b->len - 1] : '{';
	if (last != '{' && last != '[')
		out[n++] = ',';
	out[n++] = '"';
	memcpy(out + n, key, len);
	n += len;
	out[n++] = '"';
	out[n++] = ':';
	return n;
}

void json_out_key(struct vtp_buf *b, const char *key)
{
	char text[MAX_KEY + 4];
	vtp_buf_append(b, text, key_text(b, key, text));
}

void json_out_string(struct vtp_buf *b, const char *key, const char *s)
{
	/* One append for ,"key":" rather than four: this runs for every member. */
	char text[MAX_KEY + 8];
	size_t n = key_text(b, key, text);
	if (!s) {
		memcpy(text + n, "null", 4);
		vtp_buf_append(b, text, n + 4);
		return;
	}
	text[n++] = '"';
	vtp_buf_append(b, text, n);
	json_out_chars(b, s, strlen(s));
	vtp_buf_append(b, "\"", 1);
}

void json_out_raw(struct vtp_buf *b, const char *key, const char *json, const char *fallback)
{
	json_out_key(b, key);
	if (!json) {
		vtp_buf_puts(b, fallback);
		return;
	}
	/* PostgreSQL writes "a" : 1, {...}, \n {...}; json-c wrote none of that
	 * space, and the answers stay as they were. Inside strings every byte
	 * is kept (an escaped quote does not end one). Runs are appended whole. */
	const char *p = json, *run = json;
	bool in_string = false;
	for (; *p; p++) {
		char c = *p;
		if (in_string) {
			if (c == '\\' && p[1])
				p++;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
			vtp_buf_append(b, run, (size_t)(p - run));
			run = p + 1;
		}
	}
	vtp_buf_append(b, run, (size_t)(p - run));
}
