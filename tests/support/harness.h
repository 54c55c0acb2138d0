/*
 * Helpers for tests that run the real programs: temporary folders, child
 * processes with their logs, port files, and a small HTTP/1.1 client for
 * loopback. Programs come from $TRAINYARD_BIN (default build/asan/bin).
 */
#ifndef TRAINYARD_HARNESS_H
#define TRAINYARD_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

/* Create a new empty folder under $TMPDIR (or /tmp); path is out. */
void harness_tmpdir(char *out, size_t len);

/* Remove a folder tree (rm -rf). */
void harness_rmtree(const char *path);

/* Path of program name in the tested build. */
void harness_program(const char *name, char *out, size_t len);

/* Start argv[0] with stdout and stderr appended to log_path. */
pid_t harness_spawn(char *const argv[], const char *log_path);

/* Wait up to timeout_ms for path to hold a port number; returns the port,
 * or -1 when the process exited or time ran out. */
int harness_wait_port(const char *path, pid_t pid, int timeout_ms);

/* Send sig, wait up to timeout_ms, then SIGKILL; returns the wait status,
 * or -1 if the process could not be reaped. */
int harness_stop(pid_t pid, int sig, int timeout_ms);

struct http_reply {
    int status;       /* 0 when no reply came */
    char headers[8192];
    char *body;       /* NUL-terminated; free with harness_http_free */
    size_t body_len;
};

/* One request on a new connection to 127.0.0.1:port, with
 * "Connection: close". extra_headers may be NULL or CRLF-ended lines. */
int harness_http(int port, const char *method, const char *target,
                 const char *extra_headers, const char *body,
                 struct http_reply *reply);
void harness_http_free(struct http_reply *reply);

/* Value of header name in reply (case-insensitive), copied to out. */
int harness_header(const struct http_reply *reply, const char *name,
                   char *out, size_t len);

/* 1 if the file contains needle. */
int harness_file_contains(const char *path, const char *needle);

#endif
