/* json_in.c: json-c in strict mode plus the checks it leaves to us (trailing bytes, types, NaN). */
#include "json_in.h"

#include <math.h>
#include <string.h>

/* json-c accepts NaN and Infinity even in strict mode. */
static bool has_non_finite(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_double: return !isfinite(json_object_get_double(v));
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (has_non_finite(json_object_array_get_idx(v, i)))
				return true;
		return false;
	case json_type_object: {
		json_object_object_foreach(v, key, val)
		{
			(void)key;
			if (val && has_non_finite(val))
				return true;
		}
		return false;
	}
	default: return false;
	}
}

/* Scans text already parsed as JSON for the escape \u0000. In valid JSON a
 * backslash only starts an escape inside a string, so no string state is needed. */
static bool has_escaped_nul(const char *text, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (text[i] == '\\') {
			if (i + 5 < len && text[i + 1] == 'u' && memcmp(text + i + 2, "0000", 4) == 0)
				return true;
			i++; /* skip the escaped character, which may be a backslash */
		}
	return false;
}

json_object *json_in_parse(struct vtp_ctx *ctx, const char *body, size_t len)
{
	json_tokener *tok = json_tokener_new_ex(JSON_IN_MAX_DEPTH);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	json_object *obj = NULL;
	if (len == 0) {
		http_problem(ctx, 400, "invalid_json", "the request body is empty; a JSON object is expected");
		goto out;
	}
	if (memchr(body, '\0', len)) {
		http_problem(ctx, 400, "invalid_json", "the request body contains a NUL byte");
		goto out;
	}
	obj = json_tokener_parse_ex(tok, body, (int)len);
	enum json_tokener_error err = json_tokener_get_error(tok);
	if (!obj) {
		const char *why = err == json_tokener_continue ? "unexpected end of input" : json_tokener_error_desc(err);
		http_problem(ctx, 400, "invalid_json", "the request body is not valid JSON: %s at byte %zu", why,
			     json_tokener_get_parse_end(tok));
		goto out;
	}
	/* Strict mode still stops at the end of the first value: anything but
	 * whitespace after it is garbage. */
	for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
		if (!strchr(" \t\r\n", body[i])) {
			http_problem(ctx, 400, "invalid_json", "unexpected data after the JSON value at byte %zu", i);
			json_object_put(obj);
			obj = NULL;
			goto out;
		}
	if (!json_object_is_type(obj, json_type_object)) {
		http_problem(ctx, 400, "invalid_json", "the request body must be a JSON object");
	} else if (has_non_finite(obj)) {
		http_problem(ctx, 400, "invalid_json", "NaN and Infinity are not JSON numbers");
	} else if (has_escaped_nul(body, len)) {
		/* json-c keeps C strings: a key or value would be cut at the NUL. */
		http_problem(ctx, 422, "invalid_value", "strings must not contain NUL characters (\\u0000)");
	} else {
		goto out;
	}
	json_object_put(obj);
	obj = NULL;
out:
	json_tokener_free(tok);
	return obj;
}

static const char *type_name(enum json_field_type t)
{
	switch (t) {
	case FIELD_STRING: return "a string";
	case FIELD_INTEGER: return "an integer";
	case FIELD_NUMBER: return "a number";
	case FIELD_BOOLEAN: return "a boolean";
	case FIELD_OBJECT: return "an object";
	case FIELD_ARRAY: return "an array";
	}
	return "?";
}

static bool has_type(json_object *v, enum json_field_type t)
{
	switch (t) {
	case FIELD_STRING: return json_object_is_type(v, json_type_string);
	case FIELD_INTEGER: return json_object_is_type(v, json_type_int);
	case FIELD_NUMBER:
		/* json-c accepts NaN and Infinity even in strict mode. */
		return json_object_is_type(v, json_type_int) ||
		       (json_object_is_type(v, json_type_double) && isfinite(json_object_get_double(v)));
	case FIELD_BOOLEAN: return json_object_is_type(v, json_type_boolean);
	case FIELD_OBJECT: return json_object_is_type(v, json_type_object);
	case FIELD_ARRAY: return json_object_is_type(v, json_type_array);
	}
	return false;
}

int json_in_check(struct vtp_ctx *ctx, json_object *obj, const struct json_field *spec, size_t n, const char *where)
{
	json_object_object_foreach(obj, key, val)
	{
		const struct json_field *f = NULL;
		for (size_t i = 0; i < n; i++)
			if (strcmp(spec[i].name, key) == 0)
				f = &spec[i];
		if (!f) {
			http_problem(ctx, 400, "unknown_field", "unknown field \"%s%.64s\"", where, key);
			return -1;
		}
		if (val == NULL && !f->required)
			continue;
		if (val == NULL || !has_type(val, f->type)) {
			http_problem(ctx, 400, "invalid_type", "field \"%s%s\" must be %s", where, key,
				     type_name(f->type));
			return -1;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (spec[i].required && !json_object_object_get_ex(obj, spec[i].name, NULL)) {
			http_problem(ctx, 422, "missing_field", "field \"%s%s\" is required", where, spec[i].name);
			return -1;
		}
	return 0;
}

json_object *json_in_get(json_object *obj, const char *name)
{
	json_object *v = NULL;
	if (!json_object_object_get_ex(obj, name, &v))
		return NULL;
	return v;
}

size_t json_in_utf8_length(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

int json_in_text(struct vtp_ctx *ctx, json_object *obj, const char *name, const char *where, size_t min,
		 size_t max, bool multiline, const char **out)
{
	json_object *v = json_in_get(obj, name);
	*out = NULL;
	if (!v)
		return 0;
	const char *s = json_object_get_string(v);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p < 0x20 || *p == 0x7f) && !(multiline && (*p == '\r' || *p == '\n' || *p == '\t'))) {
			http_problem(ctx, 422, "invalid_value", "field \"%s%s\" contains a control character", where,
				     name);
			return -1;
		}
	size_t chars = json_in_utf8_length(s);
	if (chars < min || chars > max) {
		http_problem(ctx, 422, "invalid_value", "field \"%s%s\" must be %zu to %zu characters long", where,
			     name, min, max);
		return -1;
	}
	*out = s;
	return 0;
}
