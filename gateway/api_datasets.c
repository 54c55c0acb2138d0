/*
 * REST endpoints for data set uploads, reports and deletion.
 *
 * POST /api/v1/datasets takes a zip archive in one of two forms, and the
 * gateway never has all of it in memory:
 *
 * - the raw body, with Content-Type application/zip and the name and
 *   task in the query (?name=NAME&task=classify);
 * - a multipart/form-data body, as curl -F and HTML forms send it: the
 *   archive is the part named file, and the text fields name and task
 *   may replace the query parameters. The backend begins the upload
 *   before any data flows, so the name and task must come from the query
 *   or from fields before the file part.
 *
 * The handler reads pieces of DATASET_PIECE bytes of the archive and sends
 * each as one datasets.upload_chunk. It waits for the backend's response
 * before it reads on, so the gateway's memory stays bounded and the
 * backend sets the pace. The SHA-256 of the archive is computed as it
 * streams and sent with datasets.upload_end, which extracts and validates
 * the archive. A client may send its own checksum in the X-Content-SHA256
 * header. A multipart upload declares the request's Content-Length as the
 * size at the begin, an upper bound, and gives the archive's size at the
 * end. Any failure on the way aborts the upload on the backend.
 *
 * DELETE /api/v1/datasets/{id} and GET /api/v1/datasets/{id}/report
 * forward to datasets.delete and datasets.report; the backend returns
 * not_found for another account's data set.
 */
#include <civetweb.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "log.h"
#include "multipart.h"
#include "upstream.h"

/* Largest request body accepted: 2 GiB, as the backend's
 * UPLOAD_MAX_BYTES. */
#define DATASET_UPLOAD_MAX (2LL << 30)
/* Optional request header: the archive's SHA-256 as 64 hex digits. */
#define DATASET_SHA256_HEADER "X-Content-SHA256"
/* Bytes read from the body and sent per chunk: 256 KiB. */
#define DATASET_PIECE (256 * 1024)
/* upload_end extracts and validates, so it may take longer than other
 * ops. */
#define DATASET_END_TIMEOUT_MS 600000
/* Maximum length of a data set name, as the backend's UPLOAD_NAME_MAX,
 * and of a task. */
#define DATASET_NAME_MAX 100
#define DATASET_TASK_MAX 15
/* Parts of a multipart upload: name, task and file are enough, and an
 * unknown or repeated field is rejected before this limit is reached. */
#define DATASET_FORM_PARTS_MAX 8

/* The form field that a multipart part carries. */
enum upload_field {
    FIELD_NONE,
    FIELD_NAME,
    FIELD_TASK,
    FIELD_FILE,
};

/* One upload in progress. */
struct upload {
    struct api_request *req;
    int64_t id; /* the backend's upload id, 0 before upload_begin */
    char name[DATASET_NAME_MAX + 1];
    char task[DATASET_TASK_MAX + 1];
    int name_from_query, task_from_query;
    /* The archive's bytes not yet sent, their base64 text, and the count
     * and checksum of all of them. */
    unsigned char *piece;
    size_t piece_len;
    char *text;
    long long size;
    crypto_hash_sha256_state sha;
    /* Multipart only: the field of the current part, the bytes of a text
     * field so far, and which fields were received. */
    enum upload_field field;
    size_t field_len;
    int has_name_field, has_task_field, has_file;
};

/* ---- requests to the backend ------------------------------------------ */

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

/* Begin the upload on the backend with up->name and up->task, declaring
 * size bytes. Returns 0, or -1 after sending the error. */
static int begin_upload(struct upload *up, long long size)
{
    cJSON *args = cJSON_CreateObject(), *result;

    cJSON_AddStringToObject(args, "name", up->name);
    cJSON_AddStringToObject(args, "task", up->task);
    cJSON_AddNumberToObject(args, "size", (double)size);
    result = api_call(up->req, "datasets.upload_begin", args);
    cJSON_Delete(args);
    if (result == NULL)
        return -1;
    up->id = (int64_t)cJSON_GetNumberValue(
        cJSON_GetObjectItemCaseSensitive(result, "upload"));
    cJSON_Delete(result);
    crypto_hash_sha256_init(&up->sha);
    return 0;
}

/* Send the bytes in up->piece as the next chunk. Returns 0, or -1 after
 * sending the error. */
static int send_piece(struct upload *up)
{
    size_t text_len = sodium_base64_encoded_len(
        DATASET_PIECE, sodium_base64_VARIANT_ORIGINAL);
    cJSON *args, *result;

    if (up->piece_len == 0)
        return 0;
    sodium_bin2base64(up->text, text_len, up->piece, up->piece_len,
                      sodium_base64_VARIANT_ORIGINAL);
    args = cJSON_CreateObject();
    cJSON_AddNumberToObject(args, "upload", (double)up->id);
    cJSON_AddNumberToObject(args, "offset", (double)up->size);
    cJSON_AddStringToObject(args, "data_base64", up->text);
    result = api_call(up->req, "datasets.upload_chunk", args);
    cJSON_Delete(args);
    if (result == NULL)
        return -1;
    cJSON_Delete(result);
    up->size += (long long)up->piece_len;
    up->piece_len = 0;
    return 0;
}

/* upload_end with a longer timeout than api_call's, because it extracts
 * and validates. size is the archive's size when the begin declared an
 * upper bound, else -1. Sends the result with 201 or the error. */
static int end_upload(struct api_request *req, int64_t upload,
                      const char *sha, long long size)
{
    cJSON *args = cJSON_CreateObject(), *response = NULL, *result;
    struct error err = {0};
    int rc = -1;

    cJSON_AddNumberToObject(args, "upload", (double)upload);
    cJSON_AddStringToObject(args, "sha256", sha);
    if (size >= 0)
        cJSON_AddNumberToObject(args, "size", (double)size);
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

/* ---- the request ------------------------------------------------------ */

/* Read query parameter name into out. Returns 0 when present and not
 * empty, -1 when missing or empty, -2 when longer than len - 1 bytes. */
static int query_value(struct api_request *req, const char *name, char *out,
                       size_t len)
{
    const char *query = req->info->query_string;
    int got;

    out[0] = '\0';
    if (query == NULL)
        return -1;
    /* mg_get_var returns -1 for a missing parameter and -2 when the
     * value does not fit. */
    got = mg_get_var(query, strlen(query), name, out, len);
    if (got == -2)
        return -2;
    return got > 0 ? 0 : -1;
}

/* Check the request before anything is read and take the name and task
 * from the query. Sets *multipart for a multipart/form-data body, with
 * its boundary. Returns 0 when it may go on, or -1 after sending the
 * error. */
static int check_upload_request(struct upload *up, int *multipart,
                                char boundary[MULTIPART_BOUNDARY_MAX + 1])
{
    struct api_request *req = up->req;
    long long length = req->info->content_length;
    const char *type = mg_get_header(req->conn, "Content-Type");
    struct error err = {0};
    int got;

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
    *multipart = multipart_is_form_data(type);
    if (!*multipart && !multipart_media_type_is(type, "application/zip")) {
        api_send_error(req, "unsupported_media_type",
                       "send the archive with 'Content-Type: "
                       "application/zip', or as the part 'file' of "
                       "multipart/form-data");
        return -1;
    }
    if (*multipart && multipart_boundary(type, boundary,
                                         MULTIPART_BOUNDARY_MAX + 1,
                                         &err) != 0) {
        api_send_error(req, "invalid_request", "%s", err.msg);
        return -1;
    }

    got = query_value(req, "name", up->name, sizeof(up->name));
    if (got == -2) {
        api_send_error(req, "invalid_request",
                       "query parameter 'name' is longer than %d bytes",
                       DATASET_NAME_MAX);
        return -1;
    }
    if (got == -1 && !*multipart) {
        api_send_error(req, "invalid_request",
                       "query parameter 'name' is required, 1 to %d bytes",
                       DATASET_NAME_MAX);
        return -1;
    }
    up->name_from_query = got == 0;
    /* A value too long to be a task is rejected, not read as missing. */
    got = query_value(req, "task", up->task, sizeof(up->task));
    if (got == -2) {
        api_send_error(req, "invalid_request",
                       "query parameter 'task' is too long; use classify "
                       "or detect");
        return -1;
    }
    up->task_from_query = got == 0;
    if (!up->task_from_query)
        snprintf(up->task, sizeof(up->task), "classify");
    return 0;
}

/* ---- the raw body ----------------------------------------------------- */

/* Begin the upload and stream the body to the backend as chunks. Returns
 * 0, or -1 after sending the error. */
static int stream_raw(struct upload *up)
{
    struct api_request *req = up->req;
    long long length = req->info->content_length;

    if (begin_upload(up, length) != 0)
        return -1;
    while (up->size < length) {
        size_t want = length - up->size < DATASET_PIECE
                          ? (size_t)(length - up->size)
                          : DATASET_PIECE;

        /* mg_read may return less than asked; fill the whole piece. */
        while (up->piece_len < want) {
            int n = mg_read(req->conn, up->piece + up->piece_len,
                            want - up->piece_len);
            if (n <= 0) {
                api_send_error(req, "invalid_request",
                               "the request body ended after %lld of its "
                               "%lld bytes; send the whole archive",
                               up->size + (long long)up->piece_len, length);
                return -1;
            }
            up->piece_len += (size_t)n;
        }
        crypto_hash_sha256_update(&up->sha, up->piece, up->piece_len);
        if (send_piece(up) != 0)
            return -1;
    }
    return 0;
}

/* ---- the multipart body ----------------------------------------------- */

/* The error of a callback that already sent the response. */
static int already_sent(struct error *err)
{
    return error_set(err, -EIO,
                     "a backend call failed, and its error was sent");
}

static int file_part_begin(struct upload *up,
                           const struct multipart_part *part,
                           struct error *err)
{
    const char *type = part->content_type;

    if (up->has_file)
        return error_set(err, -EINVAL,
                         "the form has two parts named 'file'; send exactly "
                         "one archive");
    if (type[0] != '\0' && !multipart_media_type_is(type, "application/zip") &&
        !multipart_media_type_is(type, "application/x-zip-compressed") &&
        !multipart_media_type_is(type, "application/octet-stream"))
        return error_set(err, -EINVAL,
                         "the part 'file' has Content-Type '%.64s'; send "
                         "the zip archive as application/zip",
                         type);
    if (!up->name_from_query && !up->has_name_field)
        return error_set(err, -EINVAL,
                         "the form has no 'name' field before its 'file' "
                         "part; put the name field first, or give the name "
                         "in the query (?name=...)");
    up->has_file = 1;
    up->field = FIELD_FILE;
    if (begin_upload(up, up->req->info->content_length) != 0)
        return already_sent(err);
    return 0;
}

/* Start a text field of the form: name or task. */
static int text_part_begin(struct upload *up, enum upload_field field,
                           const char *name, struct error *err)
{
    int from_query = field == FIELD_NAME ? up->name_from_query
                                         : up->task_from_query;
    int *seen = field == FIELD_NAME ? &up->has_name_field
                                    : &up->has_task_field;

    if (*seen)
        return error_set(err, -EINVAL,
                         "the form has two '%s' fields; send it once", name);
    if (from_query)
        return error_set(err, -EINVAL,
                         "'%s' is both a query parameter and a form field; "
                         "give it once",
                         name);
    if (up->has_file)
        return error_set(err, -EINVAL,
                         "the form's '%s' field comes after its 'file' part; "
                         "put the %s field first, or give it in the query "
                         "(?%s=...)",
                         name, name, name);
    *seen = 1;
    up->field = field;
    up->field_len = 0;
    return 0;
}

static int on_part_begin(void *ctx, const struct multipart_part *part,
                         struct error *err)
{
    struct upload *up = ctx;

    if (strcmp(part->name, "file") == 0)
        return file_part_begin(up, part, err);
    if (strcmp(part->name, "name") == 0)
        return text_part_begin(up, FIELD_NAME, "name", err);
    if (strcmp(part->name, "task") == 0)
        return text_part_begin(up, FIELD_TASK, "task", err);
    return error_set(err, -EINVAL,
                     "unknown form field '%.64s'; the fields are name, task "
                     "and file",
                     part->name);
}

/* Append data to the text field being read. */
static int text_part_data(struct upload *up, const unsigned char *data,
                          size_t len, struct error *err)
{
    int is_name = up->field == FIELD_NAME;
    char *value = is_name ? up->name : up->task;
    size_t max = is_name ? DATASET_NAME_MAX : DATASET_TASK_MAX;

    if (up->field_len + len > max) {
        if (is_name)
            return error_set(err, -EINVAL,
                             "the form's 'name' field is longer than %d "
                             "bytes",
                             DATASET_NAME_MAX);
        return error_set(err, -EINVAL,
                         "the form's 'task' field is too long; use "
                         "classify or detect");
    }
    if (memchr(data, '\0', len) != NULL)
        return error_set(err, -EINVAL,
                         "the form's '%s' field contains a NUL byte",
                         is_name ? "name" : "task");
    memcpy(value + up->field_len, data, len);
    up->field_len += len;
    value[up->field_len] = '\0';
    return 0;
}

static int on_part_data(void *ctx, const struct multipart_part *part,
                        const unsigned char *data, size_t len,
                        struct error *err)
{
    struct upload *up = ctx;

    (void)part;
    if (up->field != FIELD_FILE)
        return text_part_data(up, data, len, err);
    crypto_hash_sha256_update(&up->sha, data, len);
    while (len > 0) {
        size_t n = DATASET_PIECE - up->piece_len;

        n = n < len ? n : len;
        memcpy(up->piece + up->piece_len, data, n);
        up->piece_len += n;
        data += n;
        len -= n;
        if (up->piece_len == DATASET_PIECE && send_piece(up) != 0)
            return already_sent(err);
    }
    return 0;
}

static int on_part_end(void *ctx, const struct multipart_part *part,
                       struct error *err)
{
    struct upload *up = ctx;
    enum upload_field field = up->field;

    (void)part;
    up->field = FIELD_NONE;
    if (field == FIELD_FILE) {
        if (send_piece(up) != 0)
            return already_sent(err);
        if (up->size == 0)
            return error_set(err, -EINVAL,
                             "the form's 'file' part is empty; attach the "
                             "zip archive");
        return 0;
    }
    if (up->field_len == 0)
        return error_set(err, -EINVAL, "the form's '%s' field is empty",
                         field == FIELD_NAME ? "name" : "task");
    return 0;
}

/* Read the multipart body and stream its file part to the backend.
 * Returns 0, or -1 after sending the error. */
static int stream_multipart(struct upload *up, const char *boundary)
{
    static const struct multipart_limits limits = {DATASET_FORM_PARTS_MAX,
                                                   MULTIPART_EPILOGUE_MAX};
    struct multipart_callbacks callbacks = {on_part_begin, on_part_data,
                                            on_part_end, up};
    struct api_request *req = up->req;
    long long length = req->info->content_length, received = 0;
    struct multipart *mp = NULL;
    unsigned char *buffer = malloc(DATASET_PIECE);
    struct error err = {0};
    int rc;

    if (buffer == NULL)
        rc = error_set(&err, -ENOMEM, "out of memory for the upload");
    else
        rc = multipart_create(boundary, &limits, &callbacks, &mp, &err);
    while (rc == 0 && received < length) {
        size_t want = length - received < DATASET_PIECE
                          ? (size_t)(length - received)
                          : DATASET_PIECE;
        int n = mg_read(req->conn, buffer, want);

        if (n <= 0) {
            rc = error_set(&err, -EINVAL,
                           "the request body ended after %lld of its %lld "
                           "bytes; send the whole body",
                           received, length);
            break;
        }
        received += n;
        rc = multipart_feed(mp, buffer, (size_t)n, &err);
    }
    if (rc == 0)
        rc = multipart_finish(mp, &err);
    if (rc == 0 && !up->has_file)
        rc = error_set(&err, -EINVAL,
                       "the form has no 'file' part; attach the zip "
                       "archive, as with curl -F file=@set.zip");
    multipart_free(mp);
    free(buffer);
    if (rc == 0)
        return 0;
    log_warn("upload form rejected account=%lld dataset=%lld: %s",
             (long long)req->who.account_id, (long long)up->id, err.msg);
    if (req->status == 0)
        api_send_error(req, rc == -ENOMEM ? "internal" : "invalid_request",
                       "%s", err.msg);
    return -1;
}

void api_datasets_upload(struct api_request *req)
{
    char boundary[MULTIPART_BOUNDARY_MAX + 1], sha[65];
    struct upload up = {.req = req};
    unsigned char digest[crypto_hash_sha256_BYTES];
    int multipart = 0, rc;

    if (check_upload_request(&up, &multipart, boundary) != 0)
        return;
    up.piece = malloc(DATASET_PIECE);
    up.text = malloc(sodium_base64_encoded_len(
        DATASET_PIECE, sodium_base64_VARIANT_ORIGINAL));
    if (up.piece == NULL || up.text == NULL) {
        api_send_error(req, "internal", "out of memory for the upload");
        rc = -1;
    } else if (multipart) {
        rc = stream_multipart(&up, boundary);
    } else {
        rc = stream_raw(&up);
    }
    if (rc == 0) {
        crypto_hash_sha256_final(&up.sha, digest);
        sodium_bin2hex(sha, sizeof(sha), digest, sizeof(digest));
        rc = end_upload(req, up.id, declared_sha256(req, sha),
                        multipart ? up.size : -1);
        if (rc != 0 && up.id > 0)
            abort_upload(req, up.id, "upload_end failed");
    } else if (up.id > 0) {
        abort_upload(req, up.id, "sending the body failed");
    }
    if (rc == 0)
        log_info("upload received account=%lld dataset=%lld bytes=%lld",
                 (long long)req->who.account_id, (long long)up.id, up.size);
    free(up.piece);
    free(up.text);
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
