/*
 * Authentication helpers of the gateway: reading the session cookie and
 * Bearer API keys from request headers, the session cookie itself, the
 * CSRF token check, the per-address sign-in rate limiter and a short-lived
 * cache of who a credential belongs to.
 *
 * The gateway keeps no state that must survive a restart: sessions and
 * API keys live in the backend's database, and the cache below only saves
 * a backend round trip for AUTH_CACHE_TTL_MS. The functions here do no
 * network I/O, so tests can call them directly. The cache and the rate
 * limiter take their own lock, and every thread may share them.
 */
#ifndef TRAINYARD_GATEWAY_AUTH_H
#define TRAINYARD_GATEWAY_AUTH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_COOKIE_NAME "ty_session"
#define AUTH_CSRF_HEADER "X-CSRF-Token"
/* Session tokens and CSRF tokens are 64 hex digits; API keys are "ty_"
 * and 43 base64url characters (backend/daemon/auth_store.h). */
#define AUTH_TOKEN_LEN 64
#define AUTH_APIKEY_LEN 46
/* Lifetime of the session cookie: the backend's absolute session limit,
 * 30 days. The backend also ends sessions idle for 7 days. */
#define AUTH_COOKIE_MAX_AGE_S (30 * 24 * 60 * 60)

/* Sign-in attempts allowed per client address in AUTH_SIGNIN_WINDOW_MS. */
#define AUTH_SIGNIN_ATTEMPTS 10
#define AUTH_SIGNIN_WINDOW_MS (60 * 1000)
/* Addresses the limiter tracks at once. Beyond that it evicts the one
 * idle the longest. */
#define AUTH_LIMITER_SLOTS 4096
/* Upper bound of max_attempts in rate_limiter_init. */
#define RATE_LIMIT_ATTEMPTS_MAX 16

/* How long a credential's account stays cached, and how many credentials
 * are cached at once. A session ended or a key revoked on another gateway
 * still works here until its entry expires. */
#define AUTH_CACHE_TTL_MS 5000
#define AUTH_CACHE_SLOTS 1024

enum auth_method {
    AUTH_METHOD_NONE,
    AUTH_METHOD_SESSION, /* the ty_session cookie */
    AUTH_METHOD_API_KEY, /* Authorization: Bearer ty_... */
};

/* The account a request acts for. */
struct auth_identity {
    enum auth_method method;
    int64_t account_id;
    char email[256];
    char role[8];                  /* "user" or "admin" */
    char plan[8];                  /* "free" or "pro" */
    char csrf[AUTH_TOKEN_LEN + 1]; /* sessions only */
};

/* Copy the value of cookie name from a Cookie header into out. Returns 0
 * when found, -1 when the header is NULL or has no such cookie, -2 when
 * the value does not fit in out. The first cookie of that name wins, and
 * a value in double quotes loses its quotes. */
int auth_cookie_get(const char *header, const char *name, char *out,
                    size_t len);

/* Copy the credentials of an "Authorization: Bearer TOKEN" header into
 * out. Returns 0, -1 when the scheme is not Bearer, -2 when the token is
 * missing, contains spaces or does not fit in out. */
int auth_bearer_get(const char *header, char *out, size_t len);

/* 1 when token has the form of a session token (64 lowercase hex). */
int auth_session_token_valid(const char *token);

/* 1 when key has the form of an API key ("ty_" and 43 base64url). */
int auth_apikey_valid(const char *key);

/* 1 when got equals the session's CSRF token, compared in constant time;
 * 0 when either is NULL or empty, or they differ. */
int auth_csrf_equal(const char *expected, const char *got);

/* Write the Set-Cookie value for a session token: HttpOnly,
 * SameSite=Strict, Path=/, Max-Age AUTH_COOKIE_MAX_AGE_S, and Secure
 * when secure is non-zero. A NULL token writes a cookie that deletes the
 * session cookie. Returns 0, or -1 when out is too small. */
int auth_session_cookie(char *out, size_t len, const char *token, int secure);

/* Write the rate limiter's key for a client address: the address itself
 * for IPv4, and its /64 network for IPv6, since one host is commonly
 * assigned a whole /64. An address that does not parse is used as it is. */
void auth_client_key(const char *addr, char *out, size_t len);

/* ---- sign-in rate limiter --------------------------------------------- */

struct rate_entry {
    char key[64];
    int count;       /* attempts in times[], oldest first */
    int warned;      /* 1 once a rejection was logged, until allowed */
    int64_t last_ms; /* time of the last attempt, for eviction */
    int64_t times[RATE_LIMIT_ATTEMPTS_MAX];
};

struct rate_limiter {
    pthread_mutex_t lock;
    int max_attempts;
    int64_t window_ms;
    size_t nslots;
    struct rate_entry *slots;
};

enum rate_result {
    RATE_ALLOWED,
    RATE_LIMITED,       /* a further rejection of a limited key */
    RATE_LIMITED_FIRST, /* the first rejection since the last allowed */
};

/* Allow max_attempts per key in any window of window_ms (a sliding
 * window), tracking up to nslots keys. Returns 0, or -1 for invalid
 * sizes or no memory. */
int rate_limiter_init(struct rate_limiter *rl, int max_attempts,
                      int64_t window_ms, size_t nslots);
void rate_limiter_free(struct rate_limiter *rl);

/* Count an attempt by key at now_ms (a monotonic clock) if it is allowed.
 * A rejected attempt is not counted, and *retry_after_ms is then the
 * time until the next one will be allowed. */
enum rate_result rate_limiter_hit(struct rate_limiter *rl, const char *key,
                                  int64_t now_ms, int64_t *retry_after_ms);

/* ---- credential cache -------------------------------------------------- */

struct auth_cache_entry {
    unsigned char digest[32]; /* SHA-256 of the credential */
    int used;
    int64_t expires_ms;
    struct auth_identity who;
};

struct auth_cache {
    pthread_mutex_t lock;
    int64_t ttl_ms;
    struct auth_cache_entry slots[AUTH_CACHE_SLOTS];
};

/* Entries live ttl_ms; the cache keeps digests, never the credentials. */
void auth_cache_init(struct auth_cache *cache, int64_t ttl_ms);

/* 1 and *out when credential has a live entry of this method at now_ms
 * (monotonic), else 0. */
int auth_cache_get(struct auth_cache *cache, enum auth_method method,
                   const char *credential, int64_t now_ms,
                   struct auth_identity *out);

/* Store who for credential until now_ms + ttl, replacing the entry that
 * expires first when the cache is full. */
void auth_cache_put(struct auth_cache *cache, const char *credential,
                    int64_t now_ms, const struct auth_identity *who);

/* Drop the entry of credential, if any. */
void auth_cache_forget(struct auth_cache *cache, const char *credential);

/* Drop every entry of account_id with this method; AUTH_METHOD_NONE
 * drops all of them. */
void auth_cache_forget_account(struct auth_cache *cache, int64_t account_id,
                               enum auth_method method);

#endif
