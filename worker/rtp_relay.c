/* rtp_relay.c: binds an SDP's RTP/RTCP ports, counts loss and jitter per stream, forwards to loopback for libavformat,
 * and sends the sender RTCP feedback: receiver reports, generic NACKs and PLIs. */
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
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RELAYED 8
#define RCVBUF_BYTES 4194304 /* as libavformat asks for its own sockets: a burst of a keyframe must fit */
#define MAX_DROPOUT 3000     /* RFC 3550 A.1 */
/* RFC 3550 A.1 says 100 sequence numbers; a retransmission comes later: up to GIVE_UP_NS (0.5 s) after its
 * gap, which is 500 numbers behind the newest at 1000 packets a second, more than our video sends. */
#define MAX_MISORDER 500
#define SEQ_MOD 65536
#define PIN_NS 2000000000LL /* see pin_due() */

/* Feedback timings (RFC 3550 6.4.2, RFC 4585 6.2.1 and 6.3.1), all from when the gap was seen, which is when
 * libavformat starts to wait: it holds the packets after a gap for max_delay (record.c: 0.5 s) and then goes on
 * without the missing one. The first NACK goes at once: on loopback and a LAN nothing is reordered by more than
 * a packet or two, and waiting would only eat into the 0.5 s. It is asked for again every 100 ms (a round trip
 * across a continent, well above one to the SFU next door) up to 4 times, so the last ask at 300 ms still
 * leaves 200 ms for the retransmission to arrive. At 500 ms the packet is given up on, as libavformat does. */
#define REPORT_INTERVAL_NS 1000000000LL /* a receiver report a second: mediasoup's stats and RTT follow it */
#define NACK_INTERVAL_NS 100000000LL
#define NACK_ASKS 4
#define GIVE_UP_NS 500000000LL
#define PLI_INTERVAL_NS 1000000000LL /* at most one keyframe request a second: a keyframe is many packets */
/* Sequence numbers waiting for a retransmission, per stream. A bigger gap is an outage, not a loss to repair
 * packet by packet: it is given up at once (a PLI asks for a fresh picture instead). */
#define MAX_MISSING 256
#define MAX_NACK_GAP 128
#define FEEDBACK_BYTES 1500 /* RR 32 + SDES 32 + NACK 12 + 4 per entry (at most MAX_MISSING) + PLI 12 */

/* RFC 3550 A.1 per-source sequence state, plus A.8 jitter. */
struct seq_state {
	bool started;
	uint32_t ssrc;
	uint16_t max_seq;
	uint32_t cycles, base_seq, bad_seq;
	int64_t received;
	int64_t duplicates; /* copies not counted in received: see count_packet() */
	/* counts of earlier sources (an SSRC change or a sequence restart) */
	int64_t received_before, lost_before;
	bool have_transit;
	uint32_t last_transit;
	double jitter; /* in clock units */
	int64_t expected_prior, received_prior; /* at the last receiver report (RFC 3550 A.3) */
};

/* A sequence number seen missing and not yet given up. Its times, like every timer here, are CLOCK_MONOTONIC
 * (mono_ns()): a step of the wall clock must not give up, or hold, what is asked for. */
struct missing {
	uint16_t seq;
	int asks;
	int64_t seen_ns, next_ask_ns;
};

/* A sender report as it arrived. */
struct report_seen {
	bool valid;
	struct rtcp_sender_report sr;
	int64_t arrival_ns;
	uint32_t from_ip; /* network order */
};

struct relay_stream {
	int in_rtp, in_rtcp;   /* bound to the SDP's port and port+1; -1 when this m= line is not relayed */
	/* On 127.0.0.1, what libavformat receives from. Nothing comes back on them: libavformat 5.1's sdp demuxer
	 * sends no RTCP at all (no receiver report, NACK or PLI; checked with strace), so the relay sends the
	 * feedback itself, from in_rtcp. */
	int out_rtp, out_rtcp;
	struct sockaddr_in local_rtp, local_rtcp; /* where libavformat listens */
	int pt;			 /* the m= line's first payload type: the one counted */
	uint32_t clock_rate;
	bool video;
	bool avpf;	    /* the m= line's profile is RTP/AVPF (or SAVPF): feedback may be sent */
	bool nack, pli;	    /* and a=rtcp-fb offers generic NACK / PLI for pt (NACK: not with RTX, see below) */
	bool rtx;	    /* the m= line has an a=rtpmap of rtx (RFC 4588) */
	/* under the relay's lock: */
	struct seq_state seq;
	bool have_packet;	    /* the current SSRC's first packet: */
	uint32_t first_rtp_timestamp;
	int64_t first_arrival_ns;
	/* The first and the latest sender report of the SSRC that sent the latest one. Kept whatever the SSRC,
	 * because ffmpeg (and others) send a report before their first RTP packet. */
	struct report_seen first_sr, last_sr;
	/* The sender is the address of the stream's first counted RTP packet: datagrams from any other address
	 * (RTP or RTCP) are dropped and counted in foreign, so that nobody else's packets get into the recording
	 * or move its counts, its clock or where feedback goes. A sender that moves to another address mid-stream
	 * is not followed (a new recording is). */
	uint32_t rtp_source_ip; /* network order */
	bool have_rtp_source;
	int64_t foreign;
	/* Where feedback goes: the source of the sender's RTCP, or before any, its RTP source's port+1. */
	struct sockaddr_in sender_rtcp;
	bool have_sender_rtcp, from_rtcp;
	struct missing missing[MAX_MISSING]; /* in the order seen, so in sequence order */
	int n_missing;
	bool pli_wanted;
	int64_t next_report_ns, last_pli_ns; /* CLOCK_MONOTONIC */
};

struct rtp_relay {
	struct relay_stream streams[MAX_RELAYED];
	int n_streams;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	pthread_mutex_t lock;
	uint32_t ssrc; /* ours, in the feedback */
	char cname[32];
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

/* Now on CLOCK_MONOTONIC, for timers. */
static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
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
	s->expected_prior = 0;
	s->received_prior = 0;
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

static int64_t seq_expected(const struct seq_state *s)
{
	return (int64_t)s->cycles + s->max_seq - s->base_seq + 1;
}

static int64_t seq_lost(const struct seq_state *s)
{
	return seq_expected(s) - s->received;
}

/* A gap before seq: `count` packets after the highest one seen. Kept as missing, whether or not NACKs ask for
 * them, so that a packet that is only reordered is no loss and no PLI; a gap too big to repair is given up at
 * once. */
static void note_gap(struct relay_stream *st, uint16_t first, uint32_t count, int64_t now)
{
	if (count > MAX_NACK_GAP || st->n_missing + (int)count > MAX_MISSING) {
		st->pli_wanted = st->pli;
		return;
	}
	for (uint32_t i = 0; i < count; i++)
		st->missing[st->n_missing++] = (struct missing){.seq = (uint16_t)(first + i), .seen_ns = now, .next_ask_ns = now};
}

/* A late packet arrived: if it was missing, it is not any more. Returns whether it was. */
static bool note_late(struct relay_stream *st, uint16_t seq)
{
	for (int i = 0; i < st->n_missing; i++)
		if (st->missing[i].seq == seq) {
			memmove(&st->missing[i], &st->missing[i + 1], (size_t)(st->n_missing - i - 1) * sizeof st->missing[0]);
			st->n_missing--;
			return true;
		}
	return false;
}

/* Counts one RTP packet of the stream's sender (RFC 3550 A.1 without probation, A.8 jitter). Sequence numbers
 * belong to the SSRC, so every payload type on it counts (RED, telephone-event, a second codec); only the
 * stream's own type (st->pt), whose clock rate is known, goes into jitter. A packet of another type never
 * starts a sender: the caller passes one only for the current SSRC. arrival_ns is the kernel's realtime stamp
 * (for jitter), now the monotonic time (for the timers). */
static void count_packet(struct relay_stream *st, const uint8_t *p, int64_t arrival_ns, int64_t now)
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
		st->n_missing = 0;
		st->have_packet = true;
		st->first_rtp_timestamp = ts;
		st->first_arrival_ns = arrival_ns;
	} else {
		uint16_t udelta = (uint16_t)(seq - s->max_seq);
		if (udelta < MAX_DROPOUT) {
			if (udelta == 0) {
				s->duplicates++;
				return;
			}
			if (udelta > 1)
				note_gap(st, (uint16_t)(s->max_seq + 1), udelta - 1u, now);
			if (seq < s->max_seq)
				s->cycles += SEQ_MOD;
			s->max_seq = seq;
		} else if (udelta <= SEQ_MOD - MAX_MISORDER) {
			/* a big jump: the sender restarted its sequence if the next packet follows this one */
			if (seq == s->bad_seq) {
				s->received_before += s->received;
				s->lost_before += seq_lost(s) > 0 ? seq_lost(s) : 0;
				seq_restart(s, seq);
				st->n_missing = 0;
			} else {
				s->bad_seq = (uint32_t)(seq + 1) & (SEQ_MOD - 1);
				return;
			}
		} else {
			/* a late packet (a retransmission, or a reordered one): counted as received only while it is
			 * missing, so that a repaired loss is no loss; a copy of one that arrived already, or of one
			 * given up on (libavformat has gone on without it), is a duplicate, else a sender that
			 * retransmits each ask would hide loss. Its transit holds a round trip and our wait, which is
			 * not the network's jitter, so it is left out of that. */
			if (note_late(st, seq))
				s->received++;
			else
				s->duplicates++;
			return;
		}
	}
	s->received++;
	if ((p[1] & 0x7f) != st->pt)
		return;
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
static bool pin_due(const struct relay_stream *st, int64_t arrival)
{
	return st->have_packet && arrival - st->first_arrival_ns < PIN_NS;
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

/* True, and counted, when a datagram from `from` is not the stream's sender's (see rtp_source_ip): it is
 * dropped. Under the relay's lock. */
static bool foreign_dropped(struct relay_stream *st, const struct sockaddr_in *from)
{
	if (!st->have_rtp_source || (from->sin_family == AF_INET && from->sin_addr.s_addr == st->rtp_source_ip))
		return false;
	st->foreign++;
	return true;
}

/* Takes ip (network order) as the stream's sender, at its first counted packet; a sender report that came
 * earlier from another address (a sender may report before its first packet) is forgotten. Under the lock. */
static void take_sender(struct relay_stream *st, uint32_t ip)
{
	st->rtp_source_ip = ip;
	st->have_rtp_source = true;
	if (st->first_sr.valid && st->first_sr.from_ip != ip)
		st->first_sr.valid = false;
	if (st->last_sr.valid && st->last_sr.from_ip != ip)
		st->last_sr.valid = false;
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
		struct sockaddr_in from;
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
		struct msghdr msg = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = &control, .msg_controllen = sizeof control};
		ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
		if (n < 0)
			return; /* EAGAIN, or an ICMP error from an earlier send: nothing to do either way */
		if (fd == st->in_rtp) {
			int pt = buf[1] & 0x7f;
			int64_t arrival = arrival_ns(&msg);
			pthread_mutex_lock(&relay->lock);
			if (foreign_dropped(st, &from)) {
				pthread_mutex_unlock(&relay->lock);
				continue;
			}
			/* RTCP types 200-204 read as RTP types 72-76 (RFC 5761 4): never the sender's media */
			bool counted = n >= 12 && (buf[0] >> 6) == 2 && (pt < 72 || pt > 76) &&
				       (pt == st->pt || (st->seq.started && read32(buf + 8) == st->seq.ssrc));
			if (counted) {
				count_packet(st, buf, arrival, mono_ns());
				if (!st->have_rtp_source && from.sin_family == AF_INET)
					take_sender(st, from.sin_addr.s_addr);
				/* port+1 of port 65535 would be port 0: wait for the sender's RTCP instead */
				if (!st->from_rtcp && from.sin_family == AF_INET && ntohs(from.sin_port) < 65535) {
					st->sender_rtcp = from;
					st->sender_rtcp.sin_port = htons((uint16_t)(ntohs(from.sin_port) + 1));
					st->have_sender_rtcp = true;
				}
			}
			/* what the pin needs, read under the lock already held for the count (this runs per packet) */
			bool pin = atomic_load(&relay->pin) && pin_due(st, arrival);
			uint32_t pin_ssrc = st->seq.ssrc, pin_first = st->first_rtp_timestamp;
			pthread_mutex_unlock(&relay->lock);
			if (pin)
				send_report(st, pin_ssrc, relay->pin_ntp, pin_first);
			sendto(st->out_rtp, buf, (size_t)n, 0, (struct sockaddr *)&st->local_rtp, sizeof st->local_rtp);
		} else {
			struct rtcp_sender_report sr;
			bool found = rtcp_find_sender_report(buf, (size_t)n, &sr);
			pthread_mutex_lock(&relay->lock);
			if (foreign_dropped(st, &from)) {
				pthread_mutex_unlock(&relay->lock);
				continue;
			}
			if (found) {
				struct report_seen seen = {.valid = true, .sr = sr, .arrival_ns = arrival_ns(&msg),
							   .from_ip = from.sin_addr.s_addr};
				if (!st->last_sr.valid || st->last_sr.sr.ssrc != sr.ssrc)
					st->first_sr = seen;
				st->last_sr = seen;
			}
			/* only what looks like RTCP (version 2, a type of RFC 3550 or 4585) moves where feedback goes */
			if (from.sin_family == AF_INET && n >= 8 && (buf[0] >> 6) == 2 && buf[1] >= 200 && buf[1] <= 206 &&
			    st->have_rtp_source) {
				st->sender_rtcp = from;
				st->have_sender_rtcp = st->from_rtcp = true;
			}
			pthread_mutex_unlock(&relay->lock);
			/* the sender's reports: libavformat maps timestamps through them */
			if (!atomic_load(&relay->pin))
				sendto(st->out_rtcp, buf, (size_t)n, 0, (struct sockaddr *)&st->local_rtcp, sizeof st->local_rtcp);
			else if (found)
				send_moved_report(relay, st, &sr);
		}
	}
}

static uint8_t *put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
	return put16(put16(p, v >> 16), v & 0xffff);
}

/* An RTCP header at p (RFC 3550 6.1) for a packet of `words` 32-bit words after it; returns past it. */
static uint8_t *rtcp_header(uint8_t *p, int count_or_fmt, int pt, size_t words)
{
	p[0] = (uint8_t)(0x80 | count_or_fmt);
	p[1] = (uint8_t)pt;
	return put16(p + 2, (uint32_t)words);
}

/* A receiver report with one block for the stream's sender (RFC 3550 6.4.2, A.3) and an SDES with our CNAME.
 * wall_ns is CLOCK_REALTIME, the clock of the sender report's kernel arrival stamp that DLSR counts from. */
static uint8_t *write_report(const struct rtp_relay *relay, struct relay_stream *st, int64_t wall_ns, uint8_t *p)
{
	struct seq_state *s = &st->seq;
	int64_t expected = seq_expected(s), lost = expected - s->received;
	int64_t expected_interval = expected - s->expected_prior, lost_interval = expected_interval - (s->received - s->received_prior);
	s->expected_prior = expected;
	s->received_prior = s->received;
	uint32_t fraction = expected_interval > 0 && lost_interval > 0 ? (uint32_t)((lost_interval << 8) / expected_interval) : 0;
	/* cumulative lost is a signed 24-bit field: a duplicate can make it negative */
	lost = lost > 0x7fffff ? 0x7fffff : lost < -0x800000 ? -0x800000 : lost;
	uint32_t lsr = 0, dlsr = 0;
	if (st->last_sr.valid && st->last_sr.sr.ssrc == s->ssrc) {
		lsr = (uint32_t)(st->last_sr.sr.ntp >> 16);
		int64_t delay = wall_ns - st->last_sr.arrival_ns;
		dlsr = delay > 0 ? (uint32_t)(delay * 65536 / 1000000000) : 0;
	}
	p = rtcp_header(p, 1, 201, 7);
	p = put32(p, relay->ssrc);
	p = put32(p, s->ssrc);
	p = put32(p, fraction << 24 | ((uint32_t)lost & 0xffffff));
	p = put32(p, s->cycles + s->max_seq);
	p = put32(p, (uint32_t)s->jitter);
	p = put32(p, lsr);
	p = put32(p, dlsr);
	/* SDES: one chunk, CNAME, then the null octets that end the item list and pad it to a word */
	size_t len = strlen(relay->cname), words = (4 + 2 + len + 4) / 4;
	p = rtcp_header(p, 1, 202, words);
	uint8_t *chunk = p;
	p = put32(p, relay->ssrc);
	*p++ = 1;
	*p++ = (uint8_t)len;
	memcpy(p, relay->cname, len);
	memset(p + len, 0, words * 4 - 6 - len);
	return chunk + words * 4;
}

/* A generic NACK (RFC 4585 6.2.1) for the missing packets due to be asked for, or nothing; each entry is a
 * PID and a bitmask of the 16 packets after it. */
static uint8_t *write_nack(const struct rtp_relay *relay, struct relay_stream *st, int64_t now, uint8_t *p)
{
	uint8_t *start = p, *fci = p + 12, *entry = NULL;
	uint16_t pid = 0, blp = 0;
	if (!st->nack)
		return p;
	for (int i = 0; i < st->n_missing; i++) {
		struct missing *m = &st->missing[i];
		if (m->asks >= NACK_ASKS || m->next_ask_ns > now)
			continue;
		m->asks++;
		m->next_ask_ns = now + NACK_INTERVAL_NS;
		uint16_t after = (uint16_t)(m->seq - pid - 1);
		if (entry && after < 16) {
			blp |= (uint16_t)(1u << after);
			put16(entry + 2, blp);
			continue;
		}
		entry = fci;
		pid = m->seq;
		blp = 0;
		put16(entry, pid);
		put16(entry + 2, 0);
		fci += 4;
	}
	if (!entry)
		return start;
	p = rtcp_header(p, 1, 205, (size_t)(fci - start) / 4 - 1);
	p = put32(p, relay->ssrc);
	put32(p, st->seq.ssrc);
	return fci;
}

/* Builds into buf (FEEDBACK_BYTES) what is due on stream st at `now` (CLOCK_MONOTONIC; wall_ns: the same
 * instant on CLOCK_REALTIME): a compound packet of a receiver report and SDES, and a NACK and a PLI when they
 * are due. Returns its length, 0 when nothing is due. Under the lock. */
static size_t feedback_due(const struct rtp_relay *relay, struct relay_stream *st, int64_t now, int64_t wall_ns,
			   uint8_t *buf)
{
	if (!st->seq.started || !st->have_sender_rtcp)
		return 0;
	/* what waited longer than libavformat does is given up */
	int kept = 0;
	for (int i = 0; i < st->n_missing; i++) {
		if (now - st->missing[i].seen_ns >= GIVE_UP_NS)
			st->pli_wanted = st->pli;
		else
			st->missing[kept++] = st->missing[i];
	}
	st->n_missing = kept;
	bool nack_due = false, pli_due = st->pli_wanted && now - st->last_pli_ns >= PLI_INTERVAL_NS;
	for (int i = 0; i < st->n_missing && st->nack && !nack_due; i++)
		nack_due = st->missing[i].asks < NACK_ASKS && st->missing[i].next_ask_ns <= now;
	if (!nack_due && !pli_due && now < st->next_report_ns)
		return 0;
	/* RFC 4585 3.1: feedback goes in a compound packet that starts with a report */
	uint8_t *p = write_report(relay, st, wall_ns, buf);
	st->next_report_ns = now + REPORT_INTERVAL_NS;
	p = write_nack(relay, st, now, p);
	if (pli_due) {
		p = rtcp_header(p, 1, 206, 2);
		p = put32(p, relay->ssrc);
		p = put32(p, st->seq.ssrc);
		st->pli_wanted = false;
		st->last_pli_ns = now;
	}
	return (size_t)(p - buf);
}

/* Sends each stream's feedback that is due. Returns the poll timeout until the next could be: short while a
 * packet is missing or a PLI waits, so that asks go out on time. */
static int send_feedback(struct rtp_relay *relay)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = mono_ns(), wall_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	int timeout_ms = 100;
	for (int i = 0; i < relay->n_streams; i++) {
		struct relay_stream *st = &relay->streams[i];
		if (st->in_rtcp < 0)
			continue;
		uint8_t buf[FEEDBACK_BYTES];
		pthread_mutex_lock(&relay->lock);
		size_t len = feedback_due(relay, st, now, wall_ns, buf);
		struct sockaddr_in to = st->sender_rtcp;
		if (st->n_missing > 0 || st->pli_wanted)
			timeout_ms = 10;
		pthread_mutex_unlock(&relay->lock);
		/* a send that fails (the sender gone, a full buffer) is not retried: the next report follows */
		if (len > 0)
			sendto(st->in_rtcp, buf, len, 0, (struct sockaddr *)&to, sizeof to);
	}
	return timeout_ms;
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
	/* The timeout bounds how long a stop waits and how late feedback is. */
	int timeout_ms = 100;
	while (!atomic_load(&relay->stop)) {
		if (poll(fds, (nfds_t)n, timeout_ms) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++)
			if (fds[i].revents & POLLIN)
				pump(relay, owner[i], fds[i].fd);
		timeout_ms = send_feedback(relay);
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

/* Two sockets on addr, ports P and P+1 (P chosen by the kernel); 0, or -1 with errno set. */
static int port_pair(uint32_t addr, int *a, int *b, int *port)
{
	for (int tries = 0; tries < 100; tries++) {
		int p;
		*a = udp_bound(addr, 0, &p);
		if (*a < 0)
			return -1;
		*b = p < 65535 ? udp_bound(addr, p + 1, NULL) : -1;
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

/* Binds stream st for the SDP's port: its own sockets, and a free pair for libavformat, whose number is
 * returned in *local_port (the pair is probed and closed: libavformat binds it right after). libavformat binds
 * it on every address (INADDR_ANY), so it is probed that way: a socket on another address holding one of
 * the ports would pass a probe on loopback and then fail libavformat's bind (seen once in make test). */
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
	if (port_pair(INADDR_LOOPBACK, &st->out_rtp, &st->out_rtcp, &out_port) < 0 ||
	    port_pair(INADDR_ANY, &probe_a, &probe_b, local_port) < 0)
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
		char media[16], rest[400], proto[32], fb_pt[16], fb[64], encoding[16];
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
				if (port > 0 && port < 65535 && sscanf(rest, " %31s %d", proto, &pt) == 2) {
					if (open_stream(st, port, busy_port, &cur_port) < 0)
						goto fail;
					st->pt = pt;
					st->clock_rate = !strcmp(media, "audio") ? 8000 : 90000; /* without an rtpmap: static types */
					st->video = !strcmp(media, "video");
					/* RTP/AVPF, RTP/SAVPF, UDP/TLS/RTP/SAVPF: the profiles with feedback (RFC 4585, 5124) */
					size_t plen = strlen(proto);
					st->avpf = plen >= 4 && !strcmp(proto + plen - 3, "VPF");
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
		} else if (cur && sscanf(text, "a=rtpmap:%d %15[^/]", &pt, encoding) == 2 && !strcasecmp(encoding, "rtx")) {
			cur->rtx = true;
		} else if (cur && sscanf(text, "a=rtpmap:%d %*[^/]/%d", &pt, &rate) == 2 && pt == cur->pt && rate > 0) {
			cur->clock_rate = (uint32_t)rate;
		} else if (cur && cur->avpf && sscanf(text, "a=rtcp-fb:%15s %63[^\n]", fb_pt, fb) == 2 &&
			   (!strcmp(fb_pt, "*") || (sscanf(fb_pt, "%d%n", &pt, &n) == 1 && !fb_pt[n] && pt == cur->pt))) {
			/* RFC 4585 4.2: "nack" alone is the generic NACK, "nack pli" the picture loss indication */
			char word[16], param[16];
			int words = sscanf(fb, "%15s %15s", word, param);
			if (words == 1 && !strcmp(word, "nack"))
				cur->nack = true;
			else if (words == 2 && !strcmp(word, "nack") && !strcmp(param, "pli"))
				cur->pli = cur->video;
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
	/* With RTX negotiated, a sender answers a NACK on the RTX SSRC and payload type (RFC 4588), which the relay
	 * does not count and libavformat cannot decode: no NACKs then. Unwrapping RTX into the original packet
	 * is left to do. A gap is still given up with a PLI. */
	for (int i = 0; i < relay->n_streams; i++)
		if (relay->streams[i].rtx)
			relay->streams[i].nack = false;
	/* RFC 3550 8.1: a random SSRC; the CNAME only has to be unique with it (RFC 7022) */
	if (getrandom(&relay->ssrc, sizeof relay->ssrc, 0) != sizeof relay->ssrc)
		relay->ssrc = (uint32_t)time(NULL) ^ (uint32_t)getpid() << 16;
	snprintf(relay->cname, sizeof relay->cname, "vtp-recorder-%08x", relay->ssrc);
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
	out->duplicates = s->duplicates;
	out->lost = s->lost_before + (lost > 0 ? lost : 0);
	out->jitter_ms = st->clock_rate ? s->jitter * 1000.0 / st->clock_rate : 0;
	out->foreign = st->foreign;
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
