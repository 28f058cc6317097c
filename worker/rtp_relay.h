/* rtp_relay.h: binds an SDP's RTP/RTCP ports, counts loss and jitter per stream, forwards to loopback for libavformat. */
#ifndef VTP_RTP_RELAY_H
#define VTP_RTP_RELAY_H

#include <stdbool.h>
#include <stdint.h>

struct rtp_relay;

/* What one stream (one m= line libavformat makes a stream of) has received so far. */
struct rtp_stream_stats {
	int64_t received; /* RTP packets of the stream's payload type */
	int64_t lost;	  /* expected - received (RFC 3550 A.3), never below 0 */
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

/* Stops the thread, closes the sockets and frees the relay; NULL is fine. */
void rtp_relay_stop(struct rtp_relay *relay);

#endif
