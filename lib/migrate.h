/* migrate.h: applies the numbered migrations in sql/ (compiled into the binaries) exactly once. */
#ifndef VTP_MIGRATE_H
#define VTP_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

struct vtp_migration {
	const char *version; /* file name without .sql, e.g. "001_core"; sorts in order */
	const char *sql;
};

/* Generated from sql/[0-9]*.sql by the build (build/gen/migrations.c). */
extern const struct vtp_migration vtp_migrations[];
extern const size_t vtp_migrations_count;

/* Applies every migration not yet recorded in schema_migrations, each in its
 * own transaction, under an advisory lock so several hosts may run it at
 * once. Returns the number applied, or -1 with *error set (caller frees). */
int vtp_migrate_apply(PGconn *conn, char **error);

/* Returns the number of migrations this build knows that the database lacks
 * (0: up to date), or -1 with *error set (caller frees) when the database
 * cannot be read or an applied migration differs from this build's text. */
int vtp_migrate_pending(PGconn *conn, char **error);

#endif
