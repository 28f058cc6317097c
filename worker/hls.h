/* hls.h: the HLS ladder's profiles (config data), and the master playlist we write from measured segments. */
#ifndef VTP_HLS_H
#define VTP_HLS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define HLS_MAX_RUNGS 8

/* One rung of the ladder as configured: "720p:1280x720:2800:2996:4200" is
 * name, the box it fits in, and target, peak and buffer bit rates (kb/s);
 * optional fields after them are the H.264 level ("720p:...:4200:3.1") and
 * then libx264's preset ("720p:...:4200:ultrafast", "...:4200:3.1:superfast"). */
struct hls_profile {
	char name[16];
	int width, height;
	int kbps, max_kbps, buf_kbps;
	int level; /* H.264 level_idc (31 for 3.1); 0: the encoder chooses */
	char preset[12]; /* libx264's speed preset; "" is HLS_DEFAULT_PRESET */
};

#define HLS_DEFAULT_PRESET "veryfast"

/* Parses a comma-separated list of profiles (levels 1.0 to 6.2); returns how many (1..max), or
 * -1 with a reason in why. */
int hls_parse_profiles(const char *text, struct hls_profile *out, int max, char *why, size_t why_len);

/* What the master playlist says about one variant (a rung that is complete). */
struct hls_variant {
	char name[16];	     /* folder under hls/ and the variant's URI prefix */
	int width, height;   /* 0 for an audio-only variant */
	double frame_rate;   /* 0 when unknown or audio only */
	char codecs[64];     /* RFC 6381: "avc1.64001f,mp4a.40.2" */
	long long peak_bps;  /* measured: the largest segment bit rate (RFC 8216 4.3.4.2) */
	long long avg_bps;   /* measured: all segments' bits over their duration */
	long long size_bytes; /* measured: the segments' bytes, init section included */
};

/* Measures the segments that the media playlist at dir/index.m3u8 lists
 * (their file sizes over their EXTINF durations, the fMP4 init section
 * counted into the first) into v->peak_bps and v->avg_bps. Returns 0 or -1. */
int hls_measure(const char *dir, struct hls_variant *v);

/* Writes the master playlist for n variants to path (sorted by bandwidth,
 * highest first); each variant's media playlist is "<name>/index.m3u8".
 * Returns 0 or -1 with errno. */
int hls_write_master(const char *path, struct hls_variant *v, int n);

/* Makes the HLS writer mux note the first error writing any of its files (segments and playlists, which
 * libavformat's hls muxer opens and closes itself, dropping their write errors: a full disk looked like
 * "no segments"). One job runs per worker child, so the note is per process. */
struct AVFormatContext;
void hls_watch_writes(struct AVFormatContext *mux);

/* The first write error noted since the process started (an AVERROR code), or 0. */
int hls_write_error(void);

/* The recording's renditions array (docs/openapi.yaml, Rendition), each
 * with status ("ready", or "processing" while it grows). Caller frees. */
json_object *hls_renditions_json(const struct hls_variant *v, int n, const char *status);

/* Which renditions the master playlist in hls_dir lists: *quick, the quick rendition (PLAYABLE_NAME);
 * *other, any other. Returns 0; 1 when there is no master (both false); -1 with errno when it cannot be
 * read (both false, and the caller must not act as if there were none). */
int hls_master_lists(const char *hls_dir, bool *quick, bool *other);

/* Removes a folder and what is in it (symbolic links removed, not
 * followed); a missing one is fine. Returns 0 or -1. */
int hls_remove_tree(const char *path);

/* When root (a worker run by hand or by the tests), gives the tree at path
 * the owner of the recording's folder, so that vtp-api (that owner) can read it. */
void hls_own_tree(const char *path, const char *folder);

#endif
