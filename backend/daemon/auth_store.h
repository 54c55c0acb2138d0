/*
 * Credentials in the backend's SQLite database: account passwords
 * (argon2id), web sessions and API keys (schema/db/003_auth.sql).
 *
 * The design keeps every secret that a client presents out of the
 * database: a session token or API key is stored only as its SHA-256,
 * and a password only as an argon2id string. Callers get the plain token
 * or key once, from the create function, and pass it on to the client.
 * Nothing here logs a password, token or key. Account emails are not
 * logged either, only account ids.
 *
 * Functions return 0 or a negative errno code with a message in err:
 * -EINVAL for an invalid value, -ENOENT for a row that does not exist (or
 * belongs to another account), -EEXIST for a taken email, -EKEYEXPIRED
 * for an expired session, -ENOSPC for too many API keys, -EIO for a
 * database or library failure.
 */
#ifndef TRAINYARD_AUTH_STORE_H
#define TRAINYARD_AUTH_STORE_H

#include <sodium.h>
#include <stdint.h>

#include "error.h"
#include "store.h"

/* A session ends after 7 days without a request or 30 days after
 * sign-in, whichever comes first. */
#define AUTH_SESSION_IDLE_MS (7LL * 24 * 60 * 60 * 1000)
#define AUTH_SESSION_MAX_MS (30LL * 24 * 60 * 60 * 1000)
/* last_seen_at and last_used_at are written at most this often, so that
 * a busy session does not cost a synchronous commit per request. */
#define AUTH_TOUCH_INTERVAL_MS (60 * 1000)

#define AUTH_EMAIL_MAX 254 /* RFC 5321 path limit, brackets removed */
#define AUTH_PASSWORD_MIN 8
#define AUTH_PASSWORD_MAX 1024
#define AUTH_APIKEY_NAME_MAX 64
/* Active (not revoked) API keys one account may have. */
#define AUTH_APIKEYS_MAX 25

/* A session token or CSRF token: 32 random bytes as 64 hex digits. */
#define AUTH_TOKEN_HEX_LEN 64
/* An API key: "ty_" and 32 random bytes in unpadded base64url. */
#define AUTH_APIKEY_PREFIX "ty_"
#define AUTH_APIKEY_LEN 46
/* The part of a key stored in clear to tell keys apart: "ty_" and 8. */
#define AUTH_APIKEY_SHOWN_LEN 11

#define AUTH_HASH_MAX crypto_pwhash_STRBYTES

struct auth_account {
    int64_t id;
    char email[AUTH_EMAIL_MAX + 1];
    char role[8]; /* "user" or "admin" */
    char plan[8]; /* "free" or "pro" */
    int64_t created_at;
    char password_hash[AUTH_HASH_MAX]; /* "": the account cannot sign in */
};

struct auth_session {
    char token[AUTH_TOKEN_HEX_LEN + 1]; /* set by auth_session_create only */
    char csrf[AUTH_TOKEN_HEX_LEN + 1];
    int64_t account_id;
    int64_t created_at;
    int64_t expires_at;
    int64_t last_seen_at;
};

struct auth_apikey {
    int64_t id;
    int64_t account_id;
    char name[AUTH_APIKEY_NAME_MAX + 1];
    char prefix[AUTH_APIKEY_SHOWN_LEN + 1];
    char key[AUTH_APIKEY_LEN + 1]; /* set by auth_apikey_create only */
    int64_t created_at;
    int64_t last_used_at; /* 0: never used */
    int64_t revoked_at;   /* 0: not revoked */
};

/* Hash password with argon2id into out. The cost is libsodium's
 * "interactive" limits (2 passes over 64 MiB), or its minimum when the
 * environment sets TRAINYARD_PWHASH=fast, which exists for tests only. */
int auth_password_hash(const char *password, char out[AUTH_HASH_MAX],
                       struct error *err);

/* Check password against an argon2id string; returns 1 on a match. When
 * hash is NULL or empty, checks against a fixed hash with the same cost,
 * so that a missing account takes as long as a wrong password, and
 * returns 0. */
int auth_password_verify(const char *hash, const char *password);

/* 1 when hash was made with other limits than the current ones. */
int auth_password_needs_rehash(const char *hash);

/* Check a new password against the length rules. */
int auth_password_check(const char *password, struct error *err);

/* Check an email address for account creation: one '@' with text on
 * both sides, no spaces or control characters, at most AUTH_EMAIL_MAX. */
int auth_email_check(const char *email, struct error *err);

/* Create an account; role and plan must be valid ("user"/"admin",
 * "free"/"pro"). password_hash may be NULL for an account that cannot
 * sign in. Fills *out (without the hash). */
int auth_account_create(struct store *st, const char *email,
                        const char *password_hash, const char *role,
                        const char *plan, struct auth_account *out,
                        struct error *err);
int auth_account_get(struct store *st, int64_t id, struct auth_account *out,
                     struct error *err);
/* Check that admin_id is an admin account: -EPERM naming the action
 * ("grant credit", ...) when it is not, -ENOENT when it does not exist. */
int auth_account_require_admin(struct store *st, int64_t admin_id,
                               const char *action, struct error *err);
/* Read the account with this email, compared case-insensitively. */
int auth_account_find_email(struct store *st, const char *email,
                            struct auth_account *out, struct error *err);
int auth_account_set_plan(struct store *st, int64_t id, const char *plan,
                          struct auth_account *out, struct error *err);
int auth_account_set_password_hash(struct store *st, int64_t id,
                                   const char *password_hash,
                                   struct error *err);

typedef int (*auth_account_fn)(const struct auth_account *account, void *ctx);
/* Call fn for each account in id order, without password hashes. */
int auth_accounts_each(struct store *st, auth_account_fn fn, void *ctx,
                       struct error *err);

/* Start a session for account_id at time now (Unix ms), with a new token
 * and CSRF token in *out. Also deletes every expired session. */
int auth_session_create(struct store *st, int64_t account_id, int64_t now,
                        struct auth_session *out, struct error *err);
/* Find the session of token at time now. -ENOENT when there is none,
 * -EKEYEXPIRED when it has expired (the row is then deleted). */
int auth_session_lookup(struct store *st, const char *token, int64_t now,
                        struct auth_session *out, struct error *err);
/* End the session of token; a token without a session is not an error. */
int auth_session_delete(struct store *st, const char *token, struct error *err);

/* Create an API key named name for account_id, with the key in out->key. */
int auth_apikey_create(struct store *st, int64_t account_id, const char *name,
                       int64_t now, struct auth_apikey *out, struct error *err);
/* Find the account of a valid (not revoked) key; -ENOENT otherwise. */
int auth_apikey_lookup(struct store *st, const char *key, int64_t now,
                       int64_t *account_id, struct error *err);
/* Revoke key id of account_id; a key that is already revoked stays as it
 * is. -ENOENT when account_id has no key id. */
int auth_apikey_revoke(struct store *st, int64_t account_id, int64_t id,
                       int64_t now, struct auth_apikey *out, struct error *err);

typedef int (*auth_apikey_fn)(const struct auth_apikey *key, void *ctx);
/* Call fn for each key of account_id, revoked ones included, in id
 * order. */
int auth_apikeys_each(struct store *st, int64_t account_id, auth_apikey_fn fn,
                      void *ctx, struct error *err);

#endif
