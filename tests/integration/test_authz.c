/*
 * Authorization sweep over the REST API. On one stack, user B requests
 * every object of user A by id through every route that takes an id and
 * must get 404 not_found, so B learns nothing, not even that the id
 * exists. Admin routes with an id must return 403 forbidden to B. Every route
 * that needs sign-in must return 401 without credentials. A table check makes
 * sure that each route with an id segment in api_routes[] is in this test's
 * table, so a new route cannot skip the sweep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/routes.h"
#include "stack.h"

#define ADMIN "admin@example.test"
#define ADMIN_PASSWORD "admin password 1"
#define NOW_MS "1700000000000"

/* The kind of object whose id a route's "{id}" segment names. */
enum object_kind {
    OBJECT_APIKEY,
    OBJECT_DATASET,
    OBJECT_MODEL,
    OBJECT_ACCOUNT, /* admin routes; a user gets 403 before any lookup */
    OBJECT_TOKEN,   /* the public share link route */
};

struct id_route {
    const char *method;
    const char *pattern;
    const char *body; /* JSON body that passes the route's checks, or NULL */
    enum object_kind kind;
};

static const struct id_route id_routes[] = {
    {"DELETE", "/api/v1/apikeys/{id}", NULL, OBJECT_APIKEY},
    {"POST", "/api/v1/admin/accounts/{id}/plan", "{\"plan\":\"pro\"}",
     OBJECT_ACCOUNT},
    {"POST", "/api/v1/admin/accounts/{id}/credits",
     "{\"amount\":1000000,\"description\":\"x\"}", OBJECT_ACCOUNT},
    {"DELETE", "/api/v1/datasets/{id}", NULL, OBJECT_DATASET},
    {"GET", "/api/v1/datasets/{id}/report", NULL, OBJECT_DATASET},
    {"GET", "/api/v1/models/{id}", NULL, OBJECT_MODEL},
    {"DELETE", "/api/v1/models/{id}", NULL, OBJECT_MODEL},
    {"POST", "/api/v1/models/{id}/train",
     "{\"mode\":\"epochs\",\"epochs\":1,\"instance_type\":\"cpu\"}",
     OBJECT_MODEL},
    {"POST", "/api/v1/models/{id}/stop", NULL, OBJECT_MODEL},
    {"POST", "/api/v1/models/{id}/resume", NULL, OBJECT_MODEL},
    {"GET", "/api/v1/models/{id}/events", NULL, OBJECT_MODEL},
    {"GET", "/api/v1/models/{id}/billing.csv", NULL, OBJECT_MODEL},
    {"GET", "/api/v1/models/{id}/billing.pdf", NULL, OBJECT_MODEL},
    {"GET", "/api/v1/models/{id}/weights", NULL, OBJECT_MODEL},
    {"POST", "/api/v1/models/{id}/share",
     "{\"which\":\"best\",\"expires_in_s\":600}", OBJECT_MODEL},
    {"GET", "/api/v1/shared/{token}", NULL, OBJECT_TOKEN},
};

#define ID_ROUTES (sizeof(id_routes) / sizeof(id_routes[0]))

struct world {
    struct stack *s;
    struct browser admin, a, b;
    int64_t a_id, a_apikey, a_dataset, a_model;
};

static struct world w;

/* Send a request as br, or with no credentials when br is NULL. */
static void call(const struct browser *br, const char *method,
                 const char *target, const char *body, struct http_reply *r)
{
    char headers[1024] = STACK_JSON_HEADER;

    if (br != NULL)
        browser_headers(br, 1, headers, sizeof(headers));
    stack_request(w.s, method, target, headers, body, r);
}

static void expect_status(const struct http_reply *r, int status)
{
    if (r->status != status)
        fail_msg("expected HTTP %d, got %d: %s", status, r->status, r->body);
}

static int setup(void **state)
{
    char sql[512];
    struct http_reply r;

    (void)state;
    setenv("TRAINYARD_PWHASH", "fast", 1);
    w.s = stack_start(ADMIN, ADMIN_PASSWORD);
    assert_int_equal(stack_signin(w.s, ADMIN, ADMIN_PASSWORD, &w.admin), 200);
    w.a_id = stack_create_user(w.s, &w.admin, "a@example.test", "a password 1",
                               &w.a);
    stack_create_user(w.s, &w.admin, "b@example.test", "b password 1", &w.b);

    call(&w.a, "POST", "/api/v1/apikeys", "{\"name\":\"a key\"}", &r);
    expect_status(&r, 201);
    w.a_apikey = (int64_t)json_number(r.body, "id", NULL);
    harness_http_free(&r);

    w.a_dataset = 41;
    snprintf(sql, sizeof(sql),
             "INSERT INTO datasets (id, account_id, name, task, path, "
             "created_at) VALUES (41, %" PRId64 ", 'a data', 'classify', "
             "'datasets/41', " NOW_MS ")",
             w.a_id);
    stack_database_exec(w.s, sql);

    call(&w.a, "POST", "/api/v1/models",
         "{\"name\":\"a model\",\"dataset\":41,\"architecture\":"
         "\"yolov8n-cls.yaml\",\"args\":{}}",
         &r);
    expect_status(&r, 201);
    w.a_model = (int64_t)json_number(r.body, "id", NULL);
    harness_http_free(&r);
    assert_true(w.a_apikey > 0);
    assert_true(w.a_model > 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return stack_stop(w.s, NULL, 0);
}

static int64_t object_id(enum object_kind kind)
{
    switch (kind) {
    case OBJECT_APIKEY:
        return w.a_apikey;
    case OBJECT_DATASET:
        return w.a_dataset;
    case OBJECT_MODEL:
        return w.a_model;
    case OBJECT_ACCOUNT:
        return w.a_id;
    case OBJECT_TOKEN:
        break;
    }
    return 0;
}

/* Write pattern with "{id}" replaced by id and "{token}" by a token that
 * has the right characters but no valid signature. */
static void fill_pattern(const char *pattern, int64_t id, char *out, size_t len)
{
    const char *mark = strchr(pattern, '{');
    const char *end = mark != NULL ? strchr(mark, '}') : NULL;

    if (mark == NULL || end == NULL) {
        snprintf(out, len, "%s", pattern);
        return;
    }
    if (strncmp(mark, "{token}", 7) == 0)
        snprintf(out, len, "%.*sAAAA.BBBB%s", (int)(mark - pattern), pattern,
                 end + 1);
    else
        snprintf(out, len, "%.*s%lld%s", (int)(mark - pattern), pattern,
                 (long long)id, end + 1);
}

static void table_covers_id_routes(void **state)
{
    (void)state;
    for (const struct route *r = api_routes; r->method != NULL; r++) {
        int found = 0;

        if (strchr(r->pattern, '{') == NULL)
            continue;
        for (size_t i = 0; i < ID_ROUTES; i++)
            if (strcmp(id_routes[i].method, r->method) == 0 &&
                strcmp(id_routes[i].pattern, r->pattern) == 0)
                found = 1;
        if (!found)
            fail_msg("route %s %s takes an id but is not in id_routes; add "
                     "it with the object kind it names",
                     r->method, r->pattern);
    }
    for (size_t i = 0; i < ID_ROUTES; i++) {
        int found = 0;

        for (const struct route *r = api_routes; r->method != NULL; r++)
            if (strcmp(id_routes[i].method, r->method) == 0 &&
                strcmp(id_routes[i].pattern, r->pattern) == 0)
                found = 1;
        if (!found)
            fail_msg("id_routes has %s %s, which api_routes lacks; remove "
                     "it",
                     id_routes[i].method, id_routes[i].pattern);
    }
}

static void other_user_gets_not_found(void **state)
{
    char target[256];
    struct http_reply r;

    (void)state;
    for (size_t i = 0; i < ID_ROUTES; i++) {
        const struct id_route *route = &id_routes[i];
        int status = 404;
        const char *code = "not_found";

        fill_pattern(route->pattern, object_id(route->kind), target,
                     sizeof(target));
        if (route->kind == OBJECT_ACCOUNT) {
            status = 403;
            code = "forbidden";
        }
        call(&w.b, route->method, target, route->body, &r);
        if (r.status != status || strstr(r.body, code) == NULL)
            fail_msg("%s %s as another user: expected %d %s, got %d: %s",
                     route->method, target, status, code, r.status, r.body);
        harness_http_free(&r);
    }
}

/* After the sweep, A's objects are all still there. */
static void owner_objects_intact(void **state)
{
    char target[96];
    struct http_reply r;

    (void)state;
    snprintf(target, sizeof(target), "/api/v1/models/%lld",
             (long long)w.a_model);
    call(&w.a, "GET", target, NULL, &r);
    expect_status(&r, 200);
    harness_http_free(&r);
    snprintf(target, sizeof(target), "/api/v1/datasets/%lld/report",
             (long long)w.a_dataset);
    call(&w.a, "GET", target, NULL, &r);
    expect_status(&r, 200);
    harness_http_free(&r);
    call(&w.a, "GET", "/api/v1/apikeys", NULL, &r);
    expect_status(&r, 200);
    assert_non_null(strstr(r.body, "a key"));
    harness_http_free(&r);
}

static void signed_out_gets_unauthorized(void **state)
{
    char target[256];
    struct http_reply r;
    int checked = 0;

    (void)state;
    for (const struct route *route = api_routes; route->method != NULL;
         route++) {
        if (route->auth == ROUTE_PUBLIC)
            continue;
        fill_pattern(route->pattern, w.a_model, target, sizeof(target));
        call(NULL, route->method, target, route->json_body ? "{}" : NULL, &r);
        if (r.status != 401 || strstr(r.body, "unauthorized") == NULL)
            fail_msg("%s %s without credentials: expected 401 "
                     "unauthorized, got %d: %s",
                     route->method, target, r.status, r.body);
        harness_http_free(&r);
        checked++;
    }
    assert_true(checked > 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_covers_id_routes),
        cmocka_unit_test(other_user_gets_not_found),
        cmocka_unit_test(owner_objects_intact),
        cmocka_unit_test(signed_out_gets_unauthorized),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
