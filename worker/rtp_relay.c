/* rtp_relay.c: binds an SDP's RTP/RTCP ports, counts loss and jitter per stream, forwards to loopback for libavformat. */
#include "rtp_relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RELAYED 8
#define RCVBUF_BYTES 4194304 /* as libavformat asks for its own sockets: a burst of a keyframe must fit */
#define MAX_DROPOUT 3000     /* RFC 3550 A.1 */
#define MAX_MISORDER 100
#define SEQ_MOD 65536
#define PIN_NS 2000000000LL /* see send_pin() */

/* RFC 3550 A.1 per-source sequence state, plus A.8 jitter. */
struct seq_state {
	bool started;
	uint32_t ssrc;
	uint16_t max_seq;
	uint32_t cycles, base_seq, bad_seq;
	int64_t received;
	/* counts of earlier sources (an SSRC change or a sequence restart) */
	int64_t received_before, lost_before;
	bool have_transit;
	uint32_t last_transit;
	double jitter; /* in clock units */
};

/* A sender report as it arrived. */
struct report_seen {
	bool valid;
	struct rtcp_sender_report sr;
	int64_t arrival_ns;
};

struct relay_stream {
	int in_rtp, in_rtcp;   /* bound to the SDP's port and port+1; -1 when this m= line is not relayed */
	/* On 127.0.0.1, what libavformat receives from. Nothing comes back on them: libavformat 5.1's sdp demuxer
	 * sends no RTCP at all (no receiver report, NACK or PLI; checked with strace), so there is no feedback
	 * to carry to the sender. */
	int out_rtp, out_rtcp;
	struct sockaddr_in local_rtp, local_rtcp; /* where libavformat listens */
	int pt;			 /* the m= line's first payload type: the one counted */
	uint32_t clock_rate;
	/* under the relay's lock: */
	struct seq_state seq;
	bool have_packet;	    /* the current SSRC's first packet: */
	uint32_t first_rtp_timestamp;
	int64_t first_arrival_ns;
	/* The first and the latest sender report of the SSRC that sent the latest one. Kept whatever the SSRC,
	 * because ffmpeg (and others) send a report before their first RTP packet. */
	struct report_seen first_sr, last_sr;
};

struct rtp_relay {
	struct relay_stream streams[MAX_RELAYED];
	int n_streams;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	pthread_mutex_t lock;
	atomic_bool pin;  /* rtp_relay_pin_timestamps() was called: the sender's RTCP is kept from libavformat */
	uint64_t pin_ntp; /* the NTP time of the relay's own reports */
};

/* When the kernel received the datagram (SO_TIMESTAMPNS), so that jitter is the network's and not how late
 * a loaded machine ran this thread; the time of reading when there is no timestamp. */
static int64_t arrival_ns(struct msghdr *msg)
{
	struct timespec ts;
	struct cmsghdr *c;
	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
			memcpy(&ts, CMSG_DATA(c), sizeof ts);
			return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
		}
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void seq_restart(struct seq_state *s, uint16_t seq)
{
	s->base_seq = seq;
	s->max_seq = seq;
	s->bad_seq = SEQ_MOD + 1;
	s->cycles = 0;
	s->received = 0;
	s->have_transit = false;
}

static uint32_t read32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int rtcp_find_sender_report(const uint8_t *buf, size_t len, struct rtcp_sender_report *out)
{
	size_t at = 0;
	while (len - at >= 4) {
		const uint8_t *p = buf + at;
		size_t size = ((size_t)(p[2] << 8 | p[3]) + 1) * 4;
		if ((p[0] >> 6) != 2 || size > len - at)
			return 0;
		/* header 4, SSRC 4, then the sender info's 20: NTP 8, RTP timestamp 4, the two counts */
		if (p[1] == 200 && size >= 28) {
			out->ssrc = read32(p + 4);
			out->ntp = (uint64_t)read32(p + 8) << 32 | read32(p + 12);
			out->rtp_timestamp = read32(p + 16);
			return 1;
		}
		at += size;
	}
	return 0;
}

static int64_t seq_lost(const struct seq_state *s)
{
	int64_t expected = (int64_t)s->cycles + s->max_seq - s->base_seq + 1;
	return expected - s->received;
}

/* Counts one RTP packet of the stream's payload type (RFC 3550 A.1 without probation, A.8 jitter). */
static void count_packet(struct relay_stream *st, const uint8_t *p, int64_t arrival_ns)
{
	struct seq_state *s = &st->seq;
	uint16_t seq = (uint16_t)(p[2] << 8 | p[3]);
	uint32_t ts = read32(p + 4), ssrc = read32(p + 8);
	if (!s->started || ssrc != s->ssrc) {
		/* a new sender (or the first): what the previous one lost stays counted */
		if (s->started) {
			s->received_before += s->received;
			s->lost_before += seq_lost(s) > 0 ? seq_lost(s) : 0;
		}
		s->started = true;
		s->ssrc = ssrc;
		seq_restart(s, seq);
		st->have_packet = true;
		st->first_rtp_timestamp = ts;
		st->first_arrival_ns = arrival_ns;
	} else {
		uint16_t udelta = (uint16_t)(seq - s->max_seq);
		if (udelta < MAX_DROPOUT) {
			if (seq < s->max_seq)
				s->cycles += SEQ_MOD;
			s->max_seq = seq;
		} else if (udelta <= SEQ_MOD - MAX_MISORDER) {
			/* a big jump: the sender restarted its sequence if the next packet follows this one */
			if (seq == s->bad_seq) {
				s->received_before += s->received;
				s->lost_before += seq_lost(s) > 0 ? seq_lost(s) : 0;
				seq_restart(s, seq);
			} else {
				s->bad_seq = (uint32_t)(seq + 1) & (SEQ_MOD - 1);
				return;
			}
		} /* else a duplicate or a late packet: counted as received, as the RFC does */
	}
	s->received++;
	/* transit in clock units; its differences are what matter, so wrapping arithmetic is right */
	uint32_t arrival = (uint32_t)(uint64_t)((double)arrival_ns * st->clock_rate / 1e9);
	uint32_t transit = arrival - ts;
	if (s->have_transit) {
		int32_t d = (int32_t)(transit - s->last_transit);
		s->jitter += (fabs((double)d) - s->jitter) / 16.0;
	}
	s->last_transit = transit;
	s->have_transit = true;
}

/* Sends libavformat a sender report of the relay's own (RFC 3550 6.4.1, without counts) on st's RTCP port. */
static void send_report(struct relay_stream *st, uint32_t ssrc, uint64_t ntp, uint32_t rtp_timestamp)
{
	uint32_t fields[] = {0x80c80006, ssrc, (uint32_t)(ntp >> 32), (uint32_t)ntp, rtp_timestamp, 0, 0};
	uint8_t sr[sizeof fields];
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
		for (int b = 0; b < 4; b++)
			sr[i * 4 + (size_t)b] = (uint8_t)(fields[i] >> (24 - 8 * b));
	sendto(st->out_rtcp, sr, sizeof sr, 0, (struct sockaddr *)&st->local_rtcp, sizeof st->local_rtcp);
}

/* rtp_relay_pin_timestamps(): a report of the relay's own goes to libavformat ahead of each of a stream's packets
 * of its first PIN_NS, saying that the relay's NTP time pin_ntp is the stream's first packet's RTP timestamp.
 * libavformat (rtpdec.c finalize_packet, rtsp.c) then gives every stream's packets their RTP timestamp minus the
 * stream's first packet's: all streams have the same NTP time, so none is moved onto another's. Ahead of each
 * packet, not only the first, because libavformat binds its sockets after the relay starts and what it receives
 * before a report is timed from another origin; it reads RTCP before RTP, so one ahead is enough. */
static void send_pin(struct rtp_relay *relay, struct relay_stream *st, int64_t arrival)
{
	pthread_mutex_lock(&relay->lock);
	bool due = st->have_packet && arrival - st->first_arrival_ns < PIN_NS;
	uint32_t ssrc = st->seq.ssrc, first = st->first_rtp_timestamp;
	pthread_mutex_unlock(&relay->lock);
	if (due)
		send_report(st, ssrc, relay->pin_ntp, first);
}

/* rtp_relay_pin_timestamps(): the sender's reports after its first, moved onto the pinned timeline, so that
 * libavformat follows the sender's clock as the stream's RTP clock drifts against it. The stream's first packet
 * is at F on the sender's clock (from its first report) and at pin_ntp pinned, so a report of sender time N
 * goes on as pin_ntp + (N - F), with its RTP timestamp. Consistent with the pin: where the sender's clock and the
 * RTP clock agree, libavformat's timestamps do not change. */
static void send_moved_report(struct rtp_relay *relay, struct relay_stream *st, const struct rtcp_sender_report *sr)
{
	pthread_mutex_lock(&relay->lock);
	bool usable = st->have_packet && st->first_sr.valid && st->first_sr.sr.ssrc == st->seq.ssrc &&
		      sr->ssrc == st->seq.ssrc;
	/* F - the first report's NTP time, in 32.32: the RTP ticks between them, in whole and part seconds */
	int64_t ticks = (int32_t)(st->first_rtp_timestamp - st->first_sr.sr.rtp_timestamp), rate = st->clock_rate;
	uint64_t first = st->first_sr.sr.ntp + (uint64_t)((ticks / rate) * 4294967296LL + (ticks % rate) * 4294967296LL / rate);
	pthread_mutex_unlock(&relay->lock);
	if (usable)
		send_report(st, sr->ssrc, relay->pin_ntp + (sr->ntp - first), sr->rtp_timestamp);
}

/* Reads what is waiting on fd (at most a few datagrams, so no socket starves the others) and hands each on. */
static void pump(struct rtp_relay *relay, struct relay_stream *st, int fd)
{
	uint8_t buf[65536];
	for (int i = 0; i < 64; i++) {
		union {
			char bytes[CMSG_SPACE(sizeof(struct timespec))];
			struct cmsghdr align;
		} control;
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control};
		ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
		if (n < 0)
			return; /* EAGAIN, or an ICMP error from an earlier send: nothing to do either way */
		if (fd == st->in_rtp) {
			if (n >= 12 && (buf[0] >> 6) == 2 && (buf[1] & 0x7f) == st->pt) {
				pthread_mutex_lock(&relay->lock);
				count_packet(st, buf, arrival_ns(&msg));
				pthread_mutex_unlock(&relay->lock);
			}
			if (atomic_load(&relay->pin))
				send_pin(relay, st, arrival_ns(&msg));
			sendto(st->out_rtp, buf, (size_t)n, 0, (struct sockaddr *)&st->local_rtp, sizeof st->local_rtp);
		} else {
			struct rtcp_sender_report sr;
			bool found = rtcp_find_sender_report(buf, (size_t)n, &sr);
			if (found) {
				struct report_seen seen = {.valid = true, .sr = sr, .arrival_ns = arrival_ns(&msg)};
				pthread_mutex_lock(&relay->lock);
				if (!st->last_sr.valid || st->last_sr.sr.ssrc != sr.ssrc)
					st->first_sr = seen;
				st->last_sr = seen;
				pthread_mutex_unlock(&relay->lock);
			}
			/* the sender's reports: libavformat maps timestamps through them */
			if (!atomic_load(&relay->pin))
				sendto(st->out_rtcp, buf, (size_t)n, 0, (struct sockaddr *)&st->local_rtcp, sizeof st->local_rtcp);
			else if (found)
				send_moved_report(relay, st, &sr);
		}
	}
}

static void *relay_thread(void *arg)
{
	struct rtp_relay *relay = arg;
	struct pollfd fds[MAX_RELAYED * 2];
	struct relay_stream *owner[MAX_RELAYED * 2];
	int n = 0;
	for (int i = 0; i < relay->n_streams; i++) {
		struct relay_stream *st = &relay->streams[i];
		if (st->in_rtp < 0)
			continue;
		int each[] = {st->in_rtp, st->in_rtcp};
		for (int k = 0; k < 2; k++) {
			fds[n] = (struct pollfd){.fd = each[k], .events = POLLIN};
			owner[n++] = st;
		}
	}
	/* The timeout only bounds how long a stop waits. */
	while (!atomic_load(&relay->stop)) {
		if (poll(fds, (nfds_t)n, 100) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++)
			if (fds[i].revents & POLLIN)
				pump(relay, owner[i], fds[i].fd);
	}
	return NULL;
}

/* A UDP socket bound to addr:port (port 0: any); -1 with errno set. */
static int udp_bound(uint32_t addr, int port, int *bound_port)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int size = RCVBUF_BYTES, on = 1;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(addr);
	socklen_t len = sizeof sa;
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    (bound_port && getsockname(fd, (struct sockaddr *)&sa, &len) < 0)) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (bound_port)
		*bound_port = ntohs(sa.sin_port);
	return fd;
}

/* Two loopback sockets on ports P and P+1 (P chosen by the kernel); 0, or -1 with errno set. */
static int loopback_pair(int *a, int *b, int *port)
{
	for (int tries = 0; tries < 100; tries++) {
		int p;
		*a = udp_bound(INADDR_LOOPBACK, 0, &p);
		if (*a < 0)
			return -1;
		*b = p < 65535 ? udp_bound(INADDR_LOOPBACK, p + 1, NULL) : -1;
		if (*b >= 0) {
			*port = p;
			return 0;
		}
		close(*a);
	}
	errno = EADDRINUSE;
	return -1;
}

static void close_stream(struct relay_stream *st)
{
	int *fds[] = {&st->in_rtp, &st->in_rtcp, &st->out_rtp, &st->out_rtcp};
	for (int k = 0; k < 4; k++) {
		if (*fds[k] >= 0)
			close(*fds[k]);
		*fds[k] = -1;
	}
}

/* Binds stream st for the SDP's port: its own sockets, and a free loopback pair for libavformat, whose
 * number is returned in *local_port (the pair is probed and closed: libavformat binds it right after). */
static int open_stream(struct relay_stream *st, int port, int *busy_port, int *local_port)
{
	int probe_a = -1, probe_b = -1, out_port;
	for (int p = port; p <= port + 1; p++) {
		int fd = udp_bound(INADDR_ANY, p, NULL);
		if (fd < 0) {
			if (errno == EADDRINUSE)
				*busy_port = p;
			return -1;
		}
		*(p == port ? &st->in_rtp : &st->in_rtcp) = fd;
	}
	if (loopback_pair(&st->out_rtp, &st->out_rtcp, &out_port) < 0 ||
	    loopback_pair(&probe_a, &probe_b, local_port) < 0)
		return -1;
	close(probe_a);
	close(probe_b);
	st->local_rtp = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)*local_port)};
	st->local_rtp.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	st->local_rtcp = st->local_rtp;
	st->local_rtcp.sin_port = htons((uint16_t)(*local_port + 1));
	return 0;
}

struct rtp_relay *rtp_relay_start(const char *sdp, char **local_sdp, int *busy_port)
{
	*local_sdp = NULL;
	*busy_port = 0;
	struct rtp_relay *relay = calloc(1, sizeof *relay);
	size_t cap = strlen(sdp) + 64 * (MAX_RELAYED + 4);
	char *out = malloc(cap);
	size_t used = 0;
	if (relay) {
		pthread_mutex_init(&relay->lock, NULL);
		for (int i = 0; i < MAX_RELAYED; i++)
			relay->streams[i] = (struct relay_stream){.in_rtp = -1, .in_rtcp = -1, .out_rtp = -1, .out_rtcp = -1};
	}
	if (!relay || !out)
		goto fail;
	struct relay_stream *cur = NULL; /* the media section being read; NULL before the first or when not relayed */
	int cur_port = 0;
	for (const char *line = sdp; *line;) {
		size_t len = strcspn(line, "\r\n"), end = len;
		while (line[end] == '\r' || line[end] == '\n')
			end++;
		char text[512];
		snprintf(text, sizeof text, "%.*s", (int)(len < sizeof text ? len : sizeof text - 1), line);
		char media[16], rest[400];
		int port, pt, rate, n;
		char written[600];
		const char *emit = NULL; /* a rewritten line, else the line as it is */
		if (strncmp(text, "m=", 2) == 0) {
			cur = NULL;
			/* the sdp demuxer keeps these kinds of m= line as streams, in order (AVStream.id) */
			if (sscanf(text, "m=%15s %d%n", media, &port, &n) == 2 &&
			    (!strcmp(media, "audio") || !strcmp(media, "video") || !strcmp(media, "application") ||
			     !strcmp(media, "text"))) {
				if (relay->n_streams == MAX_RELAYED) {
					errno = E2BIG;
					goto fail;
				}
				struct relay_stream *st = &relay->streams[relay->n_streams++];
				const char *after = text + n;
				after += strcspn(after, " "); /* past a "/count" after the port */
				snprintf(rest, sizeof rest, "%s", after);
				if (port > 0 && port < 65535 && sscanf(rest, " %*s %d", &pt) == 1) {
					if (open_stream(st, port, busy_port, &cur_port) < 0)
						goto fail;
					st->pt = pt;
					st->clock_rate = !strcmp(media, "audio") ? 8000 : 90000; /* without an rtpmap: static types */
					cur = st;
					snprintf(written, sizeof written, "m=%s %d%s", media, cur_port, rest);
					emit = written;
				}
			}
		} else if (strncmp(text, "c=IN IP", 7) == 0) {
			emit = "c=IN IP4 127.0.0.1";
		} else if (cur && strncmp(text, "a=rtcp:", 7) == 0) {
			snprintf(written, sizeof written, "a=rtcp:%d", cur_port + 1);
			emit = written;
		} else if (cur && sscanf(text, "a=rtpmap:%d %*[^/]/%d", &pt, &rate) == 2 && pt == cur->pt && rate > 0) {
			cur->clock_rate = (uint32_t)rate;
		}
		size_t add = emit ? strlen(emit) + (end - len) : end;
		if (used + add + 1 > cap) {
			errno = E2BIG;
			goto fail;
		}
		if (emit) {
			memcpy(out + used, emit, strlen(emit));
			memcpy(out + used + strlen(emit), line + len, end - len);
		} else {
			memcpy(out + used, line, end);
		}
		used += add;
		line += end;
	}
	out[used] = '\0';
	atomic_init(&relay->stop, false);
	atomic_init(&relay->pin, false);
	if ((errno = pthread_create(&relay->thread, NULL, relay_thread, relay)) != 0)
		goto fail;
	relay->thread_started = true;
	*local_sdp = out;
	return relay;
fail:;
	int e = errno;
	free(out);
	rtp_relay_stop(relay);
	errno = e;
	return NULL;
}

/* The relayed stream libavformat numbers id, or NULL. */
static struct relay_stream *stream_of(struct rtp_relay *relay, int id)
{
	if (!relay || id < 0 || id >= relay->n_streams || relay->streams[id].in_rtp < 0)
		return NULL;
	return &relay->streams[id];
}

int rtp_relay_stats(struct rtp_relay *relay, int id, struct rtp_stream_stats *out)
{
	struct relay_stream *st = stream_of(relay, id);
	if (!st)
		return -1;
	pthread_mutex_lock(&relay->lock);
	const struct seq_state *s = &st->seq;
	int64_t lost = s->started ? seq_lost(s) : 0;
	out->known = s->started;
	out->received = s->received_before + s->received;
	out->lost = s->lost_before + (lost > 0 ? lost : 0);
	out->jitter_ms = st->clock_rate ? s->jitter * 1000.0 / st->clock_rate : 0;
	pthread_mutex_unlock(&relay->lock);
	return 0;
}

int rtp_relay_clock(struct rtp_relay *relay, int id, struct rtp_stream_clock *out)
{
	struct relay_stream *st = stream_of(relay, id);
	if (!st)
		return -1;
	pthread_mutex_lock(&relay->lock);
	*out = (struct rtp_stream_clock){.have_packet = st->have_packet,
					 .first_rtp_timestamp = st->first_rtp_timestamp,
					 .first_arrival_ns = st->first_arrival_ns};
	/* a report of another SSRC (an earlier sender, or one that has not sent RTP yet) says nothing of this one */
	if (st->have_packet && st->first_sr.valid && st->first_sr.sr.ssrc == st->seq.ssrc) {
		out->have_report = true;
		out->report_ntp = st->first_sr.sr.ntp;
		out->report_rtp_timestamp = st->first_sr.sr.rtp_timestamp;
		out->report_arrival_ns = st->first_sr.arrival_ns;
	}
	pthread_mutex_unlock(&relay->lock);
	return 0;
}

void rtp_relay_pin_timestamps(struct rtp_relay *relay)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	relay->pin_ntp = (uint64_t)(ts.tv_sec + 2208988800LL) << 32 | ((uint64_t)ts.tv_nsec << 32) / 1000000000;
	atomic_store(&relay->pin, true);
}

void rtp_relay_stop(struct rtp_relay *relay)
{
	if (!relay)
		return;
	if (relay->thread_started) {
		atomic_store(&relay->stop, true);
		pthread_join(relay->thread, NULL);
	}
	for (int i = 0; i < MAX_RELAYED; i++)
		close_stream(&relay->streams[i]);
	pthread_mutex_destroy(&relay->lock);
	free(relay);
}
