/*
 * libFuzzer target for the multipart/form-data parser (gateway/multipart.c).
 * The input is a Content-Type header value up to its first newline, then
 * the body. Without a newline the whole input is the header value and the
 * body is empty. The target reads the boundary from the header value,
 * cut at its first NUL as a C string would be, with multipart_boundary.
 * When that succeeds, it parses the body three times: whole, split in two
 * at a position taken from a hash of the input, and byte by byte. A
 * recorder turns the callbacks into text, with the data of each part
 * joined whatever its pieces, and the target aborts when the three texts
 * differ.
 *
 * The same hash sets the parser's limits: 1 to 8 parts and 0 to 63 bytes
 * after the closing boundary, so that inputs reach both limits. A part
 * named "fail" makes the part_begin callback return an error, which must
 * stop the parse the same way in all three runs.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

struct recorder {
    char *text;
    size_t len, cap;
    int in_part; /* between part_begin and part_end */
    int in_data; /* the last line is a data line, still open */
    int parts;   /* part_begin calls */
};

static void put(struct recorder *r, const void *data, size_t len)
{
    if (r->len + len + 1 > r->cap) {
        r->cap = (r->len + len + 1) * 2;
        r->text = realloc(r->text, r->cap);
        if (r->text == NULL)
            abort();
    }
    memcpy(r->text + r->len, data, len);
    r->len += len;
    r->text[r->len] = '\0';
}

static void put_line(struct recorder *r, const char *label,
                     const struct multipart_part *part)
{
    char line[64];

    if (r->in_data)
        put(r, "\n", 1);
    r->in_data = 0;
    snprintf(line, sizeof(line), "%s %d\n", label, part->index);
    put(r, line, strlen(line));
}

static int on_begin(void *ctx, const struct multipart_part *part,
                    struct error *err)
{
    struct recorder *r = ctx;

    /* Parts begin in order, one at a time, and each has a name. */
    if (r->in_part || part->index != ++r->parts || part->name[0] == '\0')
        abort();
    r->in_part = 1;
    put_line(r, "begin", part);
    put(r, part->name, strlen(part->name) + 1);
    put(r, part->filename, strlen(part->filename) + 1);
    put(r, part->has_filename ? "1" : "0", 1);
    put(r, part->content_type, strlen(part->content_type) + 1);
    if (strcmp(part->name, "fail") == 0)
        return error_set(err, -EPERM, "part %d is named fail", part->index);
    return 0;
}

static int on_data(void *ctx, const struct multipart_part *part,
                   const unsigned char *data, size_t len, struct error *err)
{
    struct recorder *r = ctx;

    (void)part;
    (void)err;
    if (!r->in_part || len == 0)
        abort();
    if (!r->in_data)
        put(r, "data ", 5);
    r->in_data = 1;
    put(r, data, len);
    return 0;
}

static int on_end(void *ctx, const struct multipart_part *part,
                  struct error *err)
{
    struct recorder *r = ctx;

    (void)err;
    if (!r->in_part || part->index != r->parts)
        abort();
    r->in_part = 0;
    put_line(r, "end", part);
    return 0;
}

/* Parse body in pieces of step bytes (0: whole) after a first piece of
 * first bytes, and return the recorded text (free it), which may contain
 * NUL bytes, with its length in *text_len. */
static char *parse(const char *boundary, const struct multipart_limits *lim,
                   const uint8_t *body, size_t len, size_t first, size_t step,
                   size_t *text_len)
{
    struct recorder r = {0};
    struct multipart_callbacks cb = {on_begin, on_data, on_end, &r};
    struct multipart *mp = NULL;
    struct error err = {0};
    char result[ERROR_MSG_MAX + 32];
    size_t at = 0;
    int rc;

    put(&r, "", 0);
    if (multipart_create(boundary, lim, &cb, &mp, &err) != 0)
        abort(); /* multipart_boundary accepted it */
    rc = multipart_feed(mp, body, first, &err);
    at = first;
    while (rc == 0 && at < len) {
        size_t n = step == 0 || len - at < step ? len - at : step;

        rc = multipart_feed(mp, body + at, n, &err);
        at += n;
    }
    if (rc == 0)
        rc = multipart_finish(mp, &err);
    /* The message must not be empty, and a later call gives it again. */
    if (rc != 0) {
        struct error again = {0};

        if (err.msg[0] == '\0' || multipart_finish(mp, &again) != rc ||
            strcmp(again.msg, err.msg) != 0)
            abort();
    }
    multipart_free(mp);
    snprintf(result, sizeof(result), "\nresult %d %s", rc, err.msg);
    put(&r, result, strlen(result));
    *text_len = r.len;
    return r.text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *newline = memchr(data, '\n', size);
    size_t header_len = newline ? (size_t)(newline - data) : size;
    const uint8_t *body = newline ? newline + 1 : data + size;
    size_t body_len = (size_t)(data + size - body);
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    struct multipart_limits limits;
    struct error err = {0};
    uint32_t hash = 2166136261u;
    char *header, *whole, *split, *bytes;
    size_t whole_len, split_len, bytes_len;

    header = malloc(header_len + 1);
    if (header == NULL)
        return 0;
    memcpy(header, data, header_len);
    header[header_len] = '\0';
    if (multipart_boundary(header, boundary, sizeof(boundary), &err) != 0) {
        free(header);
        if (err.msg[0] == '\0')
            abort();
        return 0;
    }
    free(header);
    if (strlen(boundary) < 1 || strlen(boundary) > MULTIPART_BOUNDARY_MAX)
        abort();

    /* FNV-1a of the whole input. */
    for (size_t i = 0; i < size; i++)
        hash = (hash ^ data[i]) * 16777619u;
    limits.parts_max = 1 + (int)(hash % 8);
    limits.epilogue_max = (hash >> 3) % 64;

    whole = parse(boundary, &limits, body, body_len, 0, 0, &whole_len);
    split = parse(boundary, &limits, body, body_len,
                  (hash >> 9) % (body_len + 1), 0, &split_len);
    bytes = parse(boundary, &limits, body, body_len, 0, 1, &bytes_len);
    if (split_len != whole_len || memcmp(split, whole, whole_len) != 0)
        abort();
    if (bytes_len != whole_len || memcmp(bytes, whole, whole_len) != 0)
        abort();
    free(whole);
    free(split);
    free(bytes);
    return 0;
}
