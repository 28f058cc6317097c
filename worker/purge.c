/* purge.c: the purge job: removes a deleted recording's files (STORAGE_PATH/<id>); running it again is harmless. */
#include "kinds.h"

#include "../lib/storage.h"

#include <errno.h>
#include <string.h>

int purge_run(struct job *job)
{
	job_progress(job, 0);
	if (!storage_valid_id(job->recording_id)) {
		job_error(job, "a purge job needs a recording");
		return -1;
	}
	/* A folder that is already gone counts as removed: a retry after a
	 * crash half-way, or an admin's second purge, just finishes the work. */
	if (storage_remove_recording(job->cfg, job->recording_id) < 0) {
		job_error(job, "cannot remove the recording's files: %s", strerror(errno));
		return -1;
	}
	job_progress(job, 1);
	return 0;
}
