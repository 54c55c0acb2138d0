/*
 * schema/openapi.yaml against the gateway. The first group reads the
 * description with libyaml and compares it with the route table,
 * api_routes of gateway/routes.c. Every route must have an operation and
 * every operation a route. Each operation needs a 2xx response, error
 * responses of the shared Error schema, and a summary, and every Error
 * code must have an HTTP status in gateway/api.c. The CSRF header,
 * `security: []`, the JSON request body and the path parameters must be
 * declared exactly on the routes whose table entry requires them. The
 * second group starts the real backend and gateway on 127.0.0.1 and
 * checks the replies of account, billing, data set, model, training,
 * quote and events requests, successes and errors, against the schemas
 * that the description gives them.
 *
 * Tests run from the repository root, as the other tests that read
 * files of the tree do.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "../../gateway/api.h"
#include "../../gateway/routes.h"
#include "stack.h"

#define OPENAPI_PATH "schema/openapi.yaml"
/* The description's server URL, to which its paths are relative. */
#define API_PREFIX "/api/v1"
#define ERROR_SCHEMA_REF "#/components/schemas/Error"
#define CSRF_PARAMETER_REF "#/components/parameters/CsrfToken"

#define ADMIN "admin@example.test"
#define ADMIN_PASSWORD "admin password 1"

/* Mismatches found by one test, one per line. The test asserts that the
 * text is empty, so cmocka prints every mismatch at once. */
struct problems {
    char text[8192];
    size_t used;
};

__attribute__((format(printf, 2, 3))) static void
problem_add(struct problems *p, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (p->used >= sizeof(p->text) - 1)
        return;
    va_start(ap, fmt);
    n = vsnprintf(p->text + p->used, sizeof(p->text) - p->used, fmt, ap);
    va_end(ap);
    if (n > 0)
        p->used += (size_t)n;
    if (p->used < sizeof(p->text) - 1) {
        p->text[p->used++] = '\n';
        p->text[p->used] = '\0';
    } else {
        p->used = sizeof(p->text) - 1;
    }
}

/* ---- Reading the YAML document ---------------------------------------- */

static yaml_document_t doc;
static int doc_loaded;

static yaml_node_t *yaml_root(void)
{
    return yaml_document_get_root_node(&doc);
}

/* 1 when node is a scalar equal to text. */
static int scalar_is(const yaml_node_t *node, const char *text)
{
    return node != NULL && node->type == YAML_SCALAR_NODE &&
           node->data.scalar.length == strlen(text) &&
           memcmp(node->data.scalar.value, text, node->data.scalar.length) == 0;
}

/* The text of a scalar node, or NULL for any other node. */
static const char *scalar_text(const yaml_node_t *node)
{
    if (node == NULL || node->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)node->data.scalar.value;
}

/* The value of key in a mapping node, or NULL. */
static yaml_node_t *map_get(yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        if (scalar_is(yaml_document_get_node(&doc, pair->key), key))
            return yaml_document_get_node(&doc, pair->value);
    }
    return NULL;
}

static size_t seq_length(const yaml_node_t *seq)
{
    if (seq == NULL || seq->type != YAML_SEQUENCE_NODE)
        return 0;
    return (size_t)(seq->data.sequence.items.top -
                    seq->data.sequence.items.start);
}

static yaml_node_t *seq_item(yaml_node_t *seq, size_t i)
{
    return yaml_document_get_node(&doc, seq->data.sequence.items.start[i]);
}

/* The node that a local reference "#/a/b/c" names, or NULL. */
static yaml_node_t *ref_target(const char *ref)
{
    char key[128];
    yaml_node_t *node = yaml_root();
    const char *at;

    if (strncmp(ref, "#/", 2) != 0)
        return NULL;
    at = ref + 2;
    while (node != NULL && *at != '\0') {
        const char *end = strchr(at, '/');
        size_t len = end ? (size_t)(end - at) : strlen(at);

        if (len >= sizeof(key))
            return NULL;
        memcpy(key, at, len);
        key[len] = '\0';
        node = map_get(node, key);
        at += len;
        if (*at == '/')
            at++;
    }
    return node;
}

/* Follow node's $ref, if it has one. Returns NULL when the target is
 * missing. */
static yaml_node_t *resolve(yaml_node_t *node)
{
    for (int hops = 0; hops < 8; hops++) {
        const char *ref = scalar_text(map_get(node, "$ref"));

        if (ref == NULL)
            return node;
        node = ref_target(ref);
    }
    return NULL;
}

static int load_openapi(void **state)
{
    yaml_parser_t parser;
    FILE *file;
    int ok;

    (void)state;
    file = fopen(OPENAPI_PATH, "rb");
    if (file == NULL) {
        fprintf(stderr,
                "cannot open %s; run the test from the repository "
                "root\n",
                OPENAPI_PATH);
        return -1;
    }
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, file);
    ok = yaml_parser_load(&parser, &doc);
    if (!ok)
        fprintf(stderr, "%s:%zu:%zu: invalid YAML: %s\n", OPENAPI_PATH,
                parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                parser.problem ? parser.problem : "unknown error");
    yaml_parser_delete(&parser);
    fclose(file);
    if (!ok || yaml_root() == NULL) {
        if (ok)
            yaml_document_delete(&doc);
        return -1;
    }
    doc_loaded = 1;
    return 0;
}

static int free_openapi(void **state)
{
    (void)state;
    if (doc_loaded)
        yaml_document_delete(&doc);
    doc_loaded = 0;
    return 0;
}

/* ---- Operations and routes -------------------------------------------- */

static const char *const http_methods[] = {
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
};
#define HTTP_METHOD_COUNT (sizeof(http_methods) / sizeof(http_methods[0]))

/* The description's path of a route pattern: the pattern without
 * API_PREFIX, or NULL when the pattern lies outside it. */
static const char *spec_path(const char *pattern)
{
    size_t n = strlen(API_PREFIX);

    if (strncmp(pattern, API_PREFIX, n) != 0 || pattern[n] != '/')
        return NULL;
    return pattern + n;
}

static void lower_copy(const char *text, char *out, size_t len)
{
    size_t i;

    for (i = 0; text[i] != '\0' && i + 1 < len; i++)
        out[i] =
            (char)(text[i] >= 'A' && text[i] <= 'Z' ? text[i] + 32 : text[i]);
    out[i] = '\0';
}

/* The operation of a route: paths[path][method]. */
static yaml_node_t *route_operation(const struct route *r)
{
    const char *path = spec_path(r->pattern);
    char method[16];

    if (path == NULL)
        return NULL;
    lower_copy(r->method, method, sizeof(method));
    return map_get(map_get(map_get(yaml_root(), "paths"), path), method);
}

/* The route of a description path and lower-case method, or NULL. */
static const struct route *operation_route(const char *path, const char *method)
{
    char lower[16];

    for (const struct route *r = api_routes; r->method != NULL; r++) {
        const char *p = spec_path(r->pattern);

        lower_copy(r->method, lower, sizeof(lower));
        if (p != NULL && strcmp(p, path) == 0 && strcmp(lower, method) == 0)
            return r;
    }
    return NULL;
}

/* 1 when the operation lists a parameter, after $ref, with that `in`
 * and name. */
static int has_parameter(yaml_node_t *op, const char *in, const char *name)
{
    yaml_node_t *params = map_get(op, "parameters");

    for (size_t i = 0; i < seq_length(params); i++) {
        yaml_node_t *p = resolve(seq_item(params, i));

        if (scalar_is(map_get(p, "in"), in) &&
            scalar_is(map_get(p, "name"), name))
            return 1;
    }
    return 0;
}

static int has_parameter_ref(yaml_node_t *op, const char *ref)
{
    yaml_node_t *params = map_get(op, "parameters");

    for (size_t i = 0; i < seq_length(params); i++)
        if (scalar_is(map_get(seq_item(params, i), "$ref"), ref))
            return 1;
    return 0;
}

/* 1 when schema is the Error schema, or an allOf that contains it. */
static int is_error_schema(yaml_node_t *schema)
{
    yaml_node_t *all;

    if (scalar_is(map_get(schema, "$ref"), ERROR_SCHEMA_REF))
        return 1;
    all = map_get(schema, "allOf");
    for (size_t i = 0; i < seq_length(all); i++)
        if (scalar_is(map_get(seq_item(all, i), "$ref"), ERROR_SCHEMA_REF))
            return 1;
    return 0;
}

/* ---- Tests: the description and the route table ---------------------- */

static void spec_is_openapi_3_0(void **state)
{
    const char *version = scalar_text(map_get(yaml_root(), "openapi"));

    (void)state;
    assert_non_null(version);
    assert_memory_equal(version, "3.0.", 4);
    assert_non_null(map_get(yaml_root(), "paths"));
    assert_true(
        scalar_is(map_get(seq_item(map_get(yaml_root(), "servers"), 0), "url"),
                  API_PREFIX));
}

static void spec_describes_every_route(void **state)
{
    struct problems p = {0};

    (void)state;
    for (const struct route *r = api_routes; r->method != NULL; r++) {
        if (spec_path(r->pattern) == NULL)
            problem_add(&p, "%s %s: outside %s", r->method, r->pattern,
                        API_PREFIX);
        else if (route_operation(r) == NULL)
            problem_add(&p, "%s %s: not described in %s", r->method, r->pattern,
                        OPENAPI_PATH);
    }
    assert_string_equal(p.text, "");
}

static void spec_has_no_extra_operation(void **state)
{
    yaml_node_t *paths = map_get(yaml_root(), "paths");
    struct problems p = {0};

    (void)state;
    assert_int_equal(paths->type, YAML_MAPPING_NODE);
    for (yaml_node_pair_t *pair = paths->data.mapping.pairs.start;
         pair < paths->data.mapping.pairs.top; pair++) {
        const char *path = scalar_text(yaml_document_get_node(&doc, pair->key));
        yaml_node_t *item = yaml_document_get_node(&doc, pair->value);

        for (size_t m = 0; m < HTTP_METHOD_COUNT; m++)
            if (map_get(item, http_methods[m]) != NULL &&
                operation_route(path, http_methods[m]) == NULL)
                problem_add(&p,
                            "%s %s%s: described, but no route in "
                            "gateway/routes.c",
                            http_methods[m], API_PREFIX, path);
    }
    assert_string_equal(p.text, "");
}

static void operations_have_success_response(void **state)
{
    struct problems p = {0};

    (void)state;
    for (const struct route *r = api_routes; r->method != NULL; r++) {
        yaml_node_t *responses = map_get(route_operation(r), "responses");
        int found = 0;

        if (route_operation(r) == NULL)
            continue;
        if (scalar_text(map_get(route_operation(r), "summary")) == NULL)
            problem_add(&p, "%s %s: no summary", r->method, r->pattern);
        if (responses == NULL || responses->type != YAML_MAPPING_NODE) {
            problem_add(&p, "%s %s: no responses", r->method, r->pattern);
            continue;
        }
        for (yaml_node_pair_t *pair = responses->data.mapping.pairs.start;
             pair < responses->data.mapping.pairs.top; pair++) {
            const char *code =
                scalar_text(yaml_document_get_node(&doc, pair->key));
            yaml_node_t *response =
                resolve(yaml_document_get_node(&doc, pair->value));

            if (code != NULL && code[0] == '2')
                found = 1;
            if (scalar_text(map_get(response, "description")) == NULL)
                problem_add(&p, "%s %s %s: response without a description",
                            r->method, r->pattern, code ? code : "?");
            if (code != NULL && code[0] == '2' && strcmp(code, "204") != 0 &&
                map_get(response, "content") == NULL)
                problem_add(&p, "%s %s %s: success response without content",
                            r->method, r->pattern, code);
        }
        if (!found)
            problem_add(&p, "%s %s: no 2xx response", r->method, r->pattern);
    }
    assert_string_equal(p.text, "");
}

static void error_responses_use_error_schema(void **state)
{
    struct problems p = {0};

    (void)state;
    for (const struct route *r = api_routes; r->method != NULL; r++) {
        yaml_node_t *responses = map_get(route_operation(r), "responses");

        if (responses == NULL || responses->type != YAML_MAPPING_NODE)
            continue;
        for (yaml_node_pair_t *pair = responses->data.mapping.pairs.start;
             pair < responses->data.mapping.pairs.top; pair++) {
            const char *code =
                scalar_text(yaml_document_get_node(&doc, pair->key));
            yaml_node_t *response =
                resolve(yaml_document_get_node(&doc, pair->value));
            yaml_node_t *schema = map_get(
                map_get(map_get(response, "content"), "application/json"),
                "schema");

            if (code == NULL || (code[0] != '4' && code[0] != '5'))
                continue;
            if (response == NULL)
                problem_add(&p, "%s %s %s: the $ref names nothing", r->method,
                            r->pattern, code);
            else if (!is_error_schema(schema))
                problem_add(&p,
                            "%s %s %s: application/json is not the "
                            "Error schema",
                            r->method, r->pattern, code);
        }
    }
    assert_string_equal(p.text, "");
}

static void error_codes_have_statuses(void **state)
{
    yaml_node_t *codes =
        map_get(map_get(map_get(map_get(resolve(ref_target(ERROR_SCHEMA_REF)),
                                        "properties"),
                                "error"),
                        "properties"),
                "code");
    yaml_node_t *values = map_get(codes, "enum");
    struct problems p = {0};

    (void)state;
    assert_true(seq_length(values) > 0);
    /* api_status_for_code returns 500 for a code that its table lacks. */
    for (size_t i = 0; i < seq_length(values); i++) {
        const char *code = scalar_text(seq_item(values, i));

        if (code == NULL)
            problem_add(&p, "Error code %zu is not a string", i);
        else if (strcmp(code, "internal") != 0 &&
                 api_status_for_code(code) == 500)
            problem_add(&p,
                        "Error code '%s' is not in gateway/api.c's "
                        "status table",
                        code);
    }
    assert_string_equal(p.text, "");
}

static void csrf_routes_declare_header(void **state)
{
    struct problems p = {0};

    (void)state;
    for (const struct route *r = api_routes; r->method != NULL; r++) {
        yaml_node_t *op = route_operation(r);
        int declared = has_parameter_ref(op, CSRF_PARAMETER_REF);

        if (op == NULL)
            continue;
        if (r->csrf && !declared)
            problem_add(&p, "%s %s: CSRF route without X-CSRF-Token", r->method,
                        r->pattern);
        if (!r->csrf && declared)
            problem_add(&p, "%s %s: X-CSRF-Token on a route without CSRF",
                        r->method, r->pattern);
    }
    assert_string_equal(p.text, "");
}

static void public_routes_need_no_security(void **state)
{
    struct problems p = {0};

    (void)state;
    for (const struct route *r = api_routes; r->method != NULL; r++) {
        yaml_node_t *op = route_operation(r);
        yaml_node_t *security = map_get(op, "security");
        int open = security != NULL && security->type == YAML_SEQUENCE_NODE &&
                   seq_length(security) == 0;

        if (op == NULL)
            continue;
        if (r->auth == ROUTE_PUBLIC && !open)
            problem_add(&p, "%s %s: public route without 'security: []'",
                        r->method, r->pattern);
        if (r->auth != ROUTE_PUBLIC && open)
            problem_add(&p, "%s %s: 'security: []' on a signed-in route",
                        r->method, r->pattern);
        if (r->auth != ROUTE_PUBLIC &&
            map_get(map_get(op, "responses"), "401") == NULL)
            problem_add(&p, "%s %s: signed-in route without 401", r->method,
                        r->pattern);
        if (r->auth == ROUTE_ADMIN &&
            map_get(map_get(op, "responses"), "403") == NULL)
            problem_add(&p, "%s %s: admin route without 403", r->method,
                        r->pattern);
    }
    assert_string_equal(p.text, "");
}

static void json_routes_declare_body(void **state)
{
    struct problems p = {0};

    (void)state;
    for (const struct route *r = api_routes; r->method != NULL; r++) {
        yaml_node_t *op = route_operation(r);
        yaml_node_t *body = resolve(map_get(op, "requestBody"));
        yaml_node_t *json =
            map_get(map_get(body, "content"), "application/json");

        if (op == NULL)
            continue;
        if (r->json_body && (json == NULL || map_get(json, "schema") == NULL))
            problem_add(&p,
                        "%s %s: JSON route without an application/json "
                        "request body schema",
                        r->method, r->pattern);
        if (r->json_body && !scalar_is(map_get(body, "required"), "true"))
            problem_add(&p, "%s %s: JSON request body not required", r->method,
                        r->pattern);
        if (!r->json_body && json != NULL)
            problem_add(&p,
                        "%s %s: JSON request body on a route that "
                        "reads none",
                        r->method, r->pattern);
    }
    assert_string_equal(p.text, "");
}

static void path_parameters_described(void **state)
{
    static const char *const names[] = {"id", "token"};
    struct problems p = {0};
    char segment[16];

    (void)state;
    for (const struct route *r = api_routes; r->method != NULL; r++) {
        yaml_node_t *op = route_operation(r);

        if (op == NULL)
            continue;
        for (size_t i = 0; i < 2; i++) {
            snprintf(segment, sizeof(segment), "/{%s}", names[i]);
            if (strstr(r->pattern, segment) != NULL &&
                !has_parameter(op, "path", names[i]))
                problem_add(&p, "%s %s: path parameter '%s' not described",
                            r->method, r->pattern, names[i]);
        }
    }
    assert_string_equal(p.text, "");
}

/* Walk every mapping and sequence below node and report each $ref whose
 * target is missing. depth bounds the walk in case a YAML alias refers
 * to an enclosing node. */
static void check_refs(yaml_node_t *node, int depth, struct problems *p)
{
    if (node == NULL || depth > 64)
        return;
    if (node->type == YAML_SEQUENCE_NODE) {
        for (size_t i = 0; i < seq_length(node); i++)
            check_refs(seq_item(node, i), depth + 1, p);
        return;
    }
    if (node->type != YAML_MAPPING_NODE)
        return;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = yaml_document_get_node(&doc, pair->key);
        yaml_node_t *value = yaml_document_get_node(&doc, pair->value);

        if (scalar_is(key, "$ref")) {
            const char *ref = scalar_text(value);
            if (ref == NULL || ref_target(ref) == NULL)
                problem_add(p, "$ref '%s' (line %zu) names nothing",
                            ref ? ref : "?", value->start_mark.line + 1);
        } else {
            check_refs(value, depth + 1, p);
        }
    }
}

static void refs_resolve(void **state)
{
    struct problems p = {0};

    (void)state;
    check_refs(yaml_root(), 0, &p);
    assert_string_equal(p.text, "");
}

/* ---- Checking JSON values against a schema ---------------------------- */

/* Add the property names of schema, through $ref and allOf, to names
 * (a cJSON array of strings). Returns 1 when the schema allows other
 * properties (additionalProperties, or no properties at all). */
static int collect_properties(yaml_node_t *schema, cJSON *names, int depth)
{
    yaml_node_t *props, *all;
    int open = 0;

    schema = resolve(schema);
    if (schema == NULL || depth > 16)
        return 1;
    if (map_get(schema, "additionalProperties") != NULL)
        open = 1;
    props = map_get(schema, "properties");
    if (props != NULL && props->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *pair = props->data.mapping.pairs.start;
             pair < props->data.mapping.pairs.top; pair++)
            cJSON_AddItemToArray(names,
                                 cJSON_CreateString(scalar_text(
                                     yaml_document_get_node(&doc, pair->key))));
    }
    all = map_get(schema, "allOf");
    for (size_t i = 0; i < seq_length(all); i++)
        open |= collect_properties(seq_item(all, i), names, depth + 1);
    if (props == NULL && all == NULL)
        open = 1;
    return open;
}

static int name_listed(const cJSON *names, const char *name)
{
    const cJSON *item;

    cJSON_ArrayForEach(item, names)
    {
        if (cJSON_IsString(item) && strcmp(item->valuestring, name) == 0)
            return 1;
    }
    return 0;
}

static void check_value(yaml_node_t *schema, const cJSON *value,
                        const char *where, struct problems *p, int depth,
                        int check_unknown);

/* Check that the required keys of an object value are present and that
 * each described key matches its schema. */
static void check_object(yaml_node_t *schema, const cJSON *value,
                         const char *where, struct problems *p, int depth)
{
    yaml_node_t *required = map_get(schema, "required");
    yaml_node_t *props = map_get(schema, "properties");
    yaml_node_t *extra = map_get(schema, "additionalProperties");
    const cJSON *field;
    char at[256];

    for (size_t i = 0; i < seq_length(required); i++) {
        const char *name = scalar_text(seq_item(required, i));
        if (name != NULL && !cJSON_HasObjectItem(value, name))
            problem_add(p, "%s: required field '%s' is missing", where, name);
    }
    cJSON_ArrayForEach(field, value)
    {
        yaml_node_t *field_schema = map_get(props, field->string);

        snprintf(at, sizeof(at), "%s.%s", where, field->string);
        if (field_schema != NULL)
            check_value(field_schema, field, at, p, depth + 1, 1);
        else if (extra != NULL && extra->type == YAML_MAPPING_NODE)
            check_value(extra, field, at, p, depth + 1, 1);
    }
}

/* 1 when value has the schema's type, or the schema names none. */
static int type_matches(yaml_node_t *schema, const cJSON *value)
{
    const char *type = scalar_text(map_get(schema, "type"));

    if (type == NULL)
        return 1;
    if (strcmp(type, "integer") == 0)
        return cJSON_IsNumber(value) &&
               value->valuedouble == floor(value->valuedouble);
    if (strcmp(type, "number") == 0)
        return cJSON_IsNumber(value);
    if (strcmp(type, "string") == 0)
        return cJSON_IsString(value);
    if (strcmp(type, "boolean") == 0)
        return cJSON_IsBool(value);
    if (strcmp(type, "object") == 0)
        return cJSON_IsObject(value);
    if (strcmp(type, "array") == 0)
        return cJSON_IsArray(value);
    return 0;
}

static int enum_matches(yaml_node_t *schema, const cJSON *value)
{
    yaml_node_t *values = map_get(schema, "enum");

    if (values == NULL || !cJSON_IsString(value))
        return 1;
    for (size_t i = 0; i < seq_length(values); i++)
        if (scalar_is(seq_item(values, i), value->valuestring))
            return 1;
    return 0;
}

/* Check value against schema and add each mismatch to p. Unknown
 * fields of an object are looked for only when check_unknown is set,
 * because one branch of an allOf describes only some of the fields. */
static void check_value(yaml_node_t *schema, const cJSON *value,
                        const char *where, struct problems *p, int depth,
                        int check_unknown)
{
    yaml_node_t *all, *one, *items;
    char at[256];

    schema = resolve(schema);
    if (schema == NULL || depth > 32) {
        problem_add(p, "%s: schema not found", where);
        return;
    }
    if (cJSON_IsNull(value) && scalar_is(map_get(schema, "nullable"), "true"))
        return;
    one = map_get(schema, "oneOf");
    if (one != NULL) {
        int matches = 0;
        for (size_t i = 0; i < seq_length(one); i++) {
            struct problems quiet = {0};
            check_value(seq_item(one, i), value, where, &quiet, depth + 1, 1);
            matches += quiet.used == 0;
        }
        if (matches != 1)
            problem_add(p, "%s: matches %d of the oneOf schemas, not 1", where,
                        matches);
    }
    all = map_get(schema, "allOf");
    for (size_t i = 0; i < seq_length(all); i++)
        check_value(seq_item(all, i), value, where, p, depth + 1, 0);
    if (!type_matches(schema, value)) {
        char *text = cJSON_PrintUnformatted(value);
        problem_add(p, "%s: %s is not of type %s", where, text ? text : "?",
                    scalar_text(map_get(schema, "type")));
        free(text);
        return;
    }
    if (!enum_matches(schema, value))
        problem_add(p, "%s: '%s' is not in the enum", where,
                    value->valuestring);
    if (cJSON_IsObject(value) &&
        (map_get(schema, "properties") || map_get(schema, "required") ||
         map_get(schema, "additionalProperties")))
        check_object(schema, value, where, p, depth);
    items = map_get(schema, "items");
    if (cJSON_IsArray(value) && items != NULL) {
        int i = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, value)
        {
            snprintf(at, sizeof(at), "%s[%d]", where, i++);
            check_value(items, item, at, p, depth + 1, 1);
        }
    }
    if (cJSON_IsObject(value) && check_unknown) {
        cJSON *names = cJSON_CreateArray();
        const cJSON *field;
        if (!collect_properties(schema, names, 0)) {
            cJSON_ArrayForEach(field, value)
            {
                if (!name_listed(names, field->string))
                    problem_add(p, "%s: field '%s' is not described", where,
                                field->string);
            }
        }
        cJSON_Delete(names);
    }
}

/* ---- Tests: responses of the running servers --------------------------- */

struct world {
    struct stack *s;
    struct browser admin, user;
    int64_t user_id, model_id;
    /* The reply of the last request_and_check, freed by the next one
     * and by stop_servers, so a failed assert leaks nothing. */
    struct http_reply reply;
};

static struct world w;

static int start_servers(void **state)
{
    char sql[512];

    if (load_openapi(state) != 0)
        return -1;
    setenv("TRAINYARD_PWHASH", "fast", 1);
    w.s = stack_start(ADMIN, ADMIN_PASSWORD);
    assert_int_equal(stack_signin(w.s, ADMIN, ADMIN_PASSWORD, &w.admin), 200);
    w.user_id = stack_create_user(w.s, &w.admin, "user@example.test",
                                  "user password 1", &w.user);
    /* A ready data set without files: creating a model needs only its
     * row, and nothing here trains. */
    snprintf(sql, sizeof(sql),
             "INSERT INTO datasets (id, account_id, name, task, path, "
             "images, created_at) VALUES (51, %" PRId64 ", 'shapes', "
             "'detect', 'datasets/51', 12, 1700000000000)",
             w.user_id);
    stack_database_exec(w.s, sql);
    return 0;
}

static int stop_servers(void **state)
{
    int rc;

    harness_http_free(&w.reply);
    rc = stack_stop(w.s, NULL, 0);

    free_openapi(state);
    return rc;
}

/* Send a request as the user, then check the reply against the
 * description of method and path_template: the status must be one of the
 * operation's responses, and the body must match its JSON schema.
 * Returns the reply, which stays valid until the next call. */
static const struct http_reply *
request_and_check(const char *method, const char *target,
                  const char *path_template, const char *body,
                  int expected_status, struct problems *p)
{
    char headers[1024] = STACK_JSON_HEADER, status[8], lower[16];
    struct http_reply *r = &w.reply;
    yaml_node_t *op, *response, *schema;
    cJSON *json;

    harness_http_free(r);
    browser_headers(&w.user, 1, headers, sizeof(headers));
    stack_request(w.s, method, target, headers, body, r);
    if (r->status != expected_status) {
        problem_add(p, "%s %s: HTTP %d, expected %d: %s", method, target,
                    r->status, expected_status, r->body);
        return r;
    }
    lower_copy(method, lower, sizeof(lower));
    op = map_get(map_get(map_get(yaml_root(), "paths"), path_template), lower);
    snprintf(status, sizeof(status), "%d", r->status);
    response = resolve(map_get(map_get(op, "responses"), status));
    if (response == NULL) {
        problem_add(p, "%s %s: HTTP %d is not described", method, path_template,
                    r->status);
        return r;
    }
    schema = map_get(map_get(map_get(response, "content"), "application/json"),
                     "schema");
    json = cJSON_Parse(r->body);
    if (json == NULL)
        problem_add(p, "%s %s: the body is not JSON: %s", method, target,
                    r->body);
    else if (schema == NULL)
        problem_add(p, "%s %s: HTTP %d has no application/json schema", method,
                    path_template, r->status);
    else
        check_value(schema, json, path_template, p, 0, 1);
    cJSON_Delete(json);
    return r;
}

static void datasets_list_matches_schema(void **state)
{
    struct problems p = {0};
    const struct http_reply *r;

    (void)state;
    r = request_and_check("GET", "/api/v1/datasets", "/datasets", NULL, 200,
                          &p);
    assert_string_equal(p.text, "");
    assert_non_null(strstr(r->body, "\"task\":\"detect\""));
}

static void model_create_matches_schema(void **state)
{
    struct problems p = {0};
    const struct http_reply *r;

    (void)state;
    r = request_and_check("POST", "/api/v1/models", "/models",
                          "{\"name\":\"shapes model\",\"dataset\":51,"
                          "\"architecture\":\"yolov8n.yaml\","
                          "\"args\":{\"imgsz\":64,\"fliplr\":0.5}}",
                          201, &p);
    assert_string_equal(p.text, "");
    w.model_id = (int64_t)json_number(r->body, "id", NULL);
    assert_true(w.model_id > 0);
}

static void model_get_matches_schema(void **state)
{
    struct problems p = {0};
    const struct http_reply *r;
    char target[96];

    (void)state;
    assert_true(w.model_id > 0);
    snprintf(target, sizeof(target), "/api/v1/models/%" PRId64, w.model_id);
    r = request_and_check("GET", target, "/models/{id}", NULL, 200, &p);
    assert_string_equal(p.text, "");
    assert_non_null(strstr(r->body, "\"architecture\":\"yolov8n.yaml\""));
    assert_non_null(strstr(r->body, "\"task\":\"detect\""));
    assert_non_null(strstr(r->body, "\"session\":null"));
}

static void models_list_matches_schema(void **state)
{
    struct problems p = {0};
    const struct http_reply *r;

    (void)state;
    r = request_and_check("GET", "/api/v1/models", "/models", NULL, 200, &p);
    assert_string_equal(p.text, "");
    assert_non_null(strstr(r->body, "\"shapes model\""));
}

static void model_create_error_matches(void **state)
{
    struct problems p = {0};
    const struct http_reply *r;

    (void)state;
    /* A classification architecture for a detection data set. */
    r = request_and_check("POST", "/api/v1/models", "/models",
                          "{\"name\":\"wrong task\",\"dataset\":51,"
                          "\"architecture\":\"yolov8n-cls.yaml\"}",
                          400, &p);
    assert_string_equal(p.text, "");
    assert_error(r, 400, "invalid_request");
}

static void quote_matches_schema(void **state)
{
    struct problems p = {0};
    const struct http_reply *r;

    (void)state;
    r = request_and_check("POST", "/api/v1/quote", "/quote",
                          "{\"duration_ms\":1800000,\"instance_type\":\"cpu\"}",
                          200, &p);
    assert_string_equal(p.text, "");
    assert_true(json_number(r->body, "price", NULL) >= 0);
    assert_int_equal((int64_t)json_number(r->body, "duration_ms", NULL),
                     1800000);
}

static void events_match_schema(void **state)
{
    struct problems p = {0};
    const struct http_reply *r;
    char target[96];

    (void)state;
    assert_true(w.model_id > 0);
    snprintf(target, sizeof(target),
             "/api/v1/models/%" PRId64 "/events?after=0&limit=10", w.model_id);
    r = request_and_check("GET", target, "/models/{id}/events", NULL, 200, &p);
    assert_string_equal(p.text, "");
    assert_non_null(strstr(r->body, "\"more\":false"));
}

/* Requests whose replies must match the description. "{model}" in a
 * target is replaced by the id of the model that the tests created. */
static const struct {
    const char *method, *target, *path_template, *body;
    int status;
} shape_cases[] = {
    {"GET", "/api/v1/health", "/health", NULL, 200},
    {"GET", "/api/v1/me", "/me", NULL, 200},
    {"POST", "/api/v1/apikeys", "/apikeys", "{\"name\":\"script\"}", 201},
    {"GET", "/api/v1/apikeys", "/apikeys", NULL, 200},
    {"GET", "/api/v1/instance-types", "/instance-types", NULL, 200},
    {"GET", "/api/v1/balance", "/balance", NULL, 200},
    {"GET", "/api/v1/ledger", "/ledger", NULL, 200},
    {"GET", "/api/v1/datasets/51/report", "/datasets/{id}/report", NULL, 200},
    /* The user is on the free plan, and training needs Pro. */
    {"POST", "/api/v1/models/{model}/train", "/models/{id}/train",
     "{\"mode\":\"epochs\",\"epochs\":1,\"instance_type\":\"cpu\"}", 403},
    {"POST", "/api/v1/models/{model}/stop", "/models/{id}/stop", NULL, 400},
    {"POST", "/api/v1/models/{model}/resume", "/models/{id}/resume", NULL, 404},
    {"GET", "/api/v1/models/{model}/events?after=x", "/models/{id}/events",
     NULL, 400},
    {"POST", "/api/v1/quote", "/quote",
     "{\"duration_ms\":0,"
     "\"instance_type\":\"cpu\"}",
     400},
};

static void routes_match_schemas(void **state)
{
    static const char model_marker[] = "{model}";
    struct problems p = {0};
    char target[160];

    (void)state;
    assert_true(w.model_id > 0);
    for (size_t i = 0; i < sizeof(shape_cases) / sizeof(shape_cases[0]); i++) {
        const char *marker = strstr(shape_cases[i].target, model_marker);

        if (marker != NULL)
            snprintf(target, sizeof(target), "%.*s%" PRId64 "%s",
                     (int)(marker - shape_cases[i].target),
                     shape_cases[i].target, w.model_id,
                     marker + sizeof(model_marker) - 1);
        else
            snprintf(target, sizeof(target), "%s", shape_cases[i].target);
        request_and_check(shape_cases[i].method, target,
                          shape_cases[i].path_template, shape_cases[i].body,
                          shape_cases[i].status, &p);
    }
    assert_string_equal(p.text, "");
}

static void model_missing_matches_error(void **state)
{
    struct problems p = {0};
    const struct http_reply *r;

    (void)state;
    r = request_and_check("GET", "/api/v1/models/987654", "/models/{id}", NULL,
                          404, &p);
    assert_string_equal(p.text, "");
    assert_error(r, 404, "not_found");
}

static void model_delete_matches_schema(void **state)
{
    struct problems p = {0};
    const struct http_reply *r;
    char target[96];

    (void)state;
    assert_true(w.model_id > 0);
    snprintf(target, sizeof(target), "/api/v1/models/%" PRId64, w.model_id);
    r = request_and_check("DELETE", target, "/models/{id}", NULL, 200, &p);
    assert_string_equal(p.text, "");
    assert_string_equal(r->body, "{}");
    r = request_and_check("GET", target, "/models/{id}", NULL, 404, &p);
    assert_string_equal(p.text, "");
    assert_error(r, 404, "not_found");
}

int main(void)
{
    const struct CMUnitTest spec_tests[] = {
        cmocka_unit_test(spec_is_openapi_3_0),
        cmocka_unit_test(spec_describes_every_route),
        cmocka_unit_test(spec_has_no_extra_operation),
        cmocka_unit_test(operations_have_success_response),
        cmocka_unit_test(error_responses_use_error_schema),
        cmocka_unit_test(error_codes_have_statuses),
        cmocka_unit_test(csrf_routes_declare_header),
        cmocka_unit_test(public_routes_need_no_security),
        cmocka_unit_test(json_routes_declare_body),
        cmocka_unit_test(path_parameters_described),
        cmocka_unit_test(refs_resolve),
    };
    const struct CMUnitTest server_tests[] = {
        cmocka_unit_test(datasets_list_matches_schema),
        cmocka_unit_test(model_create_matches_schema),
        cmocka_unit_test(model_get_matches_schema),
        cmocka_unit_test(models_list_matches_schema),
        cmocka_unit_test(model_create_error_matches),
        cmocka_unit_test(quote_matches_schema),
        cmocka_unit_test(events_match_schema),
        cmocka_unit_test(routes_match_schemas),
        cmocka_unit_test(model_missing_matches_error),
        cmocka_unit_test(model_delete_matches_schema),
    };
    int failed = cmocka_run_group_tests_name("openapi description", spec_tests,
                                             load_openapi, free_openapi);

    failed += cmocka_run_group_tests_name("openapi responses", server_tests,
                                          start_servers, stop_servers);
    return failed;
}
