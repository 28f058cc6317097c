/* playable.c: the playable job: the recording's first playable HLS rendition (hls/quick/: the source's H.264/AAC
 * remuxed, else the lowest rung encoded), published with a master playlist as soon as its first segment exists. */
#include "kinds.h"

#include "hls.h"
#include "../lib/storage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 1 when the master playlist in hls_dir lists a rendition other than the
 * quick one: a ladder is published, and the quick rendition must not replace
 * it; 0 when not; -1 after job_error() when the master cannot be read. */
static int ladder_published(struct job *job, const char *hls_dir)
{
	bool quick, other;
	if (hls_master_lists(hls_dir, &quick, &other) < 0) {
		job_error(job, "cannot read the master playlist: %s", strerror(errno));
		return -1;
	}
	return other;
}

int playable_publish(struct job *job, const char *hls_dir, struct hls_variant *v, bool final)
{
	char *dir = xasprintf("%s/%s", hls_dir, v->name);
	char *tmp = xasprintf("%s/master.m3u8.tmp", hls_dir);
	char *master = xasprintf("%s/master.m3u8", hls_dir);
	char *folder = storage_path(job->cfg, job->recording_id, NULL);
	int ret = -1, published = ladder_published(job, hls_dir);
	if (published < 0)
		goto out;
	if (published) {
		/* A ladder was published meanwhile (the queue keeps the two apart:
		 * sql/010): its master stays; the recording keeps its renditions. */
		if (final)
			job_result(job, json_object_new_object());
		ret = 0;
		goto out;
	}
	if (hls_measure(dir, v) != 0) {
		job_error(job, "the %s rendition has no segments", v->name);
		goto out;
	}
	/* Written aside and renamed: a player never reads half a master. */
	if (hls_write_master(tmp, v, 1) != 0 || rename(tmp, master) != 0) {
		job_error(job, "cannot publish the master playlist: %s", strerror(errno));
		unlink(tmp);
		goto out;
	}
	hls_own_tree(hls_dir, folder);
	json_object *result = json_object_new_object();
	json_object_object_add(result, "renditions", hls_renditions_json(v, 1, final ? "ready" : "processing"));
	json_object_object_add(result, "segment_type",
			       json_object_new_string(strcmp(job->cfg->hls_segment_type, "mpegts") == 0 ? "mpegts" : "fmp4"));
	if (final)
		job_result(job, result);
	else
		job_publish(job, result);
	ret = 0;
out:
	free(dir);
	free(tmp);
	free(master);
	free(folder);
	return ret;
}

int playable_run(struct job *job)
{
	char *folder = storage_path(job->cfg, job->recording_id, NULL);
	char *hls = storage_path(job->cfg, job->recording_id, "hls");
	char *quick = xasprintf("%s/%s", hls, PLAYABLE_NAME);
	char *master = xasprintf("%s/master.m3u8", hls);
	int ret = -1;
	if (mkdir(hls, 0750) != 0 && errno != EEXIST) {
		job_error(job, "cannot create the output folder: %s", strerror(errno));
		goto out;
	}
	int published = ladder_published(job, hls);
	if (published < 0)
		goto out;
	if (published) {
		/* Run again after the ladder (an admin's retry): nothing to do. */
		job_result(job, json_object_new_object());
		ret = 0;
		goto out;
	}
	/* What a failed attempt may have left: this attempt writes it anew. */
	if (unlink(master) != 0 && errno != ENOENT) {
		job_error(job, "cannot replace the master playlist: %s", strerror(errno));
		goto out;
	}
	if (hls_remove_tree(quick) != 0 || mkdir(quick, 0750) != 0) {
		job_error(job, "cannot create the output folder: %s", strerror(errno));
		goto out;
	}
	hls_own_tree(hls, folder);
	ret = transcode_quick(job, hls, quick);
	if (ret != 0) {
		/* Nothing of a failed attempt stays published: the master goes
		 * first, so no player is sent to the folder while it goes. */
		unlink(master);
		hls_remove_tree(quick);
		rmdir(hls); /* only when empty: nothing else was published there */
	}
out:
	free(folder);
	free(hls);
	free(quick);
	free(master);
	return ret;
}
