/* db.c: lazy libpq connections bounded by connect and statement timeouts, recovering after outages. */
#include "db.h"

#include "log.h"
#include "mem.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	char timeout[16], options[64];
	snprintf(timeout, sizeof timeout, "%ld", db->cfg->db_connect_timeout_s);
	snprintf(options, sizeof options, "-c statement_timeout=%ld", db->cfg->db_statement_timeout_ms);
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

enum vtp_db_status vtp_db_query(struct vtp_db *db, PGresult **res, const char *sql, int nparams,
				const char *const *params)
{
	*res = NULL;
	db->sqlstate[0] = '\0';
	bool was_connected = db->conn != NULL;
	PGconn *conn = vtp_db_connect(db);
	if (!conn)
		return VTP_DB_UNAVAILABLE;
	PGresult *r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (was_connected && PQstatus(conn) != CONNECTION_OK) {
		/* The server restarted since our last statement, so this one met a
		 * dead connection: reconnect and send it once more. */
		PQclear(r);
		vtp_db_close(db);
		conn = vtp_db_connect(db);
		if (!conn)
			return VTP_DB_UNAVAILABLE;
		r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
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

const char *vtp_db_get(const PGresult *res, int row, const char *column)
{
	int col = PQfnumber(res, column);
	if (col < 0 || PQgetisnull(res, row, col))
		return NULL;
	return PQgetvalue(res, row, col);
}
