/* retention.c: the retention job: soft-deletes recordings past their retention (not on legal hold), queues
 * their purge, and drops raw playback events older than progress_event_days. The SQL is vtp_retention_run()
 * (sql/004_analytics.sql); a daily job queues the next one itself when it succeeds. */
#include "kinds.h"

#include "../lib/db.h"

#include <stdio.h>
#include <stdlib.h>

int retention_run(struct job *job)
{
	/* A job's child has no connection of its own: this one is opened here
	 * and closed before the child ends. Running twice is harmless (what is
	 * deleted stays deleted), so a lost lease needs no fencing. */
	struct vtp_db db;
	PGresult *res = NULL;
	int ret = -1;
	char days[24];
	vtp_db_init(&db, job->cfg, "vtp-worker retention");
	snprintf(days, sizeof days, "%ld", job->cfg->progress_event_days);
	const char *params[] = {days};
	job_progress(job, 0);
	static const char sql[] = "SELECT count(*) AS n FROM vtp_retention_run($1::integer)";
	if (vtp_db_query(&db, &res, sql, 1, params) != VTP_DB_OK) {
		job_error(job, "the retention query failed (database unavailable or SQLSTATE %s)",
			  db.sqlstate[0] ? db.sqlstate : "none");
		goto out;
	}
	json_object *result = json_object_new_object();
	json_object_object_add(result, "deleted", json_object_new_int64(strtoll(vtp_db_get(res, 0, "n"), NULL, 10)));
	job_result(job, result);
	job_progress(job, 1);
	ret = 0;
out:
	PQclear(res);
	vtp_db_close(&db);
	return ret;
}
