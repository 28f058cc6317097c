/* routes.h: the handlers named in the route table, one group per resource file. */
#ifndef VTP_ROUTES_H
#define VTP_ROUTES_H

#include "http.h"

/* health.c */
void health_get(struct vtp_ctx *ctx);

/* recordings.c */
void recordings_start(struct vtp_ctx *ctx);
void recordings_stop(struct vtp_ctx *ctx);
void recordings_list(struct vtp_ctx *ctx);
void recordings_get(struct vtp_ctx *ctx);
void recordings_delete(struct vtp_ctx *ctx);

/* import.c */
void recordings_import(struct vtp_ctx *ctx);

/* media_info.c */
void media_info_get(struct vtp_ctx *ctx);

/* jobs.c */
void jobs_list(struct vtp_ctx *ctx);
void jobs_get(struct vtp_ctx *ctx);
void jobs_cancel(struct vtp_ctx *ctx);
void jobs_retry(struct vtp_ctx *ctx);
/* Answers status with {"job": the job job_id} (fcgi/transcode.c after queueing one). */
void jobs_answer_one(struct vtp_ctx *ctx, int status, const char *job_id);

/* participants.c */
void participants_post(struct vtp_ctx *ctx);
void participants_list(struct vtp_ctx *ctx);

/* progress.c */
void progress_post(struct vtp_ctx *ctx);
void progress_get(struct vtp_ctx *ctx);

/* analytics.c */
void analytics_get(struct vtp_ctx *ctx);

/* shares.c */
void shares_create(struct vtp_ctx *ctx);
void shares_list(struct vtp_ctx *ctx);
void shares_delete(struct vtp_ctx *ctx);

/* thumbnail.c */
void thumbnail_get(struct vtp_ctx *ctx);

/* download.c */
void download_get(struct vtp_ctx *ctx);
void download_url_get(struct vtp_ctx *ctx);

/* transcode.c */
void transcode_post(struct vtp_ctx *ctx);

/* stream.c */
void stream_master_get(struct vtp_ctx *ctx);
void stream_media_get(struct vtp_ctx *ctx);
void stream_segment_get(struct vtp_ctx *ctx);

/* storyboard.c */
void storyboard_get_json(struct vtp_ctx *ctx);
void storyboard_get_vtt(struct vtp_ctx *ctx);
void storyboard_get_jpg(struct vtp_ctx *ctx);

#endif
