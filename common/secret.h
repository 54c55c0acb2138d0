/*
 * The shared secret that the gateway presents to the backend. The backend
 * creates it at first start: 32 random bytes from libsodium, stored as 64
 * hex digits in a file of mode 0600. A file that others can read is
 * rejected, because anyone who can read it can act as a gateway.
 */
#ifndef TRAINYARD_SECRET_H
#define TRAINYARD_SECRET_H

#include "error.h"

#define SECRET_HEX_LEN 64

/* Read the secret at path, or create it when the file does not exist. */
int secret_load_or_create(const char *path, char out[SECRET_HEX_LEN + 1],
                          struct error *err);

/* Read the secret at path; a missing file is an error. */
int secret_load(const char *path, char out[SECRET_HEX_LEN + 1],
                struct error *err);

/* Compare two NUL-terminated secrets in constant time; returns 1 if equal. */
int secret_equal(const char *a, const char *b);

#endif
