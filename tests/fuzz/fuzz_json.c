/* fuzz_json.c: libFuzzer target for strict JSON body parsing and field checks, as POST /recordings/start uses them. */
#include "fcgi/json_in.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct json_field spec[] = {
		{"title", FIELD_STRING, true},	      {"room_id", FIELD_STRING, true},
		{"source", FIELD_OBJECT, true},	      {"retention_days", FIELD_INTEGER, false},
		{"profiles", FIELD_ARRAY, false},     {"ratio", FIELD_NUMBER, false},
	};
	struct vtp_ctx ctx = {0};
	json_object *body = json_in_parse(&ctx, (const char *)data, size);
	if (body && json_in_check(&ctx, body, spec, sizeof spec / sizeof spec[0], "") == 0) {
		const char *text;
		(void)json_in_text(&ctx, body, "title", "", 1, 200, false, &text);
	}
	if (body)
		json_object_put(body);
	http_ctx_free(&ctx);
	return 0;
}
