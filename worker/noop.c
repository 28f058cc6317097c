/* noop.c: the noop job, for tests and benchmarks: does nothing, or sleeps payload.sleep_ms (stoppable),
 * or fails with the message payload.fail. With an empty payload it runs inside the supervisor (no fork).
 * Asked to stop, it may go on payload.finish_ms before it succeeds, as a recorder joining its parts does,
 * saying so every 200 ms when payload.say_finishing is true. payload.pid_file names a file it writes its
 * process id to (after the payload.fail check, before sleeping); with payload.sleep_attempts N, only attempts 1 to N sleep (a later one succeeds at
 * once), so a test can stop the first attempt and watch the next one finish. */
#include "kinds.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

int noop_run(struct job *job)
{
	json_object *v;
	if (json_object_object_get_ex(job->payload, "fail", &v)) {
		job_error(job, "%s", json_object_get_string(v));
		return -1;
	}
	if (json_object_object_get_ex(job->payload, "pid_file", &v)) {
		FILE *f = fopen(json_object_get_string(v), "we");
		bool written = f && fprintf(f, "%d\n", (int)getpid()) > 0;
		if (f && fclose(f) != 0)
			written = false;
		if (!written) {
			job_error(job, "cannot write the pid file");
			return -1;
		}
	}
	if (json_object_object_get_ex(job->payload, "sleep_attempts", &v) && job->attempt > json_object_get_int(v))
		return 0;
	if (json_object_object_get_ex(job->payload, "sleep_ms", &v)) {
		int64_t left = json_object_get_int64(v);
		for (; left > 0 && !job_stop_requested(); left -= 10)
			nanosleep(&(struct timespec){0, 10 * 1000000}, NULL);
		if (job_stop_requested() && json_object_object_get_ex(job->payload, "finish_ms", &v)) {
			json_object *say;
			bool saying = json_object_object_get_ex(job->payload, "say_finishing", &say) &&
				      json_object_get_boolean(say);
			for (int64_t finish = json_object_get_int64(v); finish > 0; finish -= 200) {
				if (saying)
					job_still_finishing(job);
				nanosleep(&(struct timespec){0, 200 * 1000000}, NULL);
			}
			return 0;
		}
		if (job_stop_requested()) {
			job_error(job, "stopped");
			return -1;
		}
	}
	return 0;
}
