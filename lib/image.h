/* image.h: thumbnail parameters, their output geometry and cache names, and rendering with MagickWand 6. */
#ifndef VTP_IMAGE_H
#define VTP_IMAGE_H

#include "frames.h"

#include <stdbool.h>
#include <stddef.h>

/* Largest width or height of a rendered thumbnail. */
#define IMAGE_MAX_SIDE 1920

enum image_fit { IMAGE_FIT_PRESERVE, IMAGE_FIT_CROP, IMAGE_FIT_PAD };
enum image_format { IMAGE_JPG, IMAGE_WEBP, IMAGE_PNG };

/* "preserve"/"crop"/"pad" and "jpg"/"webp"/"png"; -1 for anything else. */
int image_fit_parse(const char *s);
int image_format_parse(const char *s);
const char *image_fit_name(enum image_fit fit);
const char *image_format_ext(enum image_format fmt);
const char *image_format_mime(enum image_format fmt);

/* What a request for width x height (0: not given) with fit makes of a
 * src_w x src_h picture: a canvas of out_w x out_h, on which the picture,
 * scaled to scaled_w x scaled_h, sits at (x, y) (negative when cropped).
 *   - neither given: the picture's own size, shrunk to fit IMAGE_MAX_SIDE;
 *   - one given: the other follows the picture's aspect (fit makes no
 *     difference), shrunk to fit IMAGE_MAX_SIDE;
 *   - both, preserve: the largest size with the picture's aspect inside the box;
 *   - both, crop: exactly the box, filled, the overflow cut evenly;
 *   - both, pad: exactly the box, the picture centred inside, black bars. */
struct image_geometry {
	int out_w, out_h;
	int scaled_w, scaled_h;
	int x, y;
};
void image_geometry(int src_w, int src_h, int req_w, int req_h, enum image_fit fit, struct image_geometry *g);

/* The cache file of a thumbnail inside the recording's folder:
 * "thumbs/t1500-320x180-crop.webp" (the poster is the picture at its time;
 * time_ms < 0 gives "thumbs/auto-..."). */
void image_cache_name(char *out, size_t size, long long time_ms, int width, int height, enum image_fit fit,
		      enum image_format fmt);

/* Starts MagickWand once per process, with resource limits that keep many
 * renders at once within bounds (one thread each, memory capped). */
void image_init(void);

/* Renders img as a thumbnail per geometry and format into a new encoded
 * blob (*data, *len; the caller frees it). Returns 0 or -1 with err. */
int image_encode(const struct rgb_image *img, int req_w, int req_h, enum image_fit fit, enum image_format fmt,
		 unsigned char **data, size_t *len, char *err, size_t err_size);

/* Lays tiles (count images of tile_w x tile_h) out in columns, left to
 * right then top to bottom, on one JPEG sprite. Returns 0 or -1 with err. */
int image_sprite(const struct rgb_image *tiles, int count, int columns, int tile_w, int tile_h,
		 unsigned char **data, size_t *len, char *err, size_t err_size);

/* Writes data to path through a temporary file in the same folder and a
 * rename, so readers see the old file or the whole new one. When running as
 * root (a test, or a worker started by root) the file gets the owner of
 * its folder, so the API and the web server can read it. Returns 0 or -1
 * with errno. */
int image_save(const char *path, const void *data, size_t len);
/* mkdir path (0750; an existing folder is fine), owned like its parent when root. */
int image_mkdir(const char *path);

/* `vtp-api --render-thumbnail SOURCE OUT TIME WIDTH HEIGHT FIT FORMAT`: the
 * cold-render helper the API runs as a child process (fcgi/thumbnail.c).
 * Returns the exit status: 0 written, 1 failed (reason on stderr). */
int image_render_main(int argc, char **argv);

#endif
