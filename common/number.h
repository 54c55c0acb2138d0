/*
 * Whole numbers carried in JSON, where every number is a double. A
 * double holds every integer from -2^53 to 2^53 exactly, so that is the
 * range of ids, sequence numbers and amounts in messages.
 */
#ifndef TRAINYARD_NUMBER_H
#define TRAINYARD_NUMBER_H

#include <stdint.h>

/* 2^53, the largest integer that a double holds exactly together with
 * all integers below it. */
#define NUMBER_WHOLE_MAX 9007199254740992LL

/* Convert d to *out when it is a whole number in [min, max], which must
 * lie within +-NUMBER_WHOLE_MAX. Returns 0, or -1 for a fraction, a NaN
 * or a number out of range. The range is checked before the conversion,
 * because converting a double outside the range of int64_t is undefined
 * behavior. */
int number_whole(double d, int64_t min, int64_t max, int64_t *out);

#endif
