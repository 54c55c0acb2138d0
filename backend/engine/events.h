/*
 * Progress events for the backend: one JSON object per line on the file
 * descriptor given by events_fd=N. Each line is written with one write(2),
 * so a reader never sees half an event. Events: start, batch, epoch,
 * checkpoint, error, done (see docs/TRAIN.md for their fields).
 */
#ifndef TRAINYARD_EVENTS_H
#define TRAINYARD_EVENTS_H

#include <cjson/cJSON.h>

/* Use fd for events; -1 turns them off. */
void events_init(int fd);

/* Write {"event": name, ...fields} and delete fields (may be NULL). */
void events_emit(const char *name, cJSON *fields);

#endif
