/* hls_names.c: the name checks of the stream endpoints (see hls_names.h), kept apart so they can be fuzzed. */
#include "hls_names.h"

#include <string.h>

bool valid_rendition(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 15 || s[0] == '-')
		return false;
	/* ASCII spelled out, not isalnum(): the answer must not depend on a locale. */
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

const char *segment_type(const char *s)
{
	if (strcmp(s, "init.mp4") == 0)
		return "video/mp4";
	if (strncmp(s, "seg_", 4) != 0 || strspn(s + 4, "0123456789") != 5)
		return NULL;
	if (strcmp(s + 9, ".m4s") == 0)
		return "video/mp4";
	if (strcmp(s + 9, ".ts") == 0)
		return "video/mp2t";
	return NULL;
}
