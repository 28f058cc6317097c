/* json_out.h: writing JSON text straight into a buffer, for answers too frequent to build as json-c objects. */
#ifndef VTP_JSON_OUT_H
#define VTP_JSON_OUT_H

#include "../lib/mem.h"

#include <stddef.h>

/* Appends len bytes of s as the inside of a JSON string, escaped as json-c
 * escapes them with JSON_C_TO_STRING_NOSLASHESCAPE (so both writers give the
 * same text). s must be UTF-8, as PostgreSQL's text always is. */
void json_out_chars(struct vtp_buf *b, const char *s, size_t len);

/* Appends "key": after a comma unless the buffer ends an opening { or [.
 * key is a literal of at most 60 bytes that needs no escaping. */
void json_out_key(struct vtp_buf *b, const char *key);

/* Appends "key": and s as a JSON string, or null when s is NULL. */
void json_out_string(struct vtp_buf *b, const char *key, const char *s);

/* Appends "key": and json, text that is JSON already (from PostgreSQL's
 * json/jsonb output, or a number), without the whitespace outside its strings;
 * NULL appends fallback instead (e.g. "null" or "[]"). */
void json_out_raw(struct vtp_buf *b, const char *key, const char *json, const char *fallback);

#endif
