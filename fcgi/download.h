/* download.h: the pure parts of downloads: a safe file name from a title (RFC 6266 Content-Disposition) and
 * which file a rendition names. */
#ifndef VTP_DOWNLOAD_H
#define VTP_DOWNLOAD_H

#include "../lib/mem.h"

#include <stddef.h>

/* The file name offered for a recording titled title with extension ext:
 * into utf8 the title with characters that mean something to file systems
 * or headers (/ \ : * ? " < > | ; % and controls) turned into spaces, white
 * space collapsed, no leading dot, at most 120 bytes, never empty
 * ("recording"); into ascii the same with non-ASCII characters as '_'. */
void download_filename(const char *title, const char *ext, struct vtp_buf *utf8, struct vtp_buf *ascii);

/* `attachment; filename="<ascii>"; filename*=UTF-8''<utf8, percent-encoded>` (RFC 6266, RFC 8187). */
void download_disposition(const char *title, const char *ext, struct vtp_buf *out);

/* The name inside the recording's folder of rendition ("original": the
 * source file; a rendition name: mp4/<name>.mp4). Returns 0, or -1 when the
 * rendition cannot name a file. */
int download_rendition_file(const char *rendition, const char *source_file, char *name, size_t size);

#endif
