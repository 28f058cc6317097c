/* db.h: one libpq connection with lazy (re)connection and parameterised queries only. */
#ifndef VTP_DB_H
#define VTP_DB_H

#include "config.h"

#include <libpq-fe.h>
#include <stdbool.h>

/* How many statements a connection keeps prepared (see struct vtp_db, prepare). */
#define VTP_DB_PREPARED_MAX 64

enum vtp_db_status {
	VTP_DB_OK = 0,
	VTP_DB_UNAVAILABLE, /* cannot connect, connection lost, or statement timed out */
	VTP_DB_ERROR,	    /* the statement failed (see sqlstate) */
};

struct vtp_db {
	PGconn *conn;
	const struct vtp_config *cfg;
	const char *application_name;
	const char *session_options; /* extra "-c name=value" for every connection, or NULL */
	char sqlstate[6]; /* SQLSTATE of the last failed statement, "" when none */
	int in_transaction; /* set by vtp_db_begin: a lost connection is then never retried */
	/* Set by a long-lived caller (vtp-api's threads): outside transactions, a statement is prepared on
	 * its first use on a connection and run by name afterwards, which spares the server parsing and
	 * planning it on every request. */
	bool prepare;
	int n_prepared;
	char *prepared[VTP_DB_PREPARED_MAX]; /* the texts of statements "p0", "p1", ... (owned) */
};

/* cfg must outlive db. Nothing connects until the first query. */
void vtp_db_init(struct vtp_db *db, const struct vtp_config *cfg, const char *application_name);
void vtp_db_close(struct vtp_db *db);

/* Connects if not connected. Returns the connection or NULL when unreachable. */
PGconn *vtp_db_connect(struct vtp_db *db);

/* Runs one statement with text parameters (NULL entries are SQL NULL). On
 * VTP_DB_OK, *res holds the result and the caller PQclear()s it; otherwise
 * *res is NULL. A lost connection is dropped so the next call reconnects. */
enum vtp_db_status vtp_db_query(struct vtp_db *db, PGresult **res, const char *sql, int nparams,
				const char *const *params);

/* Explicit transactions. Inside one, a statement that meets a lost connection
 * fails (VTP_DB_UNAVAILABLE) instead of being sent again on a new connection,
 * where it would run outside the transaction. vtp_db_rollback() is safe to
 * call after any failure. */
enum vtp_db_status vtp_db_begin(struct vtp_db *db);
enum vtp_db_status vtp_db_commit(struct vtp_db *db);
void vtp_db_rollback(struct vtp_db *db);

/* A row's column by name: NULL when the value is SQL NULL. */
const char *vtp_db_get(const PGresult *res, int row, const char *column);

#endif
