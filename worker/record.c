/* record.c: the record job: captures a live source (RTP described by an SDP, or an rtmp/srt/rtsp URL) with
 * libavformat, remuxed without re-encoding into crash-safe Matroska parts, joined into source.mkv as they close. */
#include "kinds.h"
#include "record_fill.h"
#include "rtp_relay.h"

#include "../lib/db.h"
#include "../lib/log.h"
#include "../lib/storage.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/mathematics.h>
#include <libavutil/parseutils.h>
#include <libavutil/time.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define FSYNC_EVERY_US 2000000	 /* parts are made durable at least this often */
#define PROGRESS_EVERY_US 1000000
#define MAX_STREAMS 8
#define NOTE_MAX 1024
/* A part's timestamps start this far after the first packet that arrived: a stream whose first packet
 * arrives later but is timed earlier (its encoder ran ahead, or RTCP put it there) is kept, not dropped.
 * The join moves the earliest packet to 0. */
#define LEAD_US 2000000
/* Source type sdp: how long the first packets wait for every stream's first RTCP sender report before the streams
 * are placed by when their first packets arrived instead. mediasoup reports a consumer's stream every 1 s (video) or
 * 5 s (audio), times a random 0.5..1.5: an audio-only transport's first report can take 7.5 s. A crash within this
 * wait loses what waits; a stop or handover writes it. */
#define SYNC_WAIT_NS 8000000000LL
#define SYNC_WAIT_PACKETS 8192		 /* 8 s of 2.5 Mb/s video and its audio fit well within these */
#define SYNC_WAIT_BYTES (32 * 1024 * 1024)

/* Why capture ended. */
enum end_reason { END_STOP, END_MAX, END_INACTIVE, END_SOURCE };

/* One part being written: our own descriptor under a libavformat writer, so it can be fsynced. */
struct part {
	int fd;
	AVFormatContext *out;
	int written_error; /* errno of a failed write, 0 */
	bool header_written;
};

/* The background join appends a part only with this much free space to spare beyond twice the part's size: the
 * live capture must never be the one that finds the disk full. */
#define JOIN_SPARE_BYTES (256LL * 1024 * 1024)

/* The joined file while it is made (source.mkv.tmp-<attempt>): the parts are appended in order, one at a time,
 * with what carries from one to the next (where the timeline is, each stream's last timestamp, where each audio
 * stream's silence fill has got to). A thread (join_thread) appends each part as soon as it is closed, while the
 * recording goes on, so that the stop has only the last part left to append; a part that brings a stream the file
 * was begun without (a retry saw a camera the first attempt did not) makes the stop join every part again
 * (join_parts).
 * Through r only parts_dir, cfg and job->recording_id are read: they do not change while the recorder runs. */
struct join {
	const struct recorder *r;
	struct job *finishing;	 /* told job_still_finishing() while the stop waits; NULL in the background */
	AVFormatContext *out;
	char *tmp, *final;	 /* source.mkv.tmp-<attempt>, source.mkv */
	char *dir;		 /* STORAGE_PATH/<id> */
	AVPacket *pkt;
	int scanned;		 /* the output has the streams of parts 1..scanned */
	int parts;		 /* parts 1..parts are appended (or skipped: cut before their header) */
	int64_t offset, end;	 /* µs */
	bool joined_any, published;
	char prev_path[4096];
	struct silence silence[MAX_STREAMS];
	int64_t audio_end[MAX_STREAMS], last_dts[MAX_STREAMS], filled; /* µs */
	/* Per video stream, since the last retry: the first frame's dts (µs) and how many frames were written. Their
	 * mean interval is the frame grid that a retry's video continues on (grid_shift). */
	int64_t grid_first[MAX_STREAMS], grid_frames[MAX_STREAMS];
	char note[NOTE_MAX];
	int used;
	char why[256];		 /* what failed */
	bool new_stream;	 /* why: a part has a stream the file was begun without (every part is joined again) */
	atomic_bool abandon;	 /* the background append stops at its next packet: the file is not wanted */
	/* the background thread */
	bool running;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int closed;		 /* under lock: parts 1..closed are closed (immutable) and may be appended */
	bool quit;		 /* under lock: append no more */
	bool failed;		 /* the background join gave up (why); the stop joins every part */
};

struct recorder {
	struct job *job;
	const struct vtp_config *cfg;
	char *parts_dir; /* STORAGE_PATH/<id>/parts */
	int next_part;	 /* number of the next part file */
	AVFormatContext *in;
	struct rtp_relay *relay; /* source type sdp: what binds the SDP's ports and counts loss and jitter */
	int video;	 /* input index of the video stream, -1 */
	int64_t t0;	 /* first packet's dts (µs): the recording's zero */
	/* Source type sdp: where each stream's first packet is on the sender's clock, from its first sender report
	 * (see place_streams()); until that is known, what is read waits in `waiting`, in the order it was read. */
	bool placed;
	int64_t offset_us[MAX_STREAMS]; /* added to a stream's timestamps */
	int64_t first_read_ns[MAX_STREAMS]; /* CLOCK_REALTIME when a stream's first packet was read, 0 */
	AVPacket **waiting; /* SYNC_WAIT_PACKETS entries once allocated */
	int n_waiting;
	int64_t waiting_bytes;
	int64_t last_dts[MAX_STREAMS];
	AVPacket *held[MAX_STREAMS]; /* a stream's first packet, until a timestamp for it is known */
	int map[MAX_STREAMS]; /* input stream -> output stream, -1: not recorded */
	bool video_started;   /* a video keyframe was recorded */
	int64_t end_us;	 /* end of the media written so far (µs since t0) */
	int64_t part_started_us;
	struct part part;
	struct join join; /* the parts joined while it records */
	/* health, per input stream */
	int64_t packets[MAX_STREAMS], bytes[MAX_STREAMS], dropped[MAX_STREAMS];
	int64_t last_key_wall[MAX_STREAMS];
	int64_t bytes_then[MAX_STREAMS], health_at; /* at the previous health report */
	int64_t last_packet, first_packet; /* av_gettime_relative() of the last and first packets; 0: none yet */
	struct vtp_db db;
	bool db_open;
	bool announced; /* status set to 'recording' */
};

static void join_closed(struct recorder *r, int n);

static int write_cb(void *opaque, uint8_t *buf, int size)
{
	struct part *p = opaque;
	int done = 0;
	while (done < size) {
		ssize_t n = write(p->fd, buf + done, (size_t)(size - done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			p->written_error = errno;
			return AVERROR(errno);
		}
		done += (int)n;
	}
	return size;
}

/* STORAGE_PATH/<id>/parts/part-NNNN.mkv */
static void part_path(const struct recorder *r, int n, char *out, size_t size)
{
	snprintf(out, size, "%s/part-%04d.mkv", r->parts_dir, n);
}

/* The highest part number present in dir, 0 when none. */
static int last_part_number(const char *dir)
{
	DIR *d = opendir(dir);
	int max = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int n;
		char again[32];
		if (sscanf(e->d_name, "part-%9d.mkv", &n) == 1 && n > 0 &&
		    snprintf(again, sizeof again, "part-%04d.mkv", n) > 0 && strcmp(again, e->d_name) == 0 && n > max)
			max = n;
	}
	closedir(d);
	return max;
}

/* Sets the recording's status to 'recording' on the first packets. Done by the
 * child itself over its own connection: the supervisor relays only a
 * progress number, and the status should change when media arrives, not
 * whenever some later report is interpreted. */
static void announce_recording(struct recorder *r)
{
	if (r->announced)
		return;
	r->announced = true;
	PGresult *res = NULL;
	const char *params[] = {r->job->recording_id};
	if (vtp_db_query(&r->db, &res,
			 "UPDATE recordings SET status = 'recording', started_at = COALESCE(started_at, clock_timestamp()),"
			 " updated_at = clock_timestamp() WHERE id = $1 AND status = 'pending'",
			 1, params) != VTP_DB_OK)
		log_warn("recording %s: cannot set the status to recording", r->job->recording_id);
	PQclear(res);
}

/* True when the stop came from the recording's owner (its job's cancel_requested_at), false when the
 * worker is shutting down or timed the job out: then the job is handed back, and a retry continues. */
static bool stop_is_final(struct recorder *r)
{
	PGresult *res = NULL;
	char id[24];
	snprintf(id, sizeof id, "%" PRId64, r->job->id);
	const char *params[] = {id};
	bool final = true;
	if (vtp_db_query(&r->db, &res, "SELECT cancel_requested_at IS NOT NULL AS c FROM jobs WHERE id = $1", 1,
			 params) == VTP_DB_OK &&
	    PQntuples(res) == 1)
		final = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return final;
}

static int part_close(struct recorder *r)
{
	struct part *p = &r->part;
	int ret = 0;
	if (!p->out)
		return 0;
	if ((p->header_written && av_write_trailer(p->out) < 0) || p->written_error)
		ret = -1;
	p->header_written = false;
	if (p->out->pb) {
		avio_flush(p->out->pb);
		av_freep(&p->out->pb->buffer);
		avio_context_free(&p->out->pb);
	}
	avformat_free_context(p->out);
	p->out = NULL;
	if (fsync(p->fd) < 0 || close(p->fd) < 0)
		ret = -1;
	p->fd = -1;
	return ret;
}

/* AAC in MPEG-TS (SRT) carries its configuration in each frame's ADTS header, but Matroska wants it up front
 * (the muxer strips the ADTS headers itself): builds the 2-byte AudioSpecificConfig from par. 0 or -1. */
static int aac_config(AVCodecParameters *par)
{
	static const int rates[] = {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350};
	int index = -1, channels = par->ch_layout.nb_channels;
	for (int i = 0; i < (int)(sizeof rates / sizeof rates[0]); i++)
		if (rates[i] == par->sample_rate)
			index = i;
	if (index < 0 || channels < 1 || channels > 8)
		return -1;
	int object = par->profile >= 0 ? par->profile + 1 : 2; /* FF_PROFILE_AAC_LOW is 1, AAC LC is object type 2 */
	par->extradata = av_mallocz(2 + AV_INPUT_BUFFER_PADDING_SIZE);
	if (!par->extradata)
		return -1;
	par->extradata_size = 2;
	par->extradata[0] = (uint8_t)(object << 3 | index >> 1);
	par->extradata[1] = (uint8_t)((index & 1) << 7 | (channels == 8 ? 7 : channels) << 3);
	return 0;
}

static int part_open(struct recorder *r)
{
	struct part *p = &r->part;
	char path[4096];
	part_path(r, r->next_part, path, sizeof path);
	p->written_error = 0;
	p->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (p->fd < 0) {
		job_error(r->job, "cannot create part %d: %s", r->next_part, strerror(errno));
		return -1;
	}
	r->next_part++;
	int dfd = open(r->parts_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	if (avformat_alloc_output_context2(&p->out, NULL, "matroska", NULL) < 0)
		goto fail;
	uint8_t *buf = av_malloc(65536);
	if (!buf)
		goto fail;
	p->out->pb = avio_alloc_context(buf, 65536, 1, p, NULL, write_cb, NULL);
	if (!p->out->pb) {
		av_free(buf);
		goto fail;
	}
	p->out->flags |= AVFMT_FLAG_CUSTOM_IO;
	p->out->max_interleave_delta = 500000; /* a silent stream must not hold the others back for long */
	for (unsigned i = 0; i < r->in->nb_streams && i < MAX_STREAMS; i++) {
		if (r->map[i] < 0)
			continue;
		AVStream *st = avformat_new_stream(p->out, NULL);
		if (!st || avcodec_parameters_copy(st->codecpar, r->in->streams[i]->codecpar) < 0)
			goto fail;
		st->codecpar->codec_tag = 0;
		st->time_base = AV_TIME_BASE_Q;
		if (st->codecpar->codec_id == AV_CODEC_ID_AAC && st->codecpar->extradata_size == 0 &&
		    aac_config(st->codecpar) < 0)
			goto fail;
	}
	/* When the part began (Matroska DateUTC): the join measures a crash's gap with it. */
	char when[64];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + n, sizeof when - n, ".%06ldZ", ts.tv_nsec / 1000);
	av_dict_set(&p->out->metadata, "creation_time", when, 0);
	AVDictionary *opts = NULL;
	/* live: never seek back (the file is readable at any instant); small clusters: little lost on a crash. */
	av_dict_set(&opts, "live", "1", 0);
	av_dict_set(&opts, "cluster_time_limit", "1000", 0);
	av_dict_set(&opts, "cluster_size_limit", "2097152", 0);
	int err = avformat_write_header(p->out, &opts);
	av_dict_free(&opts);
	if (err < 0) {
		job_error(r->job, "cannot start part %d: %s", r->next_part - 1, av_err2str(err));
		goto fail_reported;
	}
	p->header_written = true;
	r->part_started_us = -1;
	return 0;
fail:
	job_error(r->job, "cannot start part %d: out of memory", r->next_part - 1);
fail_reported:
	part_close(r);
	return -1;
}

static void part_sync(struct recorder *r)
{
	if (r->part.out && r->part.out->pb) {
		avio_flush(r->part.out->pb);
		fdatasync(r->part.fd);
	}
}

static json_object *health_json(struct recorder *r, double elapsed_s)
{
	json_object *streams = json_object_new_array();
	int64_t now = av_gettime_relative();
	for (unsigned i = 0; i < r->in->nb_streams && i < MAX_STREAMS; i++) {
		json_object *s = json_object_new_object();
		json_object_object_add(s, "type",
				       json_object_new_string(av_get_media_type_string(r->in->streams[i]->codecpar->codec_type)
								      ?: "unknown"));
		json_object_object_add(s, "codec", json_object_new_string(avcodec_get_name(r->in->streams[i]->codecpar->codec_id)));
		json_object_object_add(s, "packets", json_object_new_int64(r->packets[i]));
		json_object_object_add(s, "bytes", json_object_new_int64(r->bytes[i]));
		json_object_object_add(s, "dropped", json_object_new_int64(r->dropped[i]));
		/* over the time since the previous report (the whole recording for the first) */
		double span = r->health_at ? (double)(now - r->health_at) / 1e6 : elapsed_s;
		json_object_object_add(s, "bit_rate",
				       json_object_new_int64(span > 0 ? (int64_t)((double)(r->bytes[i] - r->bytes_then[i]) * 8 / span) : 0));
		r->bytes_then[i] = r->bytes[i];
		struct rtp_stream_stats rs;
		if (r->relay && rtp_relay_stats(r->relay, r->in->streams[i]->id, &rs) == 0) {
			json_object_object_add(s, "lost", json_object_new_int64(rs.lost));
			json_object_object_add(s, "jitter_ms", json_object_new_double(round(rs.jitter_ms * 10) / 10));
			json_object_object_add(s, "foreign", json_object_new_int64(rs.foreign));
		}
		if (r->last_key_wall[i] > 0)
			json_object_object_add(s, "last_keyframe_age_s",
					       json_object_new_double(round((double)(now - r->last_key_wall[i]) / 1e5) / 10));
		json_object_array_add(streams, s);
	}
	r->health_at = now;
	return streams;
}

/* True when an Annex B H.264 packet holds an IDR slice (RTP's depacketizer does not flag keyframes). */
static bool h264_idr(const AVPacket *pkt)
{
	const uint8_t *p = pkt->data, *end = pkt->data + pkt->size;
	while (p + 3 < end) {
		if (p[0] == 0 && p[1] == 0 && p[2] == 1) {
			if ((p[3] & 0x1f) == 5)
				return true;
			p += 3;
		} else {
			p++;
		}
	}
	return false;
}

/* Writes the streams' health into the job's progress_detail (fenced by the attempt, like a heartbeat).
 * A database that does not answer is left alone for 30 s: the capture must not wait on it. */
static void report_health(struct recorder *r, double elapsed_s, int64_t now)
{
	static int64_t quiet_until;
	if (now < quiet_until)
		return;
	json_object *detail = json_object_new_object();
	json_object_object_add(detail, "recorded_s", json_object_new_double(round((double)r->end_us / 1e5) / 10));
	json_object_object_add(detail, "part", json_object_new_int(r->next_part - 1));
	json_object_object_add(detail, "streams", health_json(r, elapsed_s));
	char id[24], attempt[16];
	snprintf(id, sizeof id, "%" PRId64, r->job->id);
	snprintf(attempt, sizeof attempt, "%d", r->job->attempt);
	const char *params[] = {id, attempt,
				json_object_to_json_string_ext(detail, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)};
	PGresult *res = NULL;
	if (vtp_db_query(&r->db, &res,
			 "UPDATE jobs SET progress_detail = $3::jsonb WHERE id = $1 AND attempts = $2 AND state = 'running'",
			 3, params) != VTP_DB_OK)
		quiet_until = now + 30 * 1000000LL;
	PQclear(res);
	json_object_put(detail);
}

/* Writes one input packet into the current part; rolls to a new part at a keyframe when the part is old
 * enough. Returns 0, or -1 after job_error() on a write failure. */
static int record_packet(struct recorder *r, AVPacket *pkt)
{
	unsigned si = (unsigned)pkt->stream_index;
	if (si >= r->in->nb_streams || si >= MAX_STREAMS)
		return 0;
	AVStream *ist = r->in->streams[si];
	int64_t ts = pkt->dts != AV_NOPTS_VALUE ? pkt->dts : pkt->pts;
	if (ist->codecpar->codec_id == AV_CODEC_ID_H264 && !(pkt->flags & AV_PKT_FLAG_KEY) && h264_idr(pkt))
		pkt->flags |= AV_PKT_FLAG_KEY;
	r->packets[si]++;
	r->bytes[si] += pkt->size;
	if (r->map[si] < 0) {
		r->dropped[si]++; /* a stream that had not started when the recording did */
		return 0;
	}
	if (pkt->flags & AV_PKT_FLAG_KEY)
		r->last_key_wall[si] = av_gettime_relative();
	if (ts == AV_NOPTS_VALUE) {
		/* libavformat's H.264 parser gives the stream's first frame (the keyframe that everything until
		 * the next one needs) no timestamp: it is held and written just before the next frame. */
		if (r->last_dts[si] == AV_NOPTS_VALUE && !r->held[si] && (r->held[si] = av_packet_clone(pkt)) != NULL)
			return 0;
		r->dropped[si]++;
		return 0;
	}
	if (r->held[si]) {
		AVPacket *held = r->held[si];
		r->held[si] = NULL;
		AVRational rate = ist->r_frame_rate.num > 0 ? ist->r_frame_rate : ist->avg_frame_rate;
		int64_t step = rate.num > 0 ? av_rescale_q(1, av_inv_q(rate), ist->time_base) : 1;
		held->dts = held->pts = ts - (step > 0 ? step : 1);
		r->packets[si]--; /* counted when it arrived */
		r->bytes[si] -= held->size;
		int w = record_packet(r, held);
		av_packet_free(&held);
		if (w < 0)
			return -1;
	}
	int64_t us = av_rescale_q(ts, ist->time_base, AV_TIME_BASE_Q) + r->offset_us[si];
	if (r->t0 == AV_NOPTS_VALUE)
		r->t0 = us;
	us -= r->t0;
	if (us < -LEAD_US || (r->last_dts[si] != AV_NOPTS_VALUE && us < r->last_dts[si])) {
		r->dropped[si]++; /* long before the start, or out of order: Matroska cannot take it */
		return 0;
	}
	/* Only once a keyframe is actually written: what follows it decodes. */
	if ((int)si == r->video && !r->video_started) {
		if (!(pkt->flags & AV_PKT_FLAG_KEY)) {
			r->dropped[si]++; /* joined mid-stream (a retry): nothing decodes before a keyframe */
			return 0;
		}
		r->video_started = true;
	}
	r->last_dts[si] = us;
	bool key = (int)si == r->video ? (pkt->flags & AV_PKT_FLAG_KEY) != 0 : r->video < 0;
	if (r->part_started_us >= 0 && key && us - r->part_started_us >= (int64_t)r->cfg->record_part_s * 1000000) {
		if (part_close(r) < 0) {
			job_error(r->job, "cannot finish a part: %s", strerror(r->part.written_error ?: EIO));
			return -1;
		}
		join_closed(r, r->next_part - 1);
		if (part_open(r) < 0)
			return -1;
	}
	if (r->part_started_us < 0)
		r->part_started_us = us;
	int64_t pts_us = pkt->pts != AV_NOPTS_VALUE
				 ? av_rescale_q(pkt->pts, ist->time_base, AV_TIME_BASE_Q) + r->offset_us[si] - r->t0
				 : us;
	int64_t dur_us = pkt->duration > 0 ? av_rescale_q(pkt->duration, ist->time_base, AV_TIME_BASE_Q) : 0;
	if (us + dur_us > r->end_us)
		r->end_us = us + dur_us;
	pkt->dts = us + LEAD_US;
	pkt->pts = (pts_us < us ? us : pts_us) + LEAD_US;
	pkt->duration = dur_us;
	pkt->pos = -1;
	pkt->stream_index = r->map[si];
	av_packet_rescale_ts(pkt, AV_TIME_BASE_Q, r->part.out->streams[r->map[si]]->time_base);
	int err = av_interleaved_write_frame(r->part.out, pkt);
	if (err < 0) {
		if (r->part.written_error) {
			job_error(r->job, "cannot write the recording: %s", strerror(r->part.written_error));
			return -1;
		}
		r->dropped[si]++; /* a packet the muxer refused; the recording goes on */
	}
	return 0;
}

static int64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* An NTP timestamp (RFC 3550 4: seconds since 1900 in 32.32 fixed point) in µs since 1970. */
static int64_t ntp_us(uint64_t ntp)
{
	return ((int64_t)(ntp >> 32) - 2208988800LL) * 1000000 + (int64_t)(((ntp & 0xffffffffu) * 1000000) >> 32);
}

/* Places the recorded streams of an SDP source on one clock, the sender's. The relay pins each stream's timestamps
 * to count from its own first packet (rtp_relay_pin_timestamps: libavformat never sees the sender's reports, which
 * would move a stream's timestamps by the streams' start offset when the first one came after the first packets).
 * A stream's first packet is placed where its first sender report puts it (RFC 3550 6.4.1: the report's NTP time
 * and the RTP timestamp that goes with it); a stream without one, where its first packet arrived, moved onto the
 * sender's clock by how much later than their sender times the reported streams' first packets arrived (network
 * delay and the two clocks' difference; nothing when no stream has a report). The earliest stream starts at 0.
 * Returns false, placing nothing, while a report is missing and the wait is not over (unless `now`). */
static bool place_streams(struct recorder *r, bool now)
{
	int64_t start[MAX_STREAMS] = {0}, arrival[MAX_STREAMS] = {0}; /* µs */
	bool reported[MAX_STREAMS] = {0}, all = true;
	int64_t skew = INT64_MAX, earliest = INT64_MAX, t_now = realtime_ns();
	for (unsigned i = 0; i < r->in->nb_streams && i < MAX_STREAMS; i++) {
		if (r->map[i] < 0)
			continue;
		AVStream *st = r->in->streams[i];
		struct rtp_stream_clock c;
		bool counted = rtp_relay_clock(r->relay, st->id, &c) == 0 && c.have_packet;
		arrival[i] = (counted ? c.first_arrival_ns : r->first_read_ns[i] ? r->first_read_ns[i] : t_now) / 1000;
		earliest = FFMIN(earliest, arrival[i]);
		reported[i] = counted && c.have_report;
		all = all && reported[i];
		if (reported[i]) {
			start[i] = ntp_us(c.report_ntp) + av_rescale_q((int32_t)(c.first_rtp_timestamp - c.report_rtp_timestamp),
								       st->time_base, AV_TIME_BASE_Q);
			skew = FFMIN(skew, arrival[i] - start[i]);
		}
	}
	if (!all && !now && t_now - earliest * 1000 < SYNC_WAIT_NS && r->n_waiting < SYNC_WAIT_PACKETS &&
	    r->waiting_bytes < SYNC_WAIT_BYTES)
		return false;
	if (skew == INT64_MAX)
		skew = 0;
	int64_t zero = INT64_MAX;
	for (unsigned i = 0; i < r->in->nb_streams && i < MAX_STREAMS; i++)
		if (r->map[i] >= 0) {
			if (!reported[i])
				start[i] = arrival[i] - skew;
			zero = FFMIN(zero, start[i]);
		}
	char said[256] = "";
	size_t used = 0;
	for (unsigned i = 0; i < r->in->nb_streams && i < MAX_STREAMS; i++)
		if (r->map[i] >= 0) {
			r->offset_us[i] = start[i] - zero;
			int n = snprintf(said + used, sizeof said - used, "%s stream %u at %.3f s (%s)", used ? "," : "", i,
					 (double)r->offset_us[i] / 1e6, reported[i] ? "sender report" : "arrival");
			if (n > 0 && (size_t)n < sizeof said - used)
				used += (size_t)n;
		}
	log_info("recording %s: placed on the sender's clock:%s", r->job->recording_id, said);
	r->t0 = 0;
	r->placed = true;
	return true;
}

/* Records what waited for the streams' placement, in the order it was read, and frees it.
 * Returns 0, or -1 after job_error() (the rest is freed unrecorded). */
static int record_waiting(struct recorder *r)
{
	int ret = 0;
	for (int i = 0; i < r->n_waiting; i++) {
		if (ret == 0 && record_packet(r, r->waiting[i]) < 0)
			ret = -1;
		av_packet_free(&r->waiting[i]);
	}
	r->n_waiting = 0;
	r->waiting_bytes = 0;
	return ret;
}

/* Records a packet that was read, or, while an SDP source's streams wait for their placement, keeps it (its data
 * moves into `waiting`; record_waiting() frees it). Returns 0, or -1 after job_error(). */
static int take_packet(struct recorder *r, AVPacket *pkt)
{
	unsigned si = (unsigned)pkt->stream_index;
	if (si < MAX_STREAMS && !r->first_read_ns[si])
		r->first_read_ns[si] = realtime_ns();
	if (!r->relay || r->placed)
		return record_packet(r, pkt);
	if (!place_streams(r, false)) {
		AVPacket *kept = NULL;
		if (!r->waiting)
			r->waiting = av_calloc(SYNC_WAIT_PACKETS, sizeof *r->waiting);
		if (r->waiting && (kept = av_packet_alloc()) != NULL) {
			av_packet_move_ref(kept, pkt);
			r->waiting[r->n_waiting++] = kept;
			r->waiting_bytes += kept->size;
			return 0;
		}
		place_streams(r, true); /* no memory to wait in: placed now rather than lost */
	}
	if (record_waiting(r) < 0)
		return -1;
	return record_packet(r, pkt);
}

static bool max_reached(const struct recorder *r, int64_t now)
{
	/* the media recorded, or (while nothing arrives) the time since the first packet */
	int64_t max_us = (int64_t)r->cfg->record_max_s * 1000000;
	return r->end_us >= max_us || (r->first_packet && now - r->first_packet >= max_us);
}

static bool inactive(const struct recorder *r, int64_t now)
{
	return now - r->last_packet >= (int64_t)r->cfg->record_inactivity_s * 1000000;
}

/* libavformat's interrupt callback: a stop, the maximum duration or the inactivity limit ends a wait at
 * once (RTP reads otherwise wait 10 s at a time). */
static int record_interrupt_cb(void *opaque)
{
	const struct recorder *r = opaque;
	if (job_stop_requested())
		return 1;
	int64_t now = av_gettime_relative();
	return r->last_packet && (max_reached(r, now) || inactive(r, now));
}

/* Opens the source. An SDP's ports are bound by our relay (loss and jitter are counted there: libavformat keeps
 * its RTP statistics private); libavformat reads the relay's loopback copy, described by a rewritten SDP that goes
 * to a file in the recording's folder (the sdp demuxer reads a file). */
static int open_source(struct recorder *r, const AVIOInterruptCB *interrupt)
{
	json_object *v;
	const char *type = NULL, *sdp = NULL, *url = NULL;
	if (json_object_object_get_ex(r->job->payload, "source_type", &v))
		type = json_object_get_string(v);
	if (json_object_object_get_ex(r->job->payload, "sdp", &v))
		sdp = json_object_get_string(v);
	if (json_object_object_get_ex(r->job->payload, "url", &v))
		url = json_object_get_string(v);
	AVDictionary *opts = NULL;
	char *sdp_path = NULL, *listen_url = NULL;
	const char *open_url = NULL;
	const AVInputFormat *ifmt = NULL;
	int err;

	r->in = avformat_alloc_context();
	if (!r->in) {
		job_error(r->job, "out of memory");
		return -1;
	}
	r->in->interrupt_callback = *interrupt;
	/* Reordering waits for late packets this long. */
	r->in->max_delay = 500000;
	if (type && strcmp(type, "sdp") == 0 && sdp) {
		char *local_sdp = NULL;
		int busy;
		r->relay = rtp_relay_start(sdp, &local_sdp, &busy);
		if (!r->relay) {
			if (busy)
				job_error(r->job, "cannot bind the ports named in the SDP: UDP port %d is in use", busy);
			else
				job_error(r->job, "cannot bind the ports named in the SDP: %s", strerror(errno));
			return -1;
		}
		rtp_relay_pin_timestamps(r->relay); /* the streams are placed by place_streams() */
		sdp_path = storage_path(r->cfg, r->job->recording_id, "source.sdp");
		FILE *f = sdp_path ? fopen(sdp_path, "we") : NULL;
		if (!f || fputs(local_sdp, f) < 0 || fclose(f) != 0) {
			job_error(r->job, "cannot write the SDP file: %s", strerror(errno));
			free(local_sdp);
			free(sdp_path);
			return -1;
		}
		free(local_sdp);
		ifmt = av_find_input_format("sdp");
		open_url = sdp_path;
		av_dict_set(&opts, "protocol_whitelist", "file,udp,rtp", 0);
		av_dict_set(&opts, "buffer_size", "4194304", 0);
		av_dict_set(&opts, "reorder_queue_size", "500", 0);
	} else if (type && strcmp(type, "url") == 0 && url &&
		   (strncmp(url, "rtmp://", 7) == 0 || strncmp(url, "rtmps://", 8) == 0 || strncmp(url, "srt://", 6) == 0 ||
		    strncmp(url, "rtsp://", 7) == 0 || strncmp(url, "rtsps://", 8) == 0)) {
		open_url = url;
		av_dict_set(&opts, "protocol_whitelist", "tcp,udp,rtp,rtmp,rtmps,tls,srt,rtsp,rtsps,crypto", 0);
		if (strncmp(url, "rtsp", 4) == 0)
			av_dict_set(&opts, "rtsp_transport", "tcp", 0);
		/* Listen mode: a URL ending in "?listen" makes us the server an encoder pushes to (the query
		 * is not part of the stream name). The wait for the encoder is bounded by the inactivity limit.
		 * RTSP: libavformat cannot serve a stream to a player that pulls, but it takes an encoder's
		 * ANNOUNCE and RECORD (`ffmpeg -f rtsp rtsp://…`). SRT listens with its own "mode=listener". */
		size_t len = strlen(url);
		if (strncmp(url, "rtmp://", 7) == 0 && len > 7 && strcmp(url + len - 7, "?listen") == 0) {
			listen_url = strndup(url, len - 7);
			open_url = listen_url;
			av_dict_set(&opts, "listen", "1", 0);
			av_dict_set(&opts, "timeout", "-1", 0);
		} else if (strncmp(url, "rtsp://", 7) == 0 && len > 7 && strcmp(url + len - 7, "?listen") == 0) {
			listen_url = strndup(url, len - 7);
			open_url = listen_url;
			av_dict_set(&opts, "rtsp_flags", "listen", 0);
			av_dict_set(&opts, "timeout", "-1", 0);
		}
	} else {
		job_error(r->job, "the job's payload has no usable source (source_type sdp with sdp, or url with a network URL)");
		return -1;
	}
	err = open_url ? avformat_open_input(&r->in, open_url, ifmt, &opts) : AVERROR(ENOMEM);
	av_dict_free(&opts);
	free(listen_url);
	if (sdp_path) {
		unlink(sdp_path);
		free(sdp_path);
	}
	if (err < 0) {
		r->in = NULL;
		if (err == AVERROR_EXIT)
			return 1; /* stopped, or nothing came within the inactivity limit */
		job_error(r->job, "cannot open the source: %s", av_err2str(err));
		return -1;
	}
	return 0;
}

/* True when a stream has what the Matroska muxer needs. */
static bool stream_ready(const AVCodecParameters *par)
{
	if (par->codec_type == AVMEDIA_TYPE_VIDEO)
		return par->width > 0 && par->height > 0;
	if (par->codec_type == AVMEDIA_TYPE_AUDIO)
		return par->sample_rate > 0;
	return false;
}

/* How many of the source's streams are ready (all: *all set). */
static unsigned streams_ready(const AVFormatContext *in, bool *all)
{
	unsigned n = 0;
	for (unsigned i = 0; i < in->nb_streams && i < MAX_STREAMS; i++)
		n += stream_ready(in->streams[i]->codecpar);
	*all = n > 0 && n == in->nb_streams;
	return n;
}

/* The output stream that input stream i of a part goes to: the k-th of out's streams with its codec, where
 * k counts the part's earlier streams with that codec; -1 when out has none. */
static int match_stream(const AVFormatContext *out, const AVFormatContext *in, unsigned i)
{
	enum AVCodecID id = in->streams[i]->codecpar->codec_id;
	unsigned k = 0;
	for (unsigned j = 0; j < i; j++)
		k += in->streams[j]->codecpar->codec_id == id;
	for (unsigned o = 0; o < out->nb_streams; o++)
		if (out->streams[o]->codecpar->codec_id == id && k-- == 0)
			return (int)o;
	return -1;
}

static AVFormatContext *open_part(const struct recorder *r, int n, char *path, size_t path_size)
{
	part_path(r, n, path, path_size);
	AVFormatContext *in = NULL;
	if (avformat_open_input(&in, path, av_find_input_format("matroska"), NULL) < 0)
		return NULL; /* a part cut before its header (crash at the moment it was made) */
	return in;
}

/* How far into a part its first video packet is looked for: a retry's video begins at its first keyframe, which
 * comes seconds after its audio. */
#define VIDEO_LOOK_US 20000000

/* Where part n's media starts (µs): the earliest timestamp among its first packets (streams are
 * interleaved within 0.5 s, and a late stream may start up to LEAD_US early). AV_NOPTS_VALUE: no media.
 * With video >= 0, *video_start is where that stream's first packet is (AV_NOPTS_VALUE: not within
 * VIDEO_LOOK_US). */
static int64_t part_start(const struct recorder *r, int n, AVPacket *pkt, int video, int64_t *video_start)
{
	char path[4096];
	AVFormatContext *in = open_part(r, n, path, sizeof path);
	int64_t start = AV_NOPTS_VALUE, first = AV_NOPTS_VALUE;
	*video_start = AV_NOPTS_VALUE;
	for (int i = 0; in && i < 5000 && av_read_frame(in, pkt) >= 0; i++) {
		int64_t ts = pkt->dts != AV_NOPTS_VALUE ? pkt->dts : pkt->pts;
		if (ts != AV_NOPTS_VALUE) {
			int64_t us = av_rescale_q(ts, in->streams[pkt->stream_index]->time_base, AV_TIME_BASE_Q);
			if (first == AV_NOPTS_VALUE)
				first = us;
			if (start == AV_NOPTS_VALUE || us < start)
				start = us;
			if (pkt->stream_index == video && *video_start == AV_NOPTS_VALUE)
				*video_start = us;
			bool video_done = video < 0 || *video_start != AV_NOPTS_VALUE || us > first + VIDEO_LOOK_US;
			if (us > first + LEAD_US + 1000000 && video_done) {
				av_packet_unref(pkt);
				break;
			}
		}
		av_packet_unref(pkt);
	}
	if (in)
		avformat_close_input(&in);
	return start;
}

/* Audio gaps in the joined file are filled only this far behind the video: a part interleaves its streams
 * within 0.5 s, so real audio for an earlier time cannot come later than this. */
#define FILL_LAG_US 2000000

/* Writes silent frames into audio stream o of out from *audio_end up to until (µs), whole frames only.
 * Moves *audio_end and *last_dts on, adds to *filled. Returns 0 or the muxer's error. */
static int fill_silence(AVFormatContext *out, int o, const struct silence *s, int64_t *audio_end, int64_t *last_dts,
			int64_t until, int64_t *filled)
{
	while (s->pkt && *audio_end + s->frame_us <= until) {
		AVPacket *p = av_packet_clone(s->pkt);
		if (!p)
			return AVERROR(ENOMEM);
		p->pts = p->dts = *audio_end;
		p->duration = s->frame_us;
		p->stream_index = o;
		p->pos = -1;
		av_packet_rescale_ts(p, AV_TIME_BASE_Q, out->streams[o]->time_base);
		int err = av_interleaved_write_frame(out, p);
		av_packet_free(&p);
		if (err < 0)
			return err;
		*last_dts = *audio_end;
		*audio_end += s->frame_us;
		*filled += s->frame_us;
	}
	return 0;
}

struct fsync_call {
	int fd, ret, err;
};

static void *fsync_thread(void *arg)
{
	struct fsync_call *c = arg;
	c->ret = fsync(c->fd);
	c->err = errno;
	return NULL;
}

/* Waits for thread t to end, telling the supervisor every second that the job is still finishing: the stop
 * grace would otherwise run out on a long wait, and the recording be left unjoined. */
static void join_thread_saying_so(struct job *job, pthread_t t)
{
	for (;;) {
		struct timespec at;
		clock_gettime(CLOCK_REALTIME, &at); /* pthread_timedjoin_np's clock */
		at.tv_sec += 1;
		int rc = pthread_timedjoin_np(t, NULL, &at);
		if (rc != ETIMEDOUT) {
			if (rc != 0)
				pthread_join(t, NULL);
			return;
		}
		job_still_finishing(job);
	}
}

/* fsync(fd), which for a joined file of many GB may outlast the stop grace: it runs in a thread while this
 * one says that the job is still finishing. Returns 0, or -1 with errno. */
static int fsync_saying_so(struct job *job, int fd)
{
	struct fsync_call c = {.fd = fd};
	pthread_t t;
	if (pthread_create(&t, NULL, fsync_thread, &c) != 0)
		return fsync(fd);
	join_thread_saying_so(job, t);
	errno = c.err;
	return c.ret;
}

/* Removes the source.mkv.tmp* files other than `keep`: an earlier attempt's, cut by a crash (the lease guard
 * has ended that attempt before this one began). */
static void remove_other_tmps(const struct join *j, const char *keep)
{
	DIR *d = opendir(j->dir);
	if (!d)
		return;
	const struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "source.mkv.tmp", 14) == 0 && strcmp(e->d_name, keep) != 0) {
			if (unlinkat(dirfd(d), e->d_name, 0) == 0)
				log_info("recording %s: %s of an earlier attempt removed", j->r->job->recording_id,
					 e->d_name);
		}
	closedir(d);
}

/* Begins j's output, source.mkv.tmp-<attempt>, with every stream that parts 1..last have (a retry may have seen a
 * camera that the first attempt did not). Returns 0, 1 when no part has media, or -1 with j->why; join_free() frees
 * what it made, in every case. */
static int join_start(struct join *j, int last)
{
	const struct recorder *r = j->r;
	char path[4096];
	int err;
	for (int i = 0; i < MAX_STREAMS; i++)
		j->last_dts[i] = INT64_MIN;
	char name[64];
	snprintf(name, sizeof name, "source.mkv.tmp-%d", r->job->attempt);
	j->tmp = storage_path(r->cfg, r->job->recording_id, name);
	j->final = storage_path(r->cfg, r->job->recording_id, "source.mkv");
	j->dir = storage_path(r->cfg, r->job->recording_id, NULL);
	j->pkt = av_packet_alloc();
	if (!j->tmp || !j->dir || !j->pkt || avformat_alloc_output_context2(&j->out, NULL, "matroska", j->tmp) < 0) {
		snprintf(j->why, sizeof j->why, "out of memory");
		return -1;
	}
	remove_other_tmps(j, name);
	for (int n = 1; n <= last; n++) {
		if (j->finishing)
			job_still_finishing(j->finishing); /* each part's probe reads its start: a while on slow storage */
		AVFormatContext *in = open_part(r, n, path, sizeof path);
		for (unsigned i = 0; in && i < in->nb_streams && j->out->nb_streams < MAX_STREAMS; i++) {
			if (match_stream(j->out, in, i) >= 0)
				continue;
			AVStream *st = avformat_new_stream(j->out, NULL);
			if (!st || avcodec_parameters_copy(st->codecpar, in->streams[i]->codecpar) < 0) {
				avformat_close_input(&in);
				snprintf(j->why, sizeof j->why, "out of memory");
				return -1;
			}
			st->codecpar->codec_tag = 0;
			st->time_base = AV_TIME_BASE_Q;
		}
		if (in)
			avformat_close_input(&in);
	}
	j->scanned = last;
	if (j->out->nb_streams == 0)
		return 1;
	for (unsigned o = 0; o < j->out->nb_streams; o++)
		if (j->out->streams[o]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO &&
		    silence_init(&j->silence[o], j->out->streams[o]->codecpar) < 0)
			log_warn("recording %s: no silent %s frame: gaps in that audio stay gaps", r->job->recording_id,
				 avcodec_get_name(j->out->streams[o]->codecpar->codec_id));
	unlink(j->tmp);
	if ((err = avio_open(&j->out->pb, j->tmp, AVIO_FLAG_WRITE)) < 0 || (err = avformat_write_header(j->out, NULL)) < 0) {
		snprintf(j->why, sizeof j->why, "cannot write source.mkv: %s", av_err2str(err));
		return -1;
	}
	return 0;
}

/* How far (µs, from 0 to one frame) a retry's first frame of video stream o, at `at`, moves to land on that
 * stream's frame grid from before the retry; 0 when the grid is not known. Joined where the retry's audio began,
 * its video is off the grid by any fraction of a frame: at about half a frame, ffmpeg, which times a decoded
 * video in frames of its frame rate, gives two frames one timestamp every third frame of a 15 fps stream ("non
 * monotonically increasing dts"). */
static int64_t grid_shift(const struct join *j, int o, int64_t at)
{
	if (o < 0 || at == AV_NOPTS_VALUE || j->grid_frames[o] < 2)
		return 0;
	double frame = (double)(j->last_dts[o] - j->grid_first[o]) / (double)(j->grid_frames[o] - 1);
	if (frame < 1000 || frame > 1000000) /* not a frame rate (1 to 1000 fps) */
		return 0;
	int64_t since = at - j->last_dts[o];
	/* Matroska keeps milliseconds: a frame that is on the grid may look up to 0.5 ms late. */
	double frames = ceil((double)since / frame - 0.05);
	int64_t shift = llround(frames * frame) - since;
	return shift > 0 ? shift : 0;
}

/* Adds to j->note that the media before part `in` (a retry's first) ended at j->end, and the gap. */
static void note_retry(struct join *j, const AVFormatContext *in)
{
	char gap[64] = "";
	const AVDictionaryEntry *c = av_dict_get(in->metadata, "creation_time", NULL, 0);
	int64_t began = 0;
	struct stat psb;
	if (c && av_parse_time(&began, c->value, 0) == 0 && j->prev_path[0] && stat(j->prev_path, &psb) == 0) {
		double g = (double)began / 1e6 - ((double)psb.st_mtim.tv_sec + (double)psb.st_mtim.tv_nsec / 1e9);
		if (g >= 0)
			snprintf(gap, sizeof gap, " (about %.0f s)", g);
	}
	int n = snprintf(j->note + j->used, sizeof j->note - (size_t)j->used,
			 "%sthe worker stopped at %.1f s and another one continued the recording: "
			 "the media before and after is joined, and what was sent in between%s is missing",
			 j->used ? "; " : "", (double)j->end / 1e6, gap);
	if (n > 0 && (size_t)(j->used + n) < sizeof j->note)
		j->used += n;
}

/* Appends part n (the next one, j->parts + 1) to j's output. A part whose timestamps start over (a retry after a
 * crash) is placed after the previous one. Where an audio stream has no packets (a muted microphone sends nothing,
 * or starts later than the camera), silent frames are written up to FILL_LAG_US behind the other streams.
 * Returns 0, or -1 with j->why. */
static int join_append(struct join *j, int n)
{
	AVPacket *pkt = j->pkt;
	AVFormatContext *out = j->out;
	const char *id = j->r->job->recording_id;
	char path[4096];
	int err;
	AVFormatContext *in = open_part(j->r, n, path, sizeof path);
	j->parts = n;
	if (!in)
		return 0; /* cut before its header: nothing in it */
	int map[MAX_STREAMS];
	for (unsigned i = 0; i < MAX_STREAMS; i++) {
		map[i] = i < in->nb_streams ? match_stream(out, in, i) : -1;
		if (i < in->nb_streams && map[i] < 0 && n > j->scanned) {
			snprintf(j->why, sizeof j->why, "part %d has a stream (%s) that the file was begun without", n,
				 avcodec_get_name(in->streams[i]->codecpar->codec_id));
			j->new_stream = true;
			avformat_close_input(&in);
			return -1;
		}
	}
	/* The first video stream: a retry's is kept on its frame grid. */
	int ov = -1, iv = -1;
	for (unsigned o = 0; o < out->nb_streams && ov < 0; o++)
		if (out->streams[o]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO)
			ov = (int)o;
	for (unsigned i = 0; i < in->nb_streams && i < MAX_STREAMS && ov >= 0; i++)
		if (map[i] == ov && iv < 0)
			iv = (int)i;
	int64_t video_start;
	int64_t start = part_start(j->r, n, pkt, iv, &video_start);
	bool first = start != AV_NOPTS_VALUE;
	/* A long part takes a while at the stop: say so every second, or the supervisor's kill after the stop
	 * grace would leave the recording unjoined. */
	int64_t said_at = av_gettime_relative();
	while (av_read_frame(in, pkt) >= 0) { /* a part cut by a crash ends at its last whole cluster */
		if (atomic_load(&j->abandon)) {
			av_packet_unref(pkt);
			avformat_close_input(&in);
			snprintf(j->why, sizeof j->why, "abandoned");
			return -1;
		}
		if (j->finishing && av_gettime_relative() - said_at >= 1000000) {
			job_still_finishing(j->finishing);
			said_at = av_gettime_relative();
		}
		AVStream *ist = in->streams[pkt->stream_index];
		if (pkt->dts == AV_NOPTS_VALUE) /* Matroska stores presentation times only; no B-frames live */
			pkt->dts = pkt->pts;
		if (pkt->dts == AV_NOPTS_VALUE || pkt->stream_index >= MAX_STREAMS || map[pkt->stream_index] < 0) {
			av_packet_unref(pkt);
			continue;
		}
		int64_t dts = av_rescale_q(pkt->dts, ist->time_base, AV_TIME_BASE_Q);
		int64_t pts = pkt->pts != AV_NOPTS_VALUE ? av_rescale_q(pkt->pts, ist->time_base, AV_TIME_BASE_Q) : dts;
		int o = map[pkt->stream_index];
		bool audio = j->silence[o].pkt != NULL;
		int64_t dur = audio ? audio_packet_us(ist->codecpar, pkt, ist->time_base)
				    : av_rescale_q(pkt->duration, ist->time_base, AV_TIME_BASE_Q);
		if (first) {
			first = false;
			if (!j->joined_any) {
				j->offset = -start; /* the earliest packet at 0 */
				j->joined_any = true;
			} else if (start + j->offset < j->end - 1000000) { /* starts over: a new attempt after a crash */
				j->offset = j->end - start;
				if (video_start != AV_NOPTS_VALUE)
					j->offset += grid_shift(j, ov, video_start + j->offset);
				/* The retry's frames measure the grid anew: the time in between holds none. */
				memset(j->grid_frames, 0, sizeof j->grid_frames);
				note_retry(j, in);
			}
		}
		dts += j->offset;
		pts += j->offset;
		if (dts < 0 || dts < j->last_dts[o] || (audio && dts < j->audio_end[o] - j->silence[o].frame_us / 2)) {
			av_packet_unref(pkt); /* out of order, or late for a gap already filled */
			continue;
		}
		/* The gap before this audio packet, and the audio that is by now missing behind the video. */
		err = 0;
		for (unsigned a = 0; a < out->nb_streams && !err; a++)
			if (j->silence[a].pkt &&
			    (err = fill_silence(out, (int)a, &j->silence[a], &j->audio_end[a], &j->last_dts[a],
						(int)a == o ? dts : dts - FILL_LAG_US, &j->filled)) < 0 &&
			    !(out->pb && out->pb->error)) {
				/* Not the disk: keep the recording, without filling this stream's gaps. */
				log_warn("recording %s: stream %u: silence cannot be filled: %s", id, a, av_err2str(err));
				silence_free(&j->silence[a]);
				err = 0;
			}
		if (audio && dts + dur > j->audio_end[o])
			j->audio_end[o] = dts + dur;
		if (!audio && dur <= 0 && j->last_dts[o] != INT64_MIN && dts - j->last_dts[o] < 1000000)
			dur = dts - j->last_dts[o]; /* a video frame lasts about as long as the one before it */
		j->last_dts[o] = dts;
		if (out->streams[o]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO && j->grid_frames[o]++ == 0)
			j->grid_first[o] = dts;
		if (dts + dur > j->end)
			j->end = dts + dur;
		pkt->dts = dts;
		pkt->pts = pts;
		pkt->duration = dur;
		pkt->pos = -1;
		pkt->stream_index = o;
		av_packet_rescale_ts(pkt, AV_TIME_BASE_Q, out->streams[o]->time_base);
		if (err >= 0 && (err = av_interleaved_write_frame(out, pkt)) < 0)
			log_warn("recording %s: part %d: a packet of stream %d was refused: %s", id, n, pkt->stream_index,
				 av_err2str(err));
		if (err < 0 && out->pb && out->pb->error) {
			avformat_close_input(&in);
			snprintf(j->why, sizeof j->why, "cannot write source.mkv: %s", av_err2str(err));
			return -1;
		}
	}
	avformat_close_input(&in);
	snprintf(j->prev_path, sizeof j->prev_path, "%s", path);
	return 0;
}

/* Ends j's output: the audio's silence up to the end of the media (a microphone muted until the end lasts as long
 * as the video), the trailer, fsync, and the rename to source.mkv. Returns 0 with *duration_s and *size, or -1 with
 * j->why. */
static int join_finish(struct join *j, double *duration_s, int64_t *size)
{
	int err;
	for (unsigned a = 0; a < j->out->nb_streams; a++)
		if (j->silence[a].pkt &&
		    (err = fill_silence(j->out, (int)a, &j->silence[a], &j->audio_end[a], &j->last_dts[a], j->end,
					&j->filled)) < 0) {
			snprintf(j->why, sizeof j->why, "cannot write source.mkv: %s", av_err2str(err));
			return -1;
		}
	if (j->filled > 0)
		log_info("recording %s: %.2f s of silence filled where the audio had gaps", j->r->job->recording_id,
			 (double)j->filled / 1e6);
	if ((err = av_write_trailer(j->out)) < 0) {
		snprintf(j->why, sizeof j->why, "cannot finish source.mkv: %s", av_err2str(err));
		return -1;
	}
	avio_closep(&j->out->pb);
	int fd = open(j->tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync_saying_so(j->finishing, fd) < 0 || rename(j->tmp, j->final) < 0) {
		snprintf(j->why, sizeof j->why, "cannot publish source.mkv: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	j->published = true;
	/* The rename is durable only with the folder: the job must not report a source.mkv a power loss can undo. */
	int dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync_saying_so(j->finishing, dfd) < 0) {
		snprintf(j->why, sizeof j->why, "cannot make source.mkv durable: %s", strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	close(dfd);
	struct stat sb;
	*size = stat(j->final, &sb) == 0 ? sb.st_size : 0;
	*duration_s = (double)j->end / 1e6;
	return 0;
}

/* Stops j's thread, if it runs: at once (abandon) or after the part it is appending. While it waits it says that
 * job (when not NULL) is still finishing. */
static void join_stop_thread(struct join *j, bool abandon, struct job *job)
{
	if (!j->running)
		return;
	atomic_store(&j->abandon, abandon);
	pthread_mutex_lock(&j->lock);
	j->quit = true;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
	if (job)
		join_thread_saying_so(job, j->thread);
	else
		pthread_join(j->thread, NULL);
	j->running = false;
}

/* Closes j's output and removes its file unless it was published. */
static void join_drop(struct join *j)
{
	if (j->out) {
		if (j->out->pb)
			avio_closep(&j->out->pb);
		avformat_free_context(j->out);
		j->out = NULL;
	}
	if (!j->published && j->tmp)
		unlink(j->tmp);
}

/* Frees what j holds, and removes its file unless it was published. */
static void join_free(struct join *j)
{
	join_stop_thread(j, true, NULL);
	join_drop(j);
	av_packet_free(&j->pkt);
	for (int i = 0; i < MAX_STREAMS; i++)
		silence_free(&j->silence[i]);
	free(j->tmp);
	free(j->final);
	free(j->dir);
	j->tmp = j->final = j->dir = NULL;
}

/* Whether the disk has room to append part n while recording: twice its size and JOIN_SPARE_BYTES free. Returns
 * 0, or -1 with j->why. */
static int join_room(struct join *j, int n)
{
	char path[4096];
	struct stat sb;
	struct statvfs vfs;
	part_path(j->r, n, path, sizeof path);
	if (stat(path, &sb) < 0)
		sb.st_size = 0; /* no such part: nothing to append */
	if (statvfs(j->dir, &vfs) < 0) {
		snprintf(j->why, sizeof j->why, "free space unknown: %s", strerror(errno));
		return -1;
	}
	long long room = (long long)vfs.f_bavail * (long long)vfs.f_frsize;
	long long need = (long long)sb.st_size * 2 + JOIN_SPARE_BYTES;
	if (room < need) {
		snprintf(j->why, sizeof j->why, "%lld MB free, %lld MB wanted to append part %d (twice its size and %lld MB)",
			 room >> 20, need >> 20, n, JOIN_SPARE_BYTES >> 20);
		return -1;
	}
	return 0;
}

/* The background join: appends each part as soon as it is closed, and makes what it appended durable, so that
 * the stop's fsync covers only the tail. It gives up (failed) on the first error; the stop then joins every part. */
static void *join_thread(void *arg)
{
	struct join *j = arg;
	pthread_mutex_lock(&j->lock);
	for (;;) {
		while (!j->quit && j->parts >= j->closed)
			pthread_cond_wait(&j->cond, &j->lock);
		if (j->quit)
			break;
		int n = j->parts + 1, last = j->closed;
		pthread_mutex_unlock(&j->lock);
		int64_t t = av_gettime_relative();
		/* Begun with the streams of the parts already there: an earlier attempt's, or this one's first. */
		int rc = j->out ? 0 : join_start(j, last);
		if (rc == 1)
			snprintf(j->why, sizeof j->why, "the first parts have no media");
		if (rc == 0)
			rc = join_room(j, n);
		if (rc == 0)
			rc = join_append(j, n);
		if (rc == 0 && (avio_flush(j->out->pb), j->out->pb->error < 0)) {
			snprintf(j->why, sizeof j->why, "cannot write source.mkv: %s", av_err2str(j->out->pb->error));
			rc = -1;
		}
		int fd = rc == 0 ? open(j->tmp, O_RDONLY | O_CLOEXEC) : -1;
		if (rc == 0 && (fd < 0 || fdatasync(fd) < 0)) {
			snprintf(j->why, sizeof j->why, "cannot write source.mkv: %s", strerror(errno));
			rc = -1;
		}
		if (fd >= 0)
			close(fd);
		if (rc == 0)
			log_info("recording %s: part %d joined while recording, in %.2f s", j->r->job->recording_id, n,
				 (double)(av_gettime_relative() - t) / 1e6);
		if (rc != 0 && !atomic_load(&j->abandon)) {
			/* At once: a half-written join must not take the space the live capture needs. */
			join_drop(j);
			log_warn("recording %s: the join while recording gives up at part %d (%s): its file is removed, "
				 "the stop joins every part", j->r->job->recording_id, n, j->why);
		}
		pthread_mutex_lock(&j->lock);
		if (rc != 0) {
			j->failed = true;
			break;
		}
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

/* Parts 1..n are closed: the background join may append them (started on the first call). */
static void join_closed(struct recorder *r, int n)
{
	struct join *j = &r->join;
	if (!j->running) {
		if (j->failed)
			return;
		j->r = r;
		int err = pthread_create(&j->thread, NULL, join_thread, j);
		if (err != 0) {
			snprintf(j->why, sizeof j->why, "no thread: %s", strerror(err));
			j->failed = true; /* no thread runs: nothing else reads it */
			return;
		}
		j->running = true;
	}
	pthread_mutex_lock(&j->lock);
	j->closed = n;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
}

/* At the stop: makes STORAGE_PATH/<id>/source.mkv from the parts, appending to what the background join made
 * the parts it has not got to (the last one, usually), or joining every part when it gave up. Adds the gaps to
 * note; *early and *late say how many parts were joined while recording and at the stop.
 * Returns 0 with *duration_s and *size, or -1 after job_error(); 1 when there is no media. */
static int join_parts(struct recorder *r, double *duration_s, int64_t *size, int *early, int *late, char *note,
		      size_t note_size)
{
	struct join *j = &r->join;
	int last = last_part_number(r->parts_dir), ret = -1;
	join_stop_thread(j, false, r->job);
	j->finishing = r->job; /* only now: the thread reads it */
	*early = 0;
	if (j->out && !j->failed) {
		*early = j->parts;
		int rc = 0;
		for (int n = j->parts + 1; n <= last && rc == 0; n++)
			rc = join_append(j, n);
		if (rc == 0 && join_finish(j, duration_s, size) == 0) {
			*late = last - *early;
			snprintf(note, note_size, "%s", j->note);
			join_free(j);
			return 0;
		}
		if (!j->new_stream) { /* the disk: a second full pass would fail the same way */
			job_error(r->job, "%s", j->why);
			*late = last - *early;
			join_free(j);
			return -1;
		}
		j->failed = true;
		*early = 0;
	}
	if (j->failed)
		log_warn("recording %s: the join made while recording is not used (%s): every part is joined now",
			 r->job->recording_id, j->why);
	join_free(j);
	struct join all = {.r = r, .finishing = r->job};
	int rc = join_start(&all, last);
	for (int n = 1; n <= last && rc == 0; n++)
		rc = join_append(&all, n);
	if (rc == 0)
		rc = join_finish(&all, duration_s, size);
	if (rc < 0)
		job_error(r->job, "%s", all.why);
	else
		ret = rc;
	*late = last;
	snprintf(note, note_size, "%s", all.note);
	join_free(&all);
	return ret;
}

int record_run(struct job *job)
{
	struct recorder r = {.job = job, .cfg = job->cfg, .video = -1, .t0 = AV_NOPTS_VALUE,
			     .join = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER}};
	const AVIOInterruptCB interrupt = {record_interrupt_cb, &r};
	AVPacket *pkt = av_packet_alloc();
	enum end_reason reason = END_STOP;
	char note[NOTE_MAX] = "";
	int ret = -1, err;
	r.part.fd = -1;
	for (int i = 0; i < MAX_STREAMS; i++)
		r.last_dts[i] = AV_NOPTS_VALUE;

	av_log_set_level(AV_LOG_ERROR);
	vtp_db_init(&r.db, job->cfg, "vtp-worker record");
	r.db_open = true;
	if (!pkt || storage_create_recording(job->cfg, job->recording_id) < 0 ||
	    !(r.parts_dir = storage_path(job->cfg, job->recording_id, "parts"))) {
		job_error(job, "cannot create the recording's folder (and the recording id must be a UUID): %s",
			  strerror(errno));
		goto out;
	}
	if (mkdir(r.parts_dir, 0750) < 0 && errno != EEXIST) {
		job_error(job, "cannot create %s: %s", r.parts_dir, strerror(errno));
		goto out;
	}
	r.next_part = last_part_number(r.parts_dir) + 1;
	/* A retry: the earlier attempts' parts are joined while this one records. */
	if (r.next_part > 1)
		join_closed(&r, r.next_part - 1);
	job_progress(job, 0);

	int64_t started = av_gettime_relative();
	r.last_packet = started; /* waiting for a source to connect counts as inactivity too */
	int opened = open_source(&r, &interrupt);
	if (opened < 0)
		goto out;
	if (opened == 1 && !job_stop_requested())
		reason = inactive(&r, av_gettime_relative()) ? END_INACTIVE : END_MAX;
	if (opened == 0) {
		/* Wait for what the muxer needs (VP8's size comes with its first keyframe); no packet is lost:
		 * what is read here is returned again by av_read_frame(). */
		r.in->max_analyze_duration = 5 * AV_TIME_BASE;
		while (!job_stop_requested()) {
			bool all;
			avformat_find_stream_info(r.in, NULL); /* its answer is in the streams' parameters */
			/* Some streams ready after 5 s of media: a camera that is off must not hold back the
			 * microphone (the others are left out of this attempt). */
			if (streams_ready(r.in, &all) > 0)
				break;
			if (inactive(&r, av_gettime_relative())) {
				reason = END_INACTIVE;
				break;
			}
		}
	}
	bool all_ready = false;
	if (r.in && streams_ready(r.in, &all_ready) > 0 && !job_stop_requested() && reason == END_STOP) {
		int n_out = 0;
		for (unsigned i = 0; i < r.in->nb_streams && i < MAX_STREAMS; i++) {
			bool ok = stream_ready(r.in->streams[i]->codecpar);
			r.map[i] = ok ? n_out++ : -1;
			if (ok && r.video < 0 && r.in->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO)
				r.video = (int)i;
			if (!ok)
				log_warn("recording %s: stream %u (%s) sent nothing usable in time; recording without it",
					 job->recording_id, i, avcodec_get_name(r.in->streams[i]->codecpar->codec_id));
		}
		if (part_open(&r) < 0)
			goto out;
		int64_t last_sync = av_gettime_relative(), last_progress = 0;
		while (!job_stop_requested()) {
			int64_t now = av_gettime_relative();
			err = av_read_frame(r.in, pkt);
			now = av_gettime_relative();
			if (err >= 0) {
				r.last_packet = now;
				if (!r.first_packet)
					r.first_packet = now;
				announce_recording(&r);
				int w = take_packet(&r, pkt);
				av_packet_unref(pkt);
				if (w < 0)
					goto out;
			} else if (err == AVERROR_EXIT || job_stop_requested()) {
				if (!job_stop_requested()) /* the interrupt callback saw a limit */
					reason = max_reached(&r, now) ? END_MAX : END_INACTIVE;
				break;
			} else if (err != AVERROR(EAGAIN) && strcmp(r.in->iformat->name, "sdp") != 0) {
				log_info("recording %s: the source ended: %s", job->recording_id, av_err2str(err));
				reason = END_SOURCE; /* a pushed or pulled stream that ended */
				break;
			} else {
				/* No packets for a while (RTP says so after 10 s): silence is not the end. */
				av_usleep(20000);
			}
			if (now - last_sync >= FSYNC_EVERY_US) {
				part_sync(&r);
				last_sync = now;
			}
			if (now - last_progress >= PROGRESS_EVERY_US) {
				last_progress = now;
				job_progress(job, (double)(now - started) / 1e6 / (double)job->cfg->record_max_s);
				if (r.first_packet)
					report_health(&r, (double)(now - r.first_packet) / 1e6, now);
			}
			if (max_reached(&r, now)) {
				reason = END_MAX;
				break;
			}
			if (inactive(&r, now)) {
				reason = END_INACTIVE;
				break;
			}
		}
		/* What still waits for a sender report is placed without it and written. */
		if (r.relay && !r.placed && r.in && place_streams(&r, true) && record_waiting(&r) < 0)
			goto out;
		/* The final counts stay in the job's progress_detail: the last report may be a while old (a quiet
		 * source leaves av_read_frame() waiting for up to 10 s). */
		if (r.first_packet)
			report_health(&r, (double)(av_gettime_relative() - r.first_packet) / 1e6, av_gettime_relative());
		if (part_close(&r) < 0) {
			job_error(job, "cannot finish the last part: %s", strerror(r.part.written_error ?: EIO));
			goto out;
		}
	}
	if (r.in)
		avformat_close_input(&r.in);
	rtp_relay_stop(r.relay);
	r.relay = NULL;
	if (job_stop_requested() && reason == END_STOP && !stop_is_final(&r)) {
		/* The worker is shutting down: hand the job back; the next attempt appends parts. */
		job_error(job, "the worker stopped; %d part(s) kept, the next attempt continues", r.next_part - 1);
		goto out;
	}
	if (reason == END_MAX)
		snprintf(note, sizeof note, "ended after the maximum duration of %ld s", job->cfg->record_max_s);
	else if (reason == END_INACTIVE)
		snprintf(note, sizeof note, "ended after %ld s without packets", job->cfg->record_inactivity_s);
	else if (reason == END_SOURCE)
		snprintf(note, sizeof note, "ended by the source");
	size_t used = strlen(note);
	double duration = 0;
	int64_t size = 0;
	int early = 0, late = 0;
	int64_t join_began = av_gettime_relative();
	int joined = join_parts(&r, &duration, &size, &early, &late, note + used + (used ? 2 : 0), sizeof note - used - 2);
	if (joined < 0)
		goto out;
	if (used && note[used + 2])
		memcpy(note + used, "; ", 2);
	json_object *result = json_object_new_object();
	if (joined == 0) {
		json_object_object_add(result, "source_file", json_object_new_string("source.mkv"));
		json_object_object_add(result, "size_bytes", json_object_new_int64(size));
		json_object_object_add(result, "duration_s", json_object_new_double(round(duration * 1000) / 1000));
	} else {
		snprintf(note + used, sizeof note - used, "%sno media was received", used ? "; " : "");
	}
	json_object_object_add(result, "parts", json_object_new_int(last_part_number(r.parts_dir)));
	/* How much of the join was left for the stop: what the stop waited for. */
	log_info("recording %s: the join at the stop took %.2f s: %d part(s) joined at the stop, %d while recording",
		 job->recording_id, (double)(av_gettime_relative() - join_began) / 1e6, late, early);
	if (note[0])
		json_object_object_add(result, "note", json_object_new_string(note));
	job_result(job, result);
	ret = 0;
out:
	for (int i = 0; i < MAX_STREAMS; i++)
		av_packet_free(&r.held[i]);
	for (int i = 0; i < r.n_waiting; i++)
		av_packet_free(&r.waiting[i]);
	av_freep(&r.waiting);
	if (r.part.out)
		part_close(&r);
	join_free(&r.join);
	if (r.in)
		avformat_close_input(&r.in);
	rtp_relay_stop(r.relay);
	av_packet_free(&pkt);
	free(r.parts_dir);
	if (r.db_open)
		vtp_db_close(&r.db);
	return ret;
}
