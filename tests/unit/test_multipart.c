/*
 * Tests of the multipart/form-data parser (gateway/multipart.c). A
 * recorder turns the callbacks into text: one line per part start and
 * end, and one line with the part's data, its pieces joined and bytes
 * outside printable ASCII escaped, then "ok" or "error: MESSAGE". Fixed
 * bodies are compared with the text they must give. Every body, valid or
 * not, is also fed split at each position and byte by byte, and must give
 * the same text as when fed whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/multipart.h"

/* ---- the recorder ------------------------------------------------------- */

struct recorder {
    char *text;
    size_t len, cap;
    int in_data;      /* the last line is a data line, still open */
    const char *fail; /* part name whose part_begin fails, or NULL */
};

static void put(struct recorder *r, const char *data, size_t len)
{
    if (r->len + len + 1 > r->cap) {
        r->cap = (r->len + len + 1) * 2;
        r->text = realloc(r->text, r->cap);
        assert_non_null(r->text);
    }
    memcpy(r->text + r->len, data, len);
    r->len += len;
    r->text[r->len] = '\0';
}

static void putf(struct recorder *r, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(line));
    put(r, line, (size_t)n);
}

static void close_data(struct recorder *r)
{
    if (r->in_data)
        put(r, "\n", 1);
    r->in_data = 0;
}

static int on_begin(void *ctx, const struct multipart_part *part,
                    struct error *err)
{
    struct recorder *r = ctx;

    close_data(r);
    putf(r, "begin %d name=%s filename=%s type=%s\n", part->index, part->name,
         part->has_filename ? part->filename : "(none)", part->content_type);
    if (r->fail != NULL && strcmp(part->name, r->fail) == 0)
        return error_set(err, -EPERM, "field '%s' is not wanted", part->name);
    return 0;
}

static int on_data(void *ctx, const struct multipart_part *part,
                   const unsigned char *data, size_t len, struct error *err)
{
    struct recorder *r = ctx;

    (void)part;
    (void)err;
    assert_true(len > 0);
    if (!r->in_data)
        put(r, "data:", 5);
    r->in_data = 1;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\r')
            put(r, "\\r", 2);
        else if (data[i] == '\n')
            put(r, "\\n", 2);
        else if (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '\\')
            put(r, (const char *)&data[i], 1);
        else
            putf(r, "\\x%02x", data[i]);
    }
    return 0;
}

static int on_end(void *ctx, const struct multipart_part *part,
                  struct error *err)
{
    struct recorder *r = ctx;

    (void)err;
    close_data(r);
    putf(r, "end %d\n", part->index);
    return 0;
}

/* Parse body in pieces: each piece ends at one of the cuts, which are
 * ascending offsets, and the last piece at len. step > 0 feeds step bytes
 * at a time instead. Returns the recorded text (free it). */
static char *parse_pieces(const char *boundary, const char *body, size_t len,
                          const struct multipart_limits *limits,
                          const char *fail, const size_t *cuts, size_t ncuts,
                          size_t step)
{
    struct recorder r = {.fail = fail};
    struct multipart_callbacks cb = {on_begin, on_data, on_end, &r};
    struct multipart *mp = NULL;
    struct error err = {0};
    size_t at = 0, cut = 0;
    int rc;

    put(&r, "", 0);
    rc = multipart_create(boundary, limits, &cb, &mp, &err);
    if (rc != 0)
        fail_msg("multipart_create('%s') failed: %s", boundary, err.msg);
    while (rc == 0 && at < len) {
        size_t next = len;

        if (step > 0)
            next = at + step < len ? at + step : len;
        else if (cut < ncuts)
            next = cuts[cut++];
        rc = multipart_feed(mp, body + at, next - at, &err);
        at = next;
    }
    if (rc == 0)
        rc = multipart_finish(mp, &err);
    close_data(&r);
    if (rc == 0)
        putf(&r, "ok");
    else
        putf(&r, "error %d: %s", rc, err.msg);
    multipart_free(mp);
    return r.text;
}

static char *parse(const char *boundary, const char *body, size_t len)
{
    return parse_pieces(boundary, body, len, NULL, NULL, NULL, 0, 0);
}

/* Fail unless body gives expected, whole, split in two at every
 * position, and byte by byte. */
static void expect_parse(const char *boundary, const char *body, size_t len,
                         const struct multipart_limits *limits,
                         const char *expected)
{
    char *whole = parse_pieces(boundary, body, len, limits, NULL, NULL, 0, 0);

    if (strcmp(whole, expected) != 0)
        fail_msg("body fed whole gave\n%s\nexpected\n%s", whole, expected);
    for (size_t split = 0; split <= len; split++) {
        char *two =
            parse_pieces(boundary, body, len, limits, NULL, &split, 1, 0);
        if (strcmp(two, expected) != 0)
            fail_msg("body split at %zu gave\n%s\nexpected\n%s", split, two,
                     expected);
        free(two);
    }
    char *bytes = parse_pieces(boundary, body, len, limits, NULL, NULL, 0, 1);
    if (strcmp(bytes, expected) != 0)
        fail_msg("body fed byte by byte gave\n%s\nexpected\n%s", bytes,
                 expected);
    free(bytes);
    free(whole);
}

#define EXPECT(boundary, body, expected)                                       \
    expect_parse(boundary, body, sizeof(body) - 1, NULL, expected)

#define CD "Content-Disposition: form-data; "

/* ---- bodies that parse -------------------------------------------------- */

static void one_field(void **state)
{
    (void)state;
    EXPECT("B", "--B\r\n" CD "name=\"name\"\r\n\r\nshoes\r\n--B--\r\n",
           "begin 1 name=name filename=(none) type=\n"
           "data:shoes\n"
           "end 1\n"
           "ok");
}

static void file_and_fields(void **state)
{
    (void)state;
    EXPECT("----formdata-7a2",
           "------formdata-7a2\r\n" CD "name=\"name\"\r\n\r\nshoes\r\n"
           "------formdata-7a2\r\n" CD "name=\"task\"\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\ndetect\r\n"
           "------formdata-7a2\r\n" CD "name=\"file\"; filename=\"set.zip\"\r\n"
           "Content-Type: application/zip\r\n\r\n"
           "PK\x03\x04\x00\r\n\r\n\n--\r\x7f\xff"
           "\r\n------formdata-7a2--\r\n",
           "begin 1 name=name filename=(none) type=\n"
           "data:shoes\n"
           "end 1\n"
           "begin 2 name=task filename=(none) "
           "type=text/plain; charset=utf-8\n"
           "data:detect\n"
           "end 2\n"
           "begin 3 name=file filename=set.zip type=application/zip\n"
           "data:PK\\x03\\x04\\x00\\r\\n\\r\\n\\n--\\r\\x7f\\xff\n"
           "end 3\n"
           "ok");
}

static void quoted_boundary(void **state)
{
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    struct error err = {0};

    (void)state;
    assert_int_equal(multipart_boundary("multipart/form-data; boundary=\"a "
                                        "b:c=d?\"",
                                        boundary, sizeof(boundary), &err),
                     0);
    assert_string_equal(boundary, "a b:c=d?");
    assert_int_equal(multipart_boundary("Multipart/Form-Data;charset=utf-8;"
                                        " BOUNDARY=xyz ; x=\"1;2\"",
                                        boundary, sizeof(boundary), &err),
                     0);
    assert_string_equal(boundary, "xyz");
    assert_int_equal(multipart_boundary("multipart/form-data; boundary="
                                        "\"q\\\"\"",
                                        boundary, sizeof(boundary), &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "'\"'"));

    EXPECT("a b:c=d?",
           "--a b:c=d?\r\n" CD "name=\"x\"\r\n\r\n1\r\n--a b:c=d?--",
           "begin 1 name=x filename=(none) type=\n"
           "data:1\n"
           "end 1\n"
           "ok");
}

static void media_type_checked(void **state)
{
    (void)state;
    assert_true(multipart_is_form_data("multipart/form-data; boundary=x"));
    assert_true(multipart_is_form_data(" MULTIPART/FORM-DATA"));
    assert_true(multipart_is_form_data("multipart/form-data ;boundary=x"));
    assert_false(multipart_is_form_data("multipart/form-data2"));
    assert_false(multipart_is_form_data("multipart/mixed; boundary=x"));
    assert_false(multipart_is_form_data("application/zip"));
    assert_false(multipart_is_form_data(NULL));
    assert_true(multipart_media_type_is("application/zip", "application/zip"));
    assert_true(
        multipart_media_type_is("Application/ZIP ; name=x", "application/zip"));
    assert_false(
        multipart_media_type_is("application/zipx", "application/zip"));
    assert_false(multipart_media_type_is("application/zi", "application/zip"));
    assert_false(multipart_media_type_is(NULL, "application/zip"));
}

static void preamble_and_epilogue(void **state)
{
    (void)state;
    EXPECT("B",
           "This is a preamble.\r\n-B and --B are not boundaries,\r\n--b "
           "neither.\r\n--B\r\n" CD "name=\"a\"\r\n\r\n1\r\n"
           "--B--\r\nThis is the epilogue.\r\n--B\r\n",
           "begin 1 name=a filename=(none) type=\n"
           "data:1\n"
           "end 1\n"
           "ok");
}

static void preamble_without_line_end(void **state)
{
    (void)state;
    /* A preamble that ends on the delimiter's CRLF. */
    EXPECT("B", "junk\r\n--B\r\n" CD "name=\"a\"\r\n\r\n\r\n--B--",
           "begin 1 name=a filename=(none) type=\n"
           "end 1\n"
           "ok");
}

static void part_without_filename(void **state)
{
    (void)state;
    EXPECT("B",
           "--B\r\n" CD "name=\"a\"\r\n\r\nx\r\n"
           "--B\r\n" CD "name=\"b\"; filename=\"\"\r\n\r\ny\r\n"
           "--B\r\nCONTENT-DISPOSITION:FORM-DATA;NAME=c;FILENAME=\"d "
           "\\\"e\\\\\"\r\n"
           "\r\nz\r\n--B--",
           "begin 1 name=a filename=(none) type=\n"
           "data:x\n"
           "end 1\n"
           "begin 2 name=b filename= type=\n"
           "data:y\n"
           "end 2\n"
           "begin 3 name=c filename=d \"e\\ type=\n"
           "data:z\n"
           "end 3\n"
           "ok");
}

static void boundary_like_text_in_data(void **state)
{
    (void)state;
    EXPECT("XyZ",
           "--XyZ\r\n" CD "name=\"f\"\r\n\r\n"
           "--XyZ\r\n--Xy\r\n--X\r\r\n\r\n--xyz\r\n-XyZ \r\n\r-\r\n--\r\n"
           "\r\n--XyZ--",
           "begin 1 name=f filename=(none) type=\n"
           "data:--XyZ\\r\\n--Xy\\r\\n--X\\r\\r\\n\\r\\n--xyz\\r\\n-XyZ "
           "\\r\\n\\r-\\r\\n--\\r\\n\n"
           "end 1\n"
           "ok");
}

static void empty_part(void **state)
{
    (void)state;
    EXPECT("B",
           "--B\r\n" CD "name=\"e\"\r\n\r\n\r\n--B\r\n" CD
           "name=\"f\"; filename=\"x.zip\"\r\n\r\n\r\n--B--\r\n",
           "begin 1 name=e filename=(none) type=\n"
           "end 1\n"
           "begin 2 name=f filename=x.zip type=\n"
           "end 2\n"
           "ok");
}

static void padding_after_boundary(void **state)
{
    (void)state;
    EXPECT("B",
           "--B \t \r\n" CD "name=\"a\"\r\n\r\n1\r\n--B\t\r\n" CD
           "name=\"b\"\r\nX-Other: ignored\r\n"
           "Content-Transfer-Encoding: binary\r\n\r\n2\r\n--B-- \t",
           "begin 1 name=a filename=(none) type=\n"
           "data:1\n"
           "end 1\n"
           "begin 2 name=b filename=(none) type=\n"
           "data:2\n"
           "end 2\n"
           "ok");
}

static void no_parts_accepted(void **state)
{
    (void)state;
    EXPECT("B", "--B--\r\n", "ok");
    EXPECT("B", "preamble\r\n--B--", "ok");
}

static void epilogue_at_limit_accepted(void **state)
{
    static const char body[] = "--B\r\n" CD "name=\"a\"\r\n\r\n\r\n--B--\r\n"
                               "0123456789abcdef";
    struct multipart_limits limits = {0, 16};

    (void)state;
    expect_parse("B", body, sizeof(body) - 1, &limits,
                 "begin 1 name=a filename=(none) type=\n"
                 "end 1\n"
                 "ok");
}

/* Part data of 1 MiB fed in pieces of 64 KiB reaches the callback as it
 * arrives, and whole. */
static void large_part_streams(void **state)
{
    enum { DATA_LEN = 1 << 20, PIECE = 65536 };
    static const char head[] = "--B\r\n" CD "name=\"f\"\r\n\r\n";
    static const char tail[] = "\r\n--B--\r\n";
    size_t len = sizeof(head) - 1 + DATA_LEN + sizeof(tail) - 1;
    char *body = malloc(len);
    struct recorder r = {0};
    struct multipart_callbacks cb = {on_begin, on_data, on_end, &r};
    struct multipart *mp = NULL;
    struct error err = {0};

    (void)state;
    assert_non_null(body);
    memcpy(body, head, sizeof(head) - 1);
    for (size_t i = 0; i < DATA_LEN; i++)
        body[sizeof(head) - 1 + i] = "ab\r\n-B"[i % 6];
    memcpy(body + sizeof(head) - 1 + DATA_LEN, tail, sizeof(tail) - 1);

    assert_int_equal(multipart_create("B", NULL, &cb, &mp, &err), 0);
    assert_int_equal(multipart_feed(mp, body, PIECE, &err), 0);
    /* All but the header and a possible delimiter start came out. */
    size_t first = r.len;
    assert_true(first > PIECE);
    for (size_t at = PIECE; at < len; at += PIECE) {
        size_t n = len - at < PIECE ? len - at : PIECE;
        assert_int_equal(multipart_feed(mp, body + at, n, &err), 0);
    }
    assert_int_equal(multipart_finish(mp, &err), 0);
    close_data(&r);
    /* "ab\r\n-B" is 8 characters escaped, and "ab\r\n" of the last
     * cycle 6. */
    size_t escaped = DATA_LEN / 6 * 8 + 6;
    char *data = strstr(r.text, "data:");
    assert_non_null(data);
    assert_int_equal(strlen(data), 5 + escaped + strlen("\nend 1\n"));
    assert_string_equal(data + 5 + escaped, "\nend 1\n");
    multipart_free(mp);
    free(r.text);
    free(body);
}

/* ---- rejections --------------------------------------------------------- */

static void expect_boundary_error(const char *content_type, const char *message)
{
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    struct error err = {0};
    int rc = multipart_boundary(content_type, boundary, sizeof(boundary), &err);

    if (rc != -EINVAL)
        fail_msg("Content-Type '%s': expected -EINVAL, got %d", content_type,
                 rc);
    if (strstr(err.msg, message) == NULL)
        fail_msg("Content-Type '%s': the error '%s' does not contain '%s'",
                 content_type, err.msg, message);
}

static void invalid_boundary_rejected(void **state)
{
    char longest[200];
    struct multipart *mp = NULL;
    struct error err = {0};

    (void)state;
    expect_boundary_error(NULL, "no Content-Type");
    expect_boundary_error("application/zip", "not multipart/form-data");
    expect_boundary_error("multipart/form-data", "no boundary parameter");
    expect_boundary_error("multipart/form-data; charset=utf-8",
                          "no boundary parameter");
    expect_boundary_error("multipart/form-data; boundary=\"\"",
                          "has 0 characters");
    expect_boundary_error("multipart/form-data; boundary=", "empty value");
    expect_boundary_error("multipart/form-data; boundary=a@b", "contains '@'");
    expect_boundary_error("multipart/form-data; boundary=\"ab \"",
                          "ends with a space");
    expect_boundary_error("multipart/form-data; boundary=a; boundary=b",
                          "two boundary parameters");
    expect_boundary_error("multipart/form-data; boundary=\"ab",
                          "no closing quote");
    expect_boundary_error("multipart/form-data boundary=ab",
                          "not multipart/form-data");
    expect_boundary_error("multipart/form-data; boundary", "no '=' and value");

    /* 70 characters are allowed, 71 are not. */
    char bees[72];
    memset(bees, 'b', sizeof(bees) - 1);
    bees[71] = '\0';
    snprintf(longest, sizeof(longest), "multipart/form-data; boundary=%.70s",
             bees);
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    assert_int_equal(
        multipart_boundary(longest, boundary, sizeof(boundary), &err), 0);
    assert_int_equal(strlen(boundary), 70);
    snprintf(longest, sizeof(longest), "multipart/form-data; boundary=\"%s\"",
             bees);
    expect_boundary_error(longest, "has 71 characters; RFC 2046 allows 1 to "
                                   "70");

    assert_int_equal(multipart_create("a\rb", NULL, NULL, &mp, &err), -EINVAL);
    assert_null(mp);
    assert_non_null(strstr(err.msg, "0x0d"));
    assert_int_equal(multipart_create("", NULL, NULL, &mp, &err), -EINVAL);
    assert_null(mp);
}

struct rejection {
    const char *case_name;
    const char *body;
    const char *message;
};

/* Fail unless each body gets -EINVAL with its message, fed whole, split
 * at every position and byte by byte. */
static void expect_rejections(const struct rejection *cases, size_t n,
                              const struct multipart_limits *limits)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(cases[i].body);
        char *text =
            parse_pieces("B", cases[i].body, len, limits, NULL, NULL, 0, 0);
        char *line = strstr(text, "error ");

        if (line == NULL || strncmp(line, "error -22: ", 11) != 0)
            fail_msg("%s: expected error -22, got\n%s", cases[i].case_name,
                     text);
        if (strstr(line, cases[i].message) == NULL)
            fail_msg("%s: the error '%s' does not contain '%s'",
                     cases[i].case_name, line, cases[i].message);
        expect_parse("B", cases[i].body, len, limits, text);
        free(text);
    }
}

static void malformed_bodies_rejected(void **state)
{
    static const struct rejection cases[] = {
        {"missing disposition", "--B\r\nContent-Type: text/plain\r\n\r\nx",
         "part 1 has no Content-Disposition header"},
        {"no headers", "--B\r\n\r\nx\r\n--B--", "part 1 has no Content-"},
        {"disposition without name",
         "--B\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\n",
         "part 1 has no name in its Content-Disposition"},
        {"empty name", "--B\r\n" CD "name=\"\"\r\n\r\n", "part 1 has no name"},
        {"attachment",
         "--B\r\nContent-Disposition: attachment; "
         "name=a\r\n\r\n",
         "it must be form-data"},
        {"form-data prefix",
         "--B\r\nContent-Disposition: form-datax; "
         "name=a\r\n\r\n",
         "it must be form-data"},
        {"unclosed quote", "--B\r\n" CD "name=\"a\r\n\r\n",
         "parameter 'name' has no closing quote"},
        {"no equals", "--B\r\n" CD "name\r\n\r\n", "has no '=' and value"},
        {"garbage after value", "--B\r\n" CD "name=\"a\"x\r\n\r\n",
         "has 'x' where ';' was expected"},
        {"two names", "--B\r\n" CD "name=a; name=b\r\n\r\n",
         "part 1 has two name parameters"},
        {"two filenames", "--B\r\n" CD "name=a; filename=b; filename=c\r\n",
         "part 1 has two filename parameters"},
        {"two dispositions", "--B\r\n" CD "name=a\r\n" CD "name=b\r\n\r\n",
         "two Content-Disposition headers"},
        {"two content types",
         "--B\r\n" CD "name=a\r\nContent-Type: a/b\r\nContent-Type: "
         "c/d\r\n\r\n",
         "two Content-Type headers"},
        {"no colon", "--B\r\n" CD "name=a\r\nNoColonHere\r\n\r\n",
         "part 1 has a malformed header line 'NoColonHere'"},
        {"space before colon",
         "--B\r\nContent-Disposition : form-data; "
         "name=a\r\n\r\n",
         "malformed header line"},
        {"empty header name", "--B\r\n: x\r\n\r\n", "malformed header line"},
        {"folded line", "--B\r\n" CD "name=a\r\nX-A: 1\r\n 2\r\n\r\n",
         "part 1 has a folded header line"},
        {"control character", "--B\r\n" CD "name=a\x01\r\n\r\n",
         "control character 0x01"},
        {"CR inside header", "--B\r\n" CD "name=a\rb\r\n\r\n",
         "control character 0x0d"},
        {"bare LF in headers", "--B\r\n" CD "name=a\n\r\n",
         "ends with a bare LF; lines must end with CRLF"},
        {"bare LF body", "--B\n" CD "name=a\n\nx\n--B--\n",
         "a boundary line ends with a bare LF"},
        {"LF body with preamble", "pre\n--B\n" CD "name=a\n\nx\n--B--\n",
         "before its first boundary '--B'; check the boundary and that "
         "lines end with CRLF"},
        {"CR without LF after boundary", "--B\rx",
         "a boundary line has a CR without LF"},
        {"base64 encoding",
         "--B\r\n" CD "name=a\r\nContent-Transfer-Encoding: base64\r\n\r\n",
         "Content-Transfer-Encoding 'base64', which is not supported"},
        {"long content type",
         "--B\r\n" CD "name=a\r\nContent-Type: "
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "\r\n\r\n",
         "part 1 has a Content-Type longer than 255 bytes"},
        {"boundary then text", "--B\r\n" CD "name=a\r\n\r\n1\r\n--Bx\r\n",
         "a boundary is followed by 'x'"},
        {"boundary then one dash", "--B-x",
         "a boundary is followed by '-' and 'x'"},
        {"text after closing boundary",
         "--B\r\n" CD "name=a\r\n\r\n1\r\n--B--x",
         "the closing boundary is followed by 'x'"},
        {"bare LF after closing boundary", "--B--\n",
         "the closing boundary line ends with a bare LF"},
        {"CR without LF at the end", "--B--\r",
         "the closing boundary line has a CR without LF"},
        {"CR then text after closing boundary", "--B--\rx",
         "the closing boundary line has a CR without LF"},
        {"ends in data", "--B\r\n" CD "name=a\r\n\r\npartial\r\n--",
         "the body ended in part 1, before the closing boundary '--B--'"},
        {"ends in headers", "--B\r\n" CD "name=a\r\n",
         "the body ended in part 1, before the closing boundary"},
        {"ends after boundary", "--B\r\n" CD "name=a\r\n\r\n1\r\n--B",
         "the body ended after part 1, before the closing boundary"},
        {"ends after first boundary", "pre\r\n--B \r",
         "the body ended after its first boundary, before the closing "
         "boundary '--B--'"},
        {"ends in preamble", "no boundary here",
         "the body ended before its first boundary"},
        {"empty body", "", "the body ended before its first boundary"},
        {"epilogue too long",
         "--B\r\n" CD "name=a\r\n\r\n\r\n--B--\r\n0123456789abcdefX",
         "the body continues past the closing boundary; at most 16 bytes "
         "may follow it"},
        {"too many parts",
         "--B\r\n" CD "name=a\r\n\r\n\r\n--B\r\n" CD "name=b\r\n\r\n\r\n"
         "--B\r\n" CD "name=c\r\n\r\n\r\n--B--",
         "the body has more than 2 parts"},
    };
    struct multipart_limits limits = {2, 16};

    (void)state;
    expect_rejections(cases, sizeof(cases) / sizeof(cases[0]), &limits);
}

static void long_headers_rejected(void **state)
{
    size_t len = 5 + MULTIPART_HEADERS_MAX + 64;
    char *body = malloc(len + 1);
    char *text;

    (void)state;
    assert_non_null(body);
    /* One header line of exactly MULTIPART_HEADERS_MAX bytes with its
     * CRLF and blank line is accepted; one byte more is not. */
    strcpy(body, "--B\r\n" CD "name=a\r\nX-Long: ");
    size_t used = strlen(body);
    size_t fill = 5 + MULTIPART_HEADERS_MAX - 4 - used;
    memset(body + used, 'x', fill);
    strcpy(body + used + fill, "\r\n\r\n\r\n--B--");
    text = parse("B", body, strlen(body));
    assert_string_equal(text, "begin 1 name=a filename=(none) type=\n"
                              "end 1\nok");
    free(text);

    memset(body + used, 'x', fill + 1);
    strcpy(body + used + fill + 1, "\r\n\r\n\r\n--B--");
    text = parse("B", body, strlen(body));
    assert_string_equal(text, "error -22: the headers of part 1 are longer "
                              "than 8192 bytes");
    free(text);

    /* A part name over MULTIPART_NAME_MAX bytes. */
    strcpy(body, "--B\r\n" CD "name=");
    used = strlen(body);
    memset(body + used, 'n', MULTIPART_NAME_MAX + 1);
    strcpy(body + used + MULTIPART_NAME_MAX + 1, "\r\n\r\n");
    text = parse("B", body, strlen(body));
    assert_string_equal(text, "error -22: part 1 has a name longer than 255 "
                              "bytes");
    free(text);
    free(body);

    /* A NUL byte in a header line. */
    static const char nul[] = "--B\r\n" CD "name=a\0b\r\n\r\n--B--";
    text = parse("B", nul, sizeof(nul) - 1);
    assert_string_equal(text, "error -22: part 1 has a header line with the "
                              "control character 0x00");
    free(text);
}

/* A callback's error stops the parse and comes back from every later
 * call, with its own code and message. */
static void callback_error_sticks(void **state)
{
    static const char body[] = "--B\r\n" CD "name=a\r\n\r\n1\r\n--B\r\n" CD
                               "name=bad\r\n\r\n2\r\n--B--";
    struct recorder r = {.fail = "bad"};
    struct multipart_callbacks cb = {on_begin, on_data, on_end, &r};
    struct multipart *mp = NULL;
    struct error err = {0};

    (void)state;
    assert_int_equal(multipart_create("B", NULL, &cb, &mp, &err), 0);
    assert_int_equal(multipart_feed(mp, body, sizeof(body) - 1, &err), -EPERM);
    assert_string_equal(err.msg, "field 'bad' is not wanted");
    memset(&err, 0, sizeof(err));
    assert_int_equal(multipart_feed(mp, "x", 1, &err), -EPERM);
    assert_string_equal(err.msg, "field 'bad' is not wanted");
    assert_int_equal(multipart_finish(mp, &err), -EPERM);
    close_data(&r);
    assert_string_equal(r.text, "begin 1 name=a filename=(none) type=\n"
                                "data:1\nend 1\n"
                                "begin 2 name=bad filename=(none) type=\n");
    multipart_free(mp);
    free(r.text);
}

static void feed_after_finish_rejected(void **state)
{
    static const char body[] = "--B--";
    struct multipart *mp = NULL;
    struct error err = {0};

    (void)state;
    assert_int_equal(multipart_create("B", NULL, NULL, &mp, &err), 0);
    assert_int_equal(multipart_feed(mp, body, sizeof(body) - 1, &err), 0);
    assert_int_equal(multipart_finish(mp, &err), 0);
    assert_int_equal(multipart_finish(mp, &err), 0);
    assert_int_equal(multipart_feed(mp, "x", 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "after multipart_finish"));
    multipart_free(mp);
}

/* ---- splits ------------------------------------------------------------- */

/* Split in three at every pair of positions, for one body with a
 * delimiter near each piece boundary. */
static void three_pieces_match_whole(void **state)
{
    static const char body[] = "x\r\n--Bo\r\n--Bound\r\n" CD
                               "name=\"f\"\r\n\r\n\r\n--Boun\r\r\n--Bound--";
    size_t len = sizeof(body) - 1;
    char *whole = parse("Bound", body, len);

    (void)state;
    assert_string_equal(whole, "begin 1 name=f filename=(none) type=\n"
                               "data:\\r\\n--Boun\\r\n"
                               "end 1\nok");
    for (size_t a = 0; a <= len; a++)
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = {a, b};
            char *text =
                parse_pieces("Bound", body, len, NULL, NULL, cuts, 2, 0);
            if (strcmp(text, whole) != 0)
                fail_msg("split at %zu and %zu gave\n%s\nexpected\n%s", a, b,
                         text, whole);
            free(text);
        }
    free(whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_field),
        cmocka_unit_test(file_and_fields),
        cmocka_unit_test(quoted_boundary),
        cmocka_unit_test(media_type_checked),
        cmocka_unit_test(preamble_and_epilogue),
        cmocka_unit_test(preamble_without_line_end),
        cmocka_unit_test(part_without_filename),
        cmocka_unit_test(boundary_like_text_in_data),
        cmocka_unit_test(empty_part),
        cmocka_unit_test(padding_after_boundary),
        cmocka_unit_test(no_parts_accepted),
        cmocka_unit_test(epilogue_at_limit_accepted),
        cmocka_unit_test(large_part_streams),
        cmocka_unit_test(invalid_boundary_rejected),
        cmocka_unit_test(malformed_bodies_rejected),
        cmocka_unit_test(long_headers_rejected),
        cmocka_unit_test(callback_error_sticks),
        cmocka_unit_test(feed_after_finish_rejected),
        cmocka_unit_test(three_pieces_match_whole),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
