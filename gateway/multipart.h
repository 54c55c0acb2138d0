/*
 * A streaming parser of multipart/form-data request bodies (RFC 7578,
 * with the multipart syntax of RFC 2046 section 5.1.1).
 *
 * The caller feeds the body in pieces of any size, so a delimiter may be
 * split across pieces anywhere. The parser calls back at the start of
 * each part with its headers, with the part's data in pieces, and at the
 * end of the part. Memory is bounded: the parser keeps one header line of
 * at most MULTIPART_HEADERS_MAX bytes and no part data. Data is passed on
 * as soon as it cannot be the start of a delimiter, so a piece that ends
 * inside a possible delimiter keeps at most 73 bytes back until the next
 * piece decides.
 *
 * What it accepts, and why:
 *
 * - Line ends must be CRLF, as RFC 2046 requires. A bare LF after a
 *   boundary or in part headers is rejected with a message naming it.
 *   Accepting LF as well would let the gateway and another parser on the
 *   path split the same body differently.
 * - A preamble before the first boundary is skipped, whatever its size.
 * - After the closing boundary come optional spaces or tabs and a CRLF,
 *   then an epilogue of at most limits.epilogue_max bytes (default
 *   MULTIPART_EPILOGUE_MAX, 1 KiB), which is ignored. A longer epilogue is
 *   rejected. The closing boundary may also end the body with no CRLF.
 * - A delimiter ("--" and the boundary at the start of a line) followed
 *   by anything other than "--", spaces, tabs or CRLF is rejected, because
 *   RFC 2046 forbids the delimiter inside a part's data.
 * - Each part needs a Content-Disposition header of type form-data with a
 *   non-empty name parameter. A filename parameter is reported as it is.
 *   Parameter values are tokens or quoted strings, in which a backslash
 *   quotes the next byte (RFC 2045). Browsers do not escape backslashes,
 *   so a backslash in a name they send is lost. filename* and other
 *   parameters are ignored.
 * - Content-Transfer-Encoding other than 7bit, 8bit or binary is
 *   rejected, because the data is passed on undecoded. Other headers are
 *   ignored. Folded header lines and control characters in headers are
 *   rejected.
 * - A body whose first delimiter is the closing one has no parts and is
 *   accepted.
 *
 * Every function returns 0 or a negative error code with err filled: a
 * malformed body gets -EINVAL and a message naming the problem, and a
 * callback's error is returned as the callback set it. After an error the
 * parser returns the same error for every later call.
 */
#ifndef TRAINYARD_MULTIPART_H
#define TRAINYARD_MULTIPART_H

#include <stddef.h>

#include "error.h"

/* RFC 2046: a boundary has 1 to 70 characters. */
#define MULTIPART_BOUNDARY_MAX 70
/* Largest header section of one part, its CRLFs and blank line
 * included. */
#define MULTIPART_HEADERS_MAX 8192
/* Maximum length of a part name, filename and Content-Type value, in
 * bytes. */
#define MULTIPART_NAME_MAX 255
#define MULTIPART_FILENAME_MAX 1023
#define MULTIPART_TYPE_MAX 255
/* Defaults of struct multipart_limits. */
#define MULTIPART_PARTS_MAX 64
#define MULTIPART_EPILOGUE_MAX 1024

struct multipart_limits {
    /* Maximum number of parts in a body; 0 means MULTIPART_PARTS_MAX. */
    int parts_max;
    /* Maximum bytes after the closing boundary's line; 0 allows none. */
    size_t epilogue_max;
};

/* One part's headers, as the callbacks see them. */
struct multipart_part {
    int index; /* 1 for the first part */
    char name[MULTIPART_NAME_MAX + 1];
    char filename[MULTIPART_FILENAME_MAX + 1];
    int has_filename; /* 1 when a filename parameter was sent, even "" */
    char content_type[MULTIPART_TYPE_MAX + 1]; /* "" when absent */
};

/* Each callback returns 0 to go on, or a negative error code with err
 * filled to stop the parse. Any of them may be NULL. */
struct multipart_callbacks {
    int (*part_begin)(void *ctx, const struct multipart_part *part,
                      struct error *err);
    int (*part_data)(void *ctx, const struct multipart_part *part,
                     const unsigned char *data, size_t len, struct error *err);
    int (*part_end)(void *ctx, const struct multipart_part *part,
                    struct error *err);
    void *ctx;
};

struct multipart;

/* Copy the boundary parameter of a Content-Type header value into out
 * (room for MULTIPART_BOUNDARY_MAX + 1 bytes). The media type must be
 * multipart/form-data, and the boundary 1 to 70 characters of RFC 2046's
 * bchars, quoted or not. Returns 0, or -EINVAL naming the problem. */
int multipart_boundary(const char *content_type, char *out, size_t len,
                       struct error *err);

/* 1 when the media type of a Content-Type value, such as
 * "application/zip; x=y", is type, ignoring case and parameters. */
int multipart_media_type_is(const char *content_type, const char *type);

/* 1 when the media type of a Content-Type value is multipart/form-data,
 * whatever its parameters. */
int multipart_is_form_data(const char *content_type);

/* Make a parser for bodies with boundary. limits may be NULL for the
 * defaults, and callbacks is copied. Returns 0 with *out set (free it with
 * multipart_free), -EINVAL for an invalid boundary or -ENOMEM. */
int multipart_create(const char *boundary,
                     const struct multipart_limits *limits,
                     const struct multipart_callbacks *callbacks,
                     struct multipart **out, struct error *err);

/* Parse the next len bytes of the body, calling back as parts begin,
 * carry data and end. */
int multipart_feed(struct multipart *mp, const void *data, size_t len,
                   struct error *err);

/* Check that the body ended after its closing boundary. */
int multipart_finish(struct multipart *mp, struct error *err);

void multipart_free(struct multipart *mp);

#endif
