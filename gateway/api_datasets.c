/*
 * REST endpoints for data set uploads, reports and deletion.
 *
 * POST /api/v1/datasets?name=NAME&task=classify takes the zip archive as
 * the raw body, and the gateway never has all of it in memory. The handler reads
 * pieces of DATASET_PIECE bytes and sends each as one
 * datasets.upload_chunk. It waits for the backend's response before it
 * reads the next piece, so the gateway's memory stays bounded and the
 * backend sets the pace. The SHA-256 of the body is computed as it
 * streams and sent with datasets.upload_end, which extracts and
 * validates the archive. A client may send its own checksum in the
 * X-Content-SHA256 header. Any failure on the way aborts the upload on
 * the backend.
 *
 * DELETE /api/v1/datasets/{id} and GET /api/v1/datasets/{id}/report
 * forward to datasets.delete and datasets.report; the backend returns
 * not_found for another account's data set.
 */
#include <civetweb.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "log.h"
#include "upstream.h"

/* Largest archive accepted: 2 GiB, as the backend's UPLOAD_MAX_BYTES. */
#define DATASET_UPLOAD_MAX (2LL << 30)
/* Optional request header: the archive's SHA-256 as 64 hex digits. */
#define DATASET_SHA256_HEADER "X-Content-SHA256"
/* Bytes read from the body and sent per chunk: 256 KiB. */
#define DATASET_PIECE (256 * 1024)
/* upload_end extracts and validates, so it may take longer than other
 * ops. */
#define DATASET_END_TIMEOUT_MS 600000

static int content_type_is_zip(const char *type)
{
    static const char zip[] = "application/zip";

    return type != NULL && strncasecmp(type, zip, sizeof(zip) - 1) == 0 &&
           (type[sizeof(zip) - 1] == '\0' || type[sizeof(zip) - 1] == ';');
}

/* Tell the backend to drop the upload; the response is only logged. */
static void abort_upload(struct api_request *req, int64_t upload,
                         const char *why)
{
    cJSON *args = cJSON_CreateObject(), *response = NULL;
    struct error err = {0};

    cJSON_AddNumberToObject(args, "upload", (double)upload);
    if (upstream_call_as(req->who.account_id, "datasets.upload_abort", args,
                         API_BACKEND_TIMEOUT_MS, &response, &err) != 0)
        log_error("upload abort account=%lld dataset=%lld failed: %s",
                  (long long)req->who.account_id, (long long)upload,
                  err.msg);
    log_warn("upload aborted account=%lld dataset=%lld: %s",
             (long long)req->who.account_id, (long long)upload, why);
    cJSON_Delete(response);
    cJSON_Delete(args);
}

/* Read query parameter name into out; 0 when present and not empty. */
static int query_value(struct api_request *req, const char *name, char *out,
                       size_t len)
{
    const char *query = req->info->query_string;

    if (query == NULL)
        return -1;
    return mg_get_var(query, strlen(query), name, out, len) > 0 ? 0 : -1;
}

/* Check the request before anything is read; 0 when it may go on. */
static int check_upload_request(struct api_request *req, char *name,
                                size_t name_len, char *task,
                                size_t task_len)
{
    long long length = req->info->content_length;

    if (length < 0) {
        api_send_error(req, "invalid_request",
                       "Content-Length is required; send the archive with "
                       "its size");
        return -1;
    }
    if (length > DATASET_UPLOAD_MAX) {
        api_send_error(req, "payload_too_large",
                       "the archive is %lld bytes; the maximum is %lld",
                       length, (long long)DATASET_UPLOAD_MAX);
        return -1;
    }
    if (length == 0) {
        api_send_error(req, "invalid_request",
                       "the request body is empty; send the zip archive");
        return -1;
    }
    if (!content_type_is_zip(mg_get_header(req->conn, "Content-Type"))) {
        api_send_error(req, "unsupported_media_type",
                       "send the archive with 'Content-Type: "
                       "application/zip'");
        return -1;
    }
    if (query_value(req, "name", name, name_len) != 0) {
        api_send_error(req, "invalid_request",
                       "query parameter 'name' is required, 1 to 100 "
                       "bytes");
        return -1;
    }
    /* mg_get_var returns -1 for a missing parameter and -2 when the
     * value does not fit. A value too long to be a task is rejected, not
     * read as missing. */
    const char *query = req->info->query_string;
    int got = query ? mg_get_var(query, strlen(query), "task", task, task_len)
                    : -1;
    if (got == -2) {
        api_send_error(req, "invalid_request",
                       "query parameter 'task' is too long; use classify "
                       "or detect");
        return -1;
    }
    if (got <= 0)
        snprintf(task, task_len, "classify");
    return 0;
}

/* Stream the body to the backend as chunks. Returns 0 with the hex
 * SHA-256 in sha, or -1 after sending the error. */
static int send_chunks(struct api_request *req, int64_t upload,
                       unsigned char *piece, char *text, char sha[65])
{
    long long length = req->info->content_length, sent = 0;
    crypto_hash_sha256_state state;
    unsigned char digest[crypto_hash_sha256_BYTES];
    size_t text_len = sodium_base64_encoded_len(
        DATASET_PIECE, sodium_base64_VARIANT_ORIGINAL);

    crypto_hash_sha256_init(&state);
    while (sent < length) {
        size_t want = length - sent < DATASET_PIECE ? (size_t)(length - sent)
                                                    : DATASET_PIECE;
        size_t got = 0;
        cJSON *args, *result;

        /* mg_read may return less than asked; fill the whole piece. */
        while (got < want) {
            int n = mg_read(req->conn, piece + got, want - got);
            if (n <= 0) {
                api_send_error(req, "invalid_request",
                               "the request body ended after %lld of its "
                               "%lld bytes; send the whole archive",
                               sent + (long long)got, length);
                return -1;
            }
            got += (size_t)n;
        }
        crypto_hash_sha256_update(&state, piece, got);
        sodium_bin2base64(text, text_len, piece, got,
                          sodium_base64_VARIANT_ORIGINAL);
        args = cJSON_CreateObject();
        cJSON_AddNumberToObject(args, "upload", (double)upload);
        cJSON_AddNumberToObject(args, "offset", (double)sent);
        cJSON_AddStringToObject(args, "data_base64", text);
        result = api_call(req, "datasets.upload_chunk", args);
        cJSON_Delete(args);
        if (result == NULL)
            return -1;
        cJSON_Delete(result);
        sent += (long long)got;
    }
    crypto_hash_sha256_final(&state, digest);
    sodium_bin2hex(sha, 65, digest, sizeof(digest));
    return 0;
}

/* upload_end with a longer timeout than api_call's, because it extracts
 * and validates. Sends the result with 201 or the error. */
static int end_upload(struct api_request *req, int64_t upload,
                      const char *sha)
{
    cJSON *args = cJSON_CreateObject(), *response = NULL, *result;
    struct error err = {0};
    int rc = -1;

    cJSON_AddNumberToObject(args, "upload", (double)upload);
    cJSON_AddStringToObject(args, "sha256", sha);
    if (upstream_call_as(req->who.account_id, "datasets.upload_end", args,
                         DATASET_END_TIMEOUT_MS, &response, &err) != 0) {
        api_send_error(req, "backend_unavailable", "%s", err.msg);
    } else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(response,
                                                             "ok"))) {
        result = cJSON_GetObjectItemCaseSensitive(response, "result");
        api_send_json(req, 201, result);
        rc = 0;
    } else {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(response, "error");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        const char *code = cJSON_IsString(c) ? c->valuestring : "internal";

        /* As api.c does: internal details stay in the log. */
        if (api_status_for_code(code) >= 500) {
            log_error("backend op datasets.upload_end failed: code=%s %s",
                      code, cJSON_IsString(m) ? m->valuestring : "");
            api_send_error(req, "internal",
                           "the backend failed; its log has the details");
        } else {
            api_send_error(req, code, "%s",
                           cJSON_IsString(m) ? m->valuestring : "failed");
        }
    }
    cJSON_Delete(response);
    cJSON_Delete(args);
    return rc;
}

/* The checksum that upload_end verifies. It is the client's
 * X-Content-SHA256 header when present, so the backend checks the stored
 * file against what the client sent, else the one computed while
 * streaming. */
static const char *declared_sha256(struct api_request *req,
                                   const char *computed)
{
    const char *header = mg_get_header(req->conn, DATASET_SHA256_HEADER);

    return header != NULL ? header : computed;
}

void api_datasets_upload(struct api_request *req)
{
    char name[128], task[16], sha[65];
    unsigned char *piece = NULL;
    char *text = NULL;
    cJSON *args, *result;
    int64_t upload;

    if (check_upload_request(req, name, sizeof(name), task,
                             sizeof(task)) != 0)
        return;
    args = cJSON_CreateObject();
    cJSON_AddStringToObject(args, "name", name);
    cJSON_AddStringToObject(args, "task", task);
    cJSON_AddNumberToObject(args, "size", (double)req->info->content_length);
    result = api_call(req, "datasets.upload_begin", args);
    cJSON_Delete(args);
    if (result == NULL)
        return;
    upload = (int64_t)cJSON_GetNumberValue(
        cJSON_GetObjectItemCaseSensitive(result, "upload"));
    cJSON_Delete(result);

    piece = malloc(DATASET_PIECE);
    text = malloc(sodium_base64_encoded_len(DATASET_PIECE,
                                            sodium_base64_VARIANT_ORIGINAL));
    if (piece == NULL || text == NULL) {
        api_send_error(req, "internal", "out of memory for the upload");
        abort_upload(req, upload, "out of memory");
    } else if (send_chunks(req, upload, piece, text, sha) != 0) {
        abort_upload(req, upload, "sending the body failed");
    } else if (end_upload(req, upload, declared_sha256(req, sha)) != 0) {
        abort_upload(req, upload, "upload_end failed");
    } else {
        log_info("upload received account=%lld dataset=%lld bytes=%lld",
                 (long long)req->who.account_id, (long long)upload,
                 req->info->content_length);
    }
    free(piece);
    free(text);
}

static cJSON *dataset_args(struct api_request *req)
{
    cJSON *args = cJSON_CreateObject();

    cJSON_AddNumberToObject(args, "dataset", (double)req->id);
    return args;
}

void api_datasets_delete(struct api_request *req)
{
    api_forward(req, "datasets.delete", dataset_args(req), 200);
}

void api_datasets_report(struct api_request *req)
{
    api_forward(req, "datasets.report", dataset_args(req), 200);
}
