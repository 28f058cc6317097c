/* hls_names.h: which rendition folder and segment names of a recording's hls/ folder the stream URLs may open. */
#ifndef VTP_HLS_NAMES_H
#define VTP_HLS_NAMES_H

#include <stdbool.h>

/* A rendition folder name as the transcode job writes it (worker/hls.h):
 * 1 to 15 ASCII letters, digits, '_' or '-', not starting with '-'. So never
 * a '/', a '.' or an empty name. */
bool valid_rendition(const char *s);

/* The Content-Type of a segment name the transcode job writes: init.mp4,
 * seg_NNNNN.m4s (video/mp4) or seg_NNNNN.ts (video/mp2t), with exactly five
 * digits; NULL for any other name (nothing else is served). */
const char *segment_type(const char *s);

#endif
