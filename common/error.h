/*
 * The error convention of every module: a function returns 0 or a negative
 * errno-style code (-EINVAL, -ENOENT, -EIO, ...) and, on failure, fills a
 * struct error with a message a person can act on: what failed, on which
 * value, and what to do next.
 */
#ifndef TRAINYARD_ERROR_H
#define TRAINYARD_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define ERROR_MSG_MAX 512

struct error {
    int code;
    char msg[ERROR_MSG_MAX];
};

/* Fill err (when not NULL) and return code, so that callers can write
 * `return error_set(err, -EINVAL, "...", ...);`. */
int error_set(struct error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like error_set, with ": strerror(errno)" appended for errno_value. */
int error_errno(struct error *err, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
