/* main.c: vtp-worker's entry: options, configuration, waiting for the schema, then the supervisor. */
#include "../lib/config.h"
#include "../lib/db.h"
#include "../lib/log.h"
#include "../lib/migrate.h"
#include "supervisor.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SCHEMA_RETRY_MAX_S 30

static volatile sig_atomic_t stop_waiting;

static void on_stop(int sig)
{
	(void)sig;
	stop_waiting = 1;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: vtp-worker [--queues Q[:N],...] [--concurrency N] [--once | --until-idle [--budget S]]\n"
		     "  --queues       queues to work, each with N slots (default light,heavy,record)\n"
		     "  --concurrency  slots of a queue given without :N (default 2)\n"
		     "  --once         run one job, then exit (tests)\n"
		     "  --until-idle   work until no job is runnable, then exit (cron on shared hosting)\n"
		     "  --budget S     with --until-idle: stop taking jobs after S seconds\n"
		     "Signals: TERM stops taking jobs and lets running ones finish (VTP_SHUTDOWN_GRACE_S),\n"
		     "         HUP reloads the configuration.\n");
}

/* Waits until the database is reachable and has every migration this build
 * knows. Returns 0, or -1 when asked to stop while waiting. */
static int wait_for_schema(const struct vtp_config *cfg)
{
	struct vtp_db db;
	int backoff_s = 1;
	vtp_db_init(&db, cfg, "vtp-worker");
	while (!stop_waiting) {
		PGconn *conn = vtp_db_connect(&db);
		if (conn) {
			char *error = NULL;
			int pending = vtp_migrate_pending(conn, &error);
			if (pending == 0)
				break;
			if (pending < 0)
				log_error("schema check failed: %s", error);
			else
				log_error("%d database migration(s) pending: run vtp-migrate", pending);
			free(error);
			vtp_db_close(&db);
		}
		for (int i = 0; i < backoff_s * 10 && !stop_waiting; i++)
			nanosleep(&(struct timespec){0, 100000000}, NULL);
		backoff_s = backoff_s * 2 > SCHEMA_RETRY_MAX_S ? SCHEMA_RETRY_MAX_S : backoff_s * 2;
	}
	vtp_db_close(&db);
	return stop_waiting ? -1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"queues", required_argument, NULL, 'q'}, {"concurrency", required_argument, NULL, 'c'},
		{"once", no_argument, NULL, 'o'},	  {"until-idle", no_argument, NULL, 'u'},
		{"budget", required_argument, NULL, 'b'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct supervisor_options options = {.queues = "light,heavy,record", .concurrency = 2};
	struct vtp_config cfg;
	int opt;

	vtp_log_set_program("vtp-worker");
	while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
		switch (opt) {
		case 'q': options.queues = optarg; break;
		case 'c': options.concurrency = atoi(optarg); break;
		case 'o': options.once = true; break;
		case 'u': options.until_idle = true; break;
		case 'b': options.budget_s = atol(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || options.concurrency < 1 || options.concurrency > 64 || options.budget_s < 0 ||
	    (options.once && options.until_idle)) {
		usage(stderr);
		return 2;
	}
	if (vtp_config_load_default(&cfg) < 0)
		return 1;
	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (wait_for_schema(&cfg) < 0) {
		log_info("stopping before the schema was ready");
		vtp_config_free(&cfg);
		return 0;
	}
	int ret = supervisor_run(&cfg, &options);
	vtp_config_free(&cfg);
	return ret;
}
