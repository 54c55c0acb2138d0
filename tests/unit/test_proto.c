/* Tests of the backend's message handling (backend/daemon/proto). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/proto.h"

#define SECRET "00112233445566778899aabbccddeeff" \
               "00112233445566778899aabbccddeeff"

static struct backend test_backend;

static int setup(void **state)
{
    memset(&test_backend, 0, sizeof(test_backend));
    strcpy(test_backend.secret, SECRET);
    test_backend.store.schema_version = 3;
    *state = &test_backend;
    return 0;
}

/* Send text on conn and return the reply parsed (caller deletes). */
static cJSON *exchange(struct proto_conn *conn, const char *text)
{
    char *reply = NULL;
    cJSON *root;

    proto_handle(&test_backend, conn, text, strlen(text), &reply);
    assert_non_null(reply);
    root = cJSON_Parse(reply);
    free(reply);
    assert_non_null(root);
    return root;
}

static const char *field(const cJSON *obj, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, a);
    if (b != NULL)
        v = cJSON_GetObjectItemCaseSensitive(v, b);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void hello(struct proto_conn *conn)
{
    cJSON *r = exchange(conn, "{\"type\":\"hello\",\"version\":1,"
                              "\"secret\":\"" SECRET "\"}");
    assert_string_equal(field(r, "type", NULL), "welcome");
    cJSON_Delete(r);
    assert_true(conn->authenticated);
}

static void proto_hello_with_secret_accepted(void **state)
{
    struct proto_conn conn = {0};

    (void)state;
    hello(&conn);
    assert_false(conn.close_after_reply);
}

static void proto_wrong_secret_closes(void **state)
{
    struct proto_conn conn = {0};
    cJSON *r;

    (void)state;
    r = exchange(&conn, "{\"type\":\"hello\",\"version\":1,"
                        "\"secret\":\"0000\"}");
    assert_string_equal(field(r, "error", "code"), "unauthorized");
    cJSON_Delete(r);
    assert_false(conn.authenticated);
    assert_true(conn.close_after_reply);
}

static void proto_wrong_version_closes(void **state)
{
    struct proto_conn conn = {0};
    cJSON *r;

    (void)state;
    r = exchange(&conn, "{\"type\":\"hello\",\"version\":2,"
                        "\"secret\":\"" SECRET "\"}");
    assert_string_equal(field(r, "error", "code"), "unsupported_version");
    cJSON_Delete(r);
    assert_true(conn.close_after_reply);
}

static void proto_request_before_hello_closes(void **state)
{
    struct proto_conn conn = {0};
    cJSON *r;

    (void)state;
    r = exchange(&conn, "{\"type\":\"request\",\"id\":1,\"op\":\"health\"}");
    assert_string_equal(field(r, "error", "code"), "unauthorized");
    cJSON_Delete(r);
    assert_true(conn.close_after_reply);
}

static void proto_health_reports_schema(void **state)
{
    struct proto_conn conn = {0};
    cJSON *r;

    (void)state;
    hello(&conn);
    r = exchange(&conn, "{\"type\":\"request\",\"id\":42,\"op\":\"health\"}");
    assert_string_equal(field(r, "type", NULL), "response");
    assert_int_equal(cJSON_GetObjectItem(r, "id")->valueint, 42);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
    assert_string_equal(field(r, "result", "status"), "ok");
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"),
                            "schema_version")
            ->valueint,
        3);
    cJSON_Delete(r);
}

static void proto_unknown_op_named(void **state)
{
    struct proto_conn conn = {0};
    cJSON *r;

    (void)state;
    hello(&conn);
    r = exchange(&conn, "{\"type\":\"request\",\"id\":7,\"op\":\"launch\"}");
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
    assert_int_equal(cJSON_GetObjectItem(r, "id")->valueint, 7);
    assert_string_equal(field(r, "error", "code"), "unknown_op");
    assert_non_null(strstr(field(r, "error", "message"), "launch"));
    cJSON_Delete(r);
    assert_false(conn.close_after_reply);
}

static void proto_wrong_field_types_rejected(void **state)
{
    static const char *const cases[] = {
        "{\"type\":\"request\",\"id\":\"1\",\"op\":\"health\"}",
        "{\"type\":\"request\",\"id\":1,\"op\":5}",
        "{\"type\":\"request\",\"id\":1,\"op\":\"health\",\"args\":[]}",
    };
    struct proto_conn conn = {0};

    (void)state;
    hello(&conn);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *r = exchange(&conn, cases[i]);
        assert_string_equal(field(r, "error", "code"), "invalid_request");
        cJSON_Delete(r);
    }
    assert_false(conn.close_after_reply);
}

static void proto_malformed_json_rejected(void **state)
{
    static const char *const cases[] = {
        "", "{", "[1,2]", "\"text\"", "{\"type\":", "null",
    };
    struct proto_conn conn = {0};

    (void)state;
    hello(&conn);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *reply = NULL;
        proto_handle(&test_backend, &conn, cases[i], strlen(cases[i]),
                     &reply);
        assert_non_null(reply);
        assert_non_null(strstr(reply, "invalid_json"));
        free(reply);
    }
    assert_false(conn.close_after_reply);
}

/* op_arg_int64 converted a number such as 1e300 to int64_t before it
 * checked the range, which is undefined behavior (UBSan: "outside the
 * range of representable values"). A query such as
 * GET /api/v1/models/1/events?after=99999999999999999999 reached it. */
static void proto_arg_int64_out_of_range_rejected(void **state)
{
    static const char *const rejected[] = {
        "1e300", "-1e300", "9223372036854775807", "-9223372036854775809",
        "9007199254740994", "1.5", "\"7\"", "true",
    };
    static const struct {
        const char *text;
        int64_t value;
    } accepted[] = {
        {"9007199254740992", 9007199254740992LL},
        {"-9007199254740992", -9007199254740992LL},
        {"0", 0},
        {"-5", -5},
        {"4.0", 4},
    };
    char text[128];

    (void)state;
    for (size_t i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++) {
        struct op_call call = {0};
        int64_t out = 42;
        cJSON *args;

        snprintf(text, sizeof(text), "{\"n\":%s}", rejected[i]);
        args = cJSON_Parse(text);
        assert_non_null(args);
        call.args = args;
        assert_int_equal(op_arg_int64(&call, "n", &out), -1);
        assert_string_equal(call.code, "invalid_request");
        assert_int_equal(out, 42);
        cJSON_Delete(args);
    }
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        struct op_call call = {0};
        int64_t out = 42;
        cJSON *args;

        snprintf(text, sizeof(text), "{\"n\":%s}", accepted[i].text);
        args = cJSON_Parse(text);
        assert_non_null(args);
        call.args = args;
        assert_int_equal(op_arg_int64(&call, "n", &out), 0);
        assert_int_equal(out, accepted[i].value);
        cJSON_Delete(args);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(proto_hello_with_secret_accepted, setup),
        cmocka_unit_test_setup(proto_wrong_secret_closes, setup),
        cmocka_unit_test_setup(proto_wrong_version_closes, setup),
        cmocka_unit_test_setup(proto_request_before_hello_closes, setup),
        cmocka_unit_test_setup(proto_health_reports_schema, setup),
        cmocka_unit_test_setup(proto_unknown_op_named, setup),
        cmocka_unit_test_setup(proto_wrong_field_types_rejected, setup),
        cmocka_unit_test_setup(proto_malformed_json_rejected, setup),
        cmocka_unit_test(proto_arg_int64_out_of_range_rejected),
    };
    return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
