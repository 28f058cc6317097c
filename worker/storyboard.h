/* storyboard.h: the storyboard's layout (tile interval, size, grid) and its WebVTT track, as pure functions. */
#ifndef VTP_STORYBOARD_H
#define VTP_STORYBOARD_H

#include "../lib/mem.h"

#define STORYBOARD_COLUMNS 10
#define STORYBOARD_TILE_W 160
#define STORYBOARD_MAX_TILES 100

struct storyboard_layout {
	double duration_s;
	double interval_s; /* each tile covers this long (the last one up to the end) */
	int count;	   /* tiles */
	int columns, rows;
	int tile_w, tile_h;
};

/* Layout for a source of duration_s seconds and src_w x src_h pixels: the
 * interval is the smallest of a list of round values that needs at most
 * STORYBOARD_MAX_TILES tiles (so 50 to 100 for all but short sources);
 * tiles STORYBOARD_TILE_W wide (portrait: that high) with the source's
 * aspect. Returns 0, or -1 when duration_s is not positive. */
int storyboard_layout(double duration_s, int src_w, int src_h, struct storyboard_layout *l);

/* Start and end of tile i in milliseconds: consecutive tiles share their
 * boundary, the first starts at 0 and the last ends at the duration. */
void storyboard_tile_span(const struct storyboard_layout *l, int i, long long *start_ms, long long *end_ms);

/* Appends the WebVTT track: one cue per tile, "image#xywh=x,y,w,h". */
void storyboard_vtt(const struct storyboard_layout *l, const char *image, struct vtp_buf *out);

#endif
