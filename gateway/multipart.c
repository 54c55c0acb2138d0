/*
 * The multipart/form-data parser of multipart.h, a state machine that
 * takes one byte or one run of bytes at a time.
 *
 * Part data and the preamble are searched for the delimiter CRLF "--"
 * boundary. The body is read as if it started with a CRLF, so a first
 * boundary at the very start of the body is found like any other. The
 * delimiter's first byte is CR, and no later byte of it is a CR, because
 * a boundary has none. So after a mismatch no suffix of the bytes matched
 * so far can start a new match, and the search goes on at the byte that
 * did not match. The bytes matched so far equal the delimiter's prefix,
 * so bytes withheld at the end of one piece are passed on from the
 * delimiter itself when the next piece shows that they were data. No
 * part data is ever copied.
 *
 * Header lines are collected one at a time in a buffer of
 * MULTIPART_HEADERS_MAX bytes, which also bounds the part's whole header
 * section.
 */
#include "multipart.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum multipart_state {
    MP_PREAMBLE,       /* before the first delimiter */
    MP_AFTER_BOUNDARY, /* just after a delimiter */
    MP_CLOSE_DASH,     /* one '-' after a delimiter */
    MP_PADDING,        /* spaces or tabs after a delimiter */
    MP_PADDING_LF,     /* the CR that ends a delimiter's line */
    MP_HEADERS,        /* a part's header lines */
    MP_DATA,           /* a part's data */
    MP_CLOSE_PADDING,  /* after the closing delimiter's "--" */
    MP_CLOSE_LF,       /* the CR that ends the closing delimiter's line */
    MP_EPILOGUE,       /* after the closing delimiter's line */
    MP_FINISHED,       /* multipart_finish succeeded */
    MP_FAILED,
};

struct multipart {
    enum multipart_state state;
    struct multipart_limits limits;
    struct multipart_callbacks callbacks;
    /* CRLF "--" boundary. */
    char delimiter[4 + MULTIPART_BOUNDARY_MAX + 1];
    size_t delimiter_len;
    /* Bytes of the delimiter matched so far, and how many of those came
     * in earlier pieces: those are withheld, not yet passed on. */
    size_t matched;
    size_t withheld;
    struct multipart_part part;
    int parts;
    int has_disposition, has_type;
    size_t headers_len; /* bytes of the current part's header section */
    size_t line_len;
    size_t epilogue_len;
    struct error error; /* the error of MP_FAILED */
    char line[MULTIPART_HEADERS_MAX];
};

/* ---- text helpers ------------------------------------------------------- */

static int is_space(int c)
{
    return c == ' ' || c == '\t';
}

/* RFC 7230 tchar: the characters of a token. */
static int is_token_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 2046 bchars, the characters of a boundary. */
static int is_boundary_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("'()+_,-./:=? ", c) != NULL);
}

/* Copy at most 40 bytes of text into out for a message, each byte outside
 * printable ASCII as '?'. */
static const char *printable(const char *text, size_t len, char out[48])
{
    size_t n = len < 40 ? len : 40;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    strcpy(out + n, len > n ? "..." : "");
    return out;
}

/* The byte c for a message: 'c', or its hex code when not printable. */
static const char *byte_text(int c, char out[8])
{
    if (c > 0x20 && c < 0x7f)
        snprintf(out, 8, "'%c'", c);
    else
        snprintf(out, 8, "0x%02x", c);
    return out;
}

static const char *skip_space(const char *p)
{
    while (is_space((unsigned char)*p))
        p++;
    return p;
}

int multipart_media_type_is(const char *value, const char *type)
{
    size_t n = strlen(type);

    if (value == NULL)
        return 0;
    value = skip_space(value);
    if (strncasecmp(value, type, n) != 0)
        return 0;
    value = skip_space(value + n);
    return *value == '\0' || *value == ';';
}

/* ---- header parameters -------------------------------------------------- */

/* Read the next "; name=value" of a header value at *cursor into name and
 * value, unquoting a quoted string. Returns 1 with *cursor moved past it,
 * 0 at the end of the value, or -EINVAL with reason filled. The header's
 * name, what, starts the reason. */
static int param_next(const char **cursor, char *name, size_t name_len,
                      char *value, size_t value_len, const char *what,
                      char *reason, size_t reason_len)
{
    const char *p = skip_space(*cursor);
    size_t n = 0;

    if (*p == '\0')
        return 0;
    if (*p != ';') {
        snprintf(reason, reason_len, "%s has '%c' where ';' was expected", what,
                 *p);
        return -EINVAL;
    }
    p = skip_space(p + 1);
    if (*p == '\0') /* a trailing ';' */
        return 0;
    while (is_token_char((unsigned char)*p) && n + 1 < name_len)
        name[n++] = *p++;
    name[n] = '\0';
    if (n == 0 || is_token_char((unsigned char)*p)) {
        snprintf(reason, reason_len, "%s has a parameter with an invalid name",
                 what);
        return -EINVAL;
    }
    p = skip_space(p);
    if (*p != '=') {
        snprintf(reason, reason_len, "%s parameter '%s' has no '=' and value",
                 what, name);
        return -EINVAL;
    }
    p = skip_space(p + 1);
    n = 0;
    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            if (*p == '\\' && p[1] != '\0')
                p++;
            if (*p == '\0') {
                snprintf(reason, reason_len,
                         "%s parameter '%s' has no closing quote", what, name);
                return -EINVAL;
            }
            if (n + 1 >= value_len)
                goto too_long;
            value[n++] = *p;
        }
        p++;
    } else {
        while (*p != '\0' && *p != ';' && *p != '"' &&
               !is_space((unsigned char)*p)) {
            if (n + 1 >= value_len)
                goto too_long;
            value[n++] = *p++;
        }
        if (n == 0) {
            snprintf(reason, reason_len, "%s parameter '%s' has an empty value",
                     what, name);
            return -EINVAL;
        }
    }
    value[n] = '\0';
    *cursor = p;
    return 1;

too_long:
    snprintf(reason, reason_len, "%s parameter '%s' is longer than %zu bytes",
             what, name, value_len - 1);
    return -EINVAL;
}

/* ---- boundary ----------------------------------------------------------- */

/* 0 when boundary is valid under RFC 2046, else -EINVAL with reason. */
static int boundary_check(const char *boundary, char *reason, size_t reason_len)
{
    size_t len = strlen(boundary);

    if (len == 0 || len > MULTIPART_BOUNDARY_MAX) {
        snprintf(reason, reason_len,
                 "the boundary has %zu characters; RFC 2046 allows 1 to %d",
                 len, MULTIPART_BOUNDARY_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        char text[8];

        if (!is_boundary_char((unsigned char)boundary[i])) {
            snprintf(reason, reason_len,
                     "the boundary contains %s, which RFC 2046 does not "
                     "allow; use letters, digits and '()+_,-./:=?",
                     byte_text((unsigned char)boundary[i], text));
            return -EINVAL;
        }
    }
    if (boundary[len - 1] == ' ') {
        snprintf(reason, reason_len,
                 "the boundary ends with a space, which RFC "
                 "2046 does not allow");
        return -EINVAL;
    }
    return 0;
}

int multipart_is_form_data(const char *content_type)
{
    return multipart_media_type_is(content_type, "multipart/form-data");
}

int multipart_boundary(const char *content_type, char *out, size_t len,
                       struct error *err)
{
    char name[32], value[256], reason[256], text[48];
    const char *p;
    int found = 0, rc;

    if (content_type == NULL)
        return error_set(err, -EINVAL,
                         "the request has no Content-Type; send "
                         "multipart/form-data with a boundary");
    if (!multipart_is_form_data(content_type))
        return error_set(err, -EINVAL,
                         "Content-Type '%s' is not multipart/form-data",
                         printable(content_type, strlen(content_type), text));
    p = strchr(content_type, ';');
    p = p != NULL ? p : "";
    while ((rc = param_next(&p, name, sizeof(name), value, sizeof(value),
                            "Content-Type", reason, sizeof(reason))) == 1) {
        if (strcasecmp(name, "boundary") != 0)
            continue;
        if (found)
            return error_set(err, -EINVAL,
                             "Content-Type has two boundary parameters");
        found = 1;
        if (boundary_check(value, reason, sizeof(reason)) != 0)
            return error_set(err, -EINVAL, "invalid Content-Type: %s", reason);
        if (strlen(value) >= len)
            return error_set(err, -EINVAL,
                             "the boundary does not fit in %zu bytes", len);
        strcpy(out, value);
    }
    if (rc < 0)
        return error_set(err, -EINVAL, "invalid Content-Type: %s", reason);
    if (!found)
        return error_set(err, -EINVAL,
                         "Content-Type multipart/form-data has no boundary "
                         "parameter; add '; boundary=...'");
    return 0;
}

/* ---- creation ----------------------------------------------------------- */

int multipart_create(const char *boundary,
                     const struct multipart_limits *limits,
                     const struct multipart_callbacks *callbacks,
                     struct multipart **out, struct error *err)
{
    struct multipart *mp;
    char reason[256];

    *out = NULL;
    if (boundary_check(boundary, reason, sizeof(reason)) != 0)
        return error_set(err, -EINVAL, "%s", reason);
    mp = calloc(1, sizeof(*mp));
    if (mp == NULL)
        return error_set(err, -ENOMEM,
                         "out of memory for the multipart parser");
    mp->limits.parts_max = MULTIPART_PARTS_MAX;
    mp->limits.epilogue_max = MULTIPART_EPILOGUE_MAX;
    if (limits != NULL) {
        if (limits->parts_max > 0)
            mp->limits.parts_max = limits->parts_max;
        mp->limits.epilogue_max = limits->epilogue_max;
    }
    if (callbacks != NULL)
        mp->callbacks = *callbacks;
    mp->delimiter_len = (size_t)snprintf(mp->delimiter, sizeof(mp->delimiter),
                                         "\r\n--%s", boundary);
    /* The CRLF that the body is read as starting with. */
    mp->state = MP_PREAMBLE;
    mp->matched = 2;
    mp->withheld = 2;
    *out = mp;
    return 0;
}

void multipart_free(struct multipart *mp)
{
    free(mp);
}

/* ---- errors ------------------------------------------------------------- */

/* Enter MP_FAILED with the error in err, and return its code. */
static int fail(struct multipart *mp, int code, struct error *err)
{
    mp->state = MP_FAILED;
    mp->error.code = code;
    snprintf(mp->error.msg, sizeof(mp->error.msg), "%s",
             err != NULL ? err->msg : "");
    return code;
}

static int stored_error(struct multipart *mp, struct error *err)
{
    return error_set(err, mp->error.code, "%s", mp->error.msg);
}

/* ---- part headers ------------------------------------------------------- */

static int parse_disposition(struct multipart *mp, const char *value,
                             struct error *err)
{
    struct multipart_part *part = &mp->part;
    char name[64], text[MULTIPART_FILENAME_MAX + 1], reason[256], shown[48];
    const char *p = skip_space(value);
    size_t type_len = 0;
    int has_name = 0, rc;

    while (is_token_char((unsigned char)p[type_len]))
        type_len++;
    if (type_len != 9 || strncasecmp(p, "form-data", 9) != 0)
        return error_set(err, -EINVAL,
                         "part %d has Content-Disposition '%s'; it must be "
                         "form-data",
                         part->index, printable(value, strlen(value), shown));
    p += type_len;
    while ((rc = param_next(&p, name, sizeof(name), text, sizeof(text),
                            "Content-Disposition", reason, sizeof(reason))) ==
           1) {
        if (strcasecmp(name, "name") == 0) {
            if (has_name)
                return error_set(err, -EINVAL,
                                 "part %d has two name parameters",
                                 part->index);
            if (strlen(text) > MULTIPART_NAME_MAX)
                return error_set(err, -EINVAL,
                                 "part %d has a name longer than %d bytes",
                                 part->index, MULTIPART_NAME_MAX);
            has_name = 1;
            strcpy(part->name, text);
        } else if (strcasecmp(name, "filename") == 0) {
            if (part->has_filename)
                return error_set(err, -EINVAL,
                                 "part %d has two filename parameters",
                                 part->index);
            part->has_filename = 1;
            strcpy(part->filename, text);
        }
    }
    if (rc < 0)
        return error_set(err, -EINVAL, "part %d: %s", part->index, reason);
    if (!has_name || part->name[0] == '\0')
        return error_set(err, -EINVAL,
                         "part %d has no name in its Content-Disposition; "
                         "send 'form-data; name=\"...\"'",
                         part->index);
    return 0;
}

/* Check one header line, without its CRLF, and store the values of the
 * headers the parser reads. */
static int header_line(struct multipart *mp, char *line, size_t len,
                       struct error *err)
{
    int index = mp->part.index;
    char shown[48], text[8];
    const char *value;
    char *colon, *end;
    size_t name_len;

    if (is_space((unsigned char)line[0]))
        return error_set(err, -EINVAL,
                         "part %d has a folded header line; send each "
                         "header on one line",
                         index);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return error_set(err, -EINVAL,
                             "part %d has a header line with the control "
                             "character %s",
                             index, byte_text(c, text));
    }
    line[len] = '\0';
    colon = memchr(line, ':', len);
    name_len = colon != NULL ? (size_t)(colon - line) : 0;
    for (size_t i = 0; i < name_len; i++)
        if (!is_token_char((unsigned char)line[i]))
            name_len = 0;
    if (name_len == 0)
        return error_set(err, -EINVAL,
                         "part %d has a malformed header line '%s'; expected "
                         "'Name: value'",
                         index, printable(line, len, shown));
    value = skip_space(colon + 1);
    end = line + len;
    while (end > value && is_space((unsigned char)end[-1]))
        *--end = '\0';

    if (name_len == 19 && strncasecmp(line, "Content-Disposition", 19) == 0) {
        if (mp->has_disposition)
            return error_set(err, -EINVAL,
                             "part %d has two Content-Disposition headers",
                             index);
        mp->has_disposition = 1;
        return parse_disposition(mp, value, err);
    }
    if (name_len == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
        if (mp->has_type)
            return error_set(err, -EINVAL,
                             "part %d has two Content-Type headers", index);
        if (strlen(value) > MULTIPART_TYPE_MAX)
            return error_set(err, -EINVAL,
                             "part %d has a Content-Type longer than %d "
                             "bytes",
                             index, MULTIPART_TYPE_MAX);
        mp->has_type = 1;
        strcpy(mp->part.content_type, value);
        return 0;
    }
    if (name_len == 25 &&
        strncasecmp(line, "Content-Transfer-Encoding", 25) == 0 &&
        strcasecmp(value, "binary") != 0 && strcasecmp(value, "8bit") != 0 &&
        strcasecmp(value, "7bit") != 0)
        return error_set(err, -EINVAL,
                         "part %d has Content-Transfer-Encoding '%s', which "
                         "is not supported; send the bytes as they are",
                         index, printable(value, strlen(value), shown));
    return 0;
}

/* The blank line after a part's headers: the part begins. */
static int headers_end(struct multipart *mp, struct error *err)
{
    if (!mp->has_disposition)
        return error_set(err, -EINVAL,
                         "part %d has no Content-Disposition header; send "
                         "'Content-Disposition: form-data; name=\"...\"'",
                         mp->part.index);
    mp->state = MP_DATA;
    mp->matched = 0;
    mp->withheld = 0;
    if (mp->callbacks.part_begin != NULL)
        return mp->callbacks.part_begin(mp->callbacks.ctx, &mp->part, err);
    return 0;
}

static int header_byte(struct multipart *mp, unsigned char c, struct error *err)
{
    if (++mp->headers_len > MULTIPART_HEADERS_MAX)
        return error_set(err, -EINVAL,
                         "the headers of part %d are longer than %d bytes",
                         mp->part.index, MULTIPART_HEADERS_MAX);
    if (c != '\n') {
        mp->line[mp->line_len++] = (char)c;
        return 0;
    }
    if (mp->line_len == 0 || mp->line[mp->line_len - 1] != '\r')
        return error_set(err, -EINVAL,
                         "a header line of part %d ends with a bare LF; "
                         "lines must end with CRLF",
                         mp->part.index);
    size_t len = mp->line_len - 1;

    mp->line_len = 0;
    if (len == 0)
        return headers_end(mp, err);
    return header_line(mp, mp->line, len, err);
}

/* A delimiter line ended: the next part's headers follow. */
static int part_start(struct multipart *mp, struct error *err)
{
    if (mp->parts >= mp->limits.parts_max)
        return error_set(err, -EINVAL, "the body has more than %d parts",
                         mp->limits.parts_max);
    mp->parts++;
    memset(&mp->part, 0, sizeof(mp->part));
    mp->part.index = mp->parts;
    mp->has_disposition = 0;
    mp->has_type = 0;
    mp->headers_len = 0;
    mp->line_len = 0;
    mp->state = MP_HEADERS;
    return 0;
}

/* ---- data and delimiters ------------------------------------------------ */

/* Pass len bytes of part data on; the preamble's are dropped. */
static int emit(struct multipart *mp, const void *data, size_t len,
                struct error *err)
{
    if (len == 0 || mp->state != MP_DATA || mp->callbacks.part_data == NULL)
        return 0;
    return mp->callbacks.part_data(mp->callbacks.ctx, &mp->part, data, len,
                                   err);
}

/* Scan the preamble or part data in [*pos, end) for the delimiter, passing
 * data on. Stops after a whole delimiter or at end, with *pos moved. */
static int scan_data(struct multipart *mp, const unsigned char **pos,
                     const unsigned char *end, struct error *err)
{
    const unsigned char *p = *pos, *run = p;
    const char *delimiter = mp->delimiter;
    int rc;

    while (p < end) {
        if (mp->matched == 0) {
            const unsigned char *cr = memchr(p, '\r', (size_t)(end - p));

            if (cr == NULL) {
                p = end;
                break;
            }
            p = cr + 1;
            mp->matched = 1;
            continue;
        }
        if (*p == (unsigned char)delimiter[mp->matched]) {
            p++;
            if (++mp->matched < mp->delimiter_len)
                continue;
            /* The whole delimiter: the data ends where it began. */
            const unsigned char *start = p - (mp->matched - mp->withheld);

            rc = emit(mp, run, (size_t)(start - run), err);
            if (rc == 0 && mp->state == MP_DATA &&
                mp->callbacks.part_end != NULL)
                rc = mp->callbacks.part_end(mp->callbacks.ctx, &mp->part, err);
            mp->matched = 0;
            mp->withheld = 0;
            mp->state = MP_AFTER_BOUNDARY;
            *pos = p;
            return rc;
        }
        /* A mismatch: the bytes matched were data. Those withheld from
         * earlier pieces go first; the rest are still in the run. */
        if (mp->withheld > 0) {
            rc = emit(mp, delimiter, mp->withheld, err);
            if (rc != 0)
                return rc;
            mp->withheld = 0;
        }
        mp->matched = 0;
    }
    /* Withhold what may be the start of a delimiter. */
    size_t matched_here = mp->matched - mp->withheld;

    rc = emit(mp, run, (size_t)(end - matched_here - run), err);
    mp->withheld = mp->matched;
    *pos = end;
    return rc;
}

/* The bytes after a delimiter, up to and including its line's CRLF. */
static int boundary_line_byte(struct multipart *mp, unsigned char c,
                              struct error *err)
{
    char text[8];

    switch (mp->state) {
    case MP_AFTER_BOUNDARY:
        if (c == '-') {
            mp->state = MP_CLOSE_DASH;
            return 0;
        }
        break;
    case MP_CLOSE_DASH:
        if (c == '-') {
            mp->state = MP_CLOSE_PADDING;
            return 0;
        }
        return error_set(err, -EINVAL,
                         "a boundary is followed by '-' and %s; the closing "
                         "boundary ends with '--'",
                         byte_text(c, text));
    case MP_PADDING_LF:
        if (c == '\n')
            return part_start(mp, err);
        return error_set(err, -EINVAL,
                         "a boundary line has a CR without LF; lines must "
                         "end with CRLF");
    case MP_CLOSE_PADDING:
        if (is_space(c))
            return 0;
        if (c == '\r') {
            mp->state = MP_CLOSE_LF;
            return 0;
        }
        if (c == '\n')
            return error_set(err, -EINVAL,
                             "the closing boundary line ends with a bare LF; "
                             "lines must end with CRLF");
        return error_set(err, -EINVAL,
                         "the closing boundary is followed by %s; it must "
                         "end its line",
                         byte_text(c, text));
    case MP_CLOSE_LF:
        if (c == '\n') {
            mp->state = MP_EPILOGUE;
            return 0;
        }
        return error_set(err, -EINVAL,
                         "the closing boundary line has a CR without LF; "
                         "lines must end with CRLF");
    default:
        break;
    }
    /* MP_AFTER_BOUNDARY and MP_PADDING: padding, then CRLF. */
    if (is_space(c)) {
        mp->state = MP_PADDING;
        return 0;
    }
    if (c == '\r') {
        mp->state = MP_PADDING_LF;
        return 0;
    }
    if (c == '\n')
        return error_set(err, -EINVAL,
                         "a boundary line ends with a bare LF; lines must "
                         "end with CRLF");
    return error_set(err, -EINVAL,
                     "a boundary is followed by %s; it must end its line, "
                     "and the data must not contain the boundary",
                     byte_text(c, text));
}

int multipart_feed(struct multipart *mp, const void *data, size_t len,
                   struct error *err)
{
    const unsigned char *p = data, *end = p + len;
    int rc = 0;

    if (mp->state == MP_FAILED)
        return stored_error(mp, err);
    if (mp->state == MP_FINISHED)
        return fail(mp,
                    error_set(err, -EINVAL,
                              "multipart_feed called after "
                              "multipart_finish"),
                    err);
    while (p < end && rc == 0) {
        switch (mp->state) {
        case MP_PREAMBLE:
        case MP_DATA:
            rc = scan_data(mp, &p, end, err);
            break;
        case MP_HEADERS:
            rc = header_byte(mp, *p++, err);
            break;
        case MP_EPILOGUE:
            mp->epilogue_len += (size_t)(end - p);
            p = end;
            if (mp->epilogue_len > mp->limits.epilogue_max)
                rc = error_set(err, -EINVAL,
                               "the body continues past the closing "
                               "boundary; at most %zu bytes may follow it",
                               mp->limits.epilogue_max);
            break;
        default:
            rc = boundary_line_byte(mp, *p++, err);
            break;
        }
    }
    return rc != 0 ? fail(mp, rc, err) : 0;
}

int multipart_finish(struct multipart *mp, struct error *err)
{
    switch (mp->state) {
    case MP_FAILED:
        return stored_error(mp, err);
    case MP_CLOSE_PADDING:
    case MP_EPILOGUE:
    case MP_FINISHED:
        mp->state = MP_FINISHED;
        return 0;
    case MP_PREAMBLE:
        return fail(mp,
                    error_set(err, -EINVAL,
                              "the body ended before its first boundary "
                              "'--%s'; check the boundary and that lines "
                              "end with CRLF",
                              mp->delimiter + 4),
                    err);
    case MP_CLOSE_LF:
        return fail(mp,
                    error_set(err, -EINVAL,
                              "the closing boundary line has a CR without "
                              "LF; lines must end with CRLF"),
                    err);
    default:
        break;
    }
    /* The body was cut short: report in which part of it. */
    char where[48];

    if (mp->state == MP_HEADERS || mp->state == MP_DATA)
        snprintf(where, sizeof(where), "in part %d", mp->parts);
    else if (mp->parts > 0)
        snprintf(where, sizeof(where), "after part %d", mp->parts);
    else
        snprintf(where, sizeof(where), "after its first boundary");
    return fail(mp,
                error_set(err, -EINVAL,
                          "the body ended %s, before the closing boundary "
                          "'--%s--'; send the whole body",
                          where, mp->delimiter + 4),
                err);
}
