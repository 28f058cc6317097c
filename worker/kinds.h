/* kinds.h: the entry point of each job kind (one file per kind in worker/). */
#ifndef VTP_KINDS_H
#define VTP_KINDS_H

#include "job.h"

int noop_run(struct job *job);	/* noop.c: does nothing; for tests and benchmarks */
int probe_run(struct job *job); /* probe.c: reads the source's container and streams */
int purge_run(struct job *job); /* purge.c: deletes a deleted recording's files */
int tidy_run(struct job *job);  /* tidy.c: removes the quick rendition a ladder carried over */
int retention_run(struct job *job); /* retention.c: deletes recordings past their retention */
int thumbnail_run(struct job *job);  /* thumbnail.c: chooses the poster, renders the common sizes */
int storyboard_run(struct job *job); /* storyboard.c: sprite, WebVTT track and JSON form */
int transcode_run(struct job *job);  /* transcode.c: the adaptive HLS ladder */
/* transcode.c: the ladder's largest rung into one faststart MP4 at out_path (for mp4.c) */
int transcode_to_mp4(struct job *job, const char *out_path);
/* transcode.c: the playable job's quick rendition into quick_dir (in place, under hls_dir), published
 * through playable_publish() as it grows. */
int transcode_quick(struct job *job, const char *hls_dir, const char *quick_dir);
int playable_run(struct job *job); /* playable.c: the first playable rendition, published segment by segment */
/* playable.c: the quick rendition's folder name under hls/ */
#define PLAYABLE_NAME "quick"
struct hls_variant;
/* playable.c: measures the quick rendition v (its name, sizes and codecs set), writes the master playlist
 * for it into hls_dir by rename, and publishes the recording's renditions: job_publish() while it grows,
 * job_result() when final. Returns 0, or -1 after job_error(). */
int playable_publish(struct job *job, const char *hls_dir, struct hls_variant *v, bool final);
int mp4_run(struct job *job); /* mp4.c: a faststart MP4 for downloads */
int record_run(struct job *job);     /* record.c: captures a live source into Matroska parts, joins them on stop */
/* thumbnail.c: poster candidate times for a source of duration d; returns how many. */
int thumbnail_candidates(double d, double *out, int max);

#endif
