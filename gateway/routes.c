/*
 * The route table and path matching (see routes.h). Matching walks the
 * pattern and the path segment by segment, so "{id}" can only ever match
 * one whole segment, and nothing is allocated.
 */
#include "routes.h"

#include <stdio.h>
#include <string.h>

#include "api.h"

/* Sign-in is the one state-changing route without CSRF: it runs before a
 * session exists, and api.c requires a JSON content type for it, which a
 * cross-site form cannot send. */
const struct route api_routes[] = {
    {"GET", "/api/v1/health", api_health, ROUTE_PUBLIC, 0, 0},
    {"POST", "/api/v1/auth/signin", api_signin, ROUTE_PUBLIC, 0, 1},
    {"POST", "/api/v1/auth/signout", api_signout, ROUTE_USER, 1, 0},
    {"GET", "/api/v1/me", api_me, ROUTE_USER, 0, 0},
    {"GET", "/api/v1/apikeys", api_apikeys_list, ROUTE_USER, 0, 0},
    {"POST", "/api/v1/apikeys", api_apikeys_create, ROUTE_USER, 1, 1},
    {"DELETE", "/api/v1/apikeys/{id}", api_apikeys_revoke, ROUTE_USER, 1, 0},
    {"GET", "/api/v1/admin/accounts", api_admin_accounts_list, ROUTE_ADMIN, 0,
     0},
    {"POST", "/api/v1/admin/accounts", api_admin_accounts_create, ROUTE_ADMIN,
     1, 1},
    {"POST", "/api/v1/admin/accounts/{id}/plan", api_admin_accounts_plan,
     ROUTE_ADMIN, 1, 1},
    {"POST", "/api/v1/admin/accounts/{id}/credits", api_admin_credit,
     ROUTE_ADMIN, 1, 1},
    {"GET", "/api/v1/instance-types", api_instance_types, ROUTE_USER, 0, 0},
    {"GET", "/api/v1/datasets", api_datasets_list, ROUTE_USER, 0, 0},
    {"POST", "/api/v1/datasets", api_datasets_upload, ROUTE_USER, 1, 0},
    {"DELETE", "/api/v1/datasets/{id}", api_datasets_delete, ROUTE_USER, 1,
     0},
    {"GET", "/api/v1/datasets/{id}/report", api_datasets_report, ROUTE_USER,
     0, 0},
    {"GET", "/api/v1/models", api_models_list, ROUTE_USER, 0, 0},
    {"POST", "/api/v1/models", api_models_create, ROUTE_USER, 1, 1},
    {"GET", "/api/v1/models/{id}", api_models_get, ROUTE_USER, 0, 0},
    {"DELETE", "/api/v1/models/{id}", api_models_delete, ROUTE_USER, 1, 0},
    {"POST", "/api/v1/models/{id}/train", api_training_start, ROUTE_USER, 1,
     1},
    {"POST", "/api/v1/models/{id}/stop", api_training_stop, ROUTE_USER, 1,
     0},
    {"POST", "/api/v1/quote", api_training_quote, ROUTE_USER, 1, 1},
    {"POST", "/api/v1/models/{id}/resume", api_training_resume, ROUTE_USER,
     1, 0},
    {"GET", "/api/v1/models/{id}/events", api_training_events, ROUTE_USER,
     0, 0},
    {"GET", "/api/v1/balance", api_balance, ROUTE_USER, 0, 0},
    {"GET", "/api/v1/ledger", api_ledger, ROUTE_USER, 0, 0},
    {"POST", "/api/v1/topup", api_topup, ROUTE_USER, 1, 1},
    {"GET", "/api/v1/models/{id}/billing.csv", api_model_billing_csv,
     ROUTE_USER, 0, 0},
    {"GET", "/api/v1/models/{id}/billing.pdf", api_model_billing_pdf,
     ROUTE_USER, 0, 0},
    {"GET", "/api/v1/models/{id}/weights", api_model_weights, ROUTE_USER, 0,
     0},
    {"POST", "/api/v1/models/{id}/share", api_model_share, ROUTE_USER, 1, 1},
    {"GET", "/api/v1/shared/{token}", api_shared_weights, ROUTE_PUBLIC, 0,
     0},
    {"GET", "/api/v1/statement.csv", api_statement_csv, ROUTE_USER, 0, 0},
    {"GET", "/api/v1/statement.pdf", api_statement_pdf, ROUTE_USER, 0, 0},
    {NULL, NULL, NULL, ROUTE_PUBLIC, 0, 0},
};

/* Parse one id segment of n characters; returns 1 with *id set, else 0. */
static int parse_id(const char *segment, size_t n, int64_t *id)
{
    int64_t value = 0;

    if (n == 0 || n > 16 || segment[0] == '0')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (segment[i] < '0' || segment[i] > '9')
            return 0;
        value = value * 10 + (segment[i] - '0');
    }
    if (value > ROUTE_ID_MAX)
        return 0;
    *id = value;
    return 1;
}

/* 1 when a segment of n characters can be a share token: 1 to
 * ROUTE_TOKEN_MAX characters of base64url and '.'. */
static int is_token(const char *segment, size_t n)
{
    if (n == 0 || n > ROUTE_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = segment[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
        if (!ok)
            return 0;
    }
    return 1;
}

int route_match(const char *pattern, const char *path, int64_t *id)
{
    static const char id_segment[] = "{id}";
    static const char token_segment[] = "{token}";
    int64_t found = 0;

    while (*pattern != '\0' && *path != '\0') {
        const char *pattern_end = strchr(pattern, '/');
        const char *path_end = strchr(path, '/');
        size_t pattern_len, path_len;

        /* Both start at a '/': compare up to the next one. */
        if (*pattern == '/' || *path == '/') {
            if (*pattern != *path)
                return 0;
            pattern++;
            path++;
            continue;
        }
        pattern_len =
            pattern_end ? (size_t)(pattern_end - pattern) : strlen(pattern);
        path_len = path_end ? (size_t)(path_end - path) : strlen(path);
        if (pattern_len == sizeof(id_segment) - 1 &&
            memcmp(pattern, id_segment, pattern_len) == 0) {
            if (!parse_id(path, path_len, &found))
                return 0;
        } else if (pattern_len == sizeof(token_segment) - 1 &&
                   memcmp(pattern, token_segment, pattern_len) == 0) {
            if (!is_token(path, path_len))
                return 0;
        } else if (pattern_len != path_len ||
                   memcmp(pattern, path, path_len) != 0) {
            return 0;
        }
        pattern += pattern_len;
        path += path_len;
    }
    if (*pattern != '\0' || *path != '\0')
        return 0;
    *id = found;
    return 1;
}

const struct route *route_find(const struct route *table, const char *method,
                               const char *path, int64_t *id, char *allow,
                               size_t allow_len)
{
    size_t used = 0;

    if (allow_len > 0)
        allow[0] = '\0';
    for (const struct route *r = table; r->method != NULL; r++) {
        int64_t value;

        if (!route_match(r->pattern, path, &value))
            continue;
        if (strcmp(r->method, method) == 0) {
            *id = value;
            return r;
        }
        if (used < allow_len) {
            int n = snprintf(allow + used, allow_len - used, "%s%s",
                             used > 0 ? ", " : "", r->method);
            if (n > 0)
                used += (size_t)n;
        }
    }
    return NULL;
}

int route_method_changes_state(const char *method)
{
    return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
           strcmp(method, "PATCH") == 0 || strcmp(method, "DELETE") == 0;
}
