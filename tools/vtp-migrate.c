/* vtp-migrate.c: applies the database migrations (vtp-migrate), or checks that none is pending (--check). */
#include "../lib/config.h"
#include "../lib/db.h"
#include "../lib/log.h"
#include "../lib/migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
	fprintf(stderr, "usage: vtp-migrate [--check]\n"
			"  applies the migrations compiled into this build to DATABASE_URL;\n"
			"  --check only reports: exit 0 when up to date, 3 when migrations are pending\n");
}

int main(int argc, char **argv)
{
	struct vtp_config cfg;
	struct vtp_db db;
	char *error = NULL;
	int ret = 1;
	int check = 0;

	vtp_log_set_program("vtp-migrate");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--check") == 0) {
			check = 1;
		} else {
			usage();
			return 2;
		}
	}
	if (vtp_config_load_default(&cfg) < 0)
		return 1;
	vtp_db_init(&db, &cfg, "vtp-migrate");
	PGconn *conn = vtp_db_connect(&db);
	if (!conn) {
		log_error("cannot connect to the database");
		goto out;
	}
	if (check) {
		int pending = vtp_migrate_pending(conn, &error);
		if (pending < 0) {
			log_error("%s", error);
		} else if (pending > 0) {
			printf("%d migration(s) pending\n", pending);
			ret = 3;
		} else {
			printf("up to date (%zu migrations)\n", vtp_migrations_count);
			ret = 0;
		}
		goto out;
	}
	int applied = vtp_migrate_apply(conn, &error);
	if (applied < 0) {
		log_error("migration failed: %s", error);
		goto out;
	}
	printf("applied %d migration(s); %zu in all\n", applied, vtp_migrations_count);
	ret = 0;
out:
	free(error);
	vtp_db_close(&db);
	vtp_config_free(&cfg);
	return ret;
}
