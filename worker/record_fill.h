/* record_fill.h: silent audio frames that fill the gaps of a recorded audio stream (a muted microphone sends nothing). */
#ifndef VTP_RECORD_FILL_H
#define VTP_RECORD_FILL_H

#include <libavcodec/avcodec.h>

struct silence {
	AVPacket *pkt;	  /* one encoded silent frame; NULL when this codec cannot be encoded here */
	int64_t frame_us; /* how long it plays */
};

/* Encodes a silent frame for audio of par. Returns 0, or -1 (s->pkt NULL: gaps stay as they are).
 * silence_free() frees what it made. */
int silence_init(struct silence *s, const AVCodecParameters *par);
void silence_free(struct silence *s);

/* How long an audio packet plays (µs): its duration when it has one, else what its codec says
 * (Opus's table of contents), else 0. tb is the packet's time base. */
int64_t audio_packet_us(const AVCodecParameters *par, const AVPacket *pkt, AVRational tb);

#endif
