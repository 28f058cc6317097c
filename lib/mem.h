/* mem.h: allocation wrappers that abort on out-of-memory, and a growable byte buffer. */
#ifndef VTP_MEM_H
#define VTP_MEM_H

#include <stdarg.h>
#include <stddef.h>

/* All of these abort the process when memory runs out, so callers never check
 * for NULL. The caller owns (and frees with free()) what they return. */
void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new string; the caller frees it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable buffer, always NUL-terminated after data[len]. Zero-initialise
 * it (struct vtp_buf b = {0};) and release it with vtp_buf_free(). */
struct vtp_buf {
	char *data;
	size_t len;
	size_t cap;
};

void vtp_buf_append(struct vtp_buf *b, const void *data, size_t len);
void vtp_buf_puts(struct vtp_buf *b, const char *s);
void vtp_buf_printf(struct vtp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vtp_buf_reset(struct vtp_buf *b);
void vtp_buf_free(struct vtp_buf *b);

#endif
