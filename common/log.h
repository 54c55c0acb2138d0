/*
 * One logging module for every Trainyard process. A line reads
 *
 *   2026-12-04T15:31:22.123Z backend[4242] INFO session started model=7
 *
 * with the UTC time in milliseconds, the process role and pid, the level
 * and the message; ids go into the message as key=value pairs. The level
 * is checked before anything is formatted, and each line reaches the
 * output in one write(2), so lines from threads never interleave. Callers
 * must never pass a password, token or key.
 */
#ifndef TRAINYARD_LOG_H
#define TRAINYARD_LOG_H

#include <stdarg.h>

enum log_level {
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
};

/* Set the role printed on each line ("backend", "gateway", "train") and the
 * lowest level written. Lines go to fd (2 for standard error). */
void log_init(const char *role, enum log_level min_level, int fd);

/* Parse "debug", "info", "warn" or "error"; returns 0 or -1. */
int log_parse_level(const char *name, enum log_level *level);

int log_enabled(enum log_level level);

void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vwrite(enum log_level level, const char *fmt, va_list ap);

#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

/* Route SQLite's own error log (sqlite3_config SQLITE_CONFIG_LOG) into
 * this module. Must run before SQLite is first used. */
void log_capture_sqlite(void);

/* Route libwebsockets' log into this module (errors and warnings). */
void log_capture_lws(void);

#endif
