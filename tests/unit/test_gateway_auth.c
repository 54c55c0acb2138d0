/*
 * Tests of the gateway's authentication helpers (gateway/auth.c) and its
 * route table (gateway/routes.c): cookie and Bearer parsing, token forms,
 * CSRF comparison, the session cookie's attributes, client address keys,
 * the sign-in rate limiter's sliding window, the credential cache and
 * path matching with {id} segments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../gateway/auth.h"
#include "../../gateway/routes.h"

#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define KEY "ty_AAAAAAAAAABBBBBBBBBBCCCCCCCCCC-_abcdefghijk"

/* ---- cookies ------------------------------------------------------------ */

static void cookie_found_among_others(void **state)
{
    char out[128];

    (void)state;
    assert_int_equal(auth_cookie_get("a=1; ty_session=abc; b=2", "ty_session",
                                     out, sizeof(out)),
                     0);
    assert_string_equal(out, "abc");
    assert_int_equal(
        auth_cookie_get("ty_session=first", "ty_session", out, sizeof(out)), 0);
    assert_string_equal(out, "first");
    assert_int_equal(
        auth_cookie_get("x=1;ty_session=tight", "ty_session", out, sizeof(out)),
        0);
    assert_string_equal(out, "tight");
}

static void cookie_spaces_and_quotes(void **state)
{
    char out[128];

    (void)state;
    assert_int_equal(auth_cookie_get("  ty_session=abc  ; b=2", "ty_session",
                                     out, sizeof(out)),
                     0);
    assert_string_equal(out, "abc");
    assert_int_equal(auth_cookie_get("ty_session=\"quoted\"", "ty_session", out,
                                     sizeof(out)),
                     0);
    assert_string_equal(out, "quoted");
    assert_int_equal(
        auth_cookie_get("ty_session=", "ty_session", out, sizeof(out)), 0);
    assert_string_equal(out, "");
}

static void cookie_name_must_match_exactly(void **state)
{
    char out[128];

    (void)state;
    assert_int_equal(auth_cookie_get("xty_session=a; ty_session_old=b",
                                     "ty_session", out, sizeof(out)),
                     -1);
    assert_int_equal(
        auth_cookie_get("TY_SESSION=a", "ty_session", out, sizeof(out)), -1);
    assert_int_equal(
        auth_cookie_get("other=ty_session=a", "ty_session", out, sizeof(out)),
        -1);
    assert_int_equal(auth_cookie_get(NULL, "ty_session", out, sizeof(out)), -1);
    assert_int_equal(auth_cookie_get("", "ty_session", out, sizeof(out)), -1);
    assert_int_equal(auth_cookie_get(";;;", "ty_session", out, sizeof(out)),
                     -1);
}

static void cookie_first_of_duplicates_wins(void **state)
{
    char out[128];

    (void)state;
    assert_int_equal(auth_cookie_get("ty_session=one; ty_session=two",
                                     "ty_session", out, sizeof(out)),
                     0);
    assert_string_equal(out, "one");
}

static void cookie_too_long_rejected(void **state)
{
    char out[8];

    (void)state;
    assert_int_equal(
        auth_cookie_get("ty_session=12345678", "ty_session", out, sizeof(out)),
        -2);
    assert_int_equal(
        auth_cookie_get("ty_session=1234567", "ty_session", out, sizeof(out)),
        0);
    assert_string_equal(out, "1234567");
}

/* ---- Bearer ------------------------------------------------------------- */

static void bearer_parsed(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(auth_bearer_get("Bearer ty_abc", out, sizeof(out)), 0);
    assert_string_equal(out, "ty_abc");
    assert_int_equal(auth_bearer_get("bearer   ty_abc  ", out, sizeof(out)), 0);
    assert_string_equal(out, "ty_abc");
}

static void bearer_other_schemes_rejected(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(auth_bearer_get("Basic dXNlcjpwYXNz", out, sizeof(out)),
                     -1);
    assert_int_equal(auth_bearer_get("Bearerty_abc", out, sizeof(out)), -1);
    assert_int_equal(auth_bearer_get("Bearer", out, sizeof(out)), -1);
    assert_int_equal(auth_bearer_get(NULL, out, sizeof(out)), -1);
}

static void bearer_malformed_rejected(void **state)
{
    char out[8];

    (void)state;
    assert_int_equal(auth_bearer_get("Bearer ", out, sizeof(out)), -2);
    assert_int_equal(auth_bearer_get("Bearer a b", out, sizeof(out)), -2);
    assert_int_equal(auth_bearer_get("Bearer 12345678", out, sizeof(out)), -2);
}

/* ---- token forms, CSRF and the cookie ------------------------------------ */

static void token_forms_checked(void **state)
{
    (void)state;
    assert_true(auth_session_token_valid(TOKEN));
    assert_false(auth_session_token_valid(""));
    assert_false(auth_session_token_valid(TOKEN "0"));
    assert_false(auth_session_token_valid(
        "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_false(auth_session_token_valid(
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg"));

    assert_int_equal(strlen(KEY), AUTH_APIKEY_LEN);
    assert_true(auth_apikey_valid(KEY));
    assert_false(auth_apikey_valid("ty_short"));
    assert_false(
        auth_apikey_valid("xx_AAAAAAAAAABBBBBBBBBBCCCCCCCCCC-_abcdefghijk"));
    assert_false(
        auth_apikey_valid("ty_AAAAAAAAAABBBBBBBBBBCCCCCCCCCC+/abcdefghijk"));
    assert_false(auth_apikey_valid(KEY "j"));
}

static void csrf_compare(void **state)
{
    (void)state;
    assert_true(auth_csrf_equal(TOKEN, TOKEN));
    assert_false(auth_csrf_equal(
        TOKEN,
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdee"));
    assert_false(auth_csrf_equal(TOKEN, "0123456789abcdef"));
    assert_false(auth_csrf_equal(TOKEN, ""));
    assert_false(auth_csrf_equal(TOKEN, NULL));
    assert_false(auth_csrf_equal("", ""));
    assert_false(auth_csrf_equal(NULL, TOKEN));
}

static void session_cookie_attributes(void **state)
{
    char out[256];

    (void)state;
    assert_int_equal(auth_session_cookie(out, sizeof(out), TOKEN, 0), 0);
    assert_non_null(strstr(out, "ty_session=" TOKEN ";"));
    assert_non_null(strstr(out, "; HttpOnly"));
    assert_non_null(strstr(out, "; SameSite=Strict"));
    assert_non_null(strstr(out, "; Path=/"));
    assert_non_null(strstr(out, "; Max-Age=2592000"));
    assert_null(strstr(out, "Secure;"));
    assert_null(strstr(out, "; Secure"));

    assert_int_equal(auth_session_cookie(out, sizeof(out), TOKEN, 1), 0);
    assert_non_null(strstr(out, "; Secure"));

    assert_int_equal(auth_session_cookie(out, sizeof(out), NULL, 0), 0);
    assert_non_null(strstr(out, "ty_session=;"));
    assert_non_null(strstr(out, "; Max-Age=0"));
    assert_non_null(strstr(out, "; HttpOnly"));

    assert_int_equal(auth_session_cookie(out, 16, TOKEN, 0), -1);
}

static void client_key_groups_ipv6(void **state)
{
    char out[64];

    (void)state;
    auth_client_key("192.0.2.7", out, sizeof(out));
    assert_string_equal(out, "192.0.2.7");
    auth_client_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", out, sizeof(out));
    assert_string_equal(out, "2001:db8:1:2::/64");
    auth_client_key("2001:db8:1:2::1", out, sizeof(out));
    assert_string_equal(out, "2001:db8:1:2::/64");
    auth_client_key("::ffff:192.0.2.7", out, sizeof(out));
    assert_string_equal(out, "192.0.2.7");
    auth_client_key("not-an-address", out, sizeof(out));
    assert_string_equal(out, "not-an-address");
}

/* ---- rate limiter ------------------------------------------------------- */

static void limiter_allows_up_to_limit(void **state)
{
    struct rate_limiter rl;
    int64_t retry = -1;

    (void)state;
    assert_int_equal(rate_limiter_init(&rl, 3, 1000, 16), 0);
    assert_int_equal(rate_limiter_hit(&rl, "a", 100, &retry), RATE_ALLOWED);
    assert_int_equal(retry, 0);
    assert_int_equal(rate_limiter_hit(&rl, "a", 200, &retry), RATE_ALLOWED);
    assert_int_equal(rate_limiter_hit(&rl, "a", 300, &retry), RATE_ALLOWED);
    assert_int_equal(rate_limiter_hit(&rl, "a", 400, &retry),
                     RATE_LIMITED_FIRST);
    /* The attempt at 100 leaves the window at 1100. */
    assert_int_equal(retry, 700);
    assert_int_equal(rate_limiter_hit(&rl, "a", 500, &retry), RATE_LIMITED);
    assert_int_equal(retry, 600);
    rate_limiter_free(&rl);
}

static void limiter_window_slides(void **state)
{
    struct rate_limiter rl;
    int64_t retry;

    (void)state;
    assert_int_equal(rate_limiter_init(&rl, 2, 1000, 16), 0);
    assert_int_equal(rate_limiter_hit(&rl, "a", 0, &retry), RATE_ALLOWED);
    assert_int_equal(rate_limiter_hit(&rl, "a", 600, &retry), RATE_ALLOWED);
    assert_int_equal(rate_limiter_hit(&rl, "a", 999, &retry),
                     RATE_LIMITED_FIRST);
    assert_int_equal(retry, 1);
    /* At 1000 the first attempt has left; the one at 600 has not. */
    assert_int_equal(rate_limiter_hit(&rl, "a", 1000, &retry), RATE_ALLOWED);
    assert_int_equal(rate_limiter_hit(&rl, "a", 1001, &retry),
                     RATE_LIMITED_FIRST);
    assert_int_equal(retry, 599);
    /* Rejected attempts do not count: after a long wait all are free. */
    assert_int_equal(rate_limiter_hit(&rl, "a", 5000, &retry), RATE_ALLOWED);
    assert_int_equal(rate_limiter_hit(&rl, "a", 5001, &retry), RATE_ALLOWED);
    rate_limiter_free(&rl);
}

static void limiter_keys_independent(void **state)
{
    struct rate_limiter rl;
    int64_t retry;

    (void)state;
    assert_int_equal(rate_limiter_init(&rl, 1, 1000, 16), 0);
    assert_int_equal(rate_limiter_hit(&rl, "a", 0, &retry), RATE_ALLOWED);
    assert_int_equal(rate_limiter_hit(&rl, "a", 1, &retry), RATE_LIMITED_FIRST);
    assert_int_equal(rate_limiter_hit(&rl, "b", 2, &retry), RATE_ALLOWED);
    rate_limiter_free(&rl);
}

static void limiter_evicts_idlest_when_full(void **state)
{
    struct rate_limiter rl;
    int64_t retry;

    (void)state;
    assert_int_equal(rate_limiter_init(&rl, 1, 10000, 2), 0);
    assert_int_equal(rate_limiter_hit(&rl, "a", 0, &retry), RATE_ALLOWED);
    assert_int_equal(rate_limiter_hit(&rl, "b", 10, &retry), RATE_ALLOWED);
    /* "c" takes the slot of "a", idle the longest. */
    assert_int_equal(rate_limiter_hit(&rl, "c", 20, &retry), RATE_ALLOWED);
    assert_int_equal(rate_limiter_hit(&rl, "b", 30, &retry),
                     RATE_LIMITED_FIRST);
    assert_int_equal(rate_limiter_hit(&rl, "c", 40, &retry),
                     RATE_LIMITED_FIRST);
    rate_limiter_free(&rl);
}

static void limiter_rejects_bad_sizes(void **state)
{
    struct rate_limiter rl;

    (void)state;
    assert_int_equal(rate_limiter_init(&rl, 0, 1000, 4), -1);
    assert_int_equal(
        rate_limiter_init(&rl, RATE_LIMIT_ATTEMPTS_MAX + 1, 1000, 4), -1);
    assert_int_equal(rate_limiter_init(&rl, 1, 0, 4), -1);
    assert_int_equal(rate_limiter_init(&rl, 1, 1000, 0), -1);
}

/* ---- credential cache --------------------------------------------------- */

static struct auth_identity identity(enum auth_method method, int64_t id)
{
    struct auth_identity who;

    memset(&who, 0, sizeof(who));
    who.method = method;
    who.account_id = id;
    strcpy(who.role, "user");
    return who;
}

static void cache_hit_until_ttl(void **state)
{
    static struct auth_cache cache;
    struct auth_identity who = identity(AUTH_METHOD_SESSION, 7), out;

    (void)state;
    auth_cache_init(&cache, 5000);
    assert_false(auth_cache_get(&cache, AUTH_METHOD_SESSION, TOKEN, 0, &out));
    auth_cache_put(&cache, TOKEN, 1000, &who);
    assert_true(auth_cache_get(&cache, AUTH_METHOD_SESSION, TOKEN, 5999, &out));
    assert_int_equal(out.account_id, 7);
    assert_false(
        auth_cache_get(&cache, AUTH_METHOD_SESSION, TOKEN, 6000, &out));
    assert_false(auth_cache_get(&cache, AUTH_METHOD_SESSION, TOKEN, 10, &out));
}

static void cache_method_must_match(void **state)
{
    static struct auth_cache cache;
    struct auth_identity who = identity(AUTH_METHOD_API_KEY, 7), out;

    (void)state;
    auth_cache_init(&cache, 5000);
    auth_cache_put(&cache, KEY, 0, &who);
    assert_false(auth_cache_get(&cache, AUTH_METHOD_SESSION, KEY, 1, &out));
    assert_true(auth_cache_get(&cache, AUTH_METHOD_API_KEY, KEY, 1, &out));
}

static void cache_forget_entries(void **state)
{
    static struct auth_cache cache;
    struct auth_identity session = identity(AUTH_METHOD_SESSION, 7);
    struct auth_identity key = identity(AUTH_METHOD_API_KEY, 7);
    struct auth_identity other = identity(AUTH_METHOD_API_KEY, 8);
    struct auth_identity out;

    (void)state;
    auth_cache_init(&cache, 5000);
    auth_cache_put(&cache, TOKEN, 0, &session);
    auth_cache_put(&cache, KEY, 0, &key);
    auth_cache_put(&cache, "ty_other", 0, &other);

    auth_cache_forget_account(&cache, 7, AUTH_METHOD_API_KEY);
    assert_false(auth_cache_get(&cache, AUTH_METHOD_API_KEY, KEY, 1, &out));
    assert_true(auth_cache_get(&cache, AUTH_METHOD_SESSION, TOKEN, 1, &out));
    assert_true(
        auth_cache_get(&cache, AUTH_METHOD_API_KEY, "ty_other", 1, &out));

    auth_cache_forget(&cache, TOKEN);
    assert_false(auth_cache_get(&cache, AUTH_METHOD_SESSION, TOKEN, 1, &out));

    auth_cache_forget_account(&cache, 8, AUTH_METHOD_NONE);
    assert_false(
        auth_cache_get(&cache, AUTH_METHOD_API_KEY, "ty_other", 1, &out));
}

static void cache_full_replaces_oldest(void **state)
{
    static struct auth_cache cache;
    struct auth_identity who = identity(AUTH_METHOD_SESSION, 1), out;
    char name[32];

    (void)state;
    auth_cache_init(&cache, 5000);
    for (int i = 0; i < AUTH_CACHE_SLOTS; i++) {
        snprintf(name, sizeof(name), "credential-%d", i);
        who.account_id = i + 1;
        auth_cache_put(&cache, name, i, &who);
    }
    who.account_id = 99999;
    auth_cache_put(&cache, "newest", AUTH_CACHE_SLOTS, &who);
    assert_true(auth_cache_get(&cache, AUTH_METHOD_SESSION, "newest",
                               AUTH_CACHE_SLOTS, &out));
    assert_int_equal(out.account_id, 99999);
    /* credential-0 expired first, so it made room. */
    assert_false(auth_cache_get(&cache, AUTH_METHOD_SESSION, "credential-0",
                                AUTH_CACHE_SLOTS, &out));
    assert_true(auth_cache_get(&cache, AUTH_METHOD_SESSION, "credential-1",
                               AUTH_CACHE_SLOTS, &out));
}

/* ---- routes ----------------------------------------------------------- */

static void route_literal_match(void **state)
{
    int64_t id = -1;

    (void)state;
    assert_true(route_match("/api/v1/me", "/api/v1/me", &id));
    assert_int_equal(id, 0);
    assert_false(route_match("/api/v1/me", "/api/v1/me/", &id));
    assert_false(route_match("/api/v1/me", "/api/v1/m", &id));
    assert_false(route_match("/api/v1/me", "/api/v1/mee", &id));
    assert_false(route_match("/api/v1/me", "/api/v1//me", &id));
    assert_false(route_match("/api/v1/me", "/api/v1", &id));
    assert_false(route_match("/api/v1/me", "", &id));
}

static void route_id_segment_match(void **state)
{
    int64_t id = -1;

    (void)state;
    assert_true(route_match("/api/v1/apikeys/{id}", "/api/v1/apikeys/42", &id));
    assert_int_equal(id, 42);
    assert_true(route_match("/api/v1/admin/accounts/{id}/plan",
                            "/api/v1/admin/accounts/7/plan", &id));
    assert_int_equal(id, 7);
    assert_true(route_match("/x/{id}", "/x/9007199254740992", &id));
    assert_int_equal(id, 9007199254740992LL);
}

static void route_id_segment_rejects(void **state)
{
    static const char *const paths[] = {
        "/x/",
        "/x/0",
        "/x/007",
        "/x/-1",
        "/x/1a",
        "/x/a",
        "/x/1.5",
        "/x/9007199254740993",
        "/x/12345678901234567",
        "/x/1/",
        "/x/1/2",
        "/x/%31",
    };
    int64_t id = -1;

    (void)state;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (route_match("/x/{id}", paths[i], &id))
            fail_msg("/x/{id} matched '%s'", paths[i]);
    assert_false(route_match("/x/{id}/plan", "/x/1", &id));
    assert_false(route_match("/x/{id}/plan", "/x/1/planx", &id));
}

static void route_find_method_and_allow(void **state)
{
    const struct route *r;
    char allow[64];
    int64_t id = 0;

    (void)state;
    r = route_find(api_routes, "DELETE", "/api/v1/apikeys/5", &id, allow,
                   sizeof(allow));
    assert_non_null(r);
    assert_string_equal(r->pattern, "/api/v1/apikeys/{id}");
    assert_int_equal(id, 5);

    r = route_find(api_routes, "POST", "/api/v1/apikeys", &id, allow,
                   sizeof(allow));
    assert_non_null(r);
    assert_int_equal(r->auth, ROUTE_USER);

    r = route_find(api_routes, "PUT", "/api/v1/apikeys", &id, allow,
                   sizeof(allow));
    assert_null(r);
    assert_string_equal(allow, "GET, POST");

    r = route_find(api_routes, "GET", "/api/v1/nothing", &id, allow,
                   sizeof(allow));
    assert_null(r);
    assert_string_equal(allow, "");

    r = route_find(api_routes, "GET", "/api/v1/admin/accounts", &id, allow,
                   sizeof(allow));
    assert_non_null(r);
    assert_int_equal(r->auth, ROUTE_ADMIN);
}

/* Every state-changing route that accepts a cookie must demand CSRF. */
static void route_table_requires_csrf(void **state)
{
    (void)state;
    for (const struct route *r = api_routes; r->method != NULL; r++) {
        if (!route_method_changes_state(r->method) || r->auth == ROUTE_PUBLIC)
            continue;
        if (!r->csrf)
            fail_msg("%s %s changes state without CSRF", r->method, r->pattern);
    }
    assert_true(route_method_changes_state("DELETE"));
    assert_true(route_method_changes_state("PATCH"));
    assert_false(route_method_changes_state("GET"));
    assert_false(route_method_changes_state("HEAD"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cookie_found_among_others),
        cmocka_unit_test(cookie_spaces_and_quotes),
        cmocka_unit_test(cookie_name_must_match_exactly),
        cmocka_unit_test(cookie_first_of_duplicates_wins),
        cmocka_unit_test(cookie_too_long_rejected),
        cmocka_unit_test(bearer_parsed),
        cmocka_unit_test(bearer_other_schemes_rejected),
        cmocka_unit_test(bearer_malformed_rejected),
        cmocka_unit_test(token_forms_checked),
        cmocka_unit_test(csrf_compare),
        cmocka_unit_test(session_cookie_attributes),
        cmocka_unit_test(client_key_groups_ipv6),
        cmocka_unit_test(limiter_allows_up_to_limit),
        cmocka_unit_test(limiter_window_slides),
        cmocka_unit_test(limiter_keys_independent),
        cmocka_unit_test(limiter_evicts_idlest_when_full),
        cmocka_unit_test(limiter_rejects_bad_sizes),
        cmocka_unit_test(cache_hit_until_ttl),
        cmocka_unit_test(cache_method_must_match),
        cmocka_unit_test(cache_forget_entries),
        cmocka_unit_test(cache_full_replaces_oldest),
        cmocka_unit_test(route_literal_match),
        cmocka_unit_test(route_id_segment_match),
        cmocka_unit_test(route_id_segment_rejects),
        cmocka_unit_test(route_find_method_and_allow),
        cmocka_unit_test(route_table_requires_csrf),
    };
    return cmocka_run_group_tests_name("gateway_auth", tests, NULL, NULL);
}
