/*
 * Header parsing, cookies, CSRF, rate limiting and the credential cache
 * (see auth.h). Parsing is strict and bounded: a value that does not fit
 * its buffer is an error, never truncated, so a long cookie cannot turn
 * into a different valid one. The rate limiter and the cache are small
 * fixed tables searched linearly under a mutex. At their sizes a search
 * reads a few hundred KiB at most, which is cheap next to a backend round
 * trip.
 */
#include "auth.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- headers ---------------------------------------------------------- */

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

int auth_cookie_get(const char *header, const char *name, char *out, size_t len)
{
    size_t name_len = strlen(name);
    const char *p = header;

    if (header == NULL)
        return -1;
    while (*p != '\0') {
        const char *pair = skip_spaces(p);
        const char *end = strchr(pair, ';');
        const char *eq;

        if (end == NULL)
            end = pair + strlen(pair);
        eq = memchr(pair, '=', (size_t)(end - pair));
        if (eq != NULL && (size_t)(eq - pair) == name_len &&
            memcmp(pair, name, name_len) == 0) {
            const char *value = eq + 1;
            const char *stop = end;

            /* Trailing spaces before ';' are not part of the value. */
            while (stop > value && (stop[-1] == ' ' || stop[-1] == '\t'))
                stop--;
            if (stop - value >= 2 && value[0] == '"' && stop[-1] == '"') {
                value++;
                stop--;
            }
            if ((size_t)(stop - value) >= len)
                return -2;
            memcpy(out, value, (size_t)(stop - value));
            out[stop - value] = '\0';
            return 0;
        }
        p = *end == ';' ? end + 1 : end;
    }
    return -1;
}

int auth_bearer_get(const char *header, char *out, size_t len)
{
    const char *token, *end;
    size_t n;

    if (header == NULL)
        return -1;
    header = skip_spaces(header);
    if (strncasecmp(header, "Bearer", 6) != 0 ||
        (header[6] != ' ' && header[6] != '\t'))
        return -1;
    token = skip_spaces(header + 6);
    end = token;
    while (*end != '\0' && *end != ' ' && *end != '\t')
        end++;
    n = (size_t)(end - token);
    if (n == 0 || *skip_spaces(end) != '\0' || n >= len)
        return -2;
    memcpy(out, token, n);
    out[n] = '\0';
    return 0;
}

int auth_session_token_valid(const char *token)
{
    size_t n = 0;

    for (; token[n] != '\0'; n++)
        if (!isdigit((unsigned char)token[n]) &&
            (token[n] < 'a' || token[n] > 'f'))
            return 0;
    return n == AUTH_TOKEN_LEN;
}

int auth_apikey_valid(const char *key)
{
    size_t n = 3;

    if (strncmp(key, "ty_", 3) != 0)
        return 0;
    for (; key[n] != '\0'; n++)
        if (!isalnum((unsigned char)key[n]) && key[n] != '-' && key[n] != '_')
            return 0;
    return n == AUTH_APIKEY_LEN;
}

int auth_csrf_equal(const char *expected, const char *got)
{
    size_t n;

    if (expected == NULL || got == NULL || expected[0] == '\0')
        return 0;
    n = strlen(expected);
    /* The length is not secret: every CSRF token has 64 characters. */
    if (strlen(got) != n)
        return 0;
    return sodium_memcmp(expected, got, n) == 0;
}

int auth_session_cookie(char *out, size_t len, const char *token, int secure)
{
    int n = snprintf(out, len,
                     AUTH_COOKIE_NAME "=%s; Path=/; Max-Age=%d; HttpOnly; "
                                      "SameSite=Strict%s",
                     token ? token : "", token ? AUTH_COOKIE_MAX_AGE_S : 0,
                     secure ? "; Secure" : "");

    return n < 0 || (size_t)n >= len ? -1 : 0;
}

void auth_client_key(const char *addr, char *out, size_t len)
{
    unsigned char raw[16];

    if (strchr(addr, ':') != NULL && inet_pton(AF_INET6, addr, raw) == 1) {
        /* An IPv4 address mapped into IPv6 keeps all its bits. */
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0,    0,
                                                 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(raw, mapped, sizeof(mapped)) == 0) {
            if (inet_ntop(AF_INET, raw + 12, out, (socklen_t)len) != NULL)
                return;
        } else {
            memset(raw + 8, 0, 8);
            char text[INET6_ADDRSTRLEN];
            if (inet_ntop(AF_INET6, raw, text, sizeof(text)) != NULL) {
                snprintf(out, len, "%s/64", text);
                return;
            }
        }
    }
    snprintf(out, len, "%s", addr);
}

/* ---- rate limiter ----------------------------------------------------- */

int rate_limiter_init(struct rate_limiter *rl, int max_attempts,
                      int64_t window_ms, size_t nslots)
{
    memset(rl, 0, sizeof(*rl));
    if (max_attempts < 1 || max_attempts > RATE_LIMIT_ATTEMPTS_MAX ||
        window_ms < 1 || nslots < 1)
        return -1;
    rl->slots = calloc(nslots, sizeof(*rl->slots));
    if (rl->slots == NULL)
        return -1;
    pthread_mutex_init(&rl->lock, NULL);
    rl->max_attempts = max_attempts;
    rl->window_ms = window_ms;
    rl->nslots = nslots;
    return 0;
}

void rate_limiter_free(struct rate_limiter *rl)
{
    if (rl->slots == NULL)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl->slots);
    rl->slots = NULL;
}

/* Drop attempts older than the window; times[] is in ascending order. */
static void expire_attempts(struct rate_entry *e, int64_t now_ms,
                            int64_t window_ms)
{
    int old = 0;

    while (old < e->count && e->times[old] <= now_ms - window_ms)
        old++;
    if (old > 0) {
        memmove(e->times, e->times + old,
                (size_t)(e->count - old) * sizeof(e->times[0]));
        e->count -= old;
    }
}

/* The entry of key, or a free one, or the one idle the longest, which is
 * then reused for key. Called with the lock held. */
static struct rate_entry *find_entry(struct rate_limiter *rl, const char *key)
{
    struct rate_entry *free_slot = NULL, *idlest = NULL;

    for (size_t i = 0; i < rl->nslots; i++) {
        struct rate_entry *e = &rl->slots[i];
        if (e->key[0] == '\0') {
            if (free_slot == NULL)
                free_slot = e;
            continue;
        }
        if (strcmp(e->key, key) == 0)
            return e;
        if (idlest == NULL || e->last_ms < idlest->last_ms)
            idlest = e;
    }
    struct rate_entry *e = free_slot ? free_slot : idlest;
    memset(e, 0, sizeof(*e));
    snprintf(e->key, sizeof(e->key), "%s", key);
    return e;
}

enum rate_result rate_limiter_hit(struct rate_limiter *rl, const char *key,
                                  int64_t now_ms, int64_t *retry_after_ms)
{
    enum rate_result result;
    struct rate_entry *e;

    pthread_mutex_lock(&rl->lock);
    e = find_entry(rl, key);
    expire_attempts(e, now_ms, rl->window_ms);
    if (e->count < rl->max_attempts) {
        e->times[e->count++] = now_ms;
        e->last_ms = now_ms;
        e->warned = 0;
        *retry_after_ms = 0;
        result = RATE_ALLOWED;
    } else {
        /* The oldest attempt leaves the window first. */
        *retry_after_ms = e->times[0] + rl->window_ms - now_ms;
        result = e->warned ? RATE_LIMITED : RATE_LIMITED_FIRST;
        e->warned = 1;
    }
    pthread_mutex_unlock(&rl->lock);
    return result;
}

/* ---- credential cache -------------------------------------------------- */

void auth_cache_init(struct auth_cache *cache, int64_t ttl_ms)
{
    memset(cache, 0, sizeof(*cache));
    pthread_mutex_init(&cache->lock, NULL);
    cache->ttl_ms = ttl_ms;
}

static void digest_of(const char *credential, unsigned char out[32])
{
    crypto_hash_sha256(out, (const unsigned char *)credential,
                       strlen(credential));
}

/* The live entry of digest, or NULL. Called with the lock held. */
static struct auth_cache_entry *find_cached(struct auth_cache *cache,
                                            const unsigned char digest[32])
{
    for (size_t i = 0; i < AUTH_CACHE_SLOTS; i++) {
        struct auth_cache_entry *e = &cache->slots[i];
        if (e->used && memcmp(e->digest, digest, 32) == 0)
            return e;
    }
    return NULL;
}

int auth_cache_get(struct auth_cache *cache, enum auth_method method,
                   const char *credential, int64_t now_ms,
                   struct auth_identity *out)
{
    unsigned char digest[32];
    struct auth_cache_entry *e;
    int hit = 0;

    digest_of(credential, digest);
    pthread_mutex_lock(&cache->lock);
    e = find_cached(cache, digest);
    if (e != NULL && e->expires_ms <= now_ms) {
        e->used = 0;
        e = NULL;
    }
    if (e != NULL && e->who.method == method) {
        *out = e->who;
        hit = 1;
    }
    pthread_mutex_unlock(&cache->lock);
    return hit;
}

void auth_cache_put(struct auth_cache *cache, const char *credential,
                    int64_t now_ms, const struct auth_identity *who)
{
    unsigned char digest[32];
    struct auth_cache_entry *e;

    digest_of(credential, digest);
    pthread_mutex_lock(&cache->lock);
    e = find_cached(cache, digest);
    for (size_t i = 0; e == NULL && i < AUTH_CACHE_SLOTS; i++)
        if (!cache->slots[i].used || cache->slots[i].expires_ms <= now_ms)
            e = &cache->slots[i];
    if (e == NULL) {
        e = &cache->slots[0];
        for (size_t i = 1; i < AUTH_CACHE_SLOTS; i++)
            if (cache->slots[i].expires_ms < e->expires_ms)
                e = &cache->slots[i];
    }
    memcpy(e->digest, digest, sizeof(digest));
    e->used = 1;
    e->expires_ms = now_ms + cache->ttl_ms;
    e->who = *who;
    pthread_mutex_unlock(&cache->lock);
}

void auth_cache_forget(struct auth_cache *cache, const char *credential)
{
    unsigned char digest[32];
    struct auth_cache_entry *e;

    digest_of(credential, digest);
    pthread_mutex_lock(&cache->lock);
    e = find_cached(cache, digest);
    if (e != NULL)
        e->used = 0;
    pthread_mutex_unlock(&cache->lock);
}

void auth_cache_forget_account(struct auth_cache *cache, int64_t account_id,
                               enum auth_method method)
{
    pthread_mutex_lock(&cache->lock);
    for (size_t i = 0; i < AUTH_CACHE_SLOTS; i++) {
        struct auth_cache_entry *e = &cache->slots[i];
        if (e->used && e->who.account_id == account_id &&
            (method == AUTH_METHOD_NONE || e->who.method == method))
            e->used = 0;
    }
    pthread_mutex_unlock(&cache->lock);
}
