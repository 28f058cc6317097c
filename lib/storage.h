/* storage.h: where a recording's files live (local backend: STORAGE_PATH/<recording id>/...), kept small so an
 * S3-compatible backend can stand behind the same calls later. */
#ifndef VTP_STORAGE_H
#define VTP_STORAGE_H

#include "config.h"

#include <stdbool.h>

/* Longest name accepted inside a recording's folder (all segments together). */
#define STORAGE_NAME_MAX 255

/* A recording id as storage accepts it: a lower-case canonical UUID. */
bool storage_valid_id(const char *id);

/* A name inside a recording's folder: one or more segments separated by '/'
 * ("source.mp4", "hls/720p/index.m3u8"), each of 1 to 128 characters from
 * [A-Za-z0-9_.-] and not starting with '.'; so no "..", no absolute path, no
 * empty segment, no hidden file, no NUL. */
bool storage_valid_name(const char *name);

/* STORAGE_PATH/<id> (name NULL) or STORAGE_PATH/<id>/<name>, or NULL with
 * errno EINVAL when id or name is not canonical. The caller frees it. */
char *storage_path(const struct vtp_config *cfg, const char *id, const char *name);

/* Creates the recording's folder (mode 0750) and makes its entry durable.
 * An existing folder is fine. Returns 0, or -1 with errno. */
int storage_create_recording(const struct vtp_config *cfg, const char *id);

/* Write-to-temp-then-rename. storage_create_temp() creates name (which must
 * not exist; mode 0640, symlinks not followed) in the recording's folder and
 * returns a descriptor open for writing, or -1 with errno. When the content is
 * written, storage_publish() fsyncs and closes fd (always, also on failure),
 * renames tmp_name to name (replacing it) and fsyncs the folder, so that after
 * a crash either the old or the whole new file is there. Returns 0 or -1 with
 * errno. Both names must be in the same folder. */
int storage_create_temp(const struct vtp_config *cfg, const char *id, const char *name);
int storage_publish(const struct vtp_config *cfg, const char *id, int fd, const char *tmp_name, const char *name);

/* Removes STORAGE_PATH/<id> and everything below it. Symbolic links are
 * removed, never followed, so nothing outside the folder is touched. A
 * missing folder is success (the call is idempotent). Returns 0, or -1 with
 * errno. */
int storage_remove_recording(const struct vtp_config *cfg, const char *id);

#endif
