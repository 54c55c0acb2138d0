/*
 * libFuzzer target for the gateway's parsing of request lines and
 * headers: route_match and route_find (gateway/routes.c) on the request
 * path, and the cookie, Bearer, token, API key, CSRF and client address
 * functions of gateway/auth.c on header values. The input is split at
 * its first newline into the method and the rest, which is both the path
 * and the header value. Without a newline the whole input is both. Bytes
 * after a NUL are cut off, as a C string would be. Out buffers are filled
 * with a canary byte to catch writes past the length passed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "routes.h"

#define CANARY 0x5a

/* Fail when any byte of buf[len..len + extra) lost its canary. */
static void check_canary(const char *buf, size_t len, size_t extra)
{
    for (size_t i = len; i < len + extra; i++)
        if ((unsigned char)buf[i] != CANARY)
            abort();
}

static void fuzz_auth(const char *value)
{
    char out[AUTH_TOKEN_LEN + 1 + 16];
    size_t len = AUTH_TOKEN_LEN + 1;
    int rc;

    memset(out, CANARY, sizeof(out));
    rc = auth_cookie_get(value, AUTH_COOKIE_NAME, out, len);
    check_canary(out, len, sizeof(out) - len);
    if (rc == 0 && strlen(out) >= len)
        abort();
    if (rc == 0) {
        auth_session_token_valid(out);
        auth_csrf_equal(out, value);
    }

    memset(out, CANARY, sizeof(out));
    rc = auth_bearer_get(value, out, len);
    check_canary(out, len, sizeof(out) - len);
    if (rc == 0 && (strlen(out) >= len || strchr(out, ' ') != NULL))
        abort();
    if (rc == 0)
        auth_apikey_valid(out);

    /* A small buffer exercises the -2 "does not fit" path. */
    memset(out, CANARY, sizeof(out));
    auth_cookie_get(value, "a", out, 4);
    check_canary(out, 4, sizeof(out) - 4);
    memset(out, CANARY, sizeof(out));
    auth_bearer_get(value, out, 4);
    check_canary(out, 4, sizeof(out) - 4);

    auth_session_token_valid(value);
    auth_apikey_valid(value);
    auth_csrf_equal(value, value);

    char key[64 + 16];
    memset(key, CANARY, sizeof(key));
    auth_client_key(value, key, 64);
    check_canary(key, 64, sizeof(key) - 64);
    if (strlen(key) >= 64)
        abort();
}

static void fuzz_routes(const char *method, const char *path)
{
    char allow[128 + 16];
    int64_t id;

    for (const struct route *r = api_routes; r->method != NULL; r++) {
        id = -1;
        if (route_match(r->pattern, path, &id) &&
            (id < 0 || id > ROUTE_ID_MAX))
            abort();
    }
    memset(allow, CANARY, sizeof(allow));
    id = -1;
    if (route_find(api_routes, method, path, &id, allow, 128) == NULL &&
        strlen(allow) >= 128)
        abort();
    check_canary(allow, 128, sizeof(allow) - 128);
    route_method_changes_state(method);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    char *nl, *rest;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    nl = strchr(text, '\n');
    if (nl != NULL) {
        *nl = '\0';
        rest = nl + 1;
    } else {
        rest = text;
    }
    fuzz_routes(text, rest);
    fuzz_auth(rest);
    free(text);
    return 0;
}
