/* test_rtp_relay.c: unit tests of the record job's RTP relay (worker/rtp_relay.c) over real loopback sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../worker/rtp_relay.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A free even port P with P+1 free too (both probed and closed). */
static int free_pair(void)
{
	for (int p = 42000 + (getpid() % 4000) * 2; p < 65000; p += 2) {
		int ok = 1;
		for (int k = 0; k < 2 && ok; k++) {
			int fd = socket(AF_INET, SOCK_DGRAM, 0);
			struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(p + k))};
			ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
			close(fd);
		}
		if (ok)
			return p;
	}
	return -1;
}

static int bound_loopback(int port)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	return fd;
}

static void send_to(int fd, int port, const uint8_t *buf, size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof sa), (ssize_t)len);
}

/* Reads one datagram within 2 s; its length, -1 on timeout. */
static ssize_t recv_within(int fd, uint8_t *buf, size_t size)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 2000) == 1 ? recv(fd, buf, size, 0) : -1;
}

static void rtp_packet(uint8_t *p, uint8_t pt, uint16_t seq, uint32_t ts)
{
	memset(p, 0, 40);
	p[0] = 0x80;
	p[1] = pt;
	p[2] = (uint8_t)(seq >> 8);
	p[3] = (uint8_t)seq;
	for (int i = 0; i < 4; i++)
		p[4 + i] = (uint8_t)(ts >> (24 - 8 * i));
	p[8] = 0x12; /* SSRC 0x12345678 */
	p[9] = 0x34;
	p[10] = 0x56;
	p[11] = 0x78;
	p[12] = (uint8_t)seq; /* a payload that differs per packet */
}

/* Sequence numbers that wrap past 65535, two packets dropped, RTCP too: each datagram arrives unchanged at
 * the loopback port of the rewritten SDP; lost counts the two; jitter follows RFC 3550 A.8. */
static void test_counts_loss_across_the_wrap_and_forwards_unchanged(void **state)
{
	(void)state;
	int port = free_pair();
	assert_true(port > 0);
	char sdp[512];
	snprintf(sdp, sizeof sdp,
		 "v=0\r\no=- 0 0 IN IP4 10.1.2.3\r\ns=t\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\n"
		 "m=audio %d RTP/AVPF 100\r\na=rtcp:%d\r\na=rtpmap:100 opus/48000/2\r\na=recvonly\r\n",
		 port, port + 1);
	char *local = NULL;
	int busy = -1;
	struct rtp_relay *relay = rtp_relay_start(sdp, &local, &busy);
	assert_non_null(relay);
	int local_port = 0;
	const char *m = strstr(local, "m=audio ");
	assert_non_null(m);
	assert_int_equal(sscanf(m, "m=audio %d RTP/AVPF 100\r\n", &local_port), 1);
	assert_int_not_equal(local_port, port);
	assert_non_null(strstr(local, "\r\nc=IN IP4 127.0.0.1\r\n"));
	char rtcp_line[32];
	snprintf(rtcp_line, sizeof rtcp_line, "\r\na=rtcp:%d\r\n", local_port + 1);
	assert_non_null(strstr(local, rtcp_line));
	assert_non_null(strstr(local, "\r\na=rtpmap:100 opus/48000/2\r\na=recvonly\r\n"));

	int rx = bound_loopback(local_port), rx_rtcp = bound_loopback(local_port + 1);
	int tx = socket(AF_INET, SOCK_DGRAM, 0);
	uint8_t pkt[40], got[100];
	double expect_jitter = 0; /* in ms; the datagrams arrive microseconds apart, so transit differences are the
				   * timestamp steps */
	uint32_t ts = 1000, last_ts = 0;
	int sent = 0;
	for (int i = 0; i < 16; i++) {
		uint16_t seq = (uint16_t)(65530 + i);
		ts += 960;
		if (seq == 65534 || seq == 3)
			continue; /* lost on the way */
		rtp_packet(pkt, 100, seq, ts);
		send_to(tx, port, pkt, sizeof pkt);
		if (sent++ > 0)
			expect_jitter += ((double)(ts - last_ts) / 48.0 - expect_jitter) / 16.0;
		last_ts = ts;
		assert_int_equal(recv_within(rx, got, sizeof got), (ssize_t)sizeof pkt);
		assert_memory_equal(got, pkt, sizeof pkt);
	}
	/* a packet of another payload type on another SSRC (say, RTX) is forwarded but not counted */
	rtp_packet(pkt, 101, 500, 0);
	pkt[11] = 0x79;
	send_to(tx, port, pkt, sizeof pkt);
	assert_int_equal(recv_within(rx, got, sizeof got), (ssize_t)sizeof pkt);
	uint8_t sr[28] = {0x80, 200, 0, 6};
	send_to(tx, port + 1, sr, sizeof sr);
	assert_int_equal(recv_within(rx_rtcp, got, sizeof got), (ssize_t)sizeof sr);
	assert_memory_equal(got, sr, sizeof sr);

	struct rtp_stream_stats st;
	assert_int_equal(rtp_relay_stats(relay, 0, &st), 0);
	assert_true(st.known);
	assert_int_equal(st.received, 14);
	assert_int_equal(st.lost, 2);
	assert_true(fabs(st.jitter_ms - expect_jitter) < 2.0);
	assert_int_equal(rtp_relay_stats(relay, 1, &st), -1);

	rtp_relay_stop(relay);
	free(local);
	close(rx);
	close(rx_rtcp);
	close(tx);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* A sender report of 28 bytes (no report blocks) at p. */
static void sender_report(uint8_t *p, uint32_t ssrc, uint64_t ntp, uint32_t rtp_ts)
{
	memset(p, 0, 28);
	p[0] = 0x80;
	p[1] = 200;
	p[3] = 6;
	put32(p + 4, ssrc);
	put32(p + 8, (uint32_t)(ntp >> 32));
	put32(p + 12, (uint32_t)ntp);
	put32(p + 16, rtp_ts);
}

/* The SR is found wherever it is in a compound packet; receiver reports, SDES, a malformed packet or a
 * length past the end give none. */
static void test_sender_report_parsing(void **state)
{
	(void)state;
	struct rtcp_sender_report sr;
	uint8_t buf[128] = {0};
	/* an empty receiver report (8 bytes), then the SR, then an SDES of 12 bytes */
	buf[0] = 0x80, buf[1] = 201, buf[3] = 1;
	sender_report(buf + 8, 0xdeadbeef, 0xe8f1a2b3c4d5e6f7ULL, 123456789);
	uint8_t *sdes = buf + 36;
	sdes[0] = 0x81, sdes[1] = 202, sdes[3] = 2;
	memset(&sr, 0, sizeof sr);
	assert_int_equal(rtcp_find_sender_report(buf, 48, &sr), 1);
	assert_int_equal(sr.ssrc, 0xdeadbeef);
	assert_true(sr.ntp == 0xe8f1a2b3c4d5e6f7ULL);
	assert_int_equal(sr.rtp_timestamp, 123456789);
	/* the SR as the only packet */
	assert_int_equal(rtcp_find_sender_report(buf + 8, 28, &sr), 1);
	assert_int_equal(sr.ssrc, 0xdeadbeef);
	/* cut short: the SR's length runs past the end */
	assert_int_equal(rtcp_find_sender_report(buf, 30, &sr), 0);
	assert_int_equal(rtcp_find_sender_report(buf, 3, &sr), 0);
	assert_int_equal(rtcp_find_sender_report(buf, 0, &sr), 0);
	/* an SR whose length leaves out the sender info */
	uint8_t shortsr[20];
	memcpy(shortsr, buf + 8, 20);
	shortsr[3] = 4;
	assert_int_equal(rtcp_find_sender_report(shortsr, 20, &sr), 0);
	/* only a receiver report and an SDES */
	memcpy(buf + 8, sdes, 12);
	assert_int_equal(rtcp_find_sender_report(buf, 20, &sr), 0);
	/* version 1 before the SR: not RTCP, nothing read past it */
	sender_report(buf + 8, 1, 2, 3);
	buf[0] = 0x40;
	assert_int_equal(rtcp_find_sender_report(buf, 36, &sr), 0);
}

/* A relay of one VP8 m= line (RTP/AVP) on a free port pair *port; *rx and *rx_rtcp are bound where it forwards
 * to (where libavformat would listen), *local is its rewritten SDP (the caller frees it). */
static struct rtp_relay *video_relay(int *port, char **local, int *rx, int *rx_rtcp)
{
	*port = free_pair();
	assert_true(*port > 0);
	char sdp[256];
	snprintf(sdp, sizeof sdp, "v=0\r\nc=IN IP4 127.0.0.1\r\nm=video %d RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n", *port);
	int busy = 0, local_port = 0;
	struct rtp_relay *relay = rtp_relay_start(sdp, local, &busy);
	assert_non_null(relay);
	assert_int_equal(sscanf(strstr(*local, "m=video "), "m=video %d", &local_port), 1);
	*rx = bound_loopback(local_port);
	*rx_rtcp = bound_loopback(local_port + 1);
	return relay;
}

/* The relay keeps the first packet's timestamp and the SSRC's first sender report, even when that report
 * arrives before the first packet (as ffmpeg sends them); a new SSRC starts both over. */
static void test_the_stream_clock_pairs_the_first_packet_and_report(void **state)
{
	(void)state;
	int port, rx, rx_rtcp;
	char *local = NULL;
	struct rtp_relay *relay = video_relay(&port, &local, &rx, &rx_rtcp);
	int tx = socket(AF_INET, SOCK_DGRAM, 0);
	uint8_t pkt[40], got[100], sr[28];
	struct rtp_stream_clock clock;
	assert_int_equal(rtp_relay_clock(relay, 0, &clock), 0);
	assert_false(clock.have_packet);
	assert_false(clock.have_report);
	assert_int_equal(rtp_relay_clock(relay, 1, &clock), -1);

	sender_report(sr, 0x12345678, 0x0000000180000000ULL, 5000);
	send_to(tx, port + 1, sr, sizeof sr);
	assert_int_equal(recv_within(rx_rtcp, got, sizeof got), (ssize_t)sizeof sr);
	sender_report(sr, 0x12345678, 0x0000000280000000ULL, 95000); /* a later one: not the first */
	send_to(tx, port + 1, sr, sizeof sr);
	assert_int_equal(recv_within(rx_rtcp, got, sizeof got), (ssize_t)sizeof sr);
	assert_int_equal(rtp_relay_clock(relay, 0, &clock), 0);
	assert_false(clock.have_report); /* no packet of that SSRC yet */
	rtp_packet(pkt, 96, 7, 4000);
	send_to(tx, port, pkt, sizeof pkt);
	assert_int_equal(recv_within(rx, got, sizeof got), (ssize_t)sizeof pkt);
	rtp_packet(pkt, 96, 8, 7000);
	send_to(tx, port, pkt, sizeof pkt);
	assert_int_equal(recv_within(rx, got, sizeof got), (ssize_t)sizeof pkt);
	assert_int_equal(rtp_relay_clock(relay, 0, &clock), 0);
	assert_true(clock.have_packet && clock.have_report);
	assert_int_equal(clock.first_rtp_timestamp, 4000);
	assert_true(clock.report_ntp == 0x0000000180000000ULL);
	assert_int_equal(clock.report_rtp_timestamp, 5000);
	assert_true(clock.first_arrival_ns > 0 && clock.report_arrival_ns > 0 &&
		    clock.report_arrival_ns <= clock.first_arrival_ns);

	/* another sender on the same port: its first packet, and no report until it sends one */
	rtp_packet(pkt, 96, 100, 777);
	pkt[11] = 0x79;
	send_to(tx, port, pkt, sizeof pkt);
	assert_int_equal(recv_within(rx, got, sizeof got), (ssize_t)sizeof pkt);
	assert_int_equal(rtp_relay_clock(relay, 0, &clock), 0);
	assert_true(clock.have_packet && !clock.have_report);
	assert_int_equal(clock.first_rtp_timestamp, 777);
	sender_report(sr, 0x12345679, 0x0000000380000000ULL, 900);
	send_to(tx, port + 1, sr, sizeof sr);
	assert_int_equal(recv_within(rx_rtcp, got, sizeof got), (ssize_t)sizeof sr);
	assert_int_equal(rtp_relay_clock(relay, 0, &clock), 0);
	assert_true(clock.have_report && clock.report_ntp == 0x0000000380000000ULL && clock.report_rtp_timestamp == 900);

	rtp_relay_stop(relay);
	free(local);
	close(rx);
	close(rx_rtcp);
	close(tx);
}

/* A sender's pair of sockets on loopback ports P and P+1, as the relay expects them (RTCP on RTP's port+1). */
static void sender_pair(int *rtp, int *rtcp)
{
	int port = free_pair();
	assert_true(port > 0);
	*rtp = bound_loopback(port);
	*rtcp = bound_loopback(port + 1);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks one compound feedback datagram of n bytes from the relay for the sender `ssrc`: it starts with a
 * receiver report and an SDES, then only generic NACKs and PLIs about ssrc. Adds to named[] how often each
 * sequence number is asked for and to *plis the PLIs; returns the NACK entries that name more than their PID. */
static int parse_feedback(const uint8_t *got, ssize_t n, uint32_t ssrc, int *named, int *plis)
{
	int masked = 0;
	assert_true(n >= 8 + 24 + 12);
	assert_int_equal(got[0], 0x81); /* RR, one block */
	assert_int_equal(got[1], 201);
	uint32_t own = get32(got + 4);
	assert_int_equal(get32(got + 8), ssrc);
	assert_int_equal(got[33], 202); /* SDES */
	assert_int_equal(get32(got + 36), own);
	size_t at = 32 + ((size_t)(got[34] << 8 | got[35]) + 1) * 4;
	while (at + 12 <= (size_t)n) {
		const uint8_t *p = got + at;
		size_t size = ((size_t)(p[2] << 8 | p[3]) + 1) * 4;
		assert_true(at + size <= (size_t)n);
		assert_int_equal(get32(p + 4), own);
		assert_int_equal(get32(p + 8), ssrc);
		if (p[1] == 205 && (p[0] & 0x1f) == 1) {
			for (size_t f = 12; f < size; f += 4) {
				uint16_t pid = (uint16_t)(p[f] << 8 | p[f + 1]), blp = (uint16_t)(p[f + 2] << 8 | p[f + 3]);
				named[pid]++;
				masked += blp != 0;
				for (int b = 0; b < 16; b++)
					if (blp >> b & 1)
						named[(uint16_t)(pid + 1 + b)]++;
			}
		} else {
			assert_int_equal(p[1], 206); /* else only a PLI */
			assert_int_equal(p[0] & 0x1f, 1);
			assert_int_equal(size, 12);
			(*plis)++;
		}
		at += size;
	}
	assert_int_equal(at, (size_t)n);
	return masked;
}

/* Gaps in a video stream whose SDP offers nack and nack pli: each compound the relay sends back to the sender's
 * RTCP port starts with a receiver report for the sender's SSRC and an SDES; the NACKs name exactly the missing
 * packets (across the sequence wrap, with a PID and a bitmask), a few times at most; once they are
 * given up, one PLI follows. */
static void test_gaps_are_nacked_then_given_up_with_a_pli(void **state)
{
	(void)state;
	int port = free_pair();
	assert_true(port > 0);
	char sdp[512];
	snprintf(sdp, sizeof sdp,
		 "v=0\r\nc=IN IP4 127.0.0.1\r\nm=video %d RTP/AVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
		 "a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n",
		 port);
	char *local = NULL;
	int busy = 0, tx, tx_rtcp;
	struct rtp_relay *relay = rtp_relay_start(sdp, &local, &busy);
	assert_non_null(relay);
	sender_pair(&tx, &tx_rtcp);
	uint8_t pkt[40], got[1500];
	for (int i = 0; i < 12; i++) {
		uint16_t seq = (uint16_t)(65530 + i);
		if (seq == 65533 || seq == 1 || seq == 2 || seq == 3)
			continue;
		rtp_packet(pkt, 96, seq, 3000u * (uint32_t)i);
		send_to(tx, port, pkt, sizeof pkt);
	}
	static int named[65536]; /* how often each sequence number was asked for */
	int plis = 0, masked = 0; /* entries that name more than their PID */
	ssize_t n;
	while (plis == 0 && (n = recv_within(tx_rtcp, got, sizeof got)) > 0)
		masked += parse_feedback(got, n, 0x12345678, named, &plis);
	assert_int_equal(plis, 1);
	assert_true(masked >= 1);
	for (int seq = 0; seq < 65536; seq++) {
		bool missing = seq == 65533 || seq == 1 || seq == 2 || seq == 3;
		assert_true(missing ? named[seq] >= 1 && named[seq] <= 4 : named[seq] == 0);
	}
	struct rtp_stream_stats st;
	assert_int_equal(rtp_relay_stats(relay, 0, &st), 0);
	assert_int_equal(st.lost, 4);
	/* a retransmission that comes after the give-up is too late for libavformat: a duplicate, still a loss */
	rtp_packet(pkt, 96, 65533, 9000);
	send_to(tx, port, pkt, sizeof pkt);
	for (int i = 0; i < 2000 && rtp_relay_stats(relay, 0, &st) == 0 && st.duplicates < 1; i++)
		usleep(1000);
	assert_int_equal(st.duplicates, 1);
	assert_int_equal(st.received, 8);
	assert_int_equal(st.lost, 4);
	rtp_relay_stop(relay);
	free(local);
	close(tx);
	close(tx_rtcp);
}

/* One test's relay, for one video m= line (RTP/AVPF, VP8 as 96, the SDP lines `extra` after its rtpmap) on
 * port, and a sender's pair sending to it; named (65536 entries, how often each sequence number is NACKed)
 * and plis count the feedback that feedback_for() reads. case_end() frees it all. */
struct feedback_case {
	struct rtp_relay *relay;
	char *local;
	int port, tx, tx_rtcp, plis;
	int *named;
};

static void case_start(struct feedback_case *c, const char *extra)
{
	*c = (struct feedback_case){.port = free_pair(), .named = calloc(65536, sizeof *c->named)};
	assert_true(c->port > 0);
	assert_non_null(c->named);
	char sdp[512];
	snprintf(sdp, sizeof sdp, "v=0\r\nc=IN IP4 127.0.0.1\r\nm=video %d RTP/AVPF 96 97\r\na=rtpmap:96 VP8/90000\r\n%s",
		 c->port, extra);
	int busy = 0;
	c->relay = rtp_relay_start(sdp, &c->local, &busy);
	assert_non_null(c->relay);
	sender_pair(&c->tx, &c->tx_rtcp);
}

static void case_end(struct feedback_case *c)
{
	rtp_relay_stop(c->relay);
	free(c->local);
	free(c->named);
	close(c->tx);
	close(c->tx_rtcp);
}

/* Sends from fd to port one packet of the SSRC 0x12345678 for each of the n sequence numbers, of payload type
 * pts[i % n_pts]. */
static void send_seqs(int fd, int port, const uint16_t *seqs, int n, const uint8_t *pts, int n_pts)
{
	uint8_t pkt[40];
	for (int i = 0; i < n; i++) {
		rtp_packet(pkt, pts[i % n_pts], seqs[i], 3000u * seqs[i]);
		send_to(fd, port, pkt, sizeof pkt);
	}
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads the relay's feedback on fd for ms milliseconds, or until the first PLI when until_pli, each datagram
 * checked by parse_feedback(); named (65536 entries) and *plis as there. Returns how many datagrams came. */
static int feedback_for(int fd, int ms, bool until_pli, int *named, int *plis)
{
	uint8_t got[1500];
	int datagrams = 0;
	for (int64_t end = now_ms() + ms, left; (left = end - now_ms()) > 0 && !(until_pli && *plis > 0);) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, (int)left) != 1)
			break;
		ssize_t n = recv(fd, got, sizeof got, 0);
		parse_feedback(got, n, 0x12345678, named, plis);
		datagrams++;
	}
	return datagrams;
}

/* Waits up to 2 s for received + duplicates to reach total; returns the stream's statistics then. */
static struct rtp_stream_stats stats_at(struct rtp_relay *relay, int64_t total)
{
	struct rtp_stream_stats st = {0};
	for (int i = 0; i < 2000 && rtp_relay_stats(relay, 0, &st) == 0 && st.received + st.duplicates < total; i++)
		usleep(1000);
	return st;
}

static int named_count(const int *named)
{
	int total = 0;
	for (int seq = 0; seq < 65536; seq++)
		total += named[seq];
	return total;
}

/* Sequence numbers belong to the SSRC: packets of another payload type on it (RED, telephone-event, a second
 * codec) fill what would otherwise look like gaps, so nothing is NACKed, no PLI follows, and all count. */
static void test_every_payload_type_of_the_ssrc_is_in_sequence(void **state)
{
	(void)state;
	struct feedback_case c;
	case_start(&c, "a=rtpmap:97 red/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n");
	uint16_t seqs[20];
	for (int i = 0; i < 20; i++)
		seqs[i] = (uint16_t)(100 + i);
	const uint8_t pts[] = {96, 97};
	send_seqs(c.tx, c.port, seqs, 20, pts, 2);
	assert_true(feedback_for(c.tx_rtcp, 800, false, c.named, &c.plis) >= 1); /* past the give-up */
	assert_int_equal(named_count(c.named), 0);
	assert_int_equal(c.plis, 0);
	struct rtp_stream_stats st = stats_at(c.relay, 20);
	assert_int_equal(st.received, 20);
	assert_int_equal(st.lost, 0);
	assert_int_equal(st.duplicates, 0);
	case_end(&c);
}

/* A NACKed packet that is retransmitted twice counts once; the second copy, and a copy of the newest packet,
 * are duplicates: they do not hide a loss. */
static void test_a_retransmission_counts_once(void **state)
{
	(void)state;
	struct feedback_case c;
	case_start(&c, "a=rtcp-fb:96 nack\r\n");
	const uint16_t seqs[] = {1, 2, 3, 4, 6, 7, 8, 9, 10};
	const uint8_t pt[] = {96};
	send_seqs(c.tx, c.port, seqs, 9, pt, 1);
	for (int64_t end = now_ms() + 2000; c.named[5] == 0 && now_ms() < end;)
		feedback_for(c.tx_rtcp, 100, false, c.named, &c.plis);
	assert_true(c.named[5] >= 1);
	const uint16_t again[] = {5, 5, 10};
	send_seqs(c.tx, c.port, again, 3, pt, 1);
	struct rtp_stream_stats st = stats_at(c.relay, 12);
	assert_int_equal(st.received, 10);
	assert_int_equal(st.duplicates, 2);
	assert_int_equal(st.lost, 0);
	case_end(&c);
}

/* With RTX negotiated the sender would answer a NACK on the RTX SSRC, so none is sent; a packet that stays
 * missing is still given up with one PLI. */
static void test_no_nack_when_rtx_is_negotiated(void **state)
{
	(void)state;
	struct feedback_case c;
	case_start(&c, "a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
		       "a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n");
	const uint16_t seqs[] = {1, 2, 3, 4, 6, 7, 8};
	const uint8_t pt[] = {96};
	send_seqs(c.tx, c.port, seqs, 7, pt, 1);
	feedback_for(c.tx_rtcp, 3000, true, c.named, &c.plis);
	assert_int_equal(c.plis, 1);
	assert_int_equal(named_count(c.named), 0);
	case_end(&c);
}

/* Without NACK, a packet that is only reordered is no loss and asks for no picture; one that never comes is
 * given up with a PLI, not at once but after the wait. */
static void test_without_nack_a_reorder_is_no_pli(void **state)
{
	(void)state;
	struct feedback_case c;
	case_start(&c, "a=rtcp-fb:96 nack pli\r\n");
	const uint16_t seqs[] = {1, 2, 3, 5, 4, 6, 7, 8};
	const uint8_t pt[] = {96};
	send_seqs(c.tx, c.port, seqs, 8, pt, 1);
	assert_true(feedback_for(c.tx_rtcp, 800, false, c.named, &c.plis) >= 1);
	assert_int_equal(c.plis, 0);
	struct rtp_stream_stats st = stats_at(c.relay, 8);
	assert_int_equal(st.received, 8);
	assert_int_equal(st.lost, 0);
	const uint16_t lost[] = {10};
	int64_t sent_ms = now_ms();
	send_seqs(c.tx, c.port, lost, 1, pt, 1);
	feedback_for(c.tx_rtcp, 3000, true, c.named, &c.plis);
	assert_int_equal(c.plis, 1);
	assert_true(now_ms() - sent_ms >= 450);
	assert_int_equal(named_count(c.named), 0);
	case_end(&c);
}

/* A socket bound to ip (in host order) on a port the kernel picks. */
static int bound_on(uint32_t ip)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(ip);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	return fd;
}

/* RTCP from an address other than the RTP source's (127.0.0.2 here) does not move where feedback goes; RTCP
 * from the RTP source's address, on another port, does. */
static void test_feedback_follows_rtcp_only_from_the_rtp_source(void **state)
{
	(void)state;
	struct feedback_case c;
	case_start(&c, "");
	const uint16_t seqs[] = {1};
	const uint8_t pt[] = {96};
	send_seqs(c.tx, c.port, seqs, 1, pt, 1);
	uint8_t got[1500];
	ssize_t n = recv_within(c.tx_rtcp, got, sizeof got); /* the first report, at once */
	assert_true(n > 0);
	parse_feedback(got, n, 0x12345678, c.named, &c.plis);
	int spoof = bound_on(0x7f000002), other = bound_on(INADDR_LOOPBACK);
	uint8_t rr[8] = {0x80, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef};
	send_to(spoof, c.port + 1, rr, sizeof rr);
	n = recv_within(c.tx_rtcp, got, sizeof got); /* the next report, a second later */
	assert_true(n > 0);
	parse_feedback(got, n, 0x12345678, c.named, &c.plis);
	struct pollfd p = {.fd = spoof, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 0);
	send_to(other, c.port + 1, rr, sizeof rr);
	n = recv_within(other, got, sizeof got);
	assert_true(n > 0);
	parse_feedback(got, n, 0x12345678, c.named, &c.plis);
	assert_int_equal(poll(&p, 1, 0), 0);
	case_end(&c);
	close(spoof);
	close(other);
}

/* The stream's sender is the address of its first packet: RTP and RTCP from another address (127.0.0.2 here,
 * with the sender's own SSRC and payload type) are dropped and counted, not forwarded; a sender report that
 * came from elsewhere before the first packet is forgotten, so it cannot set the stream's clock. */
static void test_only_the_first_senders_address_is_relayed(void **state)
{
	(void)state;
	int port, rx, rx_rtcp;
	char *local = NULL;
	struct rtp_relay *relay = video_relay(&port, &local, &rx, &rx_rtcp);
	int tx = bound_on(INADDR_LOOPBACK), other = bound_on(0x7f000002);
	uint8_t pkt[40], got[100], sr[28];

	sender_report(sr, 0x12345678, 0x0000000580000000ULL, 1); /* before any packet: forwarded, kept for now */
	send_to(other, port + 1, sr, sizeof sr);
	assert_int_equal(recv_within(rx_rtcp, got, sizeof got), (ssize_t)sizeof sr);
	rtp_packet(pkt, 96, 1, 3000);
	send_to(tx, port, pkt, sizeof pkt);
	assert_int_equal(recv_within(rx, got, sizeof got), (ssize_t)sizeof pkt);
	struct rtp_stream_clock clock;
	assert_int_equal(rtp_relay_clock(relay, 0, &clock), 0);
	assert_true(clock.have_packet && !clock.have_report);

	uint8_t forged[40];
	rtp_packet(forged, 96, 2, 3100);
	forged[12] = 0xee;
	send_to(other, port, forged, sizeof forged);
	sender_report(sr, 0x12345678, 0x0000000680000000ULL, 2);
	send_to(other, port + 1, sr, sizeof sr);
	/* the sender's own next packet and report are the next datagrams out: nothing of the other's came first */
	rtp_packet(pkt, 96, 2, 3100);
	send_to(tx, port, pkt, sizeof pkt);
	assert_int_equal(recv_within(rx, got, sizeof got), (ssize_t)sizeof pkt);
	assert_memory_equal(got, pkt, sizeof pkt);
	sender_report(sr, 0x12345678, 0x0000000780000000ULL, 3000);
	send_to(tx, port + 1, sr, sizeof sr);
	assert_int_equal(recv_within(rx_rtcp, got, sizeof got), (ssize_t)sizeof sr);
	assert_memory_equal(got, sr, sizeof sr);

	struct rtp_stream_stats st;
	assert_int_equal(rtp_relay_stats(relay, 0, &st), 0);
	assert_int_equal(st.received, 2);
	assert_int_equal(st.lost, 0);
	assert_int_equal(st.foreign, 2);
	assert_int_equal(rtp_relay_clock(relay, 0, &clock), 0);
	assert_true(clock.have_report);
	assert_true(clock.report_ntp == 0x0000000780000000ULL);
	assert_int_equal(clock.report_rtp_timestamp, 3000);

	rtp_relay_stop(relay);
	free(local);
	close(rx);
	close(rx_rtcp);
	close(tx);
	close(other);
}

/* A port of the SDP that is taken (the RTCP one here) is named. */
static void test_a_port_in_use_is_named(void **state)
{
	(void)state;
	int port = free_pair();
	assert_true(port > 0);
	int holder = bound_loopback(port + 1);
	char sdp[256];
	snprintf(sdp, sizeof sdp, "v=0\r\nc=IN IP4 127.0.0.1\r\nm=video %d RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n", port);
	char *local = (char *)"unchanged";
	int busy = 0;
	assert_null(rtp_relay_start(sdp, &local, &busy));
	assert_null(local);
	assert_int_equal(busy, port + 1);
	close(holder);
	/* and once it is free, the relay binds it */
	struct rtp_relay *relay = rtp_relay_start(sdp, &local, &busy);
	assert_non_null(relay);
	rtp_relay_stop(relay);
	free(local);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts_loss_across_the_wrap_and_forwards_unchanged),
		cmocka_unit_test(test_a_port_in_use_is_named),
		cmocka_unit_test(test_sender_report_parsing),
		cmocka_unit_test(test_the_stream_clock_pairs_the_first_packet_and_report),
		cmocka_unit_test(test_gaps_are_nacked_then_given_up_with_a_pli),
		cmocka_unit_test(test_every_payload_type_of_the_ssrc_is_in_sequence),
		cmocka_unit_test(test_a_retransmission_counts_once),
		cmocka_unit_test(test_no_nack_when_rtx_is_negotiated),
		cmocka_unit_test(test_without_nack_a_reorder_is_no_pli),
		cmocka_unit_test(test_feedback_follows_rtcp_only_from_the_rtp_source),
		cmocka_unit_test(test_only_the_first_senders_address_is_relayed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
