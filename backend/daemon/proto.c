/*
 * Message handling for the gateway connection. The first message must be a
 * hello with the shared secret; anything else first, or a wrong secret,
 * gets an error and the connection closes. After that, each request names
 * an op and carries an id that its response repeats, so the gateway can
 * have many requests in flight on one connection.
 */
#include "proto.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "number.h"
#include "ops_auth.h"
#include "ops_billing.h"
#include "ops_training.h"
#include "ops_uploads.h"

static cJSON *op_health(struct op_call *call)
{
    cJSON *result = cJSON_CreateObject();
    struct backend *be = call->be;

    cJSON_AddStringToObject(result, "status", "ok");
    cJSON_AddStringToObject(result, "version", BACKEND_VERSION);
    cJSON_AddNumberToObject(result, "protocol", PROTO_VERSION);
    cJSON_AddNumberToObject(result, "schema_version",
                            be->store.schema_version);
    cJSON_AddNumberToObject(result, "uptime_ms",
                            (double)(clock_monotonic_ms() - be->started_ms));
    return result;
}

const struct proto_op proto_core_ops[] = {
    {"health", op_health},
    {NULL, NULL},
};

/* Every module's ops; a new module adds its table here. */
static const struct proto_op *const op_tables[] = {
    proto_core_ops,
    proto_auth_ops,
    proto_billing_ops,
    proto_training_ops,
    proto_upload_ops,
};

static const struct proto_op *find_op(const char *name)
{
    for (size_t t = 0; t < sizeof(op_tables) / sizeof(op_tables[0]); t++)
        for (const struct proto_op *op = op_tables[t]; op->name; op++)
            if (strcmp(op->name, name) == 0)
                return op;
    return NULL;
}

cJSON *op_error(struct op_call *call, const char *code, const char *fmt, ...)
{
    va_list ap;

    call->code = code;
    va_start(ap, fmt);
    vsnprintf(call->message, sizeof(call->message), fmt, ap);
    va_end(ap);
    return NULL;
}

static const cJSON *find_arg(struct op_call *call, const char *name)
{
    return call->args ? cJSON_GetObjectItemCaseSensitive(call->args, name)
                      : NULL;
}

int op_arg_int64(struct op_call *call, const char *name, int64_t *out)
{
    const cJSON *v = find_arg(call, name);

    if (v == NULL)
        return 1;
    if (!cJSON_IsNumber(v) ||
        number_whole(v->valuedouble, -NUMBER_WHOLE_MAX, NUMBER_WHOLE_MAX,
                     out) != 0) {
        op_error(call, "invalid_request",
                 "field '%s' must be a whole number from -2^53 to 2^53",
                 name);
        return -1;
    }
    return 0;
}

int op_arg_string(struct op_call *call, const char *name, const char **out)
{
    const cJSON *v = find_arg(call, name);

    if (v == NULL)
        return 1;
    if (!cJSON_IsString(v)) {
        op_error(call, "invalid_request", "field '%s' must be a string",
                 name);
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

static char *error_message(const char *type, const cJSON *id,
                           const char *code, const char *text)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *error;
    char *out;

    cJSON_AddStringToObject(root, "type", type);
    if (id != NULL)
        cJSON_AddItemToObject(root, "id", cJSON_Duplicate(id, 0));
    if (strcmp(type, "response") == 0)
        cJSON_AddBoolToObject(root, "ok", 0);
    error = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(error, "code", code);
    cJSON_AddStringToObject(error, "message", text);
    out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static char *handle_hello(struct backend *be, struct proto_conn *conn,
                          const cJSON *root)
{
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(root, "secret");
    cJSON *welcome;
    char *out;

    if (!cJSON_IsNumber(version) || version->valuedouble != PROTO_VERSION) {
        conn->close_after_reply = 1;
        log_warn("gateway rejected: protocol version is not %d",
                 PROTO_VERSION);
        return error_message("error", NULL, "unsupported_version",
                             "this backend speaks protocol version 1");
    }
    if (!cJSON_IsString(secret) ||
        !secret_equal(secret->valuestring, be->secret)) {
        conn->close_after_reply = 1;
        log_warn("gateway rejected: wrong or missing shared secret");
        return error_message("error", NULL, "unauthorized",
                             "the shared secret does not match the "
                             "backend's gateway.secret file");
    }

    conn->authenticated = 1;
    log_info("gateway connected");
    welcome = cJSON_CreateObject();
    cJSON_AddStringToObject(welcome, "type", "welcome");
    cJSON_AddNumberToObject(welcome, "version", PROTO_VERSION);
    cJSON_AddStringToObject(welcome, "backend", BACKEND_VERSION);
    out = cJSON_PrintUnformatted(welcome);
    cJSON_Delete(welcome);
    return out;
}

static char *handle_request(struct backend *be, const cJSON *root)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(root, "op");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(root, "args");
    const cJSON *account = cJSON_GetObjectItemCaseSensitive(root,
                                                            "account");
    char text[256];
    cJSON *result = NULL, *reply;
    char *out;

    if (!cJSON_IsNumber(id))
        return error_message("response", NULL, "invalid_request",
                             "field 'id' must be a number");
    if (!cJSON_IsString(op))
        return error_message("response", id, "invalid_request",
                             "field 'op' must be a string");
    if (args != NULL && !cJSON_IsObject(args))
        return error_message("response", id, "invalid_request",
                             "field 'args' must be an object");

    const struct proto_op *found = find_op(op->valuestring);
    if (found == NULL) {
        snprintf(text, sizeof(text), "unknown op '%.64s'", op->valuestring);
        return error_message("response", id, "unknown_op", text);
    }
    if (account != NULL && !cJSON_IsNumber(account))
        return error_message("response", id, "invalid_request",
                             "field 'account' must be a number");

    struct op_call call;
    memset(&call, 0, sizeof(call));
    call.be = be;
    call.account_id = account ? (int64_t)account->valuedouble : 0;
    call.args = args;
    result = found->handler(&call);
    if (result == NULL) {
        if (call.code == NULL || strcmp(call.code, "internal") == 0)
            log_error("op %s failed: %s", found->name,
                      call.message[0] ? call.message : "no message");
        return error_message("response", id, call.code ? call.code
                                                       : "internal",
                             call.message[0] ? call.message
                                             : "internal error");
    }

    reply = cJSON_CreateObject();
    cJSON_AddStringToObject(reply, "type", "response");
    cJSON_AddItemToObject(reply, "id", cJSON_Duplicate(id, 0));
    cJSON_AddBoolToObject(reply, "ok", 1);
    cJSON_AddItemToObject(reply, "result", result);
    out = cJSON_PrintUnformatted(reply);
    cJSON_Delete(reply);
    return out;
}

void proto_handle(struct backend *be, struct proto_conn *conn,
                  const char *msg, size_t len, char **reply)
{
    cJSON *root = cJSON_ParseWithLength(msg, len);
    const cJSON *type;

    *reply = NULL;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        if (!conn->authenticated)
            conn->close_after_reply = 1;
        *reply = error_message("error", NULL, "invalid_json",
                               "the message is not a JSON object");
        return;
    }

    type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (!cJSON_IsString(type)) {
        if (!conn->authenticated)
            conn->close_after_reply = 1;
        *reply = error_message("error", NULL, "invalid_request",
                               "field 'type' must be a string");
    } else if (!conn->authenticated) {
        if (strcmp(type->valuestring, "hello") == 0) {
            *reply = handle_hello(be, conn, root);
        } else {
            conn->close_after_reply = 1;
            *reply = error_message("error", NULL, "unauthorized",
                                   "send a hello message first");
        }
    } else if (strcmp(type->valuestring, "request") == 0) {
        *reply = handle_request(be, root);
    } else {
        char text[128];
        snprintf(text, sizeof(text), "unknown message type '%.32s'",
                 type->valuestring);
        *reply = error_message("error", NULL, "invalid_request", text);
    }
    cJSON_Delete(root);
}
