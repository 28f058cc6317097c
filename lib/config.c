/* config.c: the settings table, its file parser (file:line errors) and environment overrides. */
#include "config.h"

#include "log.h"
#include "mem.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum setting_type { SETTING_STRING, SETTING_INT };

struct setting {
	const char *key; /* name in the config file */
	const char *env; /* name in the environment */
	enum setting_type type;
	const char *default_value; /* NULL: unset */
	long min, max;		   /* for SETTING_INT */
	size_t offset;
};

#define STR(key, env, def) {#key, env, SETTING_STRING, def, 0, 0, offsetof(struct vtp_config, key)}
#define INT(key, env, def, min, max) {#key, env, SETTING_INT, def, min, max, offsetof(struct vtp_config, key)}

static const struct setting settings[] = {
	STR(database_url, "DATABASE_URL", NULL),
	STR(jwt_secret, "JWT_SECRET", NULL),
	STR(jwt_alg, "VTP_JWT_ALG", "HS256"),
	STR(jwt_public_key_file, "VTP_JWT_PUBLIC_KEY_FILE", NULL),
	STR(jwt_private_key_file, "VTP_JWT_PRIVATE_KEY_FILE", NULL),
	STR(jwt_issuer, "VTP_JWT_ISSUER", NULL),
	STR(jwt_audience, "VTP_JWT_AUDIENCE", NULL),
	STR(storage_path, "STORAGE_PATH", "/var/lib/vtp"),
	STR(log_level, "VTP_LOG_LEVEL", "info"),
	INT(port, "PORT", "8080", 1, 65535),
	INT(api_threads, "VTP_API_THREADS", "4", 1, 256),
	INT(max_body_bytes, "VTP_MAX_BODY_BYTES", "1048576", 1024, 1073741824),
	INT(max_upload_bytes, "VTP_MAX_UPLOAD_BYTES", "4294967296", 1, 1099511627776),
	INT(db_connect_timeout_s, "VTP_DB_CONNECT_TIMEOUT", "3", 1, 60),
	INT(db_statement_timeout_ms, "VTP_DB_STATEMENT_TIMEOUT_MS", "5000", 100, 600000),
	INT(retry_after_s, "VTP_RETRY_AFTER", "5", 1, 3600),
	INT(default_retention_days, "VTP_DEFAULT_RETENTION_DAYS", "365", 1, 36500),
	INT(lease_s, "VTP_LEASE_S", "5", 2, 3600),
	INT(heartbeat_ms, "VTP_HEARTBEAT_MS", "1000", 100, 600000),
	INT(retry_base_ms, "VTP_RETRY_BASE_MS", "1000", 1, 3600000),
	INT(shutdown_grace_s, "VTP_SHUTDOWN_GRACE_S", "30", 0, 86400),
	INT(job_timeout_s, "VTP_JOB_TIMEOUT_S", "0", 0, 604800),
	INT(job_history_days, "VTP_JOB_HISTORY_DAYS", "30", 1, 36500),
	INT(progress_event_days, "VTP_PROGRESS_EVENT_DAYS", "30", 1, 36500),
	STR(url_signing_key, "VTP_URL_SIGNING_KEY", NULL),
	/* superfast and ultrafast: half the CPU of veryfast at an SSIM 0.002 lower (docs/performance.md) */
	STR(transcode_profiles, "VTP_TRANSCODE_PROFILES",
	    "1080p:1920x1080:5000:5350:7500:superfast,720p:1280x720:2800:2996:4200:ultrafast,"
	    "480p:854x480:1400:1498:2100:ultrafast,360p:640x360:500:535:750:ultrafast"),
	STR(hls_segment_type, "VTP_HLS_SEGMENT_TYPE", "fmp4"),
	INT(hls_segment_s, "VTP_HLS_SEGMENT_S", "6", 1, 60),
	INT(record_part_s, "VTP_RECORD_PART_S", "600", 1, 86400),
	INT(record_max_s, "VTP_RECORD_MAX_S", "21600", 1, 604800),
	INT(record_inactivity_s, "VTP_RECORD_INACTIVITY_S", "1800", 1, 604800),
};

#define N_SETTINGS (sizeof settings / sizeof settings[0])

static const struct setting *find_setting(const char *key)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (strcmp(settings[i].key, key) == 0)
			return &settings[i];
	return NULL;
}

/* Stores value into cfg; on a bad value returns -1 with a reason in why. */
static int apply(struct vtp_config *cfg, const struct setting *s, const char *value, char *why, size_t why_len)
{
	char *field = (char *)cfg + s->offset;
	if (s->type == SETTING_STRING) {
		char **dst = (char **)(void *)field;
		free(*dst);
		*dst = xstrdup(value);
		return 0;
	}
	char *end;
	errno = 0;
	long v = strtol(value, &end, 10);
	if (errno || end == value || *end != '\0') {
		snprintf(why, why_len, "%s must be an integer, not \"%.64s\"", s->key, value);
		return -1;
	}
	if (v < s->min || v > s->max) {
		snprintf(why, why_len, "%s must be between %ld and %ld, not %ld", s->key, s->min, s->max, v);
		return -1;
	}
	*(long *)(void *)field = v;
	return 0;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

static int load_file(struct vtp_config *cfg, const char *path, char **error)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		*error = xasprintf("%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	char line[4096];
	char why[256];
	int lineno = 0, ret = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			*error = xasprintf("%s:%d: line longer than %zu bytes", path, lineno, sizeof line - 2);
			ret = -1;
			break;
		}
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			*error = xasprintf("%s:%d: expected \"key = value\"", path, lineno);
			ret = -1;
			break;
		}
		*eq = '\0';
		char *key = trim(s), *value = trim(eq + 1);
		const struct setting *setting = find_setting(key);
		if (!setting) {
			*error = xasprintf("%s:%d: unknown setting \"%.64s\"", path, lineno, key);
			ret = -1;
			break;
		}
		if (apply(cfg, setting, value, why, sizeof why) < 0) {
			*error = xasprintf("%s:%d: %s", path, lineno, why);
			ret = -1;
			break;
		}
	}
	fclose(f);
	return ret;
}

int vtp_config_load(struct vtp_config *cfg, const char *path, char **error)
{
	char why[256];
	memset(cfg, 0, sizeof *cfg);
	*error = NULL;
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (settings[i].default_value && apply(cfg, &settings[i], settings[i].default_value, why, sizeof why))
			abort(); /* a bad built-in default is a programming error */
	if (path && load_file(cfg, path, error) < 0)
		return -1;
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const char *v = getenv(settings[i].env);
		if (v && apply(cfg, &settings[i], v, why, sizeof why) < 0) {
			*error = xasprintf("environment %s: %s", settings[i].env, why);
			return -1;
		}
	}
	if (vtp_log_parse_level(cfg->log_level) < 0) {
		*error = xasprintf("log_level must be error, warn, info or debug, not \"%.32s\"", cfg->log_level);
		return -1;
	}
	if (cfg->url_signing_key && strlen(cfg->url_signing_key) < 16) {
		*error = xasprintf("url_signing_key must be at least 16 characters");
		return -1;
	}
	if (strcmp(cfg->hls_segment_type, "fmp4") && strcmp(cfg->hls_segment_type, "mpegts")) {
		*error = xasprintf("hls_segment_type must be fmp4 or mpegts, not \"%.32s\"", cfg->hls_segment_type);
		return -1;
	}
	if (strcmp(cfg->jwt_alg, "HS256") && strcmp(cfg->jwt_alg, "RS256") && strcmp(cfg->jwt_alg, "ES256")) {
		*error = xasprintf("jwt_alg must be HS256, RS256 or ES256, not \"%.32s\"", cfg->jwt_alg);
		return -1;
	}
	/* The signed URLs' key comes from jwt_secret when not given; with RS256 or ES256 there is usually none,
	 * and every playlist and download link would fail at its first request instead of here. */
	if (strcmp(cfg->jwt_alg, "HS256") && !(cfg->url_signing_key && *cfg->url_signing_key) &&
	    !(cfg->jwt_secret && *cfg->jwt_secret)) {
		*error = xasprintf("url_signing_key is required when jwt_alg is %s (it signs the playlist and download "
				   "links; with HS256 it is derived from jwt_secret)", cfg->jwt_alg);
		return -1;
	}
	/* The worker kills a job whose lease it could not renew shortly before the lease ends: at least three
	 * heartbeats must fit in a lease, or one late heartbeat would cost a healthy job its lease. */
	if (cfg->heartbeat_ms * 3 > cfg->lease_s * 1000) {
		*error = xasprintf("heartbeat_ms (VTP_HEARTBEAT_MS) is %ld: at most a third of lease_s (VTP_LEASE_S, %ld s)"
				   " so that three heartbeats fit in a lease",
				   (long)cfg->heartbeat_ms, (long)cfg->lease_s);
		return -1;
	}
	return 0;
}

void vtp_config_free(struct vtp_config *cfg)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (settings[i].type == SETTING_STRING) {
			char **p = (char **)(void *)((char *)cfg + settings[i].offset);
			free(*p);
			*p = NULL;
		}
}

char *vtp_config_find_file(void)
{
	const char *env = getenv("VTP_CONFIG");
	if (env && *env)
		return xstrdup(env);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			char *beside = xasprintf("%.*s/vtp.conf", (int)(slash - exe), exe);
			if (access(beside, R_OK) == 0)
				return beside;
			free(beside);
		}
	}
	if (access("/etc/vtp/vtp.conf", R_OK) == 0)
		return xstrdup("/etc/vtp/vtp.conf");
	return NULL;
}

int vtp_config_load_default(struct vtp_config *cfg)
{
	char *path = vtp_config_find_file();
	char *error = NULL;
	int ret = vtp_config_load(cfg, path, &error);
	if (ret < 0) {
		log_error("configuration: %s", error);
		vtp_config_free(cfg);
	} else {
		vtp_log_threshold = (enum vtp_log_level)vtp_log_parse_level(cfg->log_level);
	}
	free(error);
	free(path);
	return ret;
}
