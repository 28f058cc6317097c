/* config.h: settings from defaults, a key = value file and the environment (which wins). */
#ifndef VTP_CONFIG_H
#define VTP_CONFIG_H

struct vtp_config {
	char *database_url;
	char *jwt_secret;
	char *jwt_alg;
	char *jwt_public_key_file;
	char *jwt_private_key_file;
	char *jwt_issuer;
	char *jwt_audience;
	char *storage_path;
	char *log_level;
	long port;
	long api_threads;
	long max_body_bytes;
	long max_upload_bytes; /* largest media upload (POST /api/v1/recordings) */
	long db_connect_timeout_s;
	long db_statement_timeout_ms;
	long retry_after_s;
	long default_retention_days;
	/* worker */
	long lease_s;	       /* a running job's lease; renewed by each heartbeat */
	long heartbeat_ms;     /* how often the supervisor renews leases and reports progress */
	long retry_base_ms;    /* first retry delay; doubles with each attempt (capped at one hour) */
	long shutdown_grace_s; /* on SIGTERM, how long running jobs may finish before they are requeued */
	long job_timeout_s;    /* 0: each kind's own timeout */
	long job_history_days; /* finished jobs older than this are pruned */
	long progress_event_days; /* raw playback events older than this are deleted by the retention job */
	/* media (issue 4) */
	char *url_signing_key;	   /* key of signed playlist/segment/download URLs; NULL: derived from jwt_secret */
	char *transcode_profiles;  /* the HLS ladder: name:WxH:kbps:maxkbps:bufkbps,... (worker/transcode.h) */
	char *hls_segment_type;	   /* fmp4 or mpegts */
	long hls_segment_s;	   /* target segment duration */
	/* recording (issue 5) */
	long record_part_s;	   /* a recording rolls to a new part file after this many seconds */
	long record_max_s;	   /* a recording ends by itself after this many seconds */
	long record_inactivity_s; /* a recording with no packets for this long ends by itself */
};

/* Fills cfg from built-in defaults, then the file at path (NULL: none), then the
 * environment. On failure returns -1 and sets *error to a message naming the
 * file and line (the caller frees it). Release cfg with vtp_config_free(). */
int vtp_config_load(struct vtp_config *cfg, const char *path, char **error);
void vtp_config_free(struct vtp_config *cfg);

/* The config file to read: $VTP_CONFIG, else vtp.conf beside the executable
 * (shared hosting keeps it next to vtp.fcgi), else /etc/vtp/vtp.conf if it
 * exists, else NULL. The caller frees the result. */
char *vtp_config_find_file(void);

/* Loads the config found by vtp_config_find_file(), prints any error to
 * stderr and applies the log level. Returns 0 or -1. */
int vtp_config_load_default(struct vtp_config *cfg);

#endif
