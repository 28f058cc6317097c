/* migrate.c: the migration runner: advisory lock, one transaction per file, checksums of applied files. */
#include "migrate.h"

#include "log.h"
#include "mem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Any fixed number: every runner on every host takes the same lock. */
#define MIGRATION_LOCK_KEY "7305870001"

static bool command_ok(PGconn *conn, const char *sql, char **error, const char *what)
{
	PGresult *r = PQexec(conn, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		*error = xasprintf("%s: %s", what, PQresultErrorMessage(r));
	PQclear(r);
	return ok;
}

/* Turns a 1-based character offset into the SQL text into a line number. */
static int line_of(const char *sql, const char *position)
{
	long pos = position ? atol(position) : 0;
	int line = 1;
	for (long i = 0; sql[i] && i < pos - 1; i++)
		if (sql[i] == '\n')
			line++;
	return line;
}

/* Returns 1 if version is recorded with the same text, 0 if not recorded,
 * -1 (with *error) if recorded with other text or on failure. */
static int applied_state(PGconn *conn, const struct vtp_migration *m, char **error)
{
	const char *params[] = {m->version, m->sql};
	PGresult *r = PQexecParams(conn,
				   "SELECT checksum = md5($2) FROM schema_migrations WHERE version = $1",
				   2, NULL, params, NULL, NULL, 0);
	int state;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		*error = xasprintf("reading schema_migrations: %s", PQresultErrorMessage(r));
		state = -1;
	} else if (PQntuples(r) == 0) {
		state = 0;
	} else if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
		*error = xasprintf("sql/%s.sql was changed after it was applied; add a new migration instead",
				   m->version);
		state = -1;
	} else {
		state = 1;
	}
	PQclear(r);
	return state;
}

static int apply_one(PGconn *conn, const struct vtp_migration *m, char **error)
{
	if (!command_ok(conn, "BEGIN", error, m->version))
		return -1;
	PGresult *r = PQexec(conn, m->sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		*error = xasprintf("sql/%s.sql:%d: %s", m->version,
				   line_of(m->sql, PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION)),
				   msg ? msg : PQresultErrorMessage(r));
		PQclear(r);
		PQclear(PQexec(conn, "ROLLBACK"));
		return -1;
	}
	PQclear(r);
	const char *params[] = {m->version, m->sql};
	r = PQexecParams(conn, "INSERT INTO schema_migrations (version, checksum) VALUES ($1, md5($2))", 2, NULL,
			 params, NULL, NULL, 0);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		*error = xasprintf("recording %s: %s", m->version, PQresultErrorMessage(r));
	PQclear(r);
	if (!ok) {
		PQclear(PQexec(conn, "ROLLBACK"));
		return -1;
	}
	return command_ok(conn, "COMMIT", error, m->version) ? 0 : -1;
}

int vtp_migrate_apply(PGconn *conn, char **error)
{
	int applied = 0;
	*error = NULL;
	if (!command_ok(conn, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")", error, "taking the migration lock"))
		return -1;
	if (!command_ok(conn,
			"CREATE TABLE IF NOT EXISTS schema_migrations ("
			" version text PRIMARY KEY,"
			" checksum text NOT NULL,"
			" applied_at timestamptz NOT NULL DEFAULT now())",
			error, "creating schema_migrations")) {
		applied = -1;
		goto out;
	}
	for (size_t i = 0; i < vtp_migrations_count; i++) {
		const struct vtp_migration *m = &vtp_migrations[i];
		int state = applied_state(conn, m, error);
		if (state < 0) {
			applied = -1;
			goto out;
		}
		if (state == 1)
			continue;
		if (apply_one(conn, m, error) < 0) {
			applied = -1;
			goto out;
		}
		log_info("applied migration %s", m->version);
		applied++;
	}
out:
	PQclear(PQexec(conn, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")"));
	return applied;
}

int vtp_migrate_pending(PGconn *conn, char **error)
{
	*error = NULL;
	PGresult *r = PQexec(conn, "SELECT to_regclass('schema_migrations') IS NOT NULL");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		*error = xasprintf("checking schema_migrations: %s", PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	bool exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!exists)
		return (int)vtp_migrations_count;
	int pending = 0;
	for (size_t i = 0; i < vtp_migrations_count; i++) {
		int state = applied_state(conn, &vtp_migrations[i], error);
		if (state < 0)
			return -1;
		if (state == 0)
			pending++;
	}
	return pending;
}
