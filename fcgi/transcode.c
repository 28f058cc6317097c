/* transcode.c: POST /api/v1/recordings/{id}/transcode: queues a transcode (HLS ladder) or mp4 job for a recording. */
#include "routes.h"

#include "../lib/db.h"
#include "access.h"
#include "app.h"
#include "json_in.h"

#include <stdio.h>
#include <string.h>

#define MAX_PROFILES 8

/* True when name is one of the configured profiles ("name:WxH:..." entries of transcode_profiles). */
static bool known_profile(const char *profiles, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = profiles; p && *p;) {
		if (strncmp(p, name, n) == 0 && p[n] == ':')
			return true;
		p = strchr(p, ',');
		if (p)
			p++;
	}
	return false;
}

void transcode_post(struct vtp_ctx *ctx)
{
	static const struct json_field spec[] = {
		{"profiles", FIELD_ARRAY, false},
		{"format", FIELD_STRING, false},
	};
	static const char sql[] =
		"INSERT INTO jobs (kind, recording_id, payload)"
		" SELECT $2, r.id, jsonb_strip_nulls(jsonb_build_object('source_file', r.source_file, 'profiles', $3::jsonb))"
		" FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL AND r.source_file IS NOT NULL RETURNING id";
	const char *id = ctx->params[0];
	json_object *body = NULL, *names = NULL;
	PGresult *res = NULL;
	const char *kind = "transcode";

	if (access_check(ctx, id, ACCESS_MANAGE) < 0)
		goto out;
	body = json_in_parse(ctx, ctx->req.body.data, ctx->req.body.len);
	if (!body || json_in_check(ctx, body, spec, sizeof spec / sizeof spec[0], "") < 0)
		goto out;
	json_object *format = json_in_get(body, "format");
	if (format) {
		const char *f = json_object_get_string(format);
		if (strcmp(f, "mp4") == 0) {
			kind = "mp4";
		} else if (strcmp(f, "hls") != 0) {
			http_problem(ctx, 422, "invalid_value", "format must be hls or mp4");
			goto out;
		}
	}
	json_object *profiles = json_in_get(body, "profiles");
	if (profiles) {
		size_t n = json_object_array_length(profiles);
		if (n == 0 || n > MAX_PROFILES) {
			http_problem(ctx, 422, "invalid_value", "profiles must name 1 to %d profiles", MAX_PROFILES);
			goto out;
		}
		names = json_object_new_array();
		for (size_t i = 0; i < n; i++) {
			json_object *v = json_object_array_get_idx(profiles, i);
			const char *name = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
			if (!name) {
				http_problem(ctx, 400, "invalid_type", "profiles[%zu] must be a string", i);
				goto out;
			}
			if (strlen(name) > 15 || strchr(name, ',') || strchr(name, ':') ||
			    !known_profile(ctx->app->cfg.transcode_profiles, name)) {
				http_problem(ctx, 422, "invalid_value", "profiles[%zu] is not a configured profile", i);
				goto out;
			}
			json_object_array_add(names, json_object_new_string(name));
		}
	}
	const char *names_text = names ? json_object_to_json_string_ext(names, JSON_C_TO_STRING_PLAIN) : NULL;
	const char *params[] = {id, kind, names_text};
	if (!(res = http_query(ctx, sql, 3, params)))
		goto out;
	if (PQntuples(res) == 0) {
		http_problem(ctx, 409, "source_not_ready", "the recording has no source file yet (it is not stopped or imported)");
		goto out;
	}
	jobs_answer_one(ctx, 202, PQgetvalue(res, 0, 0));
out:
	PQclear(res);
	json_object_put(names);
	json_object_put(body);
}
