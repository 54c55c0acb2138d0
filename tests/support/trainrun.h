/*
 * Runs of the tested `train` program ($TRAINYARD_BIN/train) for
 * integration tests: the child's standard output and error go to files,
 * and its JSON-line events come back through a pipe that the child gets
 * as descriptor 3, so a test passes events_fd=3 when it wants them.
 */
#ifndef TRAINYARD_TRAINRUN_H
#define TRAINYARD_TRAINRUN_H

#include <stdio.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

struct train_proc {
    pid_t pid;
    FILE *events; /* read end of the events pipe */
};

/* Start train with args (NULL-terminated, without the program name).
 * Standard output is appended to out_path and standard error to err_path;
 * both may name the same file. Returns 0, or -errno when the pipe or the
 * fork fails, and -E2BIG for more than 64 arguments. */
int trainrun_start(const char *const *args, const char *out_path,
                   const char *err_path, struct train_proc *proc);

/* Read the next event; NULL at the end of the stream. The caller frees
 * it with cJSON_Delete. Lines that are not JSON objects are skipped. */
cJSON *trainrun_next_event(struct train_proc *proc);

/* Integer field of an event, or fallback when it is missing. */
int trainrun_event_int(const cJSON *event, const char *field, int fallback);

/* 1 if the event's "event" field is name. */
int trainrun_event_is(const cJSON *event, const char *name);

/* Read and drop the remaining events, so the child never blocks on a
 * full pipe, then reap it. Returns its wait status, or -1. */
int trainrun_finish(struct train_proc *proc);

/* Start, then finish: a whole run. Returns the wait status, or -1. */
int trainrun_run(const char *const *args, const char *out_path,
                 const char *err_path);

#endif
