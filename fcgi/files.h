/* files.h: answering with a file of a recording's folder: ETag and If-None-Match, single and multiple byte
 * ranges, delivered by the web server (nginx X-Accel-Redirect, Apache X-Sendfile) or streamed by vtp-api. */
#ifndef VTP_FILES_H
#define VTP_FILES_H

#include "http.h"

#include <stdbool.h>
#include <sys/stat.h>

/* The web server tells vtp-api how it can deliver files, per request:
 *   nginx:  fastcgi_param VTP_X_ACCEL_REDIRECT /_vtp_storage/;  (an internal location aliasing STORAGE_PATH)
 *   Apache: SetEnv VTP_X_SENDFILE on                            (mod_xsendfile with XSendFilePath STORAGE_PATH)
 * Without either, vtp-api streams the file itself. */
#define FILES_ACCEL_PARAM "VTP_X_ACCEL_REDIRECT"
#define FILES_SENDFILE_PARAM "VTP_X_SENDFILE"

/* The validator of a file as nginx's static module makes it ("mtime-size" in
 * hex, quoted), so an answer delivered by nginx carries the same ETag. */
void files_etag(const struct stat *st, char *out, size_t size);

/* True when an If-None-Match header value names etag (or is "*"); weak
 * validators ("W/...") compare equal to strong ones. */
bool files_etag_matches(const char *if_none_match, const char *etag);

/* One byte range, first and last included. */
struct byte_range {
	long long first, last;
};
#define FILES_MAX_RANGES 16

/* Parses a Range header value for a file of size bytes (RFC 9110 14.1.2):
 * "bytes=" then ranges "a-b", "a-" or "-n" (suffix). Returns the number of
 * satisfiable ranges put in out (at most FILES_MAX_RANGES), 0 when none is
 * satisfiable or the set is malformed (416, as nginx answers), or -1 when
 * the unit is not "bytes" or there are more than FILES_MAX_RANGES ranges
 * (ignored: the whole file is sent). Overlapping or adjacent ranges are
 * merged, in ascending order. */
int files_parse_range(const char *header, long long size, struct byte_range *out);

struct file_answer {
	const char *content_type;
	const char *disposition; /* Content-Disposition value, or NULL */
	const char *cache_control; /* e.g. "private, no-cache"; NULL: "private, no-cache" */
	bool ranges;		   /* honour Range (downloads) */
	long long bytes;	   /* out: bytes of the file in the answer (0 for 304) */
};

/* Answers with the file name of recording id: 304 when If-None-Match
 * matches, 206/416 for ranges, else 200; through the web server where it
 * said it can, else streamed. Returns 0, or -1 when the file is missing
 * (nothing answered) or after answering 500. */
int files_answer(struct vtp_ctx *ctx, const char *id, const char *name, struct file_answer *a);

#endif
