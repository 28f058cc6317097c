/* kinds.h: the entry point of each job kind (one file per kind in worker/). */
#ifndef VTP_KINDS_H
#define VTP_KINDS_H

#include "job.h"

int noop_run(struct job *job);	/* noop.c: does nothing; for tests and benchmarks */
int probe_run(struct job *job); /* probe.c: reads the source's container and streams */
int purge_run(struct job *job); /* purge.c: deletes a deleted recording's files */

#endif
