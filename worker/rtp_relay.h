/* rtp_relay.h: binds an SDP's RTP/RTCP ports, counts loss and jitter per stream, forwards to loopback for libavformat. */
#ifndef VTP_RTP_RELAY_H
#define VTP_RTP_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rtp_relay;

/* What one stream (one m= line libavformat makes a stream of) has received so far. */
struct rtp_stream_stats {
	int64_t received;   /* RTP packets of the stream's sender (SSRC), of any payload type, each counted once */
	int64_t lost;	    /* expected - received (RFC 3550 A.3), never below 0 */
	int64_t duplicates; /* copies not counted: of a packet already received, or too late (given up on) */
	int64_t foreign;    /* datagrams (RTP or RTCP) from an address other than the sender's, dropped */
	double jitter_ms; /* interarrival jitter (RFC 3550 A.8) */
	bool known;	  /* a packet has been received */
};

/* Binds the ports the SDP names (each m= line's port and port+1) and starts a thread that forwards every
 * datagram, unchanged, to loopback ports. On success returns the relay and
 * *local_sdp: the SDP with those loopback ports and address, for libavformat (the caller frees it with free()).
 * On failure returns NULL with *busy_port set to a port that is in use, or 0 and errno set.
 * rtp_relay_stop() frees the relay. */
struct rtp_relay *rtp_relay_start(const char *sdp, char **local_sdp, int *busy_port);

/* The statistics of the stream that libavformat's sdp demuxer numbers `id` (AVStream.id: the m= lines it
 * kept, in order). Returns 0, or -1 when there is no such stream. */
int rtp_relay_stats(struct rtp_relay *relay, int id, struct rtp_stream_stats *out);

/* A stream's RTP clock against the sender's wall clock: its first packet and its first sender report.
 * Both describe the stream's current sender (SSRC): a new SSRC starts them over. A sequence restart on the
 * same SSRC does not: an SSRC's RTP timestamps are one clock (RFC 3550 5.1), whatever its sequence numbers do. */
struct rtp_stream_clock {
	bool have_packet;             /* the SSRC's first RTP packet (of the counted payload type) has been forwarded */
	uint32_t first_rtp_timestamp; /* that packet's RTP timestamp */
	int64_t first_arrival_ns;     /* when it arrived: CLOCK_REALTIME ns, as arrival_ns() gives it */
	bool have_report;             /* a sender report for the stream's SSRC has arrived (RFC 3550 6.4.1) */
	uint64_t report_ntp;          /* the first one's NTP timestamp, 32.32 fixed point */
	uint32_t report_rtp_timestamp;/* the RTP timestamp it pairs with that NTP time */
	int64_t report_arrival_ns;
};
/* Fills *out for the stream libavformat numbers `id` (as rtp_relay_stats). Returns 0, or -1 when there is no such stream. */
int rtp_relay_clock(struct rtp_relay *relay, int id, struct rtp_stream_clock *out);

/* The parts of a sender report (RFC 3550 6.4.1) the relay keeps. */
struct rtcp_sender_report {
	uint32_t ssrc;          /* the sender's */
	uint64_t ntp;           /* 32.32 fixed point */
	uint32_t rtp_timestamp; /* the same instant on the stream's RTP clock */
};
/* Finds the first sender report (PT 200) in a compound RTCP packet of len bytes, walking its packets by their
 * length fields (RFC 3550 6.1). Returns 1 with *out filled, 0 when there is none before the end or before a
 * packet that is malformed (wrong version, or a length past the end). */
int rtcp_find_sender_report(const uint8_t *buf, size_t len, struct rtcp_sender_report *out);

/* From now on the sender's RTCP is kept from libavformat, and each stream's timestamps are pinned instead (by
 * sender reports of the relay's own, see rtp_relay.c): libavformat's pts of a stream count from its first packet
 * (rtp_relay_clock's first_rtp_timestamp), whenever the sender's first report comes. Call it before libavformat
 * opens the loopback ports. */
void rtp_relay_pin_timestamps(struct rtp_relay *relay);

/* Stops the thread, closes the sockets and frees the relay; NULL is fine. */
void rtp_relay_stop(struct rtp_relay *relay);

#endif
