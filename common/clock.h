/* Millisecond clocks. */
#ifndef TRAINYARD_CLOCK_H
#define TRAINYARD_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in ms: for durations and deadlines. */
int64_t clock_monotonic_ms(void);

/* Unix time in ms: for timestamps stored or shown. */
int64_t clock_realtime_ms(void);

#endif
