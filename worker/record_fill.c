/* record_fill.c: silent audio frames that fill the gaps of a recorded audio stream (a muted microphone sends nothing). */
#include "record_fill.h"

#include <libavutil/channel_layout.h>
#include <libavutil/mathematics.h>
#include <libavutil/samplefmt.h>

int silence_init(struct silence *s, const AVCodecParameters *par)
{
	const AVCodec *codec = avcodec_find_encoder(par->codec_id);
	AVCodecContext *enc = codec ? avcodec_alloc_context3(codec) : NULL;
	AVFrame *frame = av_frame_alloc();
	AVPacket *pkt = av_packet_alloc();
	int ret = -1;
	s->pkt = NULL;
	s->frame_us = 0;
	if (!enc || !frame || !pkt || par->sample_rate <= 0)
		goto out;
	enc->sample_rate = par->sample_rate;
	av_channel_layout_default(&enc->ch_layout, par->ch_layout.nb_channels > 0 ? par->ch_layout.nb_channels : 2);
	enc->sample_fmt = codec->sample_fmts ? codec->sample_fmts[0] : AV_SAMPLE_FMT_S16;
	enc->time_base = (AVRational){1, par->sample_rate};
	enc->bit_rate = 32000;
	if (par->codec_id == AV_CODEC_ID_AAC)
		enc->profile = par->profile >= 0 ? par->profile : FF_PROFILE_AAC_LOW;
	if (avcodec_open2(enc, codec, NULL) < 0)
		goto out;
	frame->nb_samples = enc->frame_size > 0 ? enc->frame_size : par->sample_rate / 50;
	frame->format = enc->sample_fmt;
	frame->sample_rate = enc->sample_rate;
	if (av_channel_layout_copy(&frame->ch_layout, &enc->ch_layout) < 0 || av_frame_get_buffer(frame, 0) < 0)
		goto out;
	/* A few frames in, the encoder's look-ahead holds only silence too: that frame is the one repeated. */
	for (int i = 0; i < 8 && !s->pkt; i++) {
		av_samples_set_silence(frame->extended_data, 0, frame->nb_samples, frame->ch_layout.nb_channels,
				       frame->format);
		frame->pts = (int64_t)i * frame->nb_samples;
		if (avcodec_send_frame(enc, frame) < 0)
			goto out;
		while (avcodec_receive_packet(enc, pkt) == 0) {
			if (i >= 4 && !s->pkt) {
				s->pkt = av_packet_clone(pkt);
				if (!s->pkt)
					goto out;
			}
			av_packet_unref(pkt);
		}
	}
	if (!s->pkt)
		goto out;
	s->frame_us = av_rescale(frame->nb_samples, 1000000, par->sample_rate);
	s->pkt->flags |= AV_PKT_FLAG_KEY;
	av_packet_free_side_data(s->pkt);
	ret = 0;
out:
	if (ret < 0)
		av_packet_free(&s->pkt);
	avcodec_free_context(&enc);
	av_frame_free(&frame);
	av_packet_free(&pkt);
	return ret;
}

void silence_free(struct silence *s)
{
	av_packet_free(&s->pkt);
}

/* RFC 6716 3.1: the frame length a TOC byte's configuration stands for, in units of 2.5 ms (0: invalid). */
static int opus_frame_units(uint8_t toc)
{
	int config = toc >> 3;
	static const int silk[4] = {4, 8, 16, 24}, hybrid[2] = {4, 8}, celt[4] = {1, 2, 4, 8};
	if (config < 12)
		return silk[config & 3];
	if (config < 16)
		return hybrid[config & 1];
	return celt[config & 3];
}

int64_t audio_packet_us(const AVCodecParameters *par, const AVPacket *pkt, AVRational tb)
{
	if (pkt->duration > 0)
		return av_rescale_q(pkt->duration, tb, AV_TIME_BASE_Q);
	if (par->codec_id == AV_CODEC_ID_OPUS && pkt->size >= 1) {
		int frames = (pkt->data[0] & 3) == 0 ? 1 : (pkt->data[0] & 3) < 3 ? 2 : pkt->size >= 2 ? pkt->data[1] & 0x3f : 0;
		return (int64_t)frames * opus_frame_units(pkt->data[0]) * 2500;
	}
	int samples = av_get_audio_frame_duration2((AVCodecParameters *)par, pkt->size);
	if (samples <= 0 && par->codec_id == AV_CODEC_ID_AAC)
		samples = 1024; /* every AAC-LC frame */
	return samples > 0 && par->sample_rate > 0 ? av_rescale(samples, 1000000, par->sample_rate) : 0;
}
