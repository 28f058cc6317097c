/* frames.h: grabbing single video frames of a recording's source with libav* (thumbnails, posters, storyboards). */
#ifndef VTP_FRAMES_H
#define VTP_FRAMES_H

#include <stddef.h>
#include <stdint.h>

/* A picture as packed 8-bit RGB (3 bytes a pixel, no row padding). */
struct rgb_image {
	int width, height;
	uint8_t *data; /* width * height * 3 bytes; owned */
};

void rgb_image_free(struct rgb_image *img);

struct frames;

/* Opens the main video stream of the media file at path, with the demuxers
 * that probe.c accepts. interrupt (may be NULL) stops long reads (libav's
 * AVIOInterruptCB callback and its opaque). Returns 0, or -1 with a readable
 * reason in err; a file without video is -1 with *no_video set. */
int frames_open(struct frames **out, const char *path, int (*interrupt)(void *), void *opaque, int *no_video,
		char *err, size_t err_size);
void frames_close(struct frames **f);

/* The source's duration in seconds (0 when unknown) and display size. */
double frames_duration(const struct frames *f);
void frames_size(const struct frames *f, int *width, int *height);

/* Decodes the frame shown at time t (seconds from the start; the last frame
 * when t is past it) and converts it to RGB of width x height (0 x 0: the
 * display size). Returns 0, or -1 with a reason in err. */
int frames_grab(struct frames *f, double t, int width, int height, struct rgb_image *out, char *err,
		size_t err_size);

/* Luma statistics of an image: mean and standard deviation (0..255). A poster
 * candidate is "blank" when dark, or near-uniform (black, white, one colour). */
void frames_luma_stats(const struct rgb_image *img, double *mean, double *stddev);
int frames_is_blank(const struct rgb_image *img);

#endif
