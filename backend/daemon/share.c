/*
 * Signing and checking of share links (see share.h). The HMAC is
 * libsodium's crypto_auth_hmacsha256 and the check compares in constant
 * time. Tokens are never logged, because a token is the credential.
 */
#include "share.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "secret.h"

#define SHARE_KEY_LABEL "trainyard share link v1:"
#define SHARE_PAYLOAD_MAX 128

static int load_key(const char *data_dir,
                    unsigned char key[crypto_auth_hmacsha256_KEYBYTES],
                    struct error *err)
{
    char path[PATH_MAX], secret[SECRET_HEX_LEN + 1];
    crypto_hash_sha256_state state;
    int rc;

    snprintf(path, sizeof(path), "%s/share.key", data_dir);
    rc = secret_load_or_create(path, secret, err);
    if (rc != 0)
        return rc;
    crypto_hash_sha256_init(&state);
    crypto_hash_sha256_update(&state, (const unsigned char *)SHARE_KEY_LABEL,
                              strlen(SHARE_KEY_LABEL));
    crypto_hash_sha256_update(&state, (const unsigned char *)secret,
                              SECRET_HEX_LEN);
    crypto_hash_sha256_final(&state, key);
    sodium_memzero(secret, sizeof(secret));
    return 0;
}

int share_sign(const char *data_dir, const struct share_link *link,
               char out[SHARE_TOKEN_MAX], struct error *err)
{
    unsigned char key[crypto_auth_hmacsha256_KEYBYTES];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    char payload[SHARE_PAYLOAD_MAX];
    size_t used;
    int n, rc;

    n = snprintf(payload, sizeof(payload),
                 "%" PRId64 "|%s|%" PRId64 "|%" PRId64, link->model,
                 link->which, link->expires_at, link->account);
    if (n < 0 || (size_t)n >= sizeof(payload))
        return error_set(err, -EINVAL, "share link fields are too long");
    rc = load_key(data_dir, key, err);
    if (rc != 0)
        return rc;
    crypto_auth_hmacsha256(mac, (const unsigned char *)payload, (size_t)n, key);
    sodium_memzero(key, sizeof(key));

    sodium_bin2base64(out, SHARE_TOKEN_MAX, (const unsigned char *)payload,
                      (size_t)n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    used = strlen(out);
    out[used++] = '.';
    sodium_bin2base64(out + used, SHARE_TOKEN_MAX - used, mac, sizeof(mac),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

/* Parse "MODEL|WHICH|EXPIRES_AT|ACCOUNT"; returns 0 or -1. */
static int parse_payload(const char *payload, struct share_link *link)
{
    long long model, expires_at, account;
    char which[8];
    int end = 0;

    if (sscanf(payload, "%lld|%7[a-z]|%lld|%lld%n", &model, which, &expires_at,
               &account, &end) != 4 ||
        payload[end] != '\0')
        return -1;
    if (model <= 0 || account <= 0 ||
        (strcmp(which, "best") != 0 && strcmp(which, "last") != 0))
        return -1;
    link->model = model;
    snprintf(link->which, sizeof(link->which), "%s", which);
    link->expires_at = expires_at;
    link->account = account;
    return 0;
}

int share_verify(const char *data_dir, const char *token, int64_t now_s,
                 struct share_link *link, struct error *err)
{
    unsigned char key[crypto_auth_hmacsha256_KEYBYTES];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    char payload[SHARE_PAYLOAD_MAX];
    const char *dot = strchr(token, '.');
    size_t payload_len = 0, mac_len = 0;
    int rc, valid;

    if (dot == NULL || strlen(token) >= SHARE_TOKEN_MAX ||
        sodium_base642bin((unsigned char *)payload, sizeof(payload) - 1, token,
                          (size_t)(dot - token), NULL, &payload_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        sodium_base642bin(mac, sizeof(mac), dot + 1, strlen(dot + 1), NULL,
                          &mac_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        mac_len != sizeof(mac))
        return error_set(err, -EBADMSG, "the share link is not valid");
    payload[payload_len] = '\0';

    rc = load_key(data_dir, key, err);
    if (rc != 0)
        return rc;
    valid = crypto_auth_hmacsha256_verify(mac, (const unsigned char *)payload,
                                          payload_len, key) == 0;
    sodium_memzero(key, sizeof(key));
    if (!valid || strlen(payload) != payload_len ||
        parse_payload(payload, link) != 0)
        return error_set(err, -EBADMSG, "the share link is not valid");
    if (now_s >= link->expires_at)
        return error_set(err, -ETIME,
                         "the share link expired; ask the owner for a new one");
    return 0;
}
