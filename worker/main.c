/* main.c: vtp-worker's entry: connects, checks the schema, listens for job notifications until SIGTERM.
 * Claiming and running jobs arrive with the job queue (worker/queue.c). */
#include "../lib/config.h"
#include "../lib/db.h"
#include "../lib/log.h"
#include "../lib/migrate.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Slow poll: the fallback when a notification is missed. */
#define POLL_INTERVAL_MS 5000
#define RECONNECT_MAX_S 30

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Connects, checks that no migration is pending and LISTENs. Returns the
 * connection, or NULL when it should be tried again later. */
static PGconn *connect_and_listen(struct vtp_db *db)
{
	char *error = NULL;
	PGconn *conn = vtp_db_connect(db);
	if (!conn)
		return NULL;
	int pending = vtp_migrate_pending(conn, &error);
	if (pending != 0) {
		if (pending < 0)
			log_error("schema check failed: %s", error);
		else
			log_error("%d database migration(s) pending: run vtp-migrate", pending);
		free(error);
		vtp_db_close(db);
		return NULL;
	}
	PGresult *r = PQexec(conn, "LISTEN vtp_jobs");
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok) {
		vtp_db_close(db);
		return NULL;
	}
	log_info("connected; listening for jobs");
	return conn;
}

int main(void)
{
	struct vtp_config cfg;
	struct vtp_db db;
	int backoff_s = 1;

	vtp_log_set_program("vtp-worker");
	if (vtp_config_load_default(&cfg) < 0)
		return 1;
	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	vtp_db_init(&db, &cfg, "vtp-worker");

	while (!stop_requested) {
		PGconn *conn = db.conn ? db.conn : connect_and_listen(&db);
		if (!conn) {
			/* Sleep in short steps so SIGTERM is honoured at once. */
			for (int i = 0; i < backoff_s * 10 && !stop_requested; i++)
				nanosleep(&(struct timespec){0, 100000000}, NULL);
			backoff_s = backoff_s * 2 > RECONNECT_MAX_S ? RECONNECT_MAX_S : backoff_s * 2;
			continue;
		}
		backoff_s = 1;
		struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
		int n = poll(&pfd, 1, POLL_INTERVAL_MS);
		if (n < 0 && errno != EINTR)
			log_warn("poll: %s", strerror(errno));
		if (PQconsumeInput(conn) == 0 || PQstatus(conn) != CONNECTION_OK) {
			log_warn("database connection lost; reconnecting");
			vtp_db_close(&db);
			continue;
		}
		PGnotify *note;
		while ((note = PQnotifies(conn)) != NULL) {
			log_debug("jobs queued in: %s", note->extra);
			PQfreemem(note);
		}
	}
	log_info("stopping");
	vtp_db_close(&db);
	vtp_config_free(&cfg);
	return 0;
}
