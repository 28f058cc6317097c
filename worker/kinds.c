/* kinds.c: the table of job kinds the worker can run, one row per kind; each kind's code is in its own file. */
#include "job.h"
#include "kinds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* $1 recording id, $2 the probe's result (docs/openapi.yaml, RecordingInfo). */
#define PROBE_PUBLISH_SQL                                                                                      \
	"UPDATE recordings SET media_info = $2::jsonb,"                                                       \
	" duration_s = ($2::jsonb ->> 'duration_s')::double precision,"                                       \
	" size_bytes = COALESCE(($2::jsonb ->> 'size_bytes')::bigint, size_bytes),"                           \
	" updated_at = clock_timestamp() WHERE id = $1"

/* $1 recording id, $2 {"poster_s": seconds or null}: the recording gets its thumbnail_url. */
#define THUMBNAIL_PUBLISH_SQL                                                                                  \
	"UPDATE recordings SET poster_s = ($2::jsonb ->> 'poster_s')::double precision,"                      \
	" updated_at = clock_timestamp() WHERE id = $1"

/* $1 recording id, $2 {"storyboard": the JSON form or null}. */
#define STORYBOARD_PUBLISH_SQL                                                                                 \
	"UPDATE recordings SET storyboard = CASE WHEN jsonb_typeof($2::jsonb -> 'storyboard') = 'object'"     \
	" THEN $2::jsonb -> 'storyboard' END, updated_at = clock_timestamp() WHERE id = $1"

/* $1 recording id, $2 {"renditions": [...], "segment_type", "quick_carried"?}: the recording gets its
 * stream_url. A ladder that carried the quick rendition over (for players already on it) queues the tidy
 * job that removes it once their stream URLs have expired: they live at most a day (STREAM_TOKEN_MAX_S,
 * fcgi/stream.c). */
#define TRANSCODE_PUBLISH_SQL                                                                                  \
	"WITH tidy AS (INSERT INTO jobs (kind, recording_id, priority, run_at)"                               \
	" SELECT 'tidy', $1, 500, clock_timestamp() + interval '1 day'"                                       \
	" WHERE COALESCE(($2::jsonb ->> 'quick_carried')::boolean, false)"                                    \
	" AND EXISTS (SELECT 1 FROM recordings WHERE id = $1 AND deleted_at IS NULL))"                        \
	" UPDATE recordings SET renditions = $2::jsonb -> 'renditions', hls_segment_type = $2::jsonb ->> 'segment_type',"\
	" updated_at = clock_timestamp() WHERE id = $1"

/* $1 recording id, $2 {"renditions": [the quick one], "segment_type"} (also while the job runs: job_publish);
 * never over a published ladder, and no "renditions" (run after the ladder) changes nothing. */
#define PLAYABLE_PUBLISH_SQL                                                                                   \
	"UPDATE recordings SET renditions = $2::jsonb -> 'renditions', hls_segment_type = $2::jsonb ->> 'segment_type',"\
	" updated_at = clock_timestamp() WHERE id = $1 AND $2::jsonb ? 'renditions' AND (renditions IS NULL OR"  \
	" NOT EXISTS (SELECT 1 FROM jsonb_array_elements(renditions) e WHERE e ->> 'name' <> 'quick'))"

/* $1 recording id, $2 the recorder's result: {"source_file", "size_bytes", "duration_s", "parts", "note"};
 * no source_file: no media was received, and the recording fails. */
#define RECORD_PUBLISH_SQL                                                                                     \
	"UPDATE recordings SET source_file = COALESCE($2::jsonb ->> 'source_file', source_file),"             \
	" size_bytes = COALESCE(($2::jsonb ->> 'size_bytes')::bigint, size_bytes),"                           \
	" duration_s = COALESCE(($2::jsonb ->> 'duration_s')::double precision, duration_s),"                 \
	" status = CASE WHEN NOT ($2::jsonb ? 'source_file') THEN 'failed'"                                   \
	"  WHEN status IN ('pending', 'recording', 'stopping') THEN 'processing' ELSE status END,"            \
	" stopped_at = COALESCE(stopped_at, GREATEST(clock_timestamp(), started_at)),"                        \
	" status_detail = COALESCE($2::jsonb ->> 'note', status_detail),"                                     \
	" updated_at = clock_timestamp() WHERE id = $1"

static const struct job_kind kinds[] = {
	/* name     run         publish_sql         timeout_s  in_process  stop_grace_s (0: 0.5 s)  finishes_on_stop
	 * outlives_lease */
	/* 1 s of grace: the tests of job_still_finishing() stop a noop job */
	{ "noop",   noop_run,   NULL,               10,        true, 1 },
	{ "probe",  probe_run,  PROBE_PUBLISH_SQL,  120,       false },
	{ "purge",  purge_run,  NULL,               600,       false },
	{ "tidy",   tidy_run,   NULL,               600,       false },
	{ "retention", retention_run, NULL,         600,       false },
	{ "thumbnail", thumbnail_run, THUMBNAIL_PUBLISH_SQL, 120, false },
	{ "storyboard", storyboard_run, STORYBOARD_PUBLISH_SQL, 600, false },
	/* a recording ends by stop, record_max_s or record_inactivity_s; the grace lets it finish and join its parts */
	{ "record", record_run, RECORD_PUBLISH_SQL, 604800, false, 30, true, true },
	/* 5 s of grace: a stopped playable job removes what it wrote. */
	{ "playable", playable_run, PLAYABLE_PUBLISH_SQL, 6 * 3600, false, 5 },
	/* 5 s of grace: a stopped transcode removes its temporary folder. */
	{ "transcode", transcode_run, TRANSCODE_PUBLISH_SQL, 6 * 3600, false, 5 },
	{ "mp4",    mp4_run,    NULL,               6 * 3600,  false, 5 },
};

const struct job_kind *job_kind_find(const char *name)
{
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
		if (strcmp(kinds[i].name, name) == 0)
			return &kinds[i];
	return NULL;
}

void job_kind_names(char *out, size_t size)
{
	size_t used = 0;
	out[0] = '\0';
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		int n = snprintf(out + used, size - used, "%s%s", i ? "," : "", kinds[i].name);
		if (n < 0 || (size_t)n >= size - used)
			abort(); /* a programming error: the buffer is sized for the table */
		used += (size_t)n;
	}
}
