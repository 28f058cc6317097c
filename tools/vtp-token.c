/* vtp-token.c: prints a JWT signed with the configured key, for admins, scripts and tests. */
#include "../lib/auth.h"
#include "../lib/config.h"
#include "../lib/log.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void usage(void)
{
	fprintf(stderr, "usage: vtp-token --sub ID --role admin|instructor|student [--ttl SECONDS] [--name NAME]\n"
			"  signs with JWT_SECRET (HS256) or VTP_JWT_PRIVATE_KEY_FILE (RS256/ES256)\n");
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"sub", required_argument, NULL, 's'}, {"role", required_argument, NULL, 'r'},
		{"ttl", required_argument, NULL, 't'}, {"name", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0},
	};
	const char *sub = NULL, *role = NULL, *name = NULL;
	long ttl = 3600;
	struct vtp_config cfg;
	struct vtp_auth auth;
	char *error = NULL, *token = NULL, *end;
	int opt, ret = 1;

	vtp_log_set_program("vtp-token");
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 's': sub = optarg; break;
		case 'r': role = optarg; break;
		case 'n': name = optarg; break;
		case 't':
			errno = 0;
			ttl = strtol(optarg, &end, 10);
			if (errno || *end || ttl < 1 || ttl > 31536000) {
				fprintf(stderr, "vtp-token: --ttl must be 1 to 31536000 seconds\n");
				return 2;
			}
			break;
		default: usage(); return opt == 'h' ? 0 : 2;
		}
	}
	if (!sub || !role || optind != argc) {
		usage();
		return 2;
	}
	if (vtp_config_load_default(&cfg) < 0)
		return 1;
	if (vtp_auth_init(&auth, &cfg, &error) < 0) {
		fprintf(stderr, "vtp-token: %s\n", error);
		goto out;
	}
	token = vtp_auth_sign(&auth, sub, role, name, ttl, time(NULL), &error);
	if (!token) {
		fprintf(stderr, "vtp-token: %s\n", error);
		goto out;
	}
	printf("%s\n", token);
	ret = 0;
out:
	free(token);
	free(error);
	vtp_auth_free(&auth);
	vtp_config_free(&cfg);
	return ret;
}
