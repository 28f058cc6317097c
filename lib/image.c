/* image.c: thumbnail parameters, their output geometry and cache names, and rendering with MagickWand 6. */
#include "image.h"

#include "mem.h"

/* ImageMagick 6's headers declare functions without prototypes. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <wand/MagickWand.h>
#pragma GCC diagnostic pop

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const fit_names[] = {"preserve", "crop", "pad"};
static const char *const format_exts[] = {"jpg", "webp", "png"};
static const char *const format_mimes[] = {"image/jpeg", "image/webp", "image/png"};
static const char *const format_magick[] = {"JPEG", "WEBP", "PNG"};

/* Quality of JPEG and WebP output: small files, no visible blocks at thumbnail sizes. */
#define IMAGE_QUALITY 82

int image_fit_parse(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(s, fit_names[i]) == 0)
			return i;
	return -1;
}

int image_format_parse(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(s, format_exts[i]) == 0)
			return i;
	return strcmp(s, "jpeg") == 0 ? IMAGE_JPG : -1;
}

const char *image_fit_name(enum image_fit fit)
{
	return fit_names[fit];
}

const char *image_format_ext(enum image_format fmt)
{
	return format_exts[fmt];
}

const char *image_format_mime(enum image_format fmt)
{
	return format_mimes[fmt];
}

static int at_least_1(double v)
{
	long r = lround(v);
	return r < 1 ? 1 : r > 100000 ? 100000 : (int)r;
}

/* w x h shrunk (aspect kept) to fit IMAGE_MAX_SIDE on both sides. */
static void shrink_to_max(int *w, int *h)
{
	int big = *w > *h ? *w : *h;
	if (big <= IMAGE_MAX_SIDE)
		return;
	double s = (double)IMAGE_MAX_SIDE / big;
	*w = at_least_1(*w * s);
	*h = at_least_1(*h * s);
}

void image_geometry(int src_w, int src_h, int req_w, int req_h, enum image_fit fit, struct image_geometry *g)
{
	int w = src_w, h = src_h;
	memset(g, 0, sizeof *g);
	if (req_w > 0 && req_h > 0 && fit != IMAGE_FIT_PRESERVE) {
		double sx = (double)req_w / src_w, sy = (double)req_h / src_h;
		double s = fit == IMAGE_FIT_CROP ? fmax(sx, sy) : fmin(sx, sy);
		g->out_w = req_w;
		g->out_h = req_h;
		g->scaled_w = at_least_1(src_w * s);
		g->scaled_h = at_least_1(src_h * s);
		/* Rounding must not leave a one-pixel gap in a filled box. */
		if (fit == IMAGE_FIT_CROP) {
			g->scaled_w = g->scaled_w < req_w ? req_w : g->scaled_w;
			g->scaled_h = g->scaled_h < req_h ? req_h : g->scaled_h;
		} else {
			g->scaled_w = g->scaled_w > req_w ? req_w : g->scaled_w;
			g->scaled_h = g->scaled_h > req_h ? req_h : g->scaled_h;
		}
		g->x = (req_w - g->scaled_w) / 2;
		g->y = (req_h - g->scaled_h) / 2;
		return;
	}
	if (req_w > 0 && req_h > 0) {
		double s = fmin((double)req_w / src_w, (double)req_h / src_h);
		w = at_least_1(src_w * s);
		h = at_least_1(src_h * s);
		w = w > req_w ? req_w : w;
		h = h > req_h ? req_h : h;
	} else if (req_w > 0) {
		w = req_w;
		h = at_least_1((double)req_w * src_h / src_w);
	} else if (req_h > 0) {
		h = req_h;
		w = at_least_1((double)req_h * src_w / src_h);
	}
	shrink_to_max(&w, &h);
	g->out_w = g->scaled_w = w;
	g->out_h = g->scaled_h = h;
}

void image_cache_name(char *out, size_t size, long long time_ms, int width, int height, enum image_fit fit,
		      enum image_format fmt)
{
	if (time_ms < 0)
		snprintf(out, size, "thumbs/auto-%dx%d-%s.%s", width, height, fit_names[fit], format_exts[fmt]);
	else
		snprintf(out, size, "thumbs/t%lld-%dx%d-%s.%s", time_ms, width, height, fit_names[fit],
			 format_exts[fmt]);
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_magick(void)
{
	MagickWandGenesis();
	/* Debian's policy.xml already caps memory and area; these keep one
	 * render small whatever the policy says (they can only go lower). A
	 * render above the memory limit spills to the disk cache, and above
	 * the disk limit fails, rather than exhausting the machine. */
	MagickSetResourceLimit(ThreadResource, 1);
	MagickSetResourceLimit(MemoryResource, 128 * 1024 * 1024);
	MagickSetResourceLimit(MapResource, 256 * 1024 * 1024);
	MagickSetResourceLimit(DiskResource, 1024LL * 1024 * 1024);
	MagickSetResourceLimit(WidthResource, 16383);
	MagickSetResourceLimit(HeightResource, 16383);
}

void image_init(void)
{
	pthread_once(&init_once, init_magick);
}

/* Copies MagickWand's error into err and clears it. */
static void wand_error(MagickWand *wand, const char *what, char *err, size_t err_size)
{
	ExceptionType type;
	char *desc = wand ? MagickGetException(wand, &type) : NULL;
	snprintf(err, err_size, "%s: %s", what, desc && *desc ? desc : "image library error");
	if (desc)
		MagickRelinquishMemory(desc);
	if (wand)
		MagickClearException(wand);
}

/* Encodes wand as fmt into a new malloc'ed blob. */
static int encode(MagickWand *wand, enum image_format fmt, unsigned char **data, size_t *len, char *err,
		  size_t err_size)
{
	MagickStripImage(wand);
	if (MagickSetImageFormat(wand, format_magick[fmt]) == MagickFalse) {
		wand_error(wand, "cannot encode", err, err_size);
		return -1;
	}
	if (fmt != IMAGE_PNG)
		MagickSetImageCompressionQuality(wand, IMAGE_QUALITY);
	if (fmt == IMAGE_JPG)
		MagickSetInterlaceScheme(wand, PlaneInterlace); /* progressive */
	size_t n = 0;
	unsigned char *blob = MagickGetImageBlob(wand, &n);
	if (!blob || n == 0) {
		wand_error(wand, "cannot encode", err, err_size);
		if (blob)
			MagickRelinquishMemory(blob);
		return -1;
	}
	*data = xmalloc(n);
	memcpy(*data, blob, n);
	*len = n;
	MagickRelinquishMemory(blob);
	return 0;
}

int image_encode(const struct rgb_image *img, int req_w, int req_h, enum image_fit fit, enum image_format fmt,
		 unsigned char **data, size_t *len, char *err, size_t err_size)
{
	struct image_geometry g;
	MagickWand *wand = NULL;
	PixelWand *black = NULL;
	int ret = -1;

	image_init();
	image_geometry(img->width, img->height, req_w, req_h, fit, &g);
	wand = NewMagickWand();
	black = NewPixelWand();
	PixelSetColor(black, "black");
	if (MagickConstituteImage(wand, (size_t)img->width, (size_t)img->height, "RGB", CharPixel, img->data) ==
	    MagickFalse) {
		wand_error(wand, "cannot take the frame", err, err_size);
		goto out;
	}
	if ((g.scaled_w != img->width || g.scaled_h != img->height) &&
	    MagickResizeImage(wand, (size_t)g.scaled_w, (size_t)g.scaled_h, LanczosFilter, 1.0) == MagickFalse) {
		wand_error(wand, "cannot resize", err, err_size);
		goto out;
	}
	if (g.scaled_w != g.out_w || g.scaled_h != g.out_h) {
		/* One call for both: the extent is the canvas, placed so that
		 * the picture lands at (x, y); outside it, black bars (pad), and
		 * whatever overflows is cut (crop). */
		MagickSetImageBackgroundColor(wand, black);
		if (MagickExtentImage(wand, (size_t)g.out_w, (size_t)g.out_h, -g.x, -g.y) == MagickFalse) {
			wand_error(wand, "cannot crop or pad", err, err_size);
			goto out;
		}
		MagickSetImagePage(wand, (size_t)g.out_w, (size_t)g.out_h, 0, 0);
	}
	ret = encode(wand, fmt, data, len, err, err_size);
out:
	if (black)
		DestroyPixelWand(black);
	if (wand)
		DestroyMagickWand(wand);
	return ret;
}

int image_sprite(const struct rgb_image *tiles, int count, int columns, int tile_w, int tile_h,
		 unsigned char **data, size_t *len, char *err, size_t err_size)
{
	MagickWand *sheet = NULL, *tile = NULL;
	PixelWand *black = NULL;
	int ret = -1;
	int rows = (count + columns - 1) / columns;

	image_init();
	sheet = NewMagickWand();
	black = NewPixelWand();
	PixelSetColor(black, "black");
	if (MagickNewImage(sheet, (size_t)(tile_w * (count < columns ? count : columns)), (size_t)(tile_h * rows),
			   black) == MagickFalse) {
		wand_error(sheet, "cannot make the sprite", err, err_size);
		goto out;
	}
	for (int i = 0; i < count; i++) {
		if (!tiles[i].data)
			continue; /* left black: no frame there */
		tile = NewMagickWand();
		if (MagickConstituteImage(tile, (size_t)tiles[i].width, (size_t)tiles[i].height, "RGB", CharPixel,
					  tiles[i].data) == MagickFalse ||
		    ((tiles[i].width != tile_w || tiles[i].height != tile_h) &&
		     MagickResizeImage(tile, (size_t)tile_w, (size_t)tile_h, LanczosFilter, 1.0) == MagickFalse) ||
		    MagickCompositeImage(sheet, tile, OverCompositeOp, (ssize_t)(i % columns) * tile_w,
					 (ssize_t)(i / columns) * tile_h) == MagickFalse) {
			wand_error(tile, "cannot place a tile", err, err_size);
			goto out;
		}
		tile = DestroyMagickWand(tile);
	}
	ret = encode(sheet, IMAGE_JPG, data, len, err, err_size);
out:
	if (tile)
		DestroyMagickWand(tile);
	if (black)
		DestroyPixelWand(black);
	if (sheet)
		DestroyMagickWand(sheet);
	return ret;
}

/* When root, gives fd the owner of the folder at dir. */
static void own_like(int fd, const char *dir)
{
	struct stat st;
	if (geteuid() != 0 || stat(dir, &st) < 0)
		return;
	if (fchown(fd, st.st_uid, st.st_gid) < 0) {
		/* Best effort: the file stays root's. */
	}
}

int image_mkdir(const char *path)
{
	if (mkdir(path, 0750) < 0)
		return errno == EEXIST ? 0 : -1;
	char *parent = xstrdup(path);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		own_like(fd, dirname(parent));
		close(fd);
	}
	free(parent);
	return 0;
}

int image_save(const char *path, const void *data, size_t len)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	char *tmp = xasprintf("%s.tmp-%ld-%ld", path, (long)getpid(), (long)now.tv_nsec);
	char *dir = xstrdup(path);
	int fd = -1, ret = -1, saved;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd < 0)
		goto out;
	own_like(fd, dirname(dir));
	const char *p = data;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out;
		done += (size_t)n;
	}
	if (fsync(fd) < 0)
		goto out;
	if (close(fd) < 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto out;
	ret = 0;
out:
	saved = errno;
	if (fd >= 0)
		close(fd);
	if (ret < 0)
		unlink(tmp);
	free(tmp);
	free(dir);
	errno = saved;
	return ret;
}

/* A whole decimal number from min to max; -1 when not. */
static long parse_long(const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	return errno || end == s || *end || v < min || v > max ? -1 : v;
}

int image_render_main(int argc, char **argv)
{
	struct frames *f = NULL;
	struct rgb_image img = {0};
	unsigned char *data = NULL;
	size_t len = 0;
	char err[256] = "";
	int ret = 1, no_video;

	if (argc != 9) {
		fprintf(stderr, "usage: %s --render-thumbnail SOURCE OUT TIME_MS WIDTH HEIGHT FIT FORMAT\n", argv[0]);
		return 2;
	}
	long time_ms = parse_long(argv[4], 0, 1000L * 86400 * 365);
	long w = parse_long(argv[5], 0, IMAGE_MAX_SIDE), h = parse_long(argv[6], 0, IMAGE_MAX_SIDE);
	int fit = image_fit_parse(argv[7]), fmt = image_format_parse(argv[8]);
	if (time_ms < 0 || w < 0 || h < 0 || fit < 0 || fmt < 0) {
		fprintf(stderr, "render-thumbnail: bad arguments\n");
		return 2;
	}
	if (frames_open(&f, argv[2], NULL, NULL, &no_video, err, sizeof err) < 0 ||
	    frames_grab(f, (double)time_ms / 1000.0, 0, 0, &img, err, sizeof err) < 0 ||
	    image_encode(&img, (int)w, (int)h, fit, fmt, &data, &len, err, sizeof err) < 0)
		goto out;
	if (image_save(argv[3], data, len) < 0) {
		snprintf(err, sizeof err, "cannot write the thumbnail: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (ret)
		fprintf(stderr, "render-thumbnail: %s\n", err);
	free(data);
	rgb_image_free(&img);
	frames_close(&f);
	return ret;
}
