/* sdp.h: the check that a session description from POST /recordings/start is one the recorder can use. */
#ifndef VTP_SDP_H
#define VTP_SDP_H

/* Largest SDP accepted, in bytes (a mediasoup consumer's is about 1 KiB). */
#define MAX_SDP_BYTES 65536

/* An SDP as a recorder can use: at most MAX_SDP_BYTES, starts with the line
 * v=0, only "x=value" lines of a lower-case ASCII letter, and at least one
 * m= line. Returns NULL, or a reason that completes "source.sdp ..." (a
 * static string). */
const char *sdp_problem(const char *sdp);

#endif
