/* log.h: leveled logging to stderr, one line per message; the level is checked before formatting. */
#ifndef VTP_LOG_H
#define VTP_LOG_H

enum vtp_log_level { VTP_LOG_ERROR = 0, VTP_LOG_WARN, VTP_LOG_INFO, VTP_LOG_DEBUG };

extern enum vtp_log_level vtp_log_threshold;

/* Parses "error", "warn", "info", "debug"; returns -1 for anything else. */
int vtp_log_parse_level(const char *name);
void vtp_log_set_program(const char *name);
void vtp_log_write(enum vtp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define vtp_log(level, ...)                                                                                    \
	do {                                                                                                   \
		if ((level) <= vtp_log_threshold)                                                              \
			vtp_log_write((level), __VA_ARGS__);                                                   \
	} while (0)
#define log_error(...) vtp_log(VTP_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) vtp_log(VTP_LOG_WARN, __VA_ARGS__)
#define log_info(...) vtp_log(VTP_LOG_INFO, __VA_ARGS__)
#define log_debug(...) vtp_log(VTP_LOG_DEBUG, __VA_ARGS__)

#endif
