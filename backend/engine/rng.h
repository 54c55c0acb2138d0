/*
 * Random numbers for the engine: a counter-free generator (xoshiro256**
 * seeded through splitmix64) whose whole state is four words, so that a
 * checkpoint can save it and a resumed run draws the same numbers.
 * rng_for derives an independent stream from (seed, a, b), which the
 * data loader uses per epoch and per image: an image's augmentation
 * depends only on the seed, the epoch and its index, never on what ran
 * before, so a run resumed in the middle of an epoch repeats it exactly.
 */
#ifndef TRAINYARD_RNG_H
#define TRAINYARD_RNG_H

#include <stdint.h>

struct rng {
    uint64_t s[4];
};

void rng_seed(struct rng *r, uint64_t seed);

/* A stream for (seed, a, b), such as (seed, epoch, image index). */
void rng_for(struct rng *r, uint64_t seed, uint64_t a, uint64_t b);

uint64_t rng_next(struct rng *r);

/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(struct rng *r);

/* Uniform integer in [0, n), without modulo bias. */
uint64_t rng_below(struct rng *r, uint64_t n);

/* Fisher-Yates shuffle of idx[0..n). */
void rng_shuffle(struct rng *r, int32_t *idx, int n);

#endif
