/* storage.c: the local storage backend: canonical paths under STORAGE_PATH, durable writes, safe removal. */
#include "storage.h"

#include "mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Deeper than any layout we write (hls/<rendition>/<segment> is 3): a bound
 * on recursion and open descriptors while removing. */
#define REMOVE_MAX_DEPTH 16

bool storage_valid_id(const char *id)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	for (size_t i = 0; i < sizeof shape - 1; i++) {
		char c = id[i];
		if (shape[i] == '-' ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return id[sizeof shape - 1] == '\0';
}

bool storage_valid_name(const char *name)
{
	static const char allowed[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
	if (strlen(name) > STORAGE_NAME_MAX)
		return false;
	for (const char *seg = name;; seg++) {
		size_t len = strspn(seg, allowed);
		/* Not empty, no leading dot (so neither "." nor ".." nor hidden
		 * files), then the end or a '/' that starts another segment. */
		if (len == 0 || len > 128 || seg[0] == '.')
			return false;
		seg += len;
		if (*seg == '\0')
			return true;
		if (*seg != '/')
			return false;
	}
}

/* STORAGE_PATH without trailing slashes (but "/" stays "/"): the length to print. */
static int root_len(const struct vtp_config *cfg)
{
	size_t n = strlen(cfg->storage_path);
	while (n > 1 && cfg->storage_path[n - 1] == '/')
		n--;
	return (int)n;
}

char *storage_path(const struct vtp_config *cfg, const char *id, const char *name)
{
	if (!storage_valid_id(id) || (name && !storage_valid_name(name))) {
		errno = EINVAL;
		return NULL;
	}
	if (!name)
		return xasprintf("%.*s/%s", root_len(cfg), cfg->storage_path, id);
	return xasprintf("%.*s/%s/%s", root_len(cfg), cfg->storage_path, id, name);
}

/* fsync()s the folder at path, so that entries created or renamed in it survive a crash. */
static int sync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int ret = fsync(fd);
	int saved = errno;
	close(fd);
	errno = saved;
	return ret;
}

int storage_create_recording(const struct vtp_config *cfg, const char *id)
{
	char *dir = storage_path(cfg, id, NULL);
	int ret = -1;
	if (!dir)
		goto out;
	if (mkdir(dir, 0750) < 0) {
		struct stat st;
		/* An existing folder is fine, a file or a symlink in its place is not. */
		if (errno != EEXIST || lstat(dir, &st) < 0)
			goto out;
		if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			goto out;
		}
	}
	ret = sync_dir(cfg->storage_path);
out:
	free(dir);
	return ret;
}

int storage_create_temp(const struct vtp_config *cfg, const char *id, const char *name)
{
	char *path = storage_path(cfg, id, name);
	if (!path)
		return -1;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	int saved = errno;
	free(path);
	errno = saved;
	return fd;
}

/* The folder part of name ("" for a name without '/'). */
static size_t folder_len(const char *name)
{
	const char *slash = strrchr(name, '/');
	return slash ? (size_t)(slash - name) : 0;
}

int storage_publish(const struct vtp_config *cfg, const char *id, int fd, const char *tmp_name, const char *name)
{
	char *tmp_path = NULL, *path = NULL, *dir = NULL;
	int ret = -1, saved;

	/* Data first, then the rename, then the folder entry: a crash at any
	 * point leaves either no file or the whole file under its final name. */
	if (fsync(fd) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		goto out;
	}
	if (close(fd) < 0)
		goto out;
	tmp_path = storage_path(cfg, id, tmp_name);
	path = storage_path(cfg, id, name);
	if (!tmp_path || !path)
		goto out;
	if (folder_len(tmp_name) != folder_len(name) || strncmp(tmp_name, name, folder_len(name)) != 0) {
		errno = EXDEV;
		goto out;
	}
	if (rename(tmp_path, path) < 0)
		goto out;
	dir = xstrndup(path, (size_t)(strrchr(path, '/') - path));
	ret = sync_dir(dir);
out:
	saved = errno;
	free(tmp_path);
	free(path);
	free(dir);
	errno = saved;
	return ret;
}

/* Removes the entry name of the folder parent and, if it is a folder, all
 * below it. A symlink is an entry like any other: unlinked, never followed
 * (unlinkat() does not follow, and folders are opened with O_NOFOLLOW, so a
 * folder swapped for a symlink meanwhile is an error, not a way out). */
static int remove_entry(int parent, const char *name, int depth)
{
	DIR *d = NULL;
	int fd = -1, ret = -1, saved;

	if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR)
		return -1;
	if (depth >= REMOVE_MAX_DEPTH) {
		errno = ELOOP;
		return -1;
	}
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	d = fdopendir(fd);
	if (!d)
		goto out;
	fd = -1; /* owned by d now */
	struct dirent *e;
	errno = 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (remove_entry(dirfd(d), e->d_name, depth + 1) < 0)
			goto out;
		errno = 0;
	}
	if (errno != 0)
		goto out;
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		goto out;
	ret = 0;
out:
	saved = errno;
	if (d)
		closedir(d);
	if (fd >= 0)
		close(fd);
	errno = saved;
	return ret;
}

int storage_remove_recording(const struct vtp_config *cfg, const char *id)
{
	if (!storage_valid_id(id)) {
		errno = EINVAL;
		return -1;
	}
	/* STORAGE_PATH itself may be a symlink the admin set up; below it,
	 * nothing is followed. A missing STORAGE_PATH is an error (a wrong
	 * configuration), not "already removed". */
	int root = open(cfg->storage_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return -1;
	int ret = remove_entry(root, id, 0);
	if (ret == 0)
		ret = fsync(root);
	int saved = errno;
	close(root);
	errno = saved;
	return ret;
}
