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
/* thumbnail.c: poster candidate times for a source of duration d; returns how many. */
int thumbnail_candidates(double d, double *out, int max);

#endif
