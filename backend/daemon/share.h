/*
 * Signed links that share a model's weights for a limited time. A token
 * is base64url(payload) "." base64url(HMAC-SHA256(key, payload)), where
 * payload is the text "MODEL|WHICH|EXPIRES_AT|ACCOUNT" (EXPIRES_AT in Unix
 * seconds). The key is the SHA-256 of a label and the secret in
 * DATA/share.key (mode 0600), which the first signing or verification
 * creates. Deleting that file invalidates every link.
 */
#ifndef TRAINYARD_SHARE_H
#define TRAINYARD_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Maximum length of a token from share_sign, with its NUL. */
#define SHARE_TOKEN_MAX 256

struct share_link {
    int64_t model;
    char which[8];      /* "best" or "last" */
    int64_t expires_at; /* Unix seconds */
    int64_t account;
};

/* Write the token of link into out (SHARE_TOKEN_MAX bytes). */
int share_sign(const char *data_dir, const struct share_link *link,
               char out[SHARE_TOKEN_MAX], struct error *err);

/* Check token's signature and expiry at now_s (Unix seconds) and fill
 * *link. Returns 0, -EBADMSG for a malformed token or a bad signature,
 * -ETIME for an expired one (with *link filled), or another negative
 * errno when the key cannot be read. */
int share_verify(const char *data_dir, const char *token, int64_t now_s,
                 struct share_link *link, struct error *err);

#endif
