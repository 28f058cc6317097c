/* fuzz_route.c: libFuzzer target for the path matcher (every row of the route table) and query-string parsing. */
#include "fcgi/http.h"
#include "fcgi/router.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Input: a path, then optionally '?' and a query string. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	char *query = strchr(text, '?');
	if (query)
		*query++ = '\0';
	for (size_t i = 0; i < vtp_routes_count; i++) {
		const char *params[HTTP_MAX_PARAMS] = {0};
		char *storage = NULL;
		if (route_match(vtp_routes[i].pattern, text, params, &storage)) {
			for (int p = 0; p < HTTP_MAX_PARAMS && params[p]; p++)
				(void)route_is_uuid(params[p]);
			free(storage);
		}
	}
	if (query) {
		static const char *const allowed[] = {"status", "room_id", "owner_id", "q", "limit", "cursor", NULL};
		char value[64];
		free(http_query_check(query, allowed));
		for (int i = 0; allowed[i]; i++)
			(void)http_query_get(query, allowed[i], value, sizeof value);
	}
	free(text);
	return 0;
}
