/*
 * REST endpoints for trained weights: the owner's download of a model's
 * best or last checkpoint, signed share links that expire, and the
 * public download through such a link.
 *
 * Checkpoints can be larger than one protocol message, so the gateway
 * reads them from the backend in pieces (models.weights_chunk) and
 * writes each piece before it requests the next. Memory stays bounded
 * by one piece, and Content-Length comes from the first piece's size.
 * Share tokens are credentials, so nothing here logs them.
 */
#include <civetweb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "upstream.h"

#define SHARE_URL_PREFIX "/api/v1/shared/"

/* Decode the data_base64 field of a chunk result into *bytes (free it). */
static int decode_chunk(const cJSON *result, unsigned char **bytes, size_t *len)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(result, "data_base64");
    size_t b64_len, max_len;

    *bytes = NULL;
    *len = 0;
    if (!cJSON_IsString(data))
        return -1;
    b64_len = strlen(data->valuestring);
    max_len = b64_len / 4 * 3 + 3;
    *bytes = malloc(max_len);
    if (*bytes == NULL ||
        sodium_base642bin(*bytes, max_len, data->valuestring, b64_len, NULL,
                          len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(*bytes);
        *bytes = NULL;
        return -1;
    }
    return 0;
}

static cJSON *chunk_args(int64_t model, const char *which, uint64_t offset)
{
    cJSON *args = cJSON_CreateObject();

    cJSON_AddNumberToObject(args, "model", (double)model);
    cJSON_AddStringToObject(args, "which", which);
    cJSON_AddNumberToObject(args, "offset", (double)offset);
    return args;
}

/* Request the first chunk; on failure, send the error and return NULL. */
static cJSON *first_chunk(struct api_request *req, int64_t model,
                          const char *which)
{
    cJSON *args = chunk_args(model, which, 0);
    cJSON *result = api_call(req, "models.weights_chunk", args);

    cJSON_Delete(args);
    return result;
}

/* Request a later chunk, after the headers went out, so a failure is
 * logged and not sent. Returns the result or NULL. */
static cJSON *next_chunk(struct api_request *req, int64_t model,
                         const char *which, uint64_t offset)
{
    cJSON *args = chunk_args(model, which, offset);
    cJSON *response = NULL, *result = NULL;
    struct error err = {0};

    if (upstream_call_as(req->who.account_id, "models.weights_chunk", args,
                         API_BACKEND_TIMEOUT_MS, &response, &err) != 0) {
        log_error("weights chunk request failed: %s model=%lld offset=%llu",
                  err.msg, (long long)model, (unsigned long long)offset);
    } else if (!cJSON_IsTrue(
                   cJSON_GetObjectItemCaseSensitive(response, "ok"))) {
        log_error("backend rejected a weights chunk model=%lld offset=%llu",
                  (long long)model, (unsigned long long)offset);
    } else {
        result = cJSON_DetachItemFromObjectCaseSensitive(response, "result");
    }
    cJSON_Delete(response);
    cJSON_Delete(args);
    return result;
}

/* Stream the checkpoint as req's account. Errors before the headers go
 * out as JSON. A failure after them ends the body short, so the client
 * receives fewer bytes than Content-Length. */
static void stream_weights(struct api_request *req, int64_t model,
                           const char *which)
{
    cJSON *result = first_chunk(req, model, which);
    const cJSON *size, *name, *type;
    uint64_t total, sent = 0;

    if (result == NULL)
        return;
    size = cJSON_GetObjectItemCaseSensitive(result, "size");
    name = cJSON_GetObjectItemCaseSensitive(result, "filename");
    type = cJSON_GetObjectItemCaseSensitive(result, "content_type");
    if (!cJSON_IsNumber(size) || size->valuedouble < 0 ||
        !cJSON_IsString(name) || !cJSON_IsString(type)) {
        cJSON_Delete(result);
        api_send_error(req, "internal", "the backend sent no checkpoint");
        return;
    }
    total = (uint64_t)size->valuedouble;
    api_send_attachment_headers(req, type->valuestring, name->valuestring,
                                total);

    /* NOTE: a checkpoint written during the download can mix two files in
     * the body. The bytes sent never exceed the size that the first chunk
     * reported. */
    while (result != NULL) {
        unsigned char *bytes;
        size_t len;
        int eof = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(result, "eof"));

        if (decode_chunk(result, &bytes, &len) != 0) {
            log_error("invalid base64 in a weights chunk from the backend "
                      "model=%lld offset=%llu",
                      (long long)model, (unsigned long long)sent);
            break;
        }
        cJSON_Delete(result);
        result = NULL;
        if (len > total - sent)
            len = (size_t)(total - sent);
        if (len > 0 && mg_write(req->conn, bytes, len) <= 0) {
            free(bytes);
            break;
        }
        free(bytes);
        sent += len;
        if (eof || sent >= total || len == 0)
            break;
        result = next_chunk(req, model, which, sent);
    }
    cJSON_Delete(result);
    if (sent < total)
        log_error("weights download ended early model=%lld sent=%llu size=%llu",
                  (long long)model, (unsigned long long)sent,
                  (unsigned long long)total);
}

/* The ?which= query parameter: "best" (the default) or "last". Sends 400
 * and returns NULL for anything else. */
static const char *query_which(struct api_request *req)
{
    char value[16];
    int rc = api_query_value(req, "which", value, sizeof(value));

    if (rc < 0)
        return NULL;
    if (rc > 0 || strcmp(value, "best") == 0)
        return "best";
    if (strcmp(value, "last") == 0)
        return "last";
    api_send_error(req, "invalid_request",
                   "query parameter which must be best or last");
    return NULL;
}

void api_model_weights(struct api_request *req)
{
    const char *which = query_which(req);

    if (which != NULL)
        stream_weights(req, req->id, which);
}

/* Body: {"which": "best"|"last", "expires_in_s": 60..604800}. */
void api_model_share(struct api_request *req)
{
    cJSON *args = cJSON_Duplicate(req->body, 1);
    const cJSON *token, *expires_at;
    cJSON *result, *reply;
    char url[sizeof(SHARE_URL_PREFIX) + 512];

    cJSON_DeleteItemFromObjectCaseSensitive(args, "model");
    cJSON_AddNumberToObject(args, "model", (double)req->id);
    result = api_call(req, "models.share_sign", args);
    cJSON_Delete(args);
    if (result == NULL)
        return;
    token = cJSON_GetObjectItemCaseSensitive(result, "token");
    expires_at = cJSON_GetObjectItemCaseSensitive(result, "expires_at");
    if (!cJSON_IsString(token) || !cJSON_IsNumber(expires_at) ||
        strlen(token->valuestring) >= 512) {
        cJSON_Delete(result);
        api_send_error(req, "internal", "the backend sent no share token");
        return;
    }
    snprintf(url, sizeof(url), "%s%s", SHARE_URL_PREFIX, token->valuestring);
    reply = cJSON_CreateObject();
    cJSON_AddStringToObject(reply, "url", url);
    cJSON_AddNumberToObject(reply, "expires_at", expires_at->valuedouble);
    api_send_json(req, 201, reply);
    sodium_memzero(url, sizeof(url));
    cJSON_Delete(reply);
    cJSON_Delete(result);
}

/* Public: the backend checks the token, then the download runs as the
 * account that signed it, so its ownership check applies unchanged. */
void api_shared_weights(struct api_request *req)
{
    const char *token = req->info->local_uri + strlen(SHARE_URL_PREFIX);
    const cJSON *model, *which, *account;
    cJSON *args = cJSON_CreateObject();
    cJSON *result;
    char which_text[8];

    cJSON_AddStringToObject(args, "token", token);
    result = api_call(req, "models.share_verify", args);
    cJSON_Delete(args);
    if (result == NULL)
        return;
    model = cJSON_GetObjectItemCaseSensitive(result, "model");
    which = cJSON_GetObjectItemCaseSensitive(result, "which");
    account = cJSON_GetObjectItemCaseSensitive(result, "account");
    if (!cJSON_IsNumber(model) || !cJSON_IsString(which) ||
        !cJSON_IsNumber(account)) {
        cJSON_Delete(result);
        api_send_error(req, "internal", "the backend sent no share link");
        return;
    }
    snprintf(which_text, sizeof(which_text), "%s", which->valuestring);
    req->who.account_id = (int64_t)account->valuedouble;
    stream_weights(req, (int64_t)model->valuedouble, which_text);
    cJSON_Delete(result);
}
