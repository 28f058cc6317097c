/* routes.c: the route table, one row per endpoint; docs/openapi.yaml lists the same rows (a test checks). */
#include "routes.h"

#include "router.h"

/* Rows are tried in order; the first whose pattern and method match wins. */
const struct route vtp_routes[] = {
	/* method   pattern                                      handler            flags */
	{ "GET",    "/health",                                   health_get,        ROUTE_PUBLIC },
	{ "POST",   "/api/v1/recordings/start",                  recordings_start,  ROUTE_JSON_BODY },
	{ "GET",    "/api/v1/recordings",                        recordings_list,   0 },
	{ "POST",   "/api/v1/recordings",                        recordings_import, ROUTE_RAW_BODY },
	{ "GET",    "/api/v1/recordings/{id}",                   recordings_get,    0 },
	{ "DELETE", "/api/v1/recordings/{id}",                   recordings_delete, 0 },
	{ "POST",   "/api/v1/recordings/{id}/stop",              recordings_stop,   0 },
	{ "POST",   "/api/v1/recordings/{id}/participants",      participants_post, ROUTE_JSON_BODY },
	{ "GET",    "/api/v1/recordings/{id}/participants",      participants_list, 0 },
	{ "GET",    "/api/v1/recordings/{id}/info",              media_info_get,    0 },
	{ "GET",    "/api/v1/recordings/{id}/thumbnail",         thumbnail_get,     0 },
	{ "GET",    "/api/v1/recordings/{id}/storyboard.json",   storyboard_get_json, 0 },
	{ "GET",    "/api/v1/recordings/{id}/storyboard.vtt",    storyboard_get_vtt, 0 },
	{ "GET",    "/api/v1/recordings/{id}/storyboard.jpg",    storyboard_get_jpg, 0 },
	{ "GET",    "/api/v1/recordings/{id}/download",          download_get,      ROUTE_URL_TOKEN },
	{ "GET",    "/api/v1/recordings/{id}/download-url",      download_url_get,  0 },
	{ "POST",   "/api/v1/recordings/{id}/transcode",         transcode_post,    ROUTE_JSON_BODY },
	{ "GET",    "/api/v1/recordings/{id}/stream/playlist.m3u8", stream_master_get, 0 },
	{ "GET",    "/api/v1/recordings/{id}/stream/{rendition}/index.m3u8", stream_media_get, ROUTE_URL_TOKEN }, /* a signed ?token=, or Bearer */
	{ "GET",    "/api/v1/recordings/{id}/stream/{rendition}/{segment}", stream_segment_get, ROUTE_URL_TOKEN }, /* a signed ?token=, or Bearer */
	{ "POST",   "/api/v1/recordings/{id}/progress",          progress_post,     ROUTE_JSON_BODY },
	{ "GET",    "/api/v1/recordings/{id}/progress",          progress_get,      0 },
	{ "GET",    "/api/v1/recordings/{id}/analytics",         analytics_get,     0 },
	{ "POST",   "/api/v1/recordings/{id}/shares",            shares_create,     ROUTE_JSON_BODY },
	{ "GET",    "/api/v1/recordings/{id}/shares",            shares_list,       0 },
	{ "DELETE", "/api/v1/shares/{share_id}",                 shares_delete,     0 },
	{ "GET",    "/api/v1/jobs",                              jobs_list,         0 },
	{ "GET",    "/api/v1/jobs/{job_id}",                     jobs_get,          0 },
	{ "POST",   "/api/v1/jobs/{job_id}/cancel",              jobs_cancel,       0 },
	{ "POST",   "/api/v1/jobs/{job_id}/retry",               jobs_retry,        0 },
};

const size_t vtp_routes_count = sizeof vtp_routes / sizeof vtp_routes[0];
