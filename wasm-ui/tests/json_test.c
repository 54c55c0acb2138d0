/*
 * Native tests of the UI's JSON reader and quoting (wasm-ui/src/json.c),
 * run under AddressSanitizer and UBSan, because the browser build has no
 * sanitizers. Build and run:
 *
 *   cc -std=c11 -Wall -Wextra -Werror -fsanitize=address,undefined \
 *       -Iwasm-ui/src wasm-ui/tests/json_test.c wasm-ui/src/json.c \
 *       -o /tmp/json_test && /tmp/json_test
 *
 * It prints "json: N passed, N failed" and exits non-zero on a failure.
 */
#include <stdio.h>
#include <string.h>

#include "json.h"

static int passed, failed;

static void check(const char *name, int ok)
{
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL %s\n", name);
    }
}

static void test_reply_shapes(void)
{
    struct json *v = json_parse(
        "{\"id\":7,\"name\":\"m\\u00e9\",\"args\":{\"imgsz\":16},"
        "\"session\":null,\"ok\":true,\"list\":[1,-2.5e1,\"x\"],"
        "\"big\":25000000}");

    check("object parses", v != NULL);
    check("int member", json_int(json_get(v, "id"), 0) == 7);
    check("escaped string decoded",
          strcmp(json_string(json_get(v, "name"), ""), "m\xc3\xa9") == 0);
    check("nested member",
          json_int(json_get(json_get(v, "args"), "imgsz"), 0) == 16);
    check("null member", json_get(v, "session")->type == JSON_NULL);
    check("true member", json_get(v, "ok")->type == JSON_TRUE);
    check("array count", json_get(v, "list")->count == 3);
    check("negative exponent number",
          json_number(json_at(json_get(v, "list"), 1), 0) == -25.0);
    check("array index past end",
          json_at(json_get(v, "list"), 3) == NULL);
    check("micro-dollars exact",
          json_int(json_get(v, "big"), 0) == 25000000);
    check("missing key fallback",
          json_int(json_get(v, "absent"), -1) == -1);
    check("wrong type fallback",
          strcmp(json_string(json_get(v, "id"), "fb"), "fb") == 0);
    check("lookup on NULL", json_get(NULL, "x") == NULL);
    json_free(v);
}

static void test_invalid(void)
{
    static const char *const bad[] = {
        "", "{", "{\"a\"}", "{\"a\":1,}", "[1,]", "[1 2]", "tru", "nul",
        "\"abc", "\"\\x\"", "\"\\u12\"", "+1", "{\"a\":1} x", "\"a\nb\"",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
        "[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        struct json *v = json_parse(bad[i]);

        if (v != NULL)
            printf("accepted: %s\n", bad[i]);
        check("invalid text rejected", v == NULL);
        json_free(v);
    }
    check("NULL text rejected", json_parse(NULL) == NULL);
}

static void test_surrogates(void)
{
    struct json *v = json_parse("[\"\\ud83d\\ude00\",\"\\ud800x\"]");

    check("surrogate pair parses", v != NULL);
    check("surrogate pair to UTF-8",
          strcmp(json_string(json_at(v, 0), ""), "\xf0\x9f\x98\x80") == 0);
    check("lone surrogate replaced",
          strcmp(json_string(json_at(v, 1), ""), "\xef\xbf\xbdx") == 0);
    json_free(v);
}

static void test_quote(void)
{
    char buf[64], small[6];
    struct json *back;
    size_t n;

    n = json_quote("a\"b\\c\n\x01", buf, sizeof(buf));
    check("quote escapes",
          strcmp(buf, "\"a\\\"b\\\\c\\u000a\\u0001\"") == 0);
    check("quote length", n == strlen(buf));
    back = json_parse(buf);
    check("quote round trip",
          strcmp(json_string(back, ""), "a\"b\\c\n\x01") == 0);
    json_free(back);
    n = json_quote("abcdefgh", small, sizeof(small));
    check("quote truncates", strcmp(small, "\"abcd") == 0);
    check("quote returns needed length", n == 10);
}

int main(void)
{
    test_reply_shapes();
    test_invalid();
    test_surrogates();
    test_quote();
    printf("json: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
