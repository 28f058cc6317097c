/* fuzz_sdp.c: libFuzzer target for the SDP check of POST /recordings/start (fcgi/sdp.c), against a second, plain reading of its rules. */
#include "fcgi/sdp.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The rules of sdp.h read another way: cut the text into lines at every CR
 * or LF, and look at each line on its own. */
static bool acceptable(const char *sdp, size_t len)
{
	if (len > MAX_SDP_BYTES)
		return false;
	if (strncmp(sdp, "v=0\r\n", 5) != 0 && strncmp(sdp, "v=0\n", 4) != 0)
		return false;
	bool media = false;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && sdp[i] != '\r' && sdp[i] != '\n')
			continue;
		size_t n = i - start;
		const char *line = sdp + start;
		start = i + 1;
		if (n == 0)
			continue;
		if (n < 2 || !(line[0] >= 'a' && line[0] <= 'z') || line[1] != '=')
			return false;
		media = media || line[0] == 'm';
	}
	return media;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The API hands over a C string (JSON strings with \u0000 are refused
	 * before): the input up to its first NUL. */
	char *sdp = malloc(size + 1);
	memcpy(sdp, data, size);
	sdp[size] = '\0';
	size_t len = strlen(sdp);
	const char *why = sdp_problem(sdp);
	if ((why == NULL) != acceptable(sdp, len))
		abort();
	/* A reason completes "source.sdp ..." in a problem detail: one short line. */
	if (why && (strlen(why) == 0 || strlen(why) > 80 || strpbrk(why, "\r\n\"")))
		abort();
	free(sdp);
	return 0;
}
