/* db.c: lazy libpq connections bounded by connect and statement timeouts, recovering after outages. */
#include "db.h"

#include "log.h"
#include "mem.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long past statement_timeout a silent server is waited for. */
#define CLIENT_TIMEOUT_MARGIN_MS 1000

/* Server notices ("relation already exists, skipping") are not ours to print. */
static void ignore_notice(void *arg, const char *message)
{
	(void)arg;
	log_debug("database notice: %s", message);
}

void vtp_db_init(struct vtp_db *db, const struct vtp_config *cfg, const char *application_name)
{
	memset(db, 0, sizeof *db);
	db->cfg = cfg;
	db->application_name = application_name;
}

void vtp_db_close(struct vtp_db *db)
{
	if (db->conn)
		PQfinish(db->conn);
	db->conn = NULL;
	/* Prepared statements live and die with their connection. */
	for (int i = 0; i < db->n_prepared; i++)
		free(db->prepared[i]);
	db->n_prepared = 0;
}

PGconn *vtp_db_connect(struct vtp_db *db)
{
	if (db->conn && PQstatus(db->conn) == CONNECTION_OK)
		return db->conn;
	vtp_db_close(db);
	if (!db->cfg->database_url || !*db->cfg->database_url) {
		log_error("database_url (DATABASE_URL) is not set");
		return NULL;
	}
	char timeout[16], options[256];
	snprintf(timeout, sizeof timeout, "%ld", db->cfg->db_connect_timeout_s);
	snprintf(options, sizeof options, "-c statement_timeout=%ld %s", db->cfg->db_statement_timeout_ms,
		 db->session_options ? db->session_options : "");
	/* With expand_dbname the URL is expanded in place, and the keywords after
	 * it (timeouts and a name, never credentials) override what it says. */
	const char *keys[] = {"dbname", "connect_timeout", "options", "application_name", NULL};
	const char *values[] = {db->cfg->database_url, timeout, options, db->application_name, NULL};
	db->conn = PQconnectdbParams(keys, values, 1);
	if (PQstatus(db->conn) != CONNECTION_OK) {
		char *msg = xstrdup(PQerrorMessage(db->conn));
		msg[strcspn(msg, "\n")] = '\0';
		log_warn("database connection failed: %s", msg);
		free(msg);
		vtp_db_close(db);
		return NULL;
	}
	PQsetNoticeProcessor(db->conn, ignore_notice, NULL);
	return db->conn;
}

/* Waits for the result of the statement just sent, at most the statement
 * timeout plus a margin: the server enforces statement_timeout itself, but a
 * server that stopped answering (frozen, partitioned) would block libpq
 * forever. Returns the last result (NULL after a timeout, with *timed_out). */
static PGresult *wait_with_deadline(struct vtp_db *db, bool *timed_out)
{
	PGconn *conn = db->conn;
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	long limit_ms = db->cfg->db_statement_timeout_ms + CLIENT_TIMEOUT_MARGIN_MS;
	while (PQisBusy(conn)) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long spent = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (spent >= limit_ms) {
			*timed_out = true;
			return NULL;
		}
		struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
		if (poll(&pfd, 1, (int)(limit_ms - spent)) < 0 && errno != EINTR)
			break;
		if (!PQconsumeInput(conn))
			break; /* the connection broke; PQgetResult tells */
	}
	PGresult *last = NULL, *r;
	while ((r = PQgetResult(conn)) != NULL) {
		/* Keep the first error, else the last result. */
		if (last && PQresultStatus(last) == PGRES_FATAL_ERROR) {
			PQclear(r);
			continue;
		}
		PQclear(last);
		last = r;
	}
	return last ? last : PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
}

/* The number of sql's prepared statement on the connection, prepared now on
 * its first use; -1 to send it unnamed (not asked for, in a transaction,
 * no room left, or the prepare failed: the unnamed statement then reports
 * whatever is wrong). */
static int prepared_statement(struct vtp_db *db, const char *sql, int nparams, bool *timed_out)
{
	if (!db->prepare || db->in_transaction)
		return -1;
	for (int i = 0; i < db->n_prepared; i++)
		if (strcmp(db->prepared[i], sql) == 0)
			return i;
	if (db->n_prepared == VTP_DB_PREPARED_MAX)
		return -1;
	char name[16];
	snprintf(name, sizeof name, "p%d", db->n_prepared);
	if (!PQsendPrepare(db->conn, name, sql, nparams, NULL))
		return -1;
	PGresult *r = wait_with_deadline(db, timed_out);
	bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok)
		return -1;
	db->prepared[db->n_prepared] = xstrdup(sql);
	return db->n_prepared++;
}

/* Sends one statement (by name when it is prepared) and waits for its
 * result; see wait_with_deadline(). */
static PGresult *exec_with_deadline(struct vtp_db *db, const char *sql, int nparams, const char *const *params,
				    bool *timed_out)
{
	PGconn *conn = db->conn;
	*timed_out = false;
	int n = prepared_statement(db, sql, nparams, timed_out);
	if (*timed_out)
		return NULL;
	char name[16];
	snprintf(name, sizeof name, "p%d", n);
	int sent = n >= 0 ? PQsendQueryPrepared(conn, name, nparams, params, NULL, NULL, 0)
			  : PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (!sent)
		return PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0); /* reports the error */
	return wait_with_deadline(db, timed_out);
}

/* True when r is PostgreSQL's refusal to run a prepared statement whose
 * result columns changed (SQLSTATE 0A000: a migration altered a table while
 * we held the statement); a new connection prepares it again. */
static bool stale_prepared(const struct vtp_db *db, const PGresult *r)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	return db->n_prepared > 0 && state && strcmp(state, "0A000") == 0;
}

enum vtp_db_status vtp_db_query(struct vtp_db *db, PGresult **res, const char *sql, int nparams,
				const char *const *params)
{
	*res = NULL;
	db->sqlstate[0] = '\0';
	bool may_retry = db->conn != NULL && !db->in_transaction;
	if (db->in_transaction && !db->conn)
		return VTP_DB_UNAVAILABLE; /* the transaction died with its connection */
	PGconn *conn = vtp_db_connect(db);
	if (!conn)
		return VTP_DB_UNAVAILABLE;
	bool timed_out = false;
	PGresult *r = exec_with_deadline(db, sql, nparams, params, &timed_out);
	if (may_retry && !timed_out && (PQstatus(conn) != CONNECTION_OK || stale_prepared(db, r))) {
		/* The server restarted since our last statement, so this one met a
		 * dead connection (or a table changed under a prepared statement):
		 * reconnect and send it once more. */
		PQclear(r);
		vtp_db_close(db);
		conn = vtp_db_connect(db);
		if (!conn)
			return VTP_DB_UNAVAILABLE;
		r = exec_with_deadline(db, sql, nparams, params, &timed_out);
	}
	if (timed_out) {
		PQclear(r);
		log_warn("database did not answer within %ld ms; dropping the connection",
			 db->cfg->db_statement_timeout_ms + CLIENT_TIMEOUT_MARGIN_MS);
		vtp_db_close(db);
		return VTP_DB_UNAVAILABLE;
	}
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		*res = r;
		return VTP_DB_OK;
	}
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	snprintf(db->sqlstate, sizeof db->sqlstate, "%s", state ? state : "");
	char *msg = xstrdup(PQresultErrorMessage(r));
	msg[strcspn(msg, "\n")] = '\0';
	PQclear(r);
	enum vtp_db_status status = VTP_DB_ERROR;
	if (PQstatus(conn) != CONNECTION_OK) {
		log_warn("database connection lost: %s", msg);
		vtp_db_close(db);
		status = VTP_DB_UNAVAILABLE;
	} else if (strncmp(db->sqlstate, "57", 2) == 0 || strncmp(db->sqlstate, "08", 2) == 0) {
		/* 57014 statement timeout, 57P0x shutdown: busy or going away. */
		log_warn("database unavailable (SQLSTATE %s): %s", db->sqlstate, msg);
		status = VTP_DB_UNAVAILABLE;
	} else if (strncmp(db->sqlstate, "23", 2) != 0) {
		/* Constraint violations (23xxx) are the caller's to interpret. */
		log_error("query failed (SQLSTATE %s): %s", db->sqlstate, msg);
	}
	free(msg);
	return status;
}

static enum vtp_db_status run_command(struct vtp_db *db, const char *sql)
{
	PGresult *res = NULL;
	enum vtp_db_status st = vtp_db_query(db, &res, sql, 0, NULL);
	PQclear(res);
	return st;
}

enum vtp_db_status vtp_db_begin(struct vtp_db *db)
{
	enum vtp_db_status st = run_command(db, "BEGIN");
	db->in_transaction = st == VTP_DB_OK;
	return st;
}

enum vtp_db_status vtp_db_commit(struct vtp_db *db)
{
	enum vtp_db_status st = run_command(db, "COMMIT");
	db->in_transaction = 0;
	return st;
}

void vtp_db_rollback(struct vtp_db *db)
{
	if (db->in_transaction && db->conn)
		run_command(db, "ROLLBACK");
	db->in_transaction = 0;
}

const char *vtp_db_get(const PGresult *res, int row, const char *column)
{
	int col = PQfnumber(res, column);
	if (col < 0 || PQgetisnull(res, row, col))
		return NULL;
	return PQgetvalue(res, row, col);
}
