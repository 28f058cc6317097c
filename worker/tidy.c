/* tidy.c: the tidy job: removes the quick rendition that a ladder carried over, once the stream URLs handed out before the ladder have expired. */
#include "kinds.h"

#include "hls.h"
#include "../lib/storage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tidy_run(struct job *job)
{
	char *hls_dir = NULL, *quick = NULL, *aside = NULL;
	int ret = -1;
	job_progress(job, 0);
	if (!storage_valid_id(job->recording_id)) {
		job_error(job, "a tidy job needs a recording");
		return -1;
	}
	hls_dir = storage_path(job->cfg, job->recording_id, "hls");
	quick = xasprintf("%s/%s", hls_dir, PLAYABLE_NAME);
	aside = xasprintf("%s/.%s-tidy-%lld", hls_dir, PLAYABLE_NAME, (long long)job->id);
	bool listed, other;
	if (hls_master_lists(hls_dir, &listed, &other) < 0) {
		job_error(job, "cannot read the master playlist: %s", strerror(errno));
		goto out;
	}
	json_object *result = json_object_new_object();
	if (listed) {
		/* The master plays from it again (a new playable run): it is no longer a leftover. */
		json_object_object_add(result, "removed", json_object_new_boolean(false));
		job_result(job, result);
		ret = 0;
		goto out;
	}
	/* Out of the served folder in one step, then removed: a reader sees the whole rendition or none of it.
	 * What an earlier attempt moved aside goes first (the rename could not replace it). Nothing there (a
	 * deleted recording, a second run) is done already. */
	bool moved = hls_remove_tree(aside) == 0 && rename(quick, aside) == 0;
	if ((!moved && errno != ENOENT) || hls_remove_tree(aside) != 0) {
		job_error(job, "cannot remove the carried-over quick rendition: %s", strerror(errno));
		json_object_put(result);
		goto out;
	}
	json_object_object_add(result, "removed", json_object_new_boolean(moved));
	job_result(job, result);
	job_progress(job, 1);
	ret = 0;
out:
	free(hls_dir);
	free(quick);
	free(aside);
	return ret;
}
