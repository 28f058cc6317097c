/* frames.c: grabbing single video frames of a recording's source with libav* (thumbnails, posters, storyboards). */
#include "frames.h"

#include "mem.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avstring.h>
#include <libavutil/error.h>
#include <libswscale/swscale.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The demuxers a source may be read with; the same list as probe.c: any other
 * (hls, concat, image2, ...) could open further files named inside a hostile
 * file. */
#define FRAMES_FORMATS "mov,matroska,mpegts,mp3,ogg,wav,aac,flac,flv"

/* Largest picture decoded: beyond it a source is refused (a hostile header
 * could otherwise ask for gigabytes of frame buffers). */
#define FRAMES_MAX_PIXELS (8192 * 8192)

struct frames {
	AVIOContext *pb;
	AVFormatContext *fmt;
	AVCodecContext *dec;
	AVPacket *pkt;
	AVFrame *frame, *kept;
	int stream;
	int display_w, display_h;
	AVIOInterruptCB interrupt;
};

void rgb_image_free(struct rgb_image *img)
{
	free(img->data);
	img->data = NULL;
	img->width = img->height = 0;
}

void frames_close(struct frames **pf)
{
	struct frames *f = *pf;
	if (!f)
		return;
	av_packet_free(&f->pkt);
	av_frame_free(&f->frame);
	av_frame_free(&f->kept);
	avcodec_free_context(&f->dec);
	avformat_close_input(&f->fmt);
	avio_closep(&f->pb);
	free(f);
	*pf = NULL;
}

int frames_open(struct frames **out, const char *path, int (*interrupt)(void *), void *opaque, int *no_video,
		char *err, size_t err_size)
{
	struct frames *f = xcalloc(1, sizeof *f);
	AVDictionary *opts = NULL;
	const AVInputFormat *ifmt = NULL;
	const AVCodec *codec = NULL;
	int ret = -1, e;

	*out = NULL;
	*no_video = 0;
	f->interrupt.callback = interrupt;
	f->interrupt.opaque = opaque;
	av_log_set_level(AV_LOG_ERROR);
	/* As in probe.c: find the container first, so only the demuxers we
	 * allow ever read a header. */
	if ((e = avio_open2(&f->pb, path, AVIO_FLAG_READ, &f->interrupt, NULL)) < 0) {
		snprintf(err, err_size, "cannot open the source: %s", av_err2str(e));
		goto out;
	}
	if ((e = av_probe_input_buffer2(f->pb, &ifmt, "", NULL, 0, 0)) < 0 ||
	    !av_match_list(ifmt->name, FRAMES_FORMATS, ',')) {
		snprintf(err, err_size, "the source is not a media file that can be read");
		goto out;
	}
	if (!(f->fmt = avformat_alloc_context()))
		goto oom;
	f->fmt->pb = f->pb;
	f->fmt->interrupt_callback = f->interrupt;
	av_dict_set(&opts, "format_whitelist", FRAMES_FORMATS, 0);
	av_dict_set(&opts, "protocol_whitelist", "file", 0);
	if ((e = avformat_open_input(&f->fmt, path, ifmt, &opts)) < 0) {
		snprintf(err, err_size, "the source cannot be read: %s", av_err2str(e));
		goto out;
	}
	if ((e = avformat_find_stream_info(f->fmt, NULL)) < 0) {
		snprintf(err, err_size, "the source's streams cannot be read: %s", av_err2str(e));
		goto out;
	}
	f->stream = av_find_best_stream(f->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
	if (f->stream < 0 || !codec || f->fmt->streams[f->stream]->disposition & AV_DISPOSITION_ATTACHED_PIC) {
		*no_video = 1;
		snprintf(err, err_size, "the source has no video");
		goto out;
	}
	AVStream *st = f->fmt->streams[f->stream];
	if (st->codecpar->width <= 0 || st->codecpar->height <= 0 ||
	    (int64_t)st->codecpar->width * st->codecpar->height > FRAMES_MAX_PIXELS) {
		snprintf(err, err_size, "the source's video has no usable size");
		goto out;
	}
	/* Everything but the one stream we decode is skipped by the demuxer. */
	for (unsigned i = 0; i < f->fmt->nb_streams; i++)
		f->fmt->streams[i]->discard = (int)i == f->stream ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
	if (!(f->dec = avcodec_alloc_context3(codec)))
		goto oom;
	if ((e = avcodec_parameters_to_context(f->dec, st->codecpar)) < 0) {
		snprintf(err, err_size, "the source's video cannot be decoded: %s", av_err2str(e));
		goto out;
	}
	/* One thread: a render is one frame, and many may run at once. */
	f->dec->thread_count = 1;
	if ((e = avcodec_open2(f->dec, codec, NULL)) < 0) {
		snprintf(err, err_size, "the source's video cannot be decoded: %s", av_err2str(e));
		goto out;
	}
	if (!(f->pkt = av_packet_alloc()) || !(f->frame = av_frame_alloc()) || !(f->kept = av_frame_alloc()))
		goto oom;
	/* Pictures are shown with square pixels: non-square samples widen or
	 * narrow the picture, as a player would show it. */
	AVRational sar = av_guess_sample_aspect_ratio(f->fmt, st, NULL);
	f->display_w = st->codecpar->width;
	f->display_h = st->codecpar->height;
	if (sar.num > 0 && sar.den > 0 && sar.num != sar.den) {
		long w = lround((double)f->display_w * sar.num / sar.den);
		f->display_w = w < 2 ? 2 : w > 8192 ? 8192 : (int)w;
	}
	*out = f;
	f = NULL;
	ret = 0;
	goto out;
oom:
	snprintf(err, err_size, "out of memory");
out:
	av_dict_free(&opts);
	frames_close(&f);
	return ret;
}

double frames_duration(const struct frames *f)
{
	if (f->fmt->duration > 0)
		return (double)f->fmt->duration / AV_TIME_BASE;
	const AVStream *st = f->fmt->streams[f->stream];
	if (st->duration > 0)
		return (double)st->duration * av_q2d(st->time_base);
	return 0;
}

void frames_size(const struct frames *f, int *width, int *height)
{
	*width = f->display_w;
	*height = f->display_h;
}

/* Converts frame to packed RGB of width x height into out. */
static int to_rgb(const AVFrame *frame, int width, int height, struct rgb_image *out, char *err, size_t err_size)
{
	struct SwsContext *sws = sws_getContext(frame->width, frame->height, frame->format, width, height,
						AV_PIX_FMT_RGB24, SWS_BICUBIC, NULL, NULL, NULL);
	if (!sws) {
		snprintf(err, err_size, "the frame's pixel format cannot be converted");
		return -1;
	}
	out->width = width;
	out->height = height;
	out->data = xmalloc((size_t)width * (size_t)height * 3);
	uint8_t *dst[4] = {out->data, NULL, NULL, NULL};
	int dst_stride[4] = {width * 3, 0, 0, 0};
	sws_scale(sws, (const uint8_t *const *)frame->data, frame->linesize, 0, frame->height, dst, dst_stride);
	sws_freeContext(sws);
	return 0;
}

int frames_grab(struct frames *f, double t, int width, int height, struct rgb_image *out, char *err,
		size_t err_size)
{
	AVStream *st = f->fmt->streams[f->stream];
	int64_t start = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;
	int64_t target = start + av_rescale_q((int64_t)(t * AV_TIME_BASE), AV_TIME_BASE_Q, st->time_base);
	int have = 0, done = 0, e;

	memset(out, 0, sizeof *out);
	if (width <= 0 || height <= 0) {
		width = f->display_w;
		height = f->display_h;
	}
	/* Start at the keyframe at or before t, then decode up to t: the frame
	 * shown at t is the last one whose time is not after it. */
	if (av_seek_frame(f->fmt, f->stream, target, AVSEEK_FLAG_BACKWARD) < 0)
		av_seek_frame(f->fmt, f->stream, start, AVSEEK_FLAG_BACKWARD);
	avcodec_flush_buffers(f->dec);
	av_frame_unref(f->kept);
	while (!done) {
		e = av_read_frame(f->fmt, f->pkt);
		if (e == AVERROR(EAGAIN))
			continue;
		if (e < 0) {
			if (f->interrupt.callback && f->interrupt.callback(f->interrupt.opaque)) {
				snprintf(err, err_size, "stopped");
				return -1;
			}
			avcodec_send_packet(f->dec, NULL); /* drain */
		} else if (f->pkt->stream_index != f->stream) {
			av_packet_unref(f->pkt);
			continue;
		} else {
			/* Frames well before t are only decoded for the frames
			 * that refer to them: skip those nothing refers to
			 * (most B-frames), so a long GOP costs less. */
			int64_t frame_len = f->pkt->duration > 0 ? f->pkt->duration : 1;
			f->dec->skip_frame = f->pkt->pts != AV_NOPTS_VALUE && f->pkt->pts < target - 4 * frame_len
						     ? AVDISCARD_NONREF
						     : AVDISCARD_DEFAULT;
			avcodec_send_packet(f->dec, f->pkt);
			av_packet_unref(f->pkt);
		}
		for (;;) {
			int r = avcodec_receive_frame(f->dec, f->frame);
			if (r == AVERROR(EAGAIN))
				break;
			if (r < 0) { /* AVERROR_EOF after the drain, or a decoding error */
				done = 1;
				break;
			}
			int64_t pts = f->frame->best_effort_timestamp;
			if (have && pts != AV_NOPTS_VALUE && pts > target) {
				av_frame_unref(f->frame);
				done = 1;
				break;
			}
			av_frame_unref(f->kept);
			av_frame_move_ref(f->kept, f->frame);
			have = 1;
			if (pts != AV_NOPTS_VALUE && pts >= target) {
				done = 1;
				break;
			}
		}
		if (e < 0)
			done = 1;
	}
	if (!have) {
		snprintf(err, err_size, "no frame could be decoded at %.3f s", t);
		return -1;
	}
	return to_rgb(f->kept, width, height, out, err, err_size);
}

void frames_luma_stats(const struct rgb_image *img, double *mean, double *stddev)
{
	size_t n = (size_t)img->width * (size_t)img->height;
	double sum = 0, sum2 = 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = img->data + i * 3;
		double y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
		sum += y;
		sum2 += y * y;
	}
	*mean = n ? sum / (double)n : 0;
	double var = n ? sum2 / (double)n - *mean * *mean : 0;
	*stddev = var > 0 ? sqrt(var) : 0;
}

int frames_is_blank(const struct rgb_image *img)
{
	double mean, stddev;
	frames_luma_stats(img, &mean, &stddev);
	/* Dark (a camera not yet on, a fade), or so uniform that nothing is
	 * seen (a black, white or single-colour slide, a blank screen share). */
	return mean < 28.0 || stddev < 12.0;
}
