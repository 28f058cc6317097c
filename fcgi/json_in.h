/* json_in.h: strict parsing and field checking of JSON request bodies. */
#ifndef VTP_JSON_IN_H
#define VTP_JSON_IN_H

#include "http.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#define JSON_IN_MAX_DEPTH 16

enum json_field_type { FIELD_STRING, FIELD_INTEGER, FIELD_NUMBER, FIELD_BOOLEAN, FIELD_OBJECT, FIELD_ARRAY };

struct json_field {
	const char *name;
	enum json_field_type type;
	bool required;
};

/* Parses body as exactly one JSON object with finite numbers and no NUL in
 * any string. Returns it (caller json_object_put()s) or NULL after answering
 * 400 invalid_json (or 422 invalid_value for a NUL) on ctx. */
json_object *json_in_parse(struct vtp_ctx *ctx, const char *body, size_t len);

/* Checks obj against spec (n fields): no unknown fields (400 unknown_field), each
 * of its type (400 invalid_type; null counts as absent only for optional
 * fields), required ones present (422 missing_field). where names obj in
 * messages ("" for the top level, "source." for a nested object). Returns 0,
 * or -1 after answering on ctx. */
int json_in_check(struct vtp_ctx *ctx, json_object *obj, const struct json_field *spec, size_t n,
		  const char *where);

/* The field's value, or NULL when absent or null. */
json_object *json_in_get(json_object *obj, const char *name);

/* A string field's length in characters (UTF-8 code points). */
size_t json_in_utf8_length(const char *s);



/* Reads an optional string field as text of min..max characters with no
 * control characters (except CR, LF and tab when multiline). Sets *out
 * to the string (owned by obj) or NULL when absent. Returns 0, or -1 after
 * answering 422 invalid_value on ctx. Its type must already be checked. */
int json_in_text(struct vtp_ctx *ctx, json_object *obj, const char *name, const char *where, size_t min,
		 size_t max, bool multiline, const char **out);

#endif
