/*
 * The REST API's route table. Each route pairs a method and a path
 * pattern with its handler and with the checks that api.c makes before
 * the handler runs: who may call it, whether a cookie session must send
 * its CSRF token, and whether it takes a JSON body. A pattern is a literal path
 * in which a segment "{id}" matches a positive decimal id and a segment
 * "{token}" matches 1 to ROUTE_TOKEN_MAX characters of [A-Za-z0-9_.-],
 * which the handler reads from the path itself.
 */
#ifndef TRAINYARD_ROUTES_H
#define TRAINYARD_ROUTES_H

#include <stddef.h>
#include <stdint.h>

struct api_request;

enum route_auth {
    ROUTE_PUBLIC, /* anyone; credentials are not checked */
    ROUTE_USER,   /* a signed-in account: session cookie or API key */
    ROUTE_ADMIN,  /* an account whose role is "admin" */
};

struct route {
    const char *method;  /* "GET", "POST", ...; NULL ends a table */
    const char *pattern; /* such as "/api/v1/apikeys/{id}" */
    void (*handler)(struct api_request *req);
    enum route_auth auth;
    int csrf;      /* 1: a cookie session must send X-CSRF-Token */
    int json_body; /* 1: the body must be a JSON object */
};

/* The API's routes, ending with a NULL method. */
extern const struct route api_routes[];

/* Largest id a "{id}" segment matches: 2^53, the largest integer that
 * JSON numbers carry exactly. */
#define ROUTE_ID_MAX 9007199254740992LL

/* Maximum length of the path segment that a "{token}" segment matches. */
#define ROUTE_TOKEN_MAX 512

/* 1 when path matches pattern, with the value of its "{id}" segment in
 * *id (0 when the pattern has none); else 0. An id segment matches 1 to
 * 16 digits without a leading zero, up to ROUTE_ID_MAX. */
int route_match(const char *pattern, const char *path, int64_t *id);

/* The route of table for method and path, with *id set as route_match
 * does. NULL when none matches; *allow then lists the methods that path
 * does have, comma-separated ("" when the path has no route). */
const struct route *route_find(const struct route *table, const char *method,
                               const char *path, int64_t *id, char *allow,
                               size_t allow_len);

/* 1 for methods that change state: POST, PUT, PATCH and DELETE. */
int route_method_changes_state(const char *method);

#endif
