/* transcode.c: the transcode job: decodes the source once, scales each rung of the ladder from the rung above,
 * encodes H.264 + AAC with IDR frames at every segment boundary, writes one HLS folder per rung and our own
 * master playlist into a temporary folder, and publishes it by rename; also the playable job's one quick
 * rendition (a remux of H.264/AAC, else the lowest rung), written in place and published segment by segment. */
#include "kinds.h"

#include "hls.h"
#include "../lib/storage.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/avstring.h>
#include <libavutil/channel_layout.h>
#include <libavutil/error.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The demuxers a source may be read with (as in probe.c). */
#define SOURCE_FORMATS "mov,matroska,mpegts,mp3,ogg,wav,aac,flac,flv"
#define AUDIO_RATE 48000
#define AUDIO_BPS 128000
/* Pictures waiting for a rung's thread: enough to ride out an encoder's
 * uneven pace, few enough to bound memory (1080p: 3 MB each). */
#define RUNG_QUEUE 2
/* The quick rendition's own muxer playlist (not served: index.m3u8 is made from it). */
#define QUICK_MUX_PLAYLIST ".mux.m3u8"
/* How late after a boundary a picture may come and still start the segment: later, the picture before it is
 * repeated on the boundary; a segment then lasts less than seg_s + this, which rounds to seg_s. */
#define QUICK_LATE_S 0.25

/* One rung of the ladder. With an encoder it has a thread of its own that
 * scales each picture from the rung above (or the source), encodes it, and
 * hands its picture on to the rung below: the decoder, the scalers and the
 * encoders of all rungs overlap. */
struct rung {
	struct hls_profile pr;
	int width, height;
	struct SwsContext *sws;
	AVCodecContext *enc;
	AVFormatContext *mux;
	AVStream *vst, *ast;
	char codecs[64];
	bool header_written;
	/* the thread's queue of pictures (owned refs), under lock */
	pthread_t thread;
	bool synced, thread_started; /* lock and cond made; thread running */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	AVFrame *queue[RUNG_QUEUE];
	int q_head, q_len;
	bool q_end;    /* no more pictures: flush the encoder, pass the end on */
	AVPacket *pkt; /* the thread's own */
	_Atomic int err; /* the thread's first error (AVERROR); the reader polls it between pictures */
};

struct transcode {
	struct job *job;
	AVFormatContext *in;
	int vi, ai;
	AVCodecContext *vdec, *adec, *aenc;
	SwrContext *swr;
	AVAudioFifo *fifo;
	int64_t audio_next_pts; /* in 1/AUDIO_RATE; AV_NOPTS_VALUE until the first audio frame */
	int64_t start_us;	/* the source's start: every output timestamp counts from it */
	int64_t last_vpts;
	double seg_s, duration_s, last_progress;
	int64_t next_boundary; /* index of the next segment boundary where an IDR is forced */
	AVRational frame_rate;
	struct rung rungs[HLS_MAX_RUNGS];
	int n;
	AVFrame *frame;
	AVPacket *pkt;
	const char *mp4_path; /* set: one rung into this faststart MP4 file instead of HLS (the mp4 job) */
	/* The playable job (playable.c): one rendition written in place into
	 * quick_dir as an EVENT playlist, the source's H.264 and AAC copied
	 * when they can be, published as soon as its first segment is. */
	const char *quick_dir, *hls_dir;
	bool copy_video, copy_audio, published;
	/* Its playlist's EXT-X-TARGETDURATION, fixed before the first segment
	 * (RFC 8216 4.3.3.1: it must not change while the playlist grows), and
	 * the version of the muxer's playlist last copied into index.m3u8. */
	int quick_target;
	ino_t mux_ino;
	off_t mux_size;
	struct timespec mux_mtime;
	AVFrame *quick_prev; /* the last source picture, repeated at a boundary no picture falls on */
	pthread_mutex_t mux_lock; /* every write into a rung's muxer: video from its thread, audio from the main one */
	_Atomic bool abort; /* set, then each rung's waiters woken: the threads drop what they have and end */
};

/* RFC 6381 name of an H.264 stream ("avc1.64001f") from the first SPS in Annex B or avcC data. */
static bool avc_codecs(const uint8_t *d, int size, char *out, size_t out_size)
{
	if (size > 4 && d[0] == 1) { /* avcC: profile, compatibility, level at 1..3 */
		snprintf(out, out_size, "avc1.%02x%02x%02x", d[1], d[2], d[3]);
		return true;
	}
	for (int i = 0; i + 6 < size; i++)
		if (d[i] == 0 && d[i + 1] == 0 && d[i + 2] == 1 && (d[i + 3] & 0x1f) == 7) {
			snprintf(out, out_size, "avc1.%02x%02x%02x", d[i + 4], d[i + 5], d[i + 6]);
			return true;
		}
	return false;
}

/* Fits the source's display size into the profile's box, both sides even. */
static void fit(int sw, int sh, AVRational sar, int bw, int bh, int *w, int *h)
{
	double dw = sw * (sar.num > 0 && sar.den > 0 ? av_q2d(sar) : 1.0);
	double f = fmin(fmin((double)bw / dw, (double)bh / sh), 1.0);
	*w = (int)lround(dw * f / 2) * 2;
	*h = (int)lround(sh * f / 2) * 2;
	if (*w < 2)
		*w = 2;
	if (*h < 2)
		*h = 2;
}

static int by_height_desc(const void *a, const void *b)
{
	const struct rung *x = a, *y = b;
	return y->height - x->height;
}

/* A new stream of mux for the packets of enc, or, when copy_of is given, for
 * copy_of's packets as they are (the quick rendition's remux). */
static AVStream *add_stream(AVFormatContext *mux, const AVCodecContext *enc, const AVStream *copy_of)
{
	AVStream *st = avformat_new_stream(mux, NULL);
	if (copy_of) {
		avcodec_parameters_copy(st->codecpar, copy_of->codecpar);
		st->codecpar->codec_tag = 0;
		st->time_base = copy_of->time_base;
	} else {
		avcodec_parameters_from_context(st->codecpar, enc);
		st->time_base = enc->time_base;
	}
	return st;
}

/* Chooses the rungs: the profiles (all, or those the payload names) whose
 * height the source reaches; never upscale. A source below every profile gets
 * one rung at its own size, with the smallest profile's bit rates. */
static int choose_rungs(struct transcode *t, const struct hls_profile *pr, int np)
{
	const AVCodecParameters *par = t->in->streams[t->vi]->codecpar;
	AVRational sar = av_guess_sample_aspect_ratio(t->in, t->in->streams[t->vi], NULL);
	int smallest = 0;
	for (int i = 0; i < np; i++) {
		if (pr[i].height < pr[smallest].height)
			smallest = i;
		if (pr[i].height > par->height)
			continue;
		struct rung *r = &t->rungs[t->n];
		r->pr = pr[i];
		fit(par->width, par->height, sar, pr[i].width, pr[i].height, &r->width, &r->height);
		bool dup = false;
		for (int k = 0; k < t->n; k++)
			dup |= t->rungs[k].width == r->width && t->rungs[k].height == r->height;
		if (!dup)
			t->n++;
	}
	if (t->n == 0) {
		struct rung *r = &t->rungs[t->n++];
		r->pr = pr[smallest];
		fit(par->width, par->height, sar, par->width, par->height, &r->width, &r->height);
	}
	qsort(t->rungs, (size_t)t->n, sizeof t->rungs[0], by_height_desc);
	return t->n;
}

static int open_decoder(struct transcode *t, int index, AVCodecContext **out)
{
	const AVCodecParameters *par = t->in->streams[index]->codecpar;
	const AVCodec *dec = avcodec_find_decoder(par->codec_id);
	int err;
	if (!dec) {
		job_error(t->job, "the source's %s codec %s cannot be decoded", av_get_media_type_string(par->codec_type),
			  avcodec_get_name(par->codec_id));
		return -1;
	}
	*out = avcodec_alloc_context3(dec);
	if (!*out || (err = avcodec_parameters_to_context(*out, par)) < 0) {
		job_error(t->job, "out of memory");
		return -1;
	}
	(*out)->pkt_timebase = t->in->streams[index]->time_base;
	(*out)->thread_count = 0;
	if ((err = avcodec_open2(*out, dec, NULL)) < 0) {
		job_error(t->job, "the source's %s stream cannot be decoded: %s", avcodec_get_name(par->codec_id),
			  av_err2str(err));
		return -1;
	}
	return 0;
}

static int open_video_encoder(struct transcode *t, struct rung *r, bool global_header)
{
	const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
	int err;
	if (!codec || !(r->enc = avcodec_alloc_context3(codec))) {
		job_error(t->job, "libx264 is not available");
		return -1;
	}
	AVCodecContext *e = r->enc;
	e->width = r->width;
	e->height = r->height;
	e->pix_fmt = AV_PIX_FMT_YUV420P;
	e->sample_aspect_ratio = (AVRational){1, 1};
	e->time_base = t->in->streams[t->vi]->time_base;
	e->framerate = t->frame_rate;
	e->bit_rate = (int64_t)r->pr.kbps * 1000;
	e->rc_max_rate = (int64_t)r->pr.max_kbps * 1000;
	e->rc_buffer_size = r->pr.buf_kbps * 1000;
	/* Keyframes only where we force them (segment boundaries), so every
	 * rung has the same IDR frames: no scene-cut or periodic IDR. */
	e->gop_size = 100000;
	e->max_b_frames = 3;
	if (r->pr.level > 0)
		e->level = r->pr.level; /* the profile's: a player's decoder limit, not the encoder's guess */
	if (global_header)
		e->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
	av_opt_set(e->priv_data, "preset", r->pr.preset[0] ? r->pr.preset : HLS_DEFAULT_PRESET, 0);
	av_opt_set(e->priv_data, "profile", "high", 0);
	av_opt_set_int(e->priv_data, "forced-idr", 1, 0);
	av_opt_set(e->priv_data, "x264-params", "scenecut=0:open-gop=0", 0);
	if ((err = avcodec_open2(e, codec, NULL)) < 0) {
		job_error(t->job, "cannot start the H.264 encoder for %s: %s", r->pr.name, av_err2str(err));
		return -1;
	}
	if (e->extradata_size > 0)
		avc_codecs(e->extradata, e->extradata_size, r->codecs, sizeof r->codecs);
	return 0;
}

static int open_audio(struct transcode *t)
{
	const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_AAC);
	AVChannelLayout in_layout = {0}, stereo = AV_CHANNEL_LAYOUT_STEREO;
	int err;
	if (open_decoder(t, t->ai, &t->adec) < 0)
		return -1;
	if (!codec || !(t->aenc = avcodec_alloc_context3(codec))) {
		job_error(t->job, "the AAC encoder is not available");
		return -1;
	}
	t->aenc->sample_fmt = AV_SAMPLE_FMT_FLTP;
	t->aenc->sample_rate = AUDIO_RATE;
	av_channel_layout_copy(&t->aenc->ch_layout, &stereo);
	t->aenc->bit_rate = AUDIO_BPS;
	t->aenc->time_base = (AVRational){1, AUDIO_RATE};
	t->aenc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
	if ((err = avcodec_open2(t->aenc, codec, NULL)) < 0) {
		job_error(t->job, "cannot start the AAC encoder: %s", av_err2str(err));
		return -1;
	}
	if (t->adec->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC || t->adec->ch_layout.nb_channels == 0)
		av_channel_layout_default(&in_layout, t->adec->ch_layout.nb_channels > 0 ? t->adec->ch_layout.nb_channels : 2);
	else
		av_channel_layout_copy(&in_layout, &t->adec->ch_layout);
	err = swr_alloc_set_opts2(&t->swr, &stereo, AV_SAMPLE_FMT_FLTP, AUDIO_RATE, &in_layout, t->adec->sample_fmt,
				  t->adec->sample_rate, 0, NULL);
	av_channel_layout_uninit(&in_layout);
	if (err < 0 || (err = swr_init(t->swr)) < 0) {
		job_error(t->job, "cannot convert the source's audio: %s", av_err2str(err));
		return -1;
	}
	if (!(t->fifo = av_audio_fifo_alloc(AV_SAMPLE_FMT_FLTP, 2, 4096))) {
		job_error(t->job, "out of memory");
		return -1;
	}
	return 0;
}

static int open_muxer(struct transcode *t, struct rung *r, const char *dir, bool fmp4)
{
	char playlist[4096], segments[4096];
	AVDictionary *opts = NULL;
	int err;
	/* The quick rendition's muxer writes a playlist of its own, from which
	 * quick_sync() makes the published one (index.m3u8). */
	snprintf(playlist, sizeof playlist, "%s/%s", dir ? dir : ".", t->quick_dir ? QUICK_MUX_PLAYLIST : "index.m3u8");
	snprintf(segments, sizeof segments, "%s/seg_%%05d.%s", dir ? dir : ".", fmp4 ? "m4s" : "ts");
	if (t->mp4_path) {
		if ((err = avformat_alloc_output_context2(&r->mux, NULL, "mp4", t->mp4_path)) < 0 ||
		    (err = avio_open(&r->mux->pb, t->mp4_path, AVIO_FLAG_WRITE)) < 0) {
			job_error(t->job, "cannot start the MP4 writer: %s", av_err2str(err));
			return -1;
		}
	} else if ((err = avformat_alloc_output_context2(&r->mux, NULL, "hls", playlist)) < 0) {
		job_error(t->job, "cannot start the HLS writer: %s", av_err2str(err));
		return -1;
	}
	if (!t->mp4_path)
		hls_watch_writes(r->mux);
	if (r->enc || t->copy_video) {
		r->vst = add_stream(r->mux, r->enc, t->copy_video ? t->in->streams[t->vi] : NULL);
		r->vst->avg_frame_rate = t->frame_rate;
	}
	if (t->aenc || t->copy_audio)
		r->ast = add_stream(r->mux, t->aenc, t->copy_audio ? t->in->streams[t->ai] : NULL);
	if (t->mp4_path)
		av_dict_set(&opts, "movflags", "+faststart", 0);
	else
		av_dict_set_int(&opts, "hls_time", (int64_t)t->seg_s, 0);
	if (!t->mp4_path) {
		/* The quick rendition's playlist grows while players read it:
		 * EVENT, each version written aside and renamed into place. */
		av_dict_set(&opts, "hls_playlist_type", t->quick_dir ? "event" : "vod", 0);
		av_dict_set(&opts, "hls_list_size", "0", 0);
		av_dict_set(&opts, "hls_segment_type", fmp4 ? "fmp4" : "mpegts", 0);
		av_dict_set(&opts, "hls_segment_filename", segments, 0);
		av_dict_set(&opts, "hls_fmp4_init_filename", "init.mp4", 0);
		av_dict_set(&opts, "hls_flags", t->quick_dir ? "independent_segments+temp_file" : "independent_segments", 0);
	}
	err = avformat_write_header(r->mux, &opts);
	av_dict_free(&opts);
	if (err < 0) {
		job_error(t->job, "cannot start the HLS writer for %s: %s", r->pr.name, av_err2str(err));
		return -1;
	}
	r->header_written = true;
	return 0;
}

static int write_packet_locked(struct transcode *t, struct rung *r, AVPacket *pkt);

/* Writes a packet of a rung's video (or, when r is NULL, of the audio: then
 * to every rung) into the rung's HLS writer; the writers share one lock. */
static int write_packet(struct transcode *t, struct rung *r, AVPacket *pkt)
{
	pthread_mutex_lock(&t->mux_lock);
	int err = write_packet_locked(t, r, pkt);
	pthread_mutex_unlock(&t->mux_lock);
	return err;
}

static int write_packet_locked(struct transcode *t, struct rung *r, AVPacket *pkt)
{
	int err = 0;
	if (!r) {
		for (int i = 0; i < t->n && err >= 0; i++) {
			AVPacket *copy = av_packet_clone(pkt);
			if (!copy)
				return AVERROR(ENOMEM);
			copy->stream_index = t->rungs[i].ast->index;
			/* The muxer chose its own time base when it wrote the header. */
			if (t->aenc)
				av_packet_rescale_ts(copy, t->aenc->time_base, t->rungs[i].ast->time_base);
			else
				av_packet_rescale_ts(copy, t->in->streams[t->ai]->time_base, t->rungs[i].ast->time_base);
			err = av_interleaved_write_frame(t->rungs[i].mux, copy);
			av_packet_free(&copy);
		}
		return err;
	}
	if (!r->codecs[0])
		avc_codecs(pkt->data, pkt->size, r->codecs, sizeof r->codecs);
	pkt->stream_index = r->vst->index;
	if (r->enc)
		av_packet_rescale_ts(pkt, r->enc->time_base, r->vst->time_base);
	else
		av_packet_rescale_ts(pkt, t->in->streams[t->vi]->time_base, r->vst->time_base);
	return av_interleaved_write_frame(r->mux, pkt);
}

/* What the master playlist says about rung r, but for its measurements. */
static void variant_of(const struct transcode *t, const struct rung *r, struct hls_variant *v)
{
	const char *audio = "mp4a.40.2";
	memset(v, 0, sizeof *v);
	snprintf(v->name, sizeof v->name, "%s", r->pr.name);
	if (t->copy_audio) { /* the source's AAC as it is: HE-AAC (v2) have their own object types */
		int profile = t->in->streams[t->ai]->codecpar->profile;
		audio = profile == FF_PROFILE_AAC_HE ? "mp4a.40.5" : profile == FF_PROFILE_AAC_HE_V2 ? "mp4a.40.29" : audio;
	}
	bool has_audio = t->aenc || t->copy_audio;
	v->width = t->vi >= 0 ? r->width : 0;
	v->height = t->vi >= 0 ? r->height : 0;
	v->frame_rate = t->vi >= 0 ? av_q2d(t->frame_rate) : 0;
	snprintf(v->codecs, sizeof v->codecs, "%.40s%s%s", t->vi >= 0 ? (r->codecs[0] ? r->codecs : "avc1.640028") : "",
		 t->vi >= 0 && has_audio ? "," : "", has_audio ? audio : "");
}

/* A source packet of a stream that the quick rendition copies: timestamps
 * counted from the source's start, as the encoded streams' are. */
static int copy_packet(struct transcode *t, AVPacket *pkt)
{
	AVStream *st = t->in->streams[pkt->stream_index];
	int64_t start = av_rescale_q(t->start_us, AV_TIME_BASE_Q, st->time_base);
	bool video = pkt->stream_index == t->vi;
	if (pkt->pts != AV_NOPTS_VALUE)
		pkt->pts -= start;
	if (pkt->dts != AV_NOPTS_VALUE)
		pkt->dts -= start;
	if (video) {
		if (pkt->pts != AV_NOPTS_VALUE)
			t->last_vpts = pkt->pts;
		return write_packet(t, &t->rungs[0], pkt);
	}
	if (t->audio_next_pts == AV_NOPTS_VALUE)
		t->audio_next_pts = 0; /* marks that sound was found */
	return write_packet(t, NULL, pkt);
}

/* Quick rendition: copies each new version of the muxer's playlist into
 * index.m3u8 (written aside, renamed) with the TARGETDURATION fixed at the
 * start: libavformat's hls muxer recomputes it from the longest segment so
 * far, and a longer segment later (irregular key frames) would change it.
 * Fails when a segment rounds to more than it (none should: see
 * copy_target() and video_frame()). */
static int quick_sync(struct transcode *t)
{
	char mux[4096], tmp[4096], out[4096], line[1024];
	struct stat st;
	double too_long = 0;
	int seg = 0, bad_seg = 0;
	if (!t->quick_dir)
		return 0;
	snprintf(mux, sizeof mux, "%s/%s", t->quick_dir, QUICK_MUX_PLAYLIST);
	FILE *in = fopen(mux, "re");
	if (!in)
		return 0; /* no segment is complete yet */
	if (fstat(fileno(in), &st) != 0 ||
	    (st.st_ino == t->mux_ino && st.st_size == t->mux_size && st.st_mtim.tv_sec == t->mux_mtime.tv_sec &&
	     st.st_mtim.tv_nsec == t->mux_mtime.tv_nsec)) {
		fclose(in);
		return 0; /* the version already copied */
	}
	snprintf(tmp, sizeof tmp, "%s/index.m3u8.tmp", t->quick_dir);
	snprintf(out, sizeof out, "%s/index.m3u8", t->quick_dir);
	FILE *o = fopen(tmp, "we");
	while (o && fgets(line, sizeof line, in)) {
		if (strncmp(line, "#EXT-X-TARGETDURATION:", 22) == 0) {
			fprintf(o, "#EXT-X-TARGETDURATION:%d\n", t->quick_target);
			continue;
		}
		if (strncmp(line, "#EXTINF:", 8) == 0) {
			double d = strtod(line + 8, NULL);
			seg++;
			if (lrint(d) > t->quick_target && !bad_seg) {
				bad_seg = seg;
				too_long = d;
			}
		}
		fputs(line, o);
	}
	fclose(in);
	int err = !o ? errno : (ferror(o) ? EIO : 0);
	if (o && fclose(o) != 0 && !err)
		err = errno;
	if (!err && !bad_seg && rename(tmp, out) != 0)
		err = errno;
	if (err || bad_seg) {
		unlink(tmp);
		if (bad_seg)
			job_error(t->job, "segment %d of the quick rendition lasts %.3f s, longer than the %d s its playlist"
				  " announced from the start", bad_seg, too_long, t->quick_target);
		else
			job_error(t->job, "cannot write the quick rendition's playlist: %s", strerror(err));
		return -1;
	}
	t->mux_ino = st.st_ino;
	t->mux_size = st.st_size;
	t->mux_mtime = st.st_mtim;
	return 0;
}

/* Quick rendition: once its playlist exists (the muxer writes it after a
 * segment is complete, by rename), publishes the master and the recording's
 * renditions, so that playback can start while the rest is written. */
static int quick_check(struct transcode *t)
{
	char path[4096];
	if (!t->quick_dir || t->published)
		return 0;
	snprintf(path, sizeof path, "%s/index.m3u8", t->quick_dir);
	if (access(path, F_OK) != 0)
		return 0;
	t->published = true;
	struct hls_variant v;
	variant_of(t, &t->rungs[0], &v);
	return playable_publish(t->job, t->hls_dir, &v, false);
}

/* Sends frame (NULL: flush) to enc and writes what comes out. */
static int encode(struct transcode *t, AVCodecContext *enc, struct rung *r, AVFrame *frame)
{
	AVPacket *pkt = r && r->pkt ? r->pkt : t->pkt;
	int err = avcodec_send_frame(enc, frame);
	while (err >= 0) {
		err = avcodec_receive_packet(enc, pkt);
		if (err == AVERROR(EAGAIN) || err == AVERROR_EOF)
			return 0;
		if (err >= 0)
			err = write_packet(t, r, pkt);
		av_packet_unref(pkt);
	}
	return err;
}

/* Hands a picture (an owned ref; NULL: the end) to rung r's thread, waiting
 * while its queue is full. On abort the picture is dropped. */
static void rung_push(struct transcode *t, struct rung *r, AVFrame *f)
{
	pthread_mutex_lock(&r->lock);
	while (f && r->q_len == RUNG_QUEUE && !t->abort)
		pthread_cond_wait(&r->cond, &r->lock);
	if (!f)
		r->q_end = true;
	else if (t->abort)
		av_frame_free(&f);
	else
		r->queue[(r->q_head + r->q_len++) % RUNG_QUEUE] = f;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* The next picture for rung r's thread (caller frees), or NULL at the end or on abort. */
static AVFrame *rung_pop(struct transcode *t, struct rung *r)
{
	AVFrame *f = NULL;
	pthread_mutex_lock(&r->lock);
	while (r->q_len == 0 && !r->q_end && !t->abort)
		pthread_cond_wait(&r->cond, &r->lock);
	if (r->q_len > 0 && !t->abort) {
		f = r->queue[r->q_head];
		r->q_head = (r->q_head + 1) % RUNG_QUEUE;
		r->q_len--;
		pthread_cond_broadcast(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
	return f;
}

/* Scales from (a picture of the rung above, or the source) into a new
 * picture of rung r (caller frees), with from's timestamp and picture type. */
static AVFrame *rung_scale(struct rung *r, const AVFrame *from)
{
	/* A rung at the size of the picture above (the source's own, for the
	 * top rung) encodes that picture: no copy. */
	if (from->width == r->width && from->height == r->height && from->format == AV_PIX_FMT_YUV420P)
		return av_frame_clone(from);
	AVFrame *out = av_frame_alloc();
	r->sws = sws_getCachedContext(r->sws, from->width, from->height, from->format, r->width, r->height,
				      AV_PIX_FMT_YUV420P, SWS_BICUBIC, NULL, NULL, NULL);
	if (!out || !r->sws)
		goto fail;
	out->width = r->width;
	out->height = r->height;
	out->format = AV_PIX_FMT_YUV420P;
	if (av_frame_get_buffer(out, 0) < 0)
		goto fail;
	sws_scale(r->sws, (const uint8_t *const *)from->data, from->linesize, 0, from->height, out->data, out->linesize);
	out->pts = from->pts;
	out->pict_type = from->pict_type;
	return out;
fail:
	av_frame_free(&out);
	return NULL;
}

struct rung_arg {
	struct transcode *t;
	int i;
};
/* One job per process (the worker forks each): one set of arguments. */
static struct rung_arg rung_args[HLS_MAX_RUNGS];

/* A rung's thread: scale, encode, pass the picture down; at the end flush
 * the encoder and pass the end down. */
static void *rung_main(void *arg)
{
	struct transcode *t = ((struct rung_arg *)arg)->t;
	int i = ((struct rung_arg *)arg)->i;
	struct rung *r = &t->rungs[i], *next = i + 1 < t->n ? &t->rungs[i + 1] : NULL;
	AVFrame *f;
	while ((f = rung_pop(t, r)) != NULL) {
		AVFrame *out = r->err < 0 ? NULL : rung_scale(r, f);
		av_frame_free(&f);
		if (!out && r->err >= 0)
			r->err = AVERROR(ENOMEM);
		if (out && (r->err = encode(t, r->enc, r, out)) >= 0 && next)
			rung_push(t, next, out); /* the rung below scales from this one */
		else
			av_frame_free(&out);
	}
	if (r->err >= 0 && !t->abort)
		r->err = encode(t, r->enc, r, NULL);
	if (next)
		rung_push(t, next, NULL);
	return NULL;
}

/* Starts the threads of the rungs that encode. Returns 0 or an AVERROR. */
static int rungs_start(struct transcode *t)
{
	/* Every queue first: a thread hands pictures to the next rung's. */
	for (int i = 0; i < t->n; i++) {
		struct rung *r = &t->rungs[i];
		if (!r->enc)
			continue;
		if (!(r->pkt = av_packet_alloc()))
			return AVERROR(ENOMEM);
		pthread_mutex_init(&r->lock, NULL);
		pthread_cond_init(&r->cond, NULL);
		r->synced = true;
	}
	for (int i = 0; i < t->n; i++) {
		struct rung *r = &t->rungs[i];
		if (!r->enc)
			continue;
		rung_args[i] = (struct rung_arg){t, i};
		if (pthread_create(&r->thread, NULL, rung_main, &rung_args[i]) != 0)
			return AVERROR(EAGAIN);
		r->thread_started = true;
	}
	return 0;
}

/* Ends the rungs' threads (abort: at once, dropping what is queued; else
 * after they have encoded everything) and returns the first error, or 0. */
static int rungs_stop(struct transcode *t, bool abort)
{
	int err = 0;
	if (abort) {
		t->abort = true;
		for (int i = 0; i < t->n; i++)
			if (t->rungs[i].synced) {
				pthread_mutex_lock(&t->rungs[i].lock);
				pthread_cond_broadcast(&t->rungs[i].cond);
				pthread_mutex_unlock(&t->rungs[i].lock);
			}
	} else if (t->n > 0 && t->rungs[0].thread_started) {
		rung_push(t, &t->rungs[0], NULL);
	}
	for (int i = 0; i < t->n; i++) {
		struct rung *r = &t->rungs[i];
		if (!r->synced)
			continue;
		if (r->thread_started)
			pthread_join(r->thread, NULL);
		r->thread_started = r->synced = false;
		while (r->q_len > 0) {
			av_frame_free(&r->queue[r->q_head]);
			r->q_head = (r->q_head + 1) % RUNG_QUEUE;
			r->q_len--;
		}
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cond);
		if (err >= 0 && r->err < 0)
			err = r->err;
	}
	return err;
}

/* One decoded source picture: scale it into every rung (each from the one
 * above), force an IDR at each segment boundary, encode. */
static int video_frame(struct transcode *t, AVFrame *src)
{
	AVStream *st = t->in->streams[t->vi];
	int64_t pts = src->best_effort_timestamp;
	if (pts == AV_NOPTS_VALUE)
		pts = t->last_vpts == AV_NOPTS_VALUE ? 0 : t->last_vpts + 1;
	else
		pts -= av_rescale_q(t->start_us, AV_TIME_BASE_Q, st->time_base);
	if (t->last_vpts != AV_NOPTS_VALUE && pts <= t->last_vpts)
		return 0; /* a repeated or out-of-order timestamp: the encoders need increasing ones */
	double at = pts * av_q2d(st->time_base);
	/* The quick rendition's segments must all fit the target duration its
	 * playlist announced first: where a boundary passes with no picture near
	 * it (a gap in a variable frame rate source), the last picture is shown
	 * again on the boundary, as the IDR that starts the next segment. */
	while (t->quick_dir && t->quick_prev && at - t->next_boundary * t->seg_s > QUICK_LATE_S) {
		int64_t b = llrint(t->next_boundary * t->seg_s / av_q2d(st->time_base));
		t->next_boundary++;
		if (b <= t->last_vpts)
			continue;
		AVFrame *again = av_frame_clone(t->quick_prev);
		if (!again)
			return AVERROR(ENOMEM);
		again->pts = b;
		again->pict_type = AV_PICTURE_TYPE_I;
		t->last_vpts = b;
		rung_push(t, &t->rungs[0], again);
	}
	t->last_vpts = pts;
	if (t->quick_dir) {
		if (!t->quick_prev && !(t->quick_prev = av_frame_alloc()))
			return AVERROR(ENOMEM);
		av_frame_unref(t->quick_prev);
		if (av_frame_ref(t->quick_prev, src) < 0)
			return AVERROR(ENOMEM);
	}
	bool idr = false;
	if (at >= t->next_boundary * t->seg_s) {
		idr = true;
		t->next_boundary = (int64_t)floor(at / t->seg_s) + 1;
	}
	for (int i = 0; i < t->n; i++)
		if (t->rungs[i].err < 0)
			return t->rungs[i].err; /* a rung's thread failed: stop reading */
	AVFrame *f = av_frame_clone(src);
	if (!f)
		return AVERROR(ENOMEM);
	f->pts = pts;
	f->pict_type = idr ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
	rung_push(t, &t->rungs[0], f);
	return 0;
}

/* Encodes whole AAC frames from the FIFO (all that is left when flush). */
static int audio_drain(struct transcode *t, bool flush)
{
	int size = t->aenc->frame_size > 0 ? t->aenc->frame_size : 1024;
	while (av_audio_fifo_size(t->fifo) >= size || (flush && av_audio_fifo_size(t->fifo) > 0)) {
		AVFrame *f = av_frame_alloc();
		int n = FFMIN(size, av_audio_fifo_size(t->fifo)), err;
		if (!f)
			return AVERROR(ENOMEM);
		f->nb_samples = n;
		f->format = AV_SAMPLE_FMT_FLTP;
		f->sample_rate = AUDIO_RATE;
		av_channel_layout_copy(&f->ch_layout, &t->aenc->ch_layout);
		if ((err = av_frame_get_buffer(f, 0)) >= 0) {
			av_audio_fifo_read(t->fifo, (void **)f->data, n);
			f->pts = t->audio_next_pts;
			t->audio_next_pts += n;
			err = encode(t, t->aenc, NULL, f);
		}
		av_frame_free(&f);
		if (err < 0)
			return err;
	}
	return 0;
}

static int audio_frame(struct transcode *t, const AVFrame *in)
{
	AVStream *st = t->in->streams[t->ai];
	if (!in && t->audio_next_pts == AV_NOPTS_VALUE)
		return 0; /* flushing, and no sound was ever decoded */
	if (t->audio_next_pts == AV_NOPTS_VALUE) {
		int64_t pts = in->best_effort_timestamp == AV_NOPTS_VALUE ? 0 : in->best_effort_timestamp;
		pts = av_rescale_q(pts, st->time_base, (AVRational){1, AUDIO_RATE}) -
		      av_rescale_q(t->start_us, AV_TIME_BASE_Q, (AVRational){1, AUDIO_RATE});
		t->audio_next_pts = pts > 0 ? pts : 0;
	}
	AVFrame *out = av_frame_alloc();
	int err;
	if (!out)
		return AVERROR(ENOMEM);
	out->nb_samples = swr_get_out_samples(t->swr, in ? in->nb_samples : 0) + 16;
	out->format = AV_SAMPLE_FMT_FLTP;
	out->sample_rate = AUDIO_RATE;
	av_channel_layout_copy(&out->ch_layout, &t->aenc->ch_layout);
	if ((err = av_frame_get_buffer(out, 0)) >= 0) {
		err = swr_convert(t->swr, out->data, out->nb_samples, in ? (const uint8_t **)in->extended_data : NULL,
				  in ? in->nb_samples : 0);
		if (err > 0)
			err = av_audio_fifo_write(t->fifo, (void **)out->data, err);
	}
	av_frame_free(&out);
	return err < 0 ? err : audio_drain(t, false);
}

/* Sends pkt (NULL: flush) to the decoder of its stream and handles the frames. */
static int decode(struct transcode *t, AVCodecContext *dec, bool video, AVPacket *pkt)
{
	int err = avcodec_send_packet(dec, pkt);
	if (err < 0 && err != AVERROR_EOF)
		return pkt ? 0 : err; /* a damaged packet is skipped, as players do */
	for (;;) {
		err = avcodec_receive_frame(dec, t->frame);
		if (err == AVERROR(EAGAIN) || err == AVERROR_EOF)
			return 0;
		if (err < 0)
			return 0;
		err = video ? video_frame(t, t->frame) : audio_frame(t, t->frame);
		av_frame_unref(t->frame);
		if (err < 0)
			return err;
	}
}

static void report_progress(struct transcode *t, const AVPacket *pkt)
{
	if (t->duration_s <= 0 || pkt->pts == AV_NOPTS_VALUE)
		return;
	double at = pkt->pts * av_q2d(t->in->streams[pkt->stream_index]->time_base) - t->start_us / 1e6;
	double p = fmin(fmax(at / t->duration_s, 0), 1) * 0.97;
	if (p >= t->last_progress + 0.01) {
		t->last_progress = p;
		job_progress(t->job, p);
	}
}

static int open_source(struct transcode *t, const char *path, const char *source)
{
	AVDictionary *opts = NULL;
	int err;
	if (!(t->in = avformat_alloc_context())) {
		job_error(t->job, "out of memory");
		return -1;
	}
	t->in->interrupt_callback = (AVIOInterruptCB){job_interrupt_cb, t->job};
	av_dict_set(&opts, "format_whitelist", SOURCE_FORMATS, 0);
	av_dict_set(&opts, "protocol_whitelist", "file", 0);
	err = avformat_open_input(&t->in, path, NULL, &opts);
	av_dict_free(&opts);
	if (err < 0) {
		job_error(t->job, "%s is not a media file that can be read: %s", source, av_err2str(err));
		return -1;
	}
	if ((err = avformat_find_stream_info(t->in, NULL)) < 0) {
		job_error(t->job, "the streams of %s cannot be read: %s", source, av_err2str(err));
		return -1;
	}
	t->vi = av_find_best_stream(t->in, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
	t->ai = av_find_best_stream(t->in, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
	if (t->vi >= 0 && (t->in->streams[t->vi]->disposition & AV_DISPOSITION_ATTACHED_PIC))
		t->vi = -1;
	if (t->vi < 0 && t->ai < 0) {
		job_error(t->job, "%s has no audio or video stream", source);
		return -1;
	}
	if (t->vi >= 0 && t->in->streams[t->vi]->codecpar->width <= 0) {
		job_error(t->job, "the video stream of %s has no picture size", source);
		return -1;
	}
	t->start_us = t->in->start_time == AV_NOPTS_VALUE ? 0 : t->in->start_time;
	t->duration_s = t->in->duration > 0 ? (double)t->in->duration / AV_TIME_BASE : 0;
	return 0;
}

/* Selects the profiles named in the payload's "profiles" (default: all configured). */
static int select_profiles(struct job *job, struct hls_profile *pr, int np)
{
	json_object *names = NULL;
	if (!json_object_object_get_ex(job->payload, "profiles", &names) || !json_object_is_type(names, json_type_array))
		return np;
	struct hls_profile chosen[HLS_MAX_RUNGS];
	int n = 0;
	for (size_t i = 0; i < json_object_array_length(names) && n < HLS_MAX_RUNGS; i++) {
		const char *name = json_object_get_string(json_object_array_get_idx(names, i));
		int k = 0;
		while (k < np && strcmp(pr[k].name, name ? name : "") != 0)
			k++;
		if (k == np) {
			job_error(job, "no transcode profile is named \"%.32s\"", name ? name : "");
			return -1;
		}
		chosen[n++] = pr[k];
	}
	if (n == 0) {
		job_error(job, "the job names no profile");
		return -1;
	}
	memcpy(pr, chosen, sizeof chosen[0] * (size_t)n);
	return n;
}

/* Replaces the recording's hls/ folder with tmp in one rename (the old one,
 * if any, is swapped into tmp's place and removed). */
static int publish(const char *tmp, const char *final, const char *folder)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) != 0) {
		if (errno != ENOENT || rename(tmp, final) != 0)
			return -1;
	}
	hls_remove_tree(tmp);
	int fd = open(folder, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

/* The longest segment the hls muxer can cut from the source's video when it
 * copies it, in whole seconds rounded up, from the source's key frame index;
 * 0 when there is none. The muxer ends a segment at the first key frame at or
 * after a boundary, and the boundary after a segment's start is at most
 * seg_s later; so a segment starting at key frame k lasts at most until the
 * first key frame at or after k + seg_s (or the end). An index with key
 * frames only (Matroska's cues) may miss some: then a segment may start at a
 * key frame between two indexed ones a and b, and lasts at most until the
 * first indexed one at or after b + seg_s, counted from a. */
static int copy_target(const struct transcode *t)
{
	AVStream *st = t->in->streams[t->vi];
	int n = avformat_index_get_entries_count(st), nk = 0;
	bool complete = false;
	double tb = av_q2d(st->time_base), worst = 0;
	double *k = n > 0 ? malloc(sizeof *k * (size_t)n) : NULL;
	if (!k)
		return 0;
	for (int i = 0; i < n; i++) {
		const AVIndexEntry *e = avformat_index_get_entry(st, i);
		if (!(e->flags & AVINDEX_KEYFRAME)) {
			complete = true; /* every sample is indexed, not only key frames */
			continue;
		}
		if (nk == 0 || e->timestamp * tb > k[nk - 1])
			k[nk++] = e->timestamp * tb;
	}
	const AVIndexEntry *last = avformat_index_get_entry(st, n - 1);
	double end = last->timestamp * tb + (t->frame_rate.num > 0 ? av_q2d(av_inv_q(t->frame_rate)) : 0.1);
	double start = nk > 0 ? k[0] : 0;
	if (t->in->duration > 0 && start + (double)t->in->duration / AV_TIME_BASE > end)
		end = start + (double)t->in->duration / AV_TIME_BASE; /* a longer audio track ends the last segment */
	for (int i = 0, j = 0; i < nk; i++) {
		double from = complete || i + 1 == nk ? k[i] : k[i + 1];
		while (j < nk && k[j] < from + t->seg_s)
			j++;
		double d = (j < nk ? k[j] : end) - k[i];
		if (d > worst)
			worst = d;
	}
	free(k);
	return nk > 0 ? (int)ceil(worst - 0.01) : 0;
}

/* Whether the quick rendition can copy the source's streams: H.264 that
 * browsers decode (8-bit 4:2:0, up to High profile), and AAC. */
static void choose_copies(struct transcode *t)
{
	if (t->vi >= 0) {
		const AVCodecParameters *p = t->in->streams[t->vi]->codecpar;
		int profile = p->profile & ~FF_PROFILE_H264_CONSTRAINED;
		t->copy_video = p->codec_id == AV_CODEC_ID_H264 &&
				(p->format == AV_PIX_FMT_YUV420P || p->format == AV_PIX_FMT_YUVJ420P || p->format < 0) &&
				(profile == FF_PROFILE_H264_BASELINE || profile == FF_PROFILE_H264_MAIN ||
				 profile == FF_PROFILE_H264_HIGH);
	}
	if (t->ai >= 0)
		t->copy_audio = t->in->streams[t->ai]->codecpar->codec_id == AV_CODEC_ID_AAC &&
				t->in->streams[t->ai]->codecpar->sample_rate > 0 &&
				t->in->streams[t->ai]->codecpar->ch_layout.nb_channels <= 2;
}

/* Moves the quick rendition of the published folder (if its master still
 * lists it: the recording is being played from it) into the new folder tmp,
 * by hard links, left out of the new master: a player that chose it before
 * the ladder replaced it can play on (until the tidy job removes it). Returns
 * whether it was carried. */
static bool carry_quick(const char *final, const char *tmp)
{
	char path[4096], from[4096], to[4096];
	bool listed, other;
	if (hls_master_lists(final, &listed, &other) < 0)
		listed = false; /* unreadable: carry nothing over; a player on quick/ reloads the master */
	snprintf(path, sizeof path, "%s/%s", tmp, PLAYABLE_NAME);
	if (!listed || mkdir(path, 0750) != 0)
		return false;
	/* Every segment first and the playlist last, so a player never reads a
	 * playlist naming a segment that is not there; all or nothing. */
	snprintf(path, sizeof path, "%s/%s", final, PLAYABLE_NAME);
	DIR *d = opendir(path);
	struct dirent *e;
	bool ok = d != NULL;
	while (ok && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "index.m3u8") == 0)
			continue;
		snprintf(from, sizeof from, "%s/%s/%s", final, PLAYABLE_NAME, e->d_name);
		snprintf(to, sizeof to, "%s/%s/%s", tmp, PLAYABLE_NAME, e->d_name);
		ok = link(from, to) == 0;
	}
	if (d)
		closedir(d);
	snprintf(from, sizeof from, "%s/%s/index.m3u8", final, PLAYABLE_NAME);
	snprintf(to, sizeof to, "%s/%s/index.m3u8", tmp, PLAYABLE_NAME);
	if (!ok || link(from, to) != 0) {
		snprintf(path, sizeof path, "%s/%s", tmp, PLAYABLE_NAME);
		hls_remove_tree(path);
		return false;
	}
	return true;
}

/* Removes the scratch folders earlier attempts of this job left (they are dead: see run()), and the one
 * named by the job alone that workers before per-attempt names used. */
static int remove_earlier_scratch(const char *folder, const struct job *job)
{
	int ret = 0;
	for (int attempt = 0; attempt < job->attempt && ret == 0; attempt++) {
		char *old = attempt ? xasprintf("%s/hls-tmp-%lld-%d", folder, (long long)job->id, attempt)
				    : xasprintf("%s/hls-tmp-%lld", folder, (long long)job->id);
		ret = hls_remove_tree(old);
		free(old);
	}
	return ret;
}

static int run(struct job *job, const char *mp4_path, const char *quick_dir, const char *hls_dir)
{
	struct transcode t = {.job = job, .vi = -1, .ai = -1, .mp4_path = mp4_path, .quick_dir = quick_dir,
			      .hls_dir = hls_dir};
	struct hls_profile profiles[HLS_MAX_RUNGS];
	struct hls_variant variants[HLS_MAX_RUNGS];
	char *path = NULL, *folder = NULL, *tmp = NULL, *final = NULL, why[256];
	const char *source = NULL;
	json_object *v = NULL, *result = NULL;
	bool fmp4 = strcmp(job->cfg->hls_segment_type, "mpegts") != 0;
	int ret = -1, err = 0, np;

	job_progress(job, 0);
	av_log_set_level(AV_LOG_ERROR);
	t.audio_next_pts = AV_NOPTS_VALUE;
	pthread_mutex_init(&t.mux_lock, NULL);
	t.last_vpts = AV_NOPTS_VALUE;
	t.seg_s = (double)job->cfg->hls_segment_s;
	if (json_object_object_get_ex(job->payload, "segment_type", &v) && json_object_is_type(v, json_type_string))
		fmp4 = strcmp(json_object_get_string(v), "mpegts") != 0;
	path = job_source_path(job);
	if (!path)
		goto out;
	source = strrchr(path, '/') + 1; /* messages name the file, never the storage path */
	if ((np = hls_parse_profiles(job->cfg->transcode_profiles, profiles, HLS_MAX_RUNGS, why, sizeof why)) < 0) {
		job_error(job, "transcode_profiles: %s", why);
		goto out;
	}
	if ((np = select_profiles(job, profiles, np)) < 0 || open_source(&t, path, source) < 0)
		goto out;
	if (!(t.frame = av_frame_alloc()) || !(t.pkt = av_packet_alloc())) {
		job_error(job, "out of memory");
		goto out;
	}

	folder = storage_path(job->cfg, job->recording_id, NULL);
	final = storage_path(job->cfg, job->recording_id, "hls");
	/* The scratch folder is the attempt's own: an attempt whose lease ran out is killed before the next one
	 * starts (supervisor.c), but its folder stays behind, and the next one must not write into it. quick_dir
	 * (hls/quick/) keeps its fixed name, as players read it while it grows: attempts no longer overlap. */
	tmp = mp4_path || quick_dir ? NULL : xasprintf("%s/hls-tmp-%lld-%d", folder, (long long)job->id, job->attempt);
	if (tmp && (remove_earlier_scratch(folder, job) != 0 || hls_remove_tree(tmp) != 0 || mkdir(tmp, 0750) != 0)) {
		job_error(job, "cannot create the output folder: %s", strerror(errno));
		goto out;
	}
	if (quick_dir) {
		choose_copies(&t);
		t.quick_target = (int)ceil(t.seg_s);
		if (t.copy_video) {
			int bound = copy_target(&t);
			t.copy_video = bound > 0; /* no key frame index: encoded, its boundaries are ours */
			if (bound > t.quick_target)
				t.quick_target = bound;
		}
	}
	if (t.ai >= 0 && !t.copy_audio && open_audio(&t) < 0)
		goto out;
	if (t.vi >= 0) {
		if (!t.copy_video && open_decoder(&t, t.vi, &t.vdec) < 0)
			goto out;
		t.frame_rate = av_guess_frame_rate(t.in, t.in->streams[t.vi], NULL);
		if (t.frame_rate.num <= 0 || t.frame_rate.den <= 0)
			t.frame_rate = (AVRational){30, 1};
		choose_rungs(&t, profiles, np);
		if (mp4_path)
			t.n = 1; /* the largest rung only */
		if (quick_dir) { /* the smallest rung, or the source's own size when copied */
			t.rungs[0] = t.rungs[t.n - 1];
			t.n = 1;
			if (t.copy_video) {
				const AVCodecParameters *par = t.in->streams[t.vi]->codecpar;
				t.rungs[0].width = par->width;
				t.rungs[0].height = par->height;
				if (par->extradata_size > 0)
					avc_codecs(par->extradata, par->extradata_size, t.rungs[0].codecs,
						   sizeof t.rungs[0].codecs);
			}
		}
	} else {
		t.n = 1; /* audio only: one variant */
		snprintf(t.rungs[0].pr.name, sizeof t.rungs[0].pr.name, "audio");
	}
	if (quick_dir)
		snprintf(t.rungs[0].pr.name, sizeof t.rungs[0].pr.name, "%s", PLAYABLE_NAME);
	for (int i = 0; i < t.n; i++) {
		struct rung *r = &t.rungs[i];
		char *dir = tmp ? xasprintf("%s/%s", tmp, r->pr.name) : quick_dir ? xstrdup(quick_dir) : NULL;
		int bad = tmp && mkdir(dir, 0750) != 0;
		if (bad)
			job_error(job, "cannot create the output folder: %s", strerror(errno));
		if (!bad && t.vi >= 0 && !t.copy_video &&
		    open_video_encoder(&t, r, fmp4 || mp4_path) < 0)
			bad = 1;
		if (!bad && open_muxer(&t, r, dir, fmp4) < 0)
			bad = 1;
		free(dir);
		if (bad)
			goto out;
	}
	if ((err = rungs_start(&t)) < 0) {
		job_error(job, "cannot start the encoders' threads: %s", av_err2str(err));
		goto out;
	}

	while ((err = av_read_frame(t.in, t.pkt)) >= 0) {
		if (job_stop_requested()) {
			job_error(job, "stopped");
			goto out;
		}
		report_progress(&t, t.pkt);
		AVPacket *pkt = av_packet_clone(t.pkt);
		av_packet_unref(t.pkt);
		if (!pkt) {
			err = AVERROR(ENOMEM);
			break;
		}
		if ((pkt->stream_index == t.vi && t.copy_video) || (pkt->stream_index == t.ai && t.copy_audio))
			err = copy_packet(&t, pkt);
		else if (pkt->stream_index == t.vi)
			err = decode(&t, t.vdec, true, pkt);
		else if (pkt->stream_index == t.ai)
			err = decode(&t, t.adec, false, pkt);
		else
			err = 0;
		av_packet_free(&pkt);
		if (err >= 0 && (quick_sync(&t) < 0 || quick_check(&t) < 0))
			goto out;
		if (err < 0)
			break;
	}
	if (job_stop_requested()) {
		job_error(job, "stopped");
		goto out;
	}
	if (err != AVERROR_EOF) {
		job_error(job, "%s cannot be transcoded: %s", source, av_err2str(err));
		goto out;
	}
	if (t.vdec && (err = decode(&t, t.vdec, true, NULL)) < 0)
		goto fail;
	if ((err = rungs_stop(&t, false)) < 0)
		goto fail;
	if (t.adec) {
		if ((err = decode(&t, t.adec, false, NULL)) < 0 || (err = audio_frame(&t, NULL)) < 0 ||
		    (err = audio_drain(&t, true)) < 0 || (err = encode(&t, t.aenc, NULL, NULL)) < 0)
			goto fail;
	}
	if (t.last_vpts == AV_NOPTS_VALUE && t.audio_next_pts == AV_NOPTS_VALUE) {
		job_error(job, "%s holds no picture or sound that can be decoded", source);
		goto out;
	}
	for (int i = 0; i < t.n; i++) {
		struct rung *r = &t.rungs[i];
		err = av_write_trailer(r->mux);
		r->header_written = false; /* even when it failed: a second call crashes libavformat */
		if (err < 0 || (err = hls_write_error()) < 0)
			goto fail;
		if (mp4_path) {
			ret = 0;
			goto out;
		}
		struct hls_variant *var = &variants[i];
		variant_of(&t, r, var);
		if (quick_dir) {
			/* Published as it grew: now with ENDLIST, measured in full. */
			if (quick_sync(&t) < 0 || playable_publish(job, t.hls_dir, var, true) < 0)
				goto out;
			ret = 0;
			goto out;
		}
		char *dir = xasprintf("%s/%s", tmp, r->pr.name);
		int bad = hls_measure(dir, var);
		free(dir);
		if (bad) {
			job_error(job, "the %s rung has no segments", r->pr.name);
			goto out;
		}
	}
	char *master = xasprintf("%s/master.m3u8", tmp);
	int bad = hls_write_master(master, variants, t.n);
	free(master);
	bool named_quick = false;
	for (int i = 0; i < t.n; i++)
		named_quick |= strcmp(t.rungs[i].pr.name, PLAYABLE_NAME) == 0;
	bool carried = !bad && !named_quick && carry_quick(final, tmp);
	if (!bad)
		hls_own_tree(tmp, folder);
	if (bad || publish(tmp, final, folder) != 0) {
		job_error(job, "cannot publish the HLS folder: %s", strerror(errno));
		goto out;
	}
	result = json_object_new_object();
	json_object_object_add(result, "renditions", hls_renditions_json(variants, t.n, "ready"));
	json_object_object_add(result, "segment_type", json_object_new_string(fmp4 ? "fmp4" : "mpegts"));
	if (carried)
		json_object_object_add(result, "quick_carried", json_object_new_boolean(true));
	job_result(job, result);
	job_progress(job, 1);
	ret = 0;
	goto out;
fail:
	if (hls_write_error() < 0) /* the likely cause of whatever failed after it (a full disk) */
		job_error(job, "cannot write the HLS files: %s", av_err2str(hls_write_error()));
	else
		job_error(job, "%s cannot be transcoded: %s", source, av_err2str(err));
out:
	rungs_stop(&t, true); /* the threads that are still running (an error, a stop) */
	for (int i = 0; i < t.n; i++) {
		struct rung *r = &t.rungs[i];
		av_packet_free(&r->pkt);
		if (r->mux) {
			if (r->header_written)
				av_write_trailer(r->mux);
			if (!(r->mux->oformat->flags & AVFMT_NOFILE))
				avio_closep(&r->mux->pb);
			avformat_free_context(r->mux);
		}
		avcodec_free_context(&r->enc);
		sws_freeContext(r->sws);
	}
	if (tmp && ret != 0)
		hls_remove_tree(tmp);
	av_frame_free(&t.quick_prev);
	avcodec_free_context(&t.vdec);
	avcodec_free_context(&t.adec);
	avcodec_free_context(&t.aenc);
	swr_free(&t.swr);
	if (t.fifo)
		av_audio_fifo_free(t.fifo);
	av_frame_free(&t.frame);
	av_packet_free(&t.pkt);
	avformat_close_input(&t.in);
	free(path);
	free(folder);
	free(tmp);
	free(final);
	pthread_mutex_destroy(&t.mux_lock);
	return ret;
}

int transcode_run(struct job *job)
{
	return run(job, NULL, NULL, NULL);
}

int transcode_to_mp4(struct job *job, const char *out_path)
{
	return run(job, out_path, NULL, NULL);
}

int transcode_quick(struct job *job, const char *hls_dir, const char *quick_dir)
{
	return run(job, NULL, quick_dir, hls_dir);
}
