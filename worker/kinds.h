/* kinds.h: the entry point of each job kind (one file per kind in worker/). */
#ifndef VTP_KINDS_H
#define VTP_KINDS_H

#include "job.h"

int noop_run(struct job *job);	/* noop.c: does nothing; for tests and benchmarks */
int probe_run(struct job *job); /* probe.c: reads the source's container and streams */
int purge_run(struct job *job); /* purge.c: deletes a deleted recording's files */
int retention_run(struct job *job); /* retention.c: deletes recordings past their retention */
int thumbnail_run(struct job *job);  /* thumbnail.c: chooses the poster, renders the common sizes */
int storyboard_run(struct job *job); /* storyboard.c: sprite, WebVTT track and JSON form */
int transcode_run(struct job *job);  /* transcode.c: the adaptive HLS ladder */
/* transcode.c: the ladder's largest rung into one faststart MP4 at out_path (for mp4.c) */
int transcode_to_mp4(struct job *job, const char *out_path);
int mp4_run(struct job *job); /* mp4.c: a faststart MP4 for downloads */
int record_run(struct job *job);     /* record.c: captures a live source into Matroska parts, joins them on stop */
/* thumbnail.c: poster candidate times for a source of duration d; returns how many. */
int thumbnail_candidates(double d, double *out, int max);

#endif
