/* sdp.c: checks an SDP given as a recording's source before a job is queued for it (see sdp.h). */
#include "sdp.h"

#include <stdbool.h>
#include <string.h>

#define TEXT(x) #x
#define NUMBER_TEXT(x) TEXT(x) /* the value of a macro, as a string literal */

const char *sdp_problem(const char *sdp)
{
	if (strlen(sdp) > MAX_SDP_BYTES)
		return "is larger than " NUMBER_TEXT(MAX_SDP_BYTES) " bytes";
	if (strncmp(sdp, "v=0\r\n", 5) != 0 && strncmp(sdp, "v=0\n", 4) != 0)
		return "must start with the line v=0";
	bool media = false;
	for (const char *line = sdp; *line;) {
		size_t len = strcspn(line, "\r\n");
		/* ASCII letters spelled out: islower() would follow the locale. */
		if (len > 0) {
			if (len < 2 || line[0] < 'a' || line[0] > 'z' || line[1] != '=')
				return "has a line that is not of the form x=value";
			if (line[0] == 'm')
				media = true;
		}
		line += len;
		while (*line == '\r' || *line == '\n')
			line++;
	}
	return media ? NULL : "has no m= (media) line";
}
