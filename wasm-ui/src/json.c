/*
 * A recursive-descent JSON reader (RFC 8259) for the gateway's replies,
 * and string quoting for request bodies. Each value is one calloc'd node
 * with its children in a linked list, which is enough for replies of a few
 * hundred values. \u escapes, surrogate pairs included, are decoded to
 * UTF-8. Numbers are read with strtod, so integers above 2^53 lose
 * precision, and the gateway's micro-dollar amounts stay far below that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define MAX_DEPTH 64

struct parser {
    const char *p;
    int depth;
};

static struct json *parse_value(struct parser *ps);

static void skip_space(struct parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' ||
           *ps->p == '\r')
        ps->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode the string at ps->p (on the opening quote) into a new buffer.
 * The decoded text is never longer than the escaped text, so one buffer
 * of the escaped length suffices. */
static char *parse_string(struct parser *ps)
{
    const char *start = ps->p + 1, *end = start;
    char *out, *w;

    while (*end != '"') {
        if (*end == '\0')
            return NULL;
        if (*end == '\\' && end[1] != '\0')
            end++;
        end++;
    }
    out = malloc((size_t)(end - start) + 1);
    if (out == NULL)
        return NULL;
    w = out;
    for (const char *r = start; r < end; r++) {
        unsigned cp, low;

        if ((unsigned char)*r < 0x20)
            goto invalid;
        if (*r != '\\') {
            *w++ = *r;
            continue;
        }
        r++;
        switch (*r) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u':
            if (end - r < 5 || hex4(r + 1, &cp) != 0)
                goto invalid;
            r += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && end - r >= 7 &&
                r[1] == '\\' && r[2] == 'u' && hex4(r + 3, &low) == 0 &&
                low >= 0xDC00 && low < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                r += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD; /* a lone surrogate */
            }
            w += put_utf8(w, cp);
            break;
        default:
            goto invalid;
        }
    }
    *w = '\0';
    ps->p = end + 1;
    return out;
invalid:
    free(out);
    return NULL;
}

static struct json *new_node(enum json_type type)
{
    struct json *v = calloc(1, sizeof(*v));

    if (v != NULL)
        v->type = type;
    return v;
}

static struct json *parse_number(struct parser *ps)
{
    const char *q = ps->p;
    char *end;
    struct json *v;

    /* strtod accepts more than JSON (hex, inf, leading +), so check the
     * first character here. */
    if (*q == '-')
        q++;
    if (*q < '0' || *q > '9')
        return NULL;
    v = new_node(JSON_NUMBER);
    if (v == NULL)
        return NULL;
    v->number = strtod(ps->p, &end);
    ps->p = end;
    return v;
}

static int parse_literal(struct parser *ps, const char *word)
{
    size_t n = strlen(word);

    if (strncmp(ps->p, word, n) != 0)
        return -1;
    ps->p += n;
    return 0;
}

/* Parse the members of an object or elements of an array after the
 * opening bracket; close is '}' or ']'. */
static struct json *parse_container(struct parser *ps, enum json_type type,
                                    char close)
{
    struct json *v = new_node(type), **tail;

    if (v == NULL)
        return NULL;
    tail = &v->child;
    ps->p++;
    skip_space(ps);
    if (*ps->p == close) {
        ps->p++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        struct json *item;

        skip_space(ps);
        if (type == JSON_OBJECT) {
            if (*ps->p != '"' || (key = parse_string(ps)) == NULL)
                goto fail;
            skip_space(ps);
            if (*ps->p != ':') {
                free(key);
                goto fail;
            }
            ps->p++;
        }
        item = parse_value(ps);
        if (item == NULL) {
            free(key);
            goto fail;
        }
        item->key = key;
        *tail = item;
        tail = &item->next;
        v->count++;
        skip_space(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == close) {
            ps->p++;
            return v;
        }
        goto fail;
    }
fail:
    json_free(v);
    return NULL;
}

static struct json *parse_value(struct parser *ps)
{
    struct json *v = NULL;

    skip_space(ps);
    if (++ps->depth > MAX_DEPTH)
        return NULL;
    switch (*ps->p) {
    case '{':
        v = parse_container(ps, JSON_OBJECT, '}');
        break;
    case '[':
        v = parse_container(ps, JSON_ARRAY, ']');
        break;
    case '"': {
        char *s = parse_string(ps);

        if (s != NULL && (v = new_node(JSON_STRING)) != NULL)
            v->string = s;
        else
            free(s);
        break;
    }
    case 't':
        if (parse_literal(ps, "true") == 0)
            v = new_node(JSON_TRUE);
        break;
    case 'f':
        if (parse_literal(ps, "false") == 0)
            v = new_node(JSON_FALSE);
        break;
    case 'n':
        if (parse_literal(ps, "null") == 0)
            v = new_node(JSON_NULL);
        break;
    default:
        v = parse_number(ps);
        break;
    }
    ps->depth--;
    return v;
}

struct json *json_parse(const char *text)
{
    struct parser ps = { text, 0 };
    struct json *v;

    if (text == NULL)
        return NULL;
    v = parse_value(&ps);
    if (v == NULL)
        return NULL;
    skip_space(&ps);
    if (*ps.p != '\0') {
        json_free(v);
        return NULL;
    }
    return v;
}

void json_free(struct json *value)
{
    while (value != NULL) {
        struct json *next = value->next;

        json_free(value->child);
        free(value->string);
        free(value->key);
        free(value);
        value = next;
    }
}

const struct json *json_get(const struct json *object, const char *key)
{
    if (object == NULL || object->type != JSON_OBJECT)
        return NULL;
    for (const struct json *m = object->child; m != NULL; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    return NULL;
}

const struct json *json_at(const struct json *array, size_t i)
{
    const struct json *e;

    if (array == NULL || array->type != JSON_ARRAY)
        return NULL;
    for (e = array->child; e != NULL && i > 0; e = e->next)
        i--;
    return e;
}

double json_number(const struct json *value, double fallback)
{
    if (value == NULL || value->type != JSON_NUMBER)
        return fallback;
    return value->number;
}

int64_t json_int(const struct json *value, int64_t fallback)
{
    if (value == NULL || value->type != JSON_NUMBER)
        return fallback;
    return (int64_t)value->number;
}

const char *json_string(const struct json *value, const char *fallback)
{
    if (value == NULL || value->type != JSON_STRING)
        return fallback;
    return value->string;
}

size_t json_quote(const char *s, char *buf, size_t size)
{
    size_t n = 0;

#define PUT(c)                                                                \
    do {                                                                      \
        if (n + 1 < size)                                                     \
            buf[n] = (c);                                                     \
        n++;                                                                  \
    } while (0)

    PUT('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            PUT('\\');
            PUT((char)c);
        } else if (c < 0x20) {
            char esc[8];

            snprintf(esc, sizeof(esc), "\\u%04x", c);
            for (int i = 0; esc[i] != '\0'; i++)
                PUT(esc[i]);
        } else {
            PUT((char)c);
        }
    }
    PUT('"');
#undef PUT
    if (size > 0)
        buf[n < size ? n : size - 1] = '\0';
    return n;
}
