/* probe.c: the probe job: reads the recording's source with libavformat and reports its container and streams. */
#include "kinds.h"

#include "../lib/storage.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avstring.h>
#include <libavutil/error.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The demuxers a source may be read with: the containers that uploads and
 * recordings come in. Any other (hls, concat, image2, ...: some of them open
 * further files or URLs named inside a hostile file) is refused before its
 * header is read. */
#define PROBE_FORMATS "mov,matroska,mpegts,mp3,ogg,wav,aac,flac,flv"

/* Codecs a WebM file may hold: a Matroska file with only these is reported as "webm". */
static const enum AVCodecID webm_codecs[] = {AV_CODEC_ID_VP8, AV_CODEC_ID_VP9, AV_CODEC_ID_AV1, AV_CODEC_ID_OPUS,
					      AV_CODEC_ID_VORBIS};

static json_object *positive_or_null(int64_t v)
{
	return v > 0 ? json_object_new_int64(v) : NULL;
}

/* A number of seconds or frames per second, to the millisecond, written as
 * such ("2.038", "30.0"; json-c would print 2.0379999999999998). */
static json_object *rounded(double v)
{
	char text[64];
	snprintf(text, sizeof text, "%.3f", v);
	size_t n = strlen(text);
	while (n > 2 && text[n - 1] == '0' && text[n - 2] != '.')
		text[--n] = '\0';
	return json_object_new_double_s(round(v * 1000.0) / 1000.0, text);
}

static bool is_webm(const AVFormatContext *fmt)
{
	for (unsigned i = 0; i < fmt->nb_streams; i++) {
		bool allowed = false;
		for (size_t k = 0; k < sizeof webm_codecs / sizeof webm_codecs[0]; k++)
			allowed |= fmt->streams[i]->codecpar->codec_id == webm_codecs[k];
		if (!allowed)
			return false;
	}
	return true;
}

/* The container as people name it. libavformat names demuxers by family
 * ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"): the brand or the codecs
 * tell the members apart; otherwise the family's first name is used. */
static json_object *container_json(const AVFormatContext *fmt)
{
	const char *name = fmt->iformat->name;
	if (strncmp(name, "mov,", 4) == 0) {
		const AVDictionaryEntry *brand = av_dict_get(fmt->metadata, "major_brand", NULL, 0);
		if (brand && strncmp(brand->value, "qt", 2) == 0)
			return json_object_new_string("mov");
		if (brand && strncmp(brand->value, "M4A", 3) == 0)
			return json_object_new_string("m4a");
		return json_object_new_string("mp4");
	}
	if (strncmp(name, "matroska", 8) == 0)
		return json_object_new_string(is_webm(fmt) ? "webm" : "matroska");
	return json_object_new_string_len(name, (int)strcspn(name, ","));
}

static json_object *codec_json(const AVCodecParameters *par)
{
	return json_object_new_string(avcodec_get_name(par->codec_id));
}

/* The main video stream (not cover art), or NULL. */
static json_object *video_json(AVFormatContext *fmt)
{
	int i = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
	if (i < 0 || fmt->streams[i]->disposition & AV_DISPOSITION_ATTACHED_PIC)
		return NULL;
	AVStream *st = fmt->streams[i];
	const AVCodecParameters *par = st->codecpar;
	if (par->width <= 0 || par->height <= 0)
		return NULL;
	const char *profile = avcodec_profile_name(par->codec_id, par->profile);
	AVRational rate = av_guess_frame_rate(fmt, st, NULL);
	json_object *v = json_object_new_object();
	json_object_object_add(v, "codec", codec_json(par));
	json_object_object_add(v, "profile", profile ? json_object_new_string(profile) : NULL);
	json_object_object_add(v, "width", json_object_new_int(par->width));
	json_object_object_add(v, "height", json_object_new_int(par->height));
	json_object_object_add(v, "fps", rate.num > 0 && rate.den > 0 ? rounded(av_q2d(rate)) : NULL);
	json_object_object_add(v, "bit_rate", positive_or_null(par->bit_rate));
	return v;
}

/* The main audio stream, or NULL. */
static json_object *audio_json(AVFormatContext *fmt)
{
	int i = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
	if (i < 0)
		return NULL;
	const AVCodecParameters *par = fmt->streams[i]->codecpar;
	if (par->sample_rate <= 0 || par->ch_layout.nb_channels <= 0)
		return NULL;
	json_object *a = json_object_new_object();
	json_object_object_add(a, "codec", codec_json(par));
	json_object_object_add(a, "sample_rate", json_object_new_int(par->sample_rate));
	json_object_object_add(a, "channels", json_object_new_int(par->ch_layout.nb_channels));
	json_object_object_add(a, "bit_rate", positive_or_null(par->bit_rate));
	return a;
}

int probe_run(struct job *job)
{
	AVIOContext *pb = NULL;
	AVFormatContext *fmt = NULL;
	AVDictionary *opts = NULL;
	const AVInputFormat *ifmt = NULL;
	json_object *info = NULL, *video = NULL, *audio = NULL;
	char *path = NULL;
	const char *source = NULL;
	int ret = -1, err;
	const AVIOInterruptCB interrupt = {job_interrupt_cb, job};

	job_progress(job, 0);
	path = job_source_path(job);
	if (!path)
		goto out;
	source = strrchr(path, '/') + 1; /* messages name the file, never the storage path */
	av_log_set_level(AV_LOG_ERROR);

	/* Find the container first, so that only the demuxers we allow ever
	 * read a header (format_whitelist alone would report any refusal as
	 * "Invalid argument"). */
	if ((err = avio_open2(&pb, path, AVIO_FLAG_READ, &interrupt, NULL)) < 0) {
		job_error(job, "cannot open %s: %s", source, av_err2str(err));
		goto out;
	}
	if ((err = av_probe_input_buffer2(pb, &ifmt, source, NULL, 0, 0)) < 0) {
		job_error(job, "%s is not a media file that can be read: %s", source, av_err2str(err));
		goto out;
	}
	if (!av_match_list(ifmt->name, PROBE_FORMATS, ',')) {
		job_error(job, "%s is in a format that is not accepted for recordings (%s)", source,
			  ifmt->long_name ? ifmt->long_name : ifmt->name);
		goto out;
	}
	if (!(fmt = avformat_alloc_context())) {
		job_error(job, "out of memory");
		goto out;
	}
	fmt->pb = pb;
	fmt->interrupt_callback = interrupt;
	av_dict_set(&opts, "format_whitelist", PROBE_FORMATS, 0);
	av_dict_set(&opts, "protocol_whitelist", "file", 0);
	/* On failure avformat_open_input() frees fmt (not pb: it is ours). */
	if ((err = avformat_open_input(&fmt, path, ifmt, &opts)) < 0) {
		job_error(job, "%s is not a media file that can be read: %s", source, av_err2str(err));
		goto out;
	}
	job_progress(job, 0.3);
	if ((err = avformat_find_stream_info(fmt, NULL)) < 0) {
		job_error(job, "the streams of %s cannot be read: %s", source, av_err2str(err));
		goto out;
	}
	if (job_stop_requested()) {
		job_error(job, "stopped");
		goto out;
	}
	job_progress(job, 0.9);
	video = video_json(fmt);
	audio = audio_json(fmt);
	if (!video && !audio) {
		job_error(job, "%s is not a media file that can be read: it has no audio or video stream", source);
		goto out;
	}

	int64_t size = avio_size(pb);
	info = json_object_new_object();
	json_object_object_add(info, "duration_s",
			       fmt->duration > 0 ? rounded((double)fmt->duration / AV_TIME_BASE) : NULL);
	json_object_object_add(info, "size_bytes", size >= 0 ? json_object_new_int64(size) : NULL);
	json_object_object_add(info, "bit_rate", positive_or_null(fmt->bit_rate));
	json_object_object_add(info, "container", container_json(fmt));
	json_object_object_add(info, "video", video);
	json_object_object_add(info, "audio", audio);
	video = audio = NULL;
	job_result(job, info); /* takes info */
	info = NULL;
	job_progress(job, 1);
	ret = 0;
out:
	if (video)
		json_object_put(video);
	if (audio)
		json_object_put(audio);
	av_dict_free(&opts);
	avformat_close_input(&fmt);
	avio_closep(&pb);
	free(path);
	return ret;
}
