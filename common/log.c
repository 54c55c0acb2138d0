/*
 * Logging: see log.h for the line format. Formatting goes into a stack
 * buffer and out in one write(2); a message longer than the buffer is cut
 * and ends with "...".
 */
#include "log.h"

#include <errno.h>
#include <libwebsockets.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static char log_role[16] = "trainyard";
static enum log_level log_min = LOG_LEVEL_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(const char *role, enum log_level min_level, int fd)
{
    snprintf(log_role, sizeof(log_role), "%s", role);
    log_min = min_level;
    log_fd = fd;
}

int log_parse_level(const char *name, enum log_level *level)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};

    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_enabled(enum log_level level)
{
    return level >= log_min;
}

void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int len;

    if (!log_enabled(level))
        return;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    len = snprintf(line + n, sizeof(line) - n, ".%03dZ %s[%d] %s ",
                   (int)(tv.tv_usec / 1000), log_role, (int)getpid(),
                   level_names[level]);
    n += (size_t)len;

    len = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (len < 0)
        len = 0;
    if ((size_t)len >= sizeof(line) - n - 1) {
        n = sizeof(line) - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    } else {
        n += (size_t)len;
    }

    /* Drop the message's own trailing newlines; every line gets one. */
    while (n > 0 && line[n - 1] == '\n')
        n--;
    line[n++] = '\n';

    while (n > 0) {
        ssize_t w = write(log_fd, line, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        memmove(line, line + w, n - (size_t)w);
        n -= (size_t)w;
    }
}

void log_write(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}

static void sqlite_log_callback(void *unused, int code, const char *msg)
{
    (void)unused;

    /* SQLITE_NOTICE and SQLITE_WARNING are expected events, such as WAL
     * recovery after a crash; everything else is an error. */
    int primary = code & 0xff;
    if (primary == SQLITE_NOTICE || primary == SQLITE_WARNING)
        log_info("sqlite: %s (code %d)", msg, code);
    else
        log_warn("sqlite: %s (code %d)", msg, code);
}

void log_capture_sqlite(void)
{
    sqlite3_config(SQLITE_CONFIG_LOG, sqlite_log_callback, NULL);
}

static void lws_log_callback(int level, const char *line)
{
    enum log_level ours = level == LLL_ERR ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN;

    log_write(ours, "lws: %s", line);
}

void log_capture_lws(void)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_callback);
}
