/* job.c: the child side of a job: reporting progress, result and error to the supervisor, and stopping. */
#include "job.h"

#include "../lib/mem.h"
#include "../lib/storage.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

void job_child_init(void)
{
	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	/* The supervisor decides: a Ctrl-C on the terminal reaches it, not us. */
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
}

bool job_stop_requested(void)
{
	return stop_requested != 0;
}

int job_interrupt_cb(void *opaque)
{
	(void)opaque;
	return stop_requested != 0;
}

/* Writes one report line: a letter, a space, text without newlines. */
static void report(struct job *job, char type, const char *text)
{
	struct vtp_buf line = {0};
	vtp_buf_printf(&line, "%c ", type);
	for (const char *p = text; *p; p++)
		vtp_buf_append(&line, *p == '\n' || *p == '\r' ? " " : p, 1);
	vtp_buf_puts(&line, "\n");
	if (job->sink) {
		vtp_buf_append(job->sink, line.data, line.len);
		vtp_buf_free(&line);
		return;
	}
	size_t done = 0;
	while (job->report_fd >= 0 && done < line.len) {
		ssize_t n = write(job->report_fd, line.data + done, line.len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the supervisor is gone; the exit status still tells */
		done += (size_t)n;
	}
	vtp_buf_free(&line);
}

void job_progress(struct job *job, double fraction)
{
	char text[32];
	if (fraction < 0)
		fraction = 0;
	if (fraction > 1)
		fraction = 1;
	snprintf(text, sizeof text, "%.4f", fraction);
	report(job, 'P', text);
}

void job_still_finishing(struct job *job)
{
	report(job, 'F', "");
}

void job_result(struct job *job, json_object *result)
{
	report(job, 'R', json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(result);
}

void job_result_none(struct job *job, const char *key)
{
	json_object *result = json_object_new_object();
	json_object_object_add(result, key, NULL);
	job_result(job, result);
}

void job_publish(struct job *job, json_object *result)
{
	report(job, 'U', json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(result);
}

void job_error(struct job *job, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	report(job, 'E', text);
}

char *job_source_path(struct job *job)
{
	json_object *v = NULL;
	const char *source = NULL;
	char *path = NULL;
	if (json_object_object_get_ex(job->payload, "source_file", &v) && json_object_is_type(v, json_type_string))
		source = json_object_get_string(v);
	if (!source || !(path = storage_path(job->cfg, job->recording_id, source)))
		job_error(job, "the job's payload names no valid source_file (and the recording id must be a UUID)");
	return path;
}
