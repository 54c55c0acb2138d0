/*
 * A small JSON reader and string quoting for the UI. json_parse builds a
 * read-only tree of the whole document in one allocation pass. Lookups
 * return NULL for a missing key or a wrong type, and the accessors take
 * NULL and return a fallback. So a view can read nested fields without
 * checking each step, and an unexpected reply shows as missing data
 * rather than a crash.
 */
#ifndef TRAINYARD_UI_JSON_H
#define TRAINYARD_UI_JSON_H

#include <stddef.h>
#include <stdint.h>

enum json_type {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
};

struct json {
    enum json_type type;
    double number;
    char *string;          /* JSON_STRING: decoded UTF-8, NUL-terminated */
    char *key;             /* member name inside an object, else NULL */
    struct json *child;    /* first element or member */
    struct json *next;     /* next sibling */
    size_t count;          /* elements or members */
};

/* Parse text; returns NULL on invalid JSON or nesting deeper than 64. */
struct json *json_parse(const char *text);
void json_free(struct json *value);

/* The member named key of an object, or NULL. */
const struct json *json_get(const struct json *object, const char *key);
/* Element i of an array, or NULL. */
const struct json *json_at(const struct json *array, size_t i);

double json_number(const struct json *value, double fallback);
int64_t json_int(const struct json *value, int64_t fallback);
const char *json_string(const struct json *value, const char *fallback);

/* Write s as a quoted JSON string into buf (always NUL-terminated);
 * returns the length it needs, like snprintf. */
size_t json_quote(const char *s, char *buf, size_t size);

#endif
