/* supervisor.h: the worker's main loop: claims jobs into slots, runs each in a child, keeps leases alive. */
#ifndef VTP_SUPERVISOR_H
#define VTP_SUPERVISOR_H

#include "../lib/config.h"

#include <stdbool.h>

#define SUPERVISOR_MAX_QUEUES 8

struct supervisor_options {
	/* "light,heavy,record" or "light:2,heavy:1": queues and their slots;
	 * a queue without ":N" gets concurrency slots. */
	const char *queues;
	int concurrency;
	bool once;	     /* run one job, then exit */
	bool until_idle;     /* work until nothing is runnable (cron on shared hosting) */
	long budget_s;	     /* with until_idle: stop claiming after this long (0: no limit) */
};

/* Runs until SIGTERM (or as the options say). On SIGHUP the contents of cfg
 * are replaced by a fresh load; the caller still frees it. Returns the exit status. */
int supervisor_run(struct vtp_config *cfg, const struct supervisor_options *options);

#endif
