/* mp4.c: the mp4 job: one faststart MP4 (moov before mdat) for downloads, STORAGE/<id>/mp4/<rung>.mp4; a remux
 * when the source is H.264 and/or AAC/MP3, else an encode of the ladder's largest rung (transcode.c). */
#include "kinds.h"

#include "hls.h"
#include "../lib/storage.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SOURCE_FORMATS "mov,matroska,mpegts,mp3,ogg,wav,aac,flac,flv"

/* The file's name: the largest profile the source's height reaches (as the
 * transcode job names its rungs), the smallest one below all, "audio" without video. */
static void mp4_name(const struct vtp_config *cfg, int height, char *out, size_t size)
{
	struct hls_profile pr[HLS_MAX_RUNGS];
	char why[128];
	int n = hls_parse_profiles(cfg->transcode_profiles, pr, HLS_MAX_RUNGS, why, sizeof why), best = -1, low = -1;
	for (int i = 0; i < n; i++) {
		if (low < 0 || pr[i].height < pr[low].height)
			low = i;
		if (pr[i].height <= height && (best < 0 || pr[i].height > pr[best].height))
			best = i;
	}
	if (height <= 0 || n <= 0)
		snprintf(out, size, "%s", height <= 0 ? "audio" : "video");
	else
		snprintf(out, size, "%s", pr[best >= 0 ? best : low].name);
}

/* Copies the best video and audio streams of in into a faststart MP4 at path. */
static int remux(struct job *job, AVFormatContext *in, int vi, int ai, const char *path)
{
	AVFormatContext *out = NULL;
	AVDictionary *opts = NULL;
	AVPacket *pkt = av_packet_alloc();
	int map[2] = {vi, ai}, out_index[64], err = 0, ret = -1;
	double duration = in->duration > 0 ? (double)in->duration / AV_TIME_BASE : 0, last = 0;

	for (unsigned i = 0; i < 64; i++)
		out_index[i] = -1;
	if (!pkt || (err = avformat_alloc_output_context2(&out, NULL, "mp4", path)) < 0)
		goto fail;
	for (int k = 0; k < 2; k++) {
		if (map[k] < 0 || map[k] >= 64)
			continue;
		AVStream *st = avformat_new_stream(out, NULL);
		if (!st || (err = avcodec_parameters_copy(st->codecpar, in->streams[map[k]]->codecpar)) < 0)
			goto fail;
		st->codecpar->codec_tag = 0;
		st->time_base = in->streams[map[k]]->time_base;
		out_index[map[k]] = st->index;
	}
	if ((err = avio_open(&out->pb, path, AVIO_FLAG_WRITE)) < 0)
		goto fail;
	av_dict_set(&opts, "movflags", "+faststart", 0);
	if ((err = avformat_write_header(out, &opts)) < 0)
		goto fail;
	while ((err = av_read_frame(in, pkt)) >= 0) {
		if (job_stop_requested()) {
			job_error(job, "stopped");
			goto out;
		}
		int si = pkt->stream_index;
		if (si < 64 && out_index[si] >= 0) {
			if (duration > 0 && pkt->pts != AV_NOPTS_VALUE) {
				double p = pkt->pts * av_q2d(in->streams[si]->time_base) / duration * 0.9;
				if (p > last + 0.02) {
					last = p;
					job_progress(job, p > 0.9 ? 0.9 : p);
				}
			}
			pkt->stream_index = out_index[si];
			av_packet_rescale_ts(pkt, in->streams[si]->time_base, out->streams[out_index[si]]->time_base);
			pkt->pos = -1;
			if ((err = av_interleaved_write_frame(out, pkt)) < 0)
				goto fail;
		}
		av_packet_unref(pkt);
	}
	if (err != AVERROR_EOF || (err = av_write_trailer(out)) < 0)
		goto fail;
	ret = 0;
	goto out;
fail:
	job_error(job, "the source cannot be copied into an MP4: %s", av_err2str(err));
out:
	av_dict_free(&opts);
	av_packet_free(&pkt);
	if (out) {
		avio_closep(&out->pb);
		avformat_free_context(out);
	}
	return ret;
}

int mp4_run(struct job *job)
{
	AVFormatContext *in = NULL;
	AVDictionary *opts = NULL;
	char *path = NULL, *folder = NULL, *dir = NULL, *tmp = NULL, *final = NULL, name[32];
	const char *source = NULL;
	json_object *result = NULL;
	int ret = -1, err;

	job_progress(job, 0);
	av_log_set_level(AV_LOG_ERROR);
	path = job_source_path(job);
	if (!path)
		goto out;
	source = strrchr(path, '/') + 1; /* messages name the file, never the storage path */
	if (!(in = avformat_alloc_context())) {
		job_error(job, "out of memory");
		goto out;
	}
	in->interrupt_callback = (AVIOInterruptCB){job_interrupt_cb, job};
	av_dict_set(&opts, "format_whitelist", SOURCE_FORMATS, 0);
	av_dict_set(&opts, "protocol_whitelist", "file", 0);
	if ((err = avformat_open_input(&in, path, NULL, &opts)) < 0 || (err = avformat_find_stream_info(in, NULL)) < 0) {
		job_error(job, "%s is not a media file that can be read: %s", source, av_err2str(err));
		goto out;
	}
	int vi = av_find_best_stream(in, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
	int ai = av_find_best_stream(in, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
	if (vi >= 0 && (in->streams[vi]->disposition & AV_DISPOSITION_ATTACHED_PIC))
		vi = -1;
	if (vi < 0 && ai < 0) {
		job_error(job, "%s has no audio or video stream", source);
		goto out;
	}
	enum AVCodecID vc = vi >= 0 ? in->streams[vi]->codecpar->codec_id : AV_CODEC_ID_NONE;
	enum AVCodecID ac = ai >= 0 ? in->streams[ai]->codecpar->codec_id : AV_CODEC_ID_NONE;
	/* What every browser plays from an MP4: H.264, AAC or MP3. */
	bool copy = (vi < 0 || vc == AV_CODEC_ID_H264) && (ai < 0 || ac == AV_CODEC_ID_AAC || ac == AV_CODEC_ID_MP3);
	mp4_name(job->cfg, vi >= 0 ? in->streams[vi]->codecpar->height : 0, name, sizeof name);

	folder = storage_path(job->cfg, job->recording_id, NULL);
	dir = storage_path(job->cfg, job->recording_id, "mp4");
	tmp = xasprintf("%s/%s.tmp-%lld.mp4", dir, name, (long long)job->id);
	final = xasprintf("%s/%s.mp4", dir, name);
	if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
		job_error(job, "cannot create the output folder: %s", strerror(errno));
		goto out;
	}
	if (copy) {
		if (remux(job, in, vi, ai, tmp) < 0)
			goto out;
	} else {
		avformat_close_input(&in); /* transcode.c reads the source itself */
		if (transcode_to_mp4(job, tmp) < 0)
			goto out;
	}
	struct stat st;
	if (geteuid() == 0 && stat(folder, &st) == 0) { /* readable by vtp-api, the folder's owner */
		if (chown(dir, st.st_uid, st.st_gid) != 0 || chown(tmp, st.st_uid, st.st_gid) != 0) {
			/* best effort */
		}
	}
	int fd = open(tmp, O_RDONLY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	if (rename(tmp, final) != 0) {
		job_error(job, "cannot publish the MP4: %s", strerror(errno));
		goto out;
	}
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY)) >= 0) {
		fsync(fd);
		close(fd);
	}
	result = json_object_new_object();
	char *rel = xasprintf("mp4/%s.mp4", name);
	json_object_object_add(result, "file", json_object_new_string(rel));
	free(rel);
	json_object_object_add(result, "remuxed", json_object_new_boolean(copy));
	job_result(job, result);
	job_progress(job, 1);
	ret = 0;
out:
	if (ret != 0 && tmp)
		unlink(tmp);
	av_dict_free(&opts);
	avformat_close_input(&in);
	free(path);
	free(folder);
	free(dir);
	free(tmp);
	free(final);
	return ret;
}
