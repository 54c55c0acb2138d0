/*
 * Protocol ops for data set uploads: begin, chunk, end and abort an
 * upload, read a data set's validation report, and delete a data set.
 *
 * An upload is a datasets row in status 'uploading' and the file
 * DATA/uploads/<account>-<id>.zip.partial (mode 0600); its id is the
 * data set's id. While it uploads, the row's report column contains
 * {"upload_size": N}, the size declared at the start, so an upload
 * survives a backend restart. The bytes received so far are the file's
 * size, so a chunk must start exactly there: a retried chunk that was
 * already written is acknowledged without writing it again, and a chunk
 * past the end (a gap) is rejected.
 *
 * upload_end checks that the file has the declared size, or the size
 * that upload_end gives (at most the declared one, which was then an
 * upper bound), and the SHA-256 of the whole file. It extracts it with
 * zipsafe_extract into DATA/datasets/<account>/<id>.partial, renames
 * that folder to DATA/datasets/<account>/<id> and scans it: an archive
 * with a data.yaml (at the top or in its one top folder) is a detection
 * data set, validated with dataset_det_scan and stored with task
 * 'detect'; any other is validated with dataset_cls_scan as task
 * 'classify'. The status becomes 'ready' when the scan succeeds, else
 * 'invalid'. An archive that breaks a rule of zipsafe.c, or a wrong
 * checksum, discards the upload: files removed and the row 'deleted'.
 *
 * Every op checks that the upload or data set belongs to the account;
 * another account's gets not_found.
 */
#include "ops_uploads.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "engine/dataset_cls.h"
#include "engine/dataset_det.h"
#include "fsutil.h"
#include "log.h"
#include "zipsafe.h"

#define PATH_TEXT_MAX 4096

static int need_account(struct op_call *call)
{
    if (call->account_id > 0)
        return 0;
    op_error(call, "unauthorized", "sign in first");
    return -1;
}

static int require_int64(struct op_call *call, const char *name,
                         int64_t *out)
{
    int rc = op_arg_int64(call, name, out);

    if (rc == 1)
        op_error(call, "invalid_request", "field '%s' is required", name);
    return rc == 0 ? 0 : -1;
}

static int require_string(struct op_call *call, const char *name,
                          const char **out)
{
    int rc = op_arg_string(call, name, out);

    if (rc == 1)
        op_error(call, "invalid_request", "field '%s' is required", name);
    return rc == 0 ? 0 : -1;
}

static void partial_zip_path(struct op_call *call, int64_t upload, char *out,
                             size_t len)
{
    snprintf(out, len, "%s/uploads/%lld-%lld.zip.partial", call->be->data_dir,
             (long long)call->account_id, (long long)upload);
}

/* Run one statement with up to three bound values; ?1 and ?2 are whole
 * numbers and ?3 is text (NULL: not bound). Returns 0 or -1 with the
 * error logged. */
static int exec_sql(struct op_call *call, const char *sql, int64_t a,
                    int64_t b, const char *text)
{
    sqlite3 *db = call->be->store.db;
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        log_error("upload: cannot prepare SQL for account=%lld: %s",
                  (long long)call->account_id, sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(stmt, 1, a);
    sqlite3_bind_int64(stmt, 2, b);
    if (text != NULL)
        sqlite3_bind_text(stmt, 3, text, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        log_error("upload: SQL failed for account=%lld: %s",
                  (long long)call->account_id, sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

static int set_status(struct op_call *call, int64_t dataset,
                      const char *status)
{
    return exec_sql(call, "UPDATE datasets SET status = ?3 WHERE id = ?1",
                    dataset, 0, status);
}

/* The declared size of the account's upload in progress, or -1 when
 * there is none with that id (the caller sends not_found). */
static int64_t upload_size(struct op_call *call, int64_t upload)
{
    sqlite3_stmt *stmt;
    int64_t size = -1;

    if (sqlite3_prepare_v2(call->be->store.db,
                           "SELECT report FROM datasets WHERE id = ?1 AND "
                           "account_id = ?2 AND status = 'uploading'",
                           -1, &stmt, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(stmt, 1, upload);
    sqlite3_bind_int64(stmt, 2, call->account_id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        cJSON *report = cJSON_Parse((const char *)sqlite3_column_text(stmt,
                                                                      0));
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(report,
                                                          "upload_size");
        if (cJSON_IsNumber(n))
            size = (int64_t)n->valuedouble;
        cJSON_Delete(report);
    }
    sqlite3_finalize(stmt);
    return size;
}

static cJSON *upload_not_found(struct op_call *call, int64_t upload)
{
    return op_error(call, "not_found",
                    "upload %lld not found: it never began, belongs to "
                    "another account, or has ended; begin a new upload",
                    (long long)upload);
}

/* Remove the partial file and mark the row deleted. */
static void discard_upload(struct op_call *call, int64_t upload,
                           const char *why)
{
    char path[PATH_TEXT_MAX];

    partial_zip_path(call, upload, path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT)
        log_error("upload discard: cannot remove %s account=%lld "
                  "dataset=%lld: %s",
                  path, (long long)call->account_id, (long long)upload,
                  strerror(errno));
    set_status(call, upload, "deleted");
    log_info("upload discarded account=%lld dataset=%lld: %s",
             (long long)call->account_id, (long long)upload, why);
}

/* ---- begin, chunk, abort ---------------------------------------------- */

static cJSON *op_upload_begin(struct op_call *call)
{
    const char *name = NULL, *task = "classify";
    char path[PATH_TEXT_MAX], report[64];
    struct error err = {0};
    int64_t size = 0, id;
    int fd;

    if (need_account(call) != 0 || require_string(call, "name", &name) ||
        require_int64(call, "size", &size) ||
        op_arg_string(call, "task", &task) < 0)
        return NULL;
    if (name[0] == '\0' || strlen(name) > UPLOAD_NAME_MAX)
        return op_error(call, "invalid_request",
                        "name must have 1 to %d bytes",
                        UPLOAD_NAME_MAX);
    if (strcmp(task, "classify") != 0 && strcmp(task, "detect") != 0)
        return op_error(call, "invalid_request",
                        "task '%.32s' cannot be uploaded; use classify or "
                        "detect",
                        task);
    if (size <= 0 || size > UPLOAD_MAX_BYTES)
        return op_error(call, "invalid_request",
                        "size %lld is out of range; an archive must have 1 "
                        "to %lld bytes",
                        (long long)size, (long long)UPLOAD_MAX_BYTES);

    /* TODO: nothing removes an upload that was never ended or aborted
     * (a gateway that died mid-upload); its row stays 'uploading' and its
     * file stays in DATA/uploads. */
    snprintf(report, sizeof(report), "{\"upload_size\":%lld}",
             (long long)size);
    /* The path is set once the id is known; '' never names a folder. */
    if (exec_sql(call,
                 "INSERT INTO datasets(account_id, name, task, path, status, "
                 "report, created_at) VALUES (?1, ?3, 'classify', '', "
                 "'uploading', '', ?2)",
                 call->account_id, clock_realtime_ms(), name) != 0)
        return op_error(call, "internal", "cannot record the upload");
    id = sqlite3_last_insert_rowid(call->be->store.db);
    if (exec_sql(call, "UPDATE datasets SET report = ?3 WHERE id = ?1", id,
                 0, report) != 0 ||
        exec_sql(call, "UPDATE datasets SET task = ?3 WHERE id = ?1", id, 0,
                 task) != 0)
        return op_error(call, "internal", "cannot record the upload");

    snprintf(path, sizeof(path), "%s/uploads", call->be->data_dir);
    if (fs_mkdir_p(path, 0700, &err) != 0) {
        log_error("upload begin account=%lld dataset=%lld: %s",
                  (long long)call->account_id, (long long)id, err.msg);
        set_status(call, id, "deleted");
        return op_error(call, "internal", "cannot create the upload folder");
    }
    partial_zip_path(call, id, path, sizeof(path));
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
              0600);
    if (fd < 0) {
        log_error("upload begin account=%lld dataset=%lld: cannot create "
                  "%s: %s",
                  (long long)call->account_id, (long long)id, path,
                  strerror(errno));
        set_status(call, id, "deleted");
        return op_error(call, "internal", "cannot create the upload file");
    }
    close(fd);
    log_info("upload begun account=%lld dataset=%lld size=%lld",
             (long long)call->account_id, (long long)id, (long long)size);

    cJSON *result = cJSON_CreateObject();
    cJSON_AddNumberToObject(result, "upload", (double)id);
    cJSON_AddNumberToObject(result, "chunk_max", UPLOAD_CHUNK_MAX);
    return result;
}

static cJSON *chunk_result(int64_t received)
{
    cJSON *result = cJSON_CreateObject();

    cJSON_AddNumberToObject(result, "received", (double)received);
    return result;
}

static cJSON *op_upload_chunk(struct op_call *call)
{
    const char *text = NULL;
    char path[PATH_TEXT_MAX];
    unsigned char *data;
    int64_t upload, offset, size, received;
    size_t text_len, data_len = 0;
    struct stat st;
    int fd;

    if (need_account(call) != 0 || require_int64(call, "upload", &upload) ||
        require_int64(call, "offset", &offset) ||
        require_string(call, "data_base64", &text))
        return NULL;
    size = upload_size(call, upload);
    if (size < 0)
        return upload_not_found(call, upload);
    text_len = strlen(text);
    if (text_len > (UPLOAD_CHUNK_MAX / 3 + 1) * 4)
        return op_error(call, "invalid_request",
                        "chunk of upload %lld is larger than %d bytes; send "
                        "smaller chunks",
                        (long long)upload, UPLOAD_CHUNK_MAX);

    partial_zip_path(call, upload, path, sizeof(path));
    fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        log_error("upload chunk account=%lld dataset=%lld: cannot open %s: "
                  "%s",
                  (long long)call->account_id, (long long)upload, path,
                  strerror(errno));
        if (fd >= 0)
            close(fd);
        return op_error(call, "internal", "the upload file is missing");
    }
    received = (int64_t)st.st_size;

    data = malloc(text_len / 4 * 3 + 3);
    if (data == NULL ||
        sodium_base642bin(data, text_len / 4 * 3 + 3, text, text_len, NULL,
                          &data_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(data);
        close(fd);
        return op_error(call, "invalid_request",
                        "field 'data_base64' of upload %lld is not valid "
                        "base64",
                        (long long)upload);
    }
    if (offset + (int64_t)data_len <= received && offset >= 0 &&
        data_len > 0) {
        /* A retry of a chunk already written. */
        free(data);
        close(fd);
        return chunk_result(received);
    }
    if (offset != received) {
        free(data);
        close(fd);
        return op_error(call, "invalid_request",
                        "chunk offset %lld of upload %lld does not match "
                        "the %lld bytes received; resend from offset %lld",
                        (long long)offset, (long long)upload,
                        (long long)received, (long long)received);
    }
    if (received + (int64_t)data_len > size) {
        free(data);
        close(fd);
        return op_error(call, "invalid_request",
                        "upload %lld would exceed its declared size of "
                        "%lld bytes",
                        (long long)upload, (long long)size);
    }
    if (pwrite(fd, data, data_len, received) != (ssize_t)data_len) {
        log_error("upload chunk account=%lld dataset=%lld: cannot write "
                  "%s: %s",
                  (long long)call->account_id, (long long)upload, path,
                  strerror(errno));
        free(data);
        close(fd);
        return op_error(call, "internal", "cannot store the chunk");
    }
    free(data);
    close(fd);
    return chunk_result(received + (int64_t)data_len);
}

static cJSON *op_upload_abort(struct op_call *call)
{
    int64_t upload;

    if (need_account(call) != 0 || require_int64(call, "upload", &upload))
        return NULL;
    if (upload_size(call, upload) < 0)
        return upload_not_found(call, upload);
    discard_upload(call, upload, "aborted by the client");
    return cJSON_CreateObject();
}

/* ---- end: checksum, extraction, validation ---------------------------- */

/* SHA-256 of the file at path as 64 lowercase hex digits. */
static int file_sha256(const char *path, char hex[65], struct error *err)
{
    crypto_hash_sha256_state state;
    unsigned char digest[crypto_hash_sha256_BYTES];
    unsigned char buffer[65536];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return error_errno(err, errno, "cannot open %s", path);
    crypto_hash_sha256_init(&state);
    while ((n = read(fd, buffer, sizeof(buffer))) > 0)
        crypto_hash_sha256_update(&state, buffer, (unsigned long long)n);
    close(fd);
    if (n < 0)
        return error_errno(err, errno, "cannot read %s", path);
    crypto_hash_sha256_final(&state, digest);
    sodium_bin2hex(hex, 65, digest, sizeof(digest));
    return 0;
}

/* 1 when text is the 64 hex digits of hex, in either case. */
static int sha256_matches(const char hex[65], const char *text)
{
    char lower[65];

    if (strlen(text) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        lower[i] = (char)tolower((unsigned char)text[i]);
    lower[64] = '\0';
    return sodium_memcmp(lower, hex, 64) == 0;
}

/* Append the scan's problems to report. */
static void add_scan_problems(const struct dataset_cls *ds, cJSON *report)
{
    for (size_t i = 0; i < ds->problem_count; i++) {
        const struct dataset_problem *p = &ds->problems[i];
        cJSON *entry = cJSON_CreateObject();

        cJSON_AddStringToObject(entry, "path", p->path ? p->path : "");
        cJSON_AddStringToObject(entry, "problem",
                                p->problem ? p->problem : "");
        cJSON_AddStringToObject(entry, "action", p->action ? p->action : "");
        cJSON_AddStringToObject(entry, "kind",
                                dataset_problem_kind_name(p->kind));
        cJSON_AddItemToArray(report, entry);
    }
}

/* Append the detection scan's problems to report, then one "summary"
 * entry with the totals and the per-split counts of the scan. */
static void add_det_problems(const struct dataset_det *ds, cJSON *report)
{
    cJSON *full = dataset_det_report_json(ds);
    cJSON *summary = cJSON_CreateObject();
    char text[256];

    for (size_t i = 0; i < ds->problem_count; i++) {
        const struct dataset_det_problem *p = &ds->problems[i];
        cJSON *entry = cJSON_CreateObject();

        cJSON_AddStringToObject(entry, "path", p->file);
        cJSON_AddNumberToObject(entry, "line", p->line);
        cJSON_AddStringToObject(entry, "problem", p->message);
        cJSON_AddStringToObject(entry, "action", p->action);
        cJSON_AddStringToObject(entry, "kind", p->rule);
        cJSON_AddStringToObject(entry, "level",
                                dataset_det_level_name(p->level));
        cJSON_AddItemToArray(report, entry);
    }
    snprintf(text, sizeof(text),
             "%zu train, %zu val, %zu test images; %zu train boxes, %zu "
             "background images, %zu rows rejected, %zu duplicates",
             ds->splits[DATASET_DET_TRAIN].count,
             ds->splits[DATASET_DET_VAL].count,
             ds->splits[DATASET_DET_TEST].count,
             ds->splits[DATASET_DET_TRAIN].boxes,
             ds->splits[DATASET_DET_TRAIN].background +
                 ds->splits[DATASET_DET_VAL].background +
                 ds->splits[DATASET_DET_TEST].background,
             ds->rows_rejected, ds->duplicates);
    cJSON_AddStringToObject(summary, "path", "");
    cJSON_AddStringToObject(summary, "problem", text);
    cJSON_AddStringToObject(summary, "action", "none");
    cJSON_AddStringToObject(summary, "kind", "summary");
    cJSON_AddStringToObject(summary, "level", "info");
    if (full != NULL) {
        cJSON_AddItemToObject(summary, "totals",
                              cJSON_DetachItemFromObject(full, "totals"));
        cJSON_AddItemToObject(summary, "splits",
                              cJSON_DetachItemFromObject(full, "splits"));
        cJSON_AddItemToObject(summary, "classes",
                              cJSON_DetachItemFromObject(full, "classes"));
    }
    cJSON_Delete(full);
    cJSON_AddItemToArray(report, summary);
}

/* 1 when folder contains a detection data set: a data.yaml at its top or
 * in its only top folder. */
static int is_detection_set(const char *folder)
{
    struct error err = {0};
    char *yaml = NULL;
    int rc = dataset_det_find_yaml(folder, &yaml, &err);

    free(yaml);
    return rc == 0 || rc == -EINVAL;
}

/* Scan folder as a detection data set. Returns 0 or a negative code with
 * err set; *images receives the image count. */
static int scan_detection(const char *folder, cJSON *report,
                          int64_t *images, struct error *err)
{
    struct dataset_det_options opt = {0, 1};
    struct dataset_det *ds = NULL;
    int rc = dataset_det_scan(folder, &opt, &ds, err);

    if (rc != 0)
        return rc;
    *images = (int64_t)(ds->splits[DATASET_DET_TRAIN].count +
                        ds->splits[DATASET_DET_VAL].count +
                        ds->splits[DATASET_DET_TEST].count);
    add_det_problems(ds, report);
    dataset_det_free(ds);
    return 0;
}

/* 1 when the row's task, as requested at upload begin, is 'detect'. */
static int requested_detect(struct op_call *call, int64_t dataset)
{
    sqlite3_stmt *stmt;
    int detect = 0;

    if (sqlite3_prepare_v2(call->be->store.db,
                           "SELECT task FROM datasets WHERE id = ?1", -1,
                           &stmt, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(stmt, 1, dataset);
    if (sqlite3_step(stmt) == SQLITE_ROW &&
        sqlite3_column_text(stmt, 0) != NULL)
        detect = strcmp((const char *)sqlite3_column_text(stmt, 0),
                        "detect") == 0;
    sqlite3_finalize(stmt);
    return detect;
}

/* Scan folder and store status, task, report, images and path in the
 * row. The task is 'detect' when the archive contains a data.yaml or the
 * upload requested it, else 'classify'. */
static int validate(struct op_call *call, int64_t dataset,
                    const char *folder, const char *relative,
                    cJSON *report, const char **status, int64_t *images,
                    const char **task_out)
{
    struct dataset_cls *ds = NULL;
    struct error err = {0};
    const char *task = is_detection_set(folder) ||
                               requested_detect(call, dataset)
                           ? "detect"
                           : "classify";
    int scan_rc;
    char *text;
    int rc;

    *images = 0;
    *task_out = task;
    if (strcmp(task, "detect") == 0) {
        scan_rc = scan_detection(folder, report, images, &err);
    } else {
        scan_rc = dataset_cls_scan(folder, NULL, &ds, &err);
        if (scan_rc == 0) {
            *images = (int64_t)(ds->splits[DATASET_CLS_TRAIN].count +
                                ds->splits[DATASET_CLS_VAL].count);
            add_scan_problems(ds, report);
            dataset_cls_free(ds);
        }
    }
    if (scan_rc == 0) {
        *status = "ready";
    } else {
        cJSON *entry = cJSON_CreateObject();

        *status = "invalid";
        cJSON_AddStringToObject(entry, "path", "");
        cJSON_AddStringToObject(entry, "problem", err.msg);
        cJSON_AddStringToObject(entry, "action",
                                "data set not usable; fix the archive and "
                                "upload it again");
        cJSON_InsertItemInArray(report, 0, entry);
        log_warn("upload invalid account=%lld dataset=%lld: %s",
                 (long long)call->account_id, (long long)dataset, err.msg);
    }
    text = cJSON_PrintUnformatted(report);
    rc = exec_sql(call,
                  "UPDATE datasets SET report = ?3, images = ?2 WHERE id = "
                  "?1",
                  dataset, *images, text ? text : "[]");
    free(text);
    if (rc == 0)
        rc = exec_sql(call, "UPDATE datasets SET path = ?3 WHERE id = ?1",
                      dataset, 0, relative);
    if (rc == 0)
        rc = exec_sql(call, "UPDATE datasets SET task = ?3 WHERE id = ?1",
                      dataset, 0, task);
    if (rc == 0)
        rc = set_status(call, dataset, *status);
    return rc;
}

static cJSON *op_upload_end(struct op_call *call)
{
    const char *sha = NULL;
    char zip_path[PATH_TEXT_MAX], folder[PATH_TEXT_MAX];
    char partial[PATH_TEXT_MAX + 16], relative[128], hex[65];
    struct zipsafe_limits limits;
    struct error err = {0};
    const char *status = "invalid", *task = "classify";
    int64_t upload, declared, size, images = 0;
    cJSON *report, *result;
    struct stat st;
    int rc;

    if (need_account(call) != 0 || require_int64(call, "upload", &upload) ||
        require_string(call, "sha256", &sha))
        return NULL;
    declared = upload_size(call, upload);
    if (declared < 0)
        return upload_not_found(call, upload);
    /* A client that declared an upper bound at the begin, such as the
     * Content-Length of a multipart body, gives the bytes it sent. */
    size = declared;
    rc = op_arg_int64(call, "size", &size);
    if (rc < 0)
        return NULL;
    if (rc == 0 && (size <= 0 || size > declared))
        return op_error(call, "invalid_request",
                        "size %lld of upload %lld is out of range; it must "
                        "be 1 to the %lld bytes declared at its begin",
                        (long long)size, (long long)upload,
                        (long long)declared);
    partial_zip_path(call, upload, zip_path, sizeof(zip_path));
    long long stored = stat(zip_path, &st) == 0 ? (long long)st.st_size : 0;
    if (stored < size)
        return op_error(call, "invalid_request",
                        "upload %lld has %lld of its %lld bytes; send the "
                        "rest before ending it",
                        (long long)upload, stored, (long long)size);
    if (stored > size)
        return op_error(call, "invalid_request",
                        "upload %lld has %lld bytes, more than its size of "
                        "%lld; end it with the size of what was sent",
                        (long long)upload, stored, (long long)size);
    if (file_sha256(zip_path, hex, &err) != 0) {
        log_error("upload end account=%lld dataset=%lld: %s",
                  (long long)call->account_id, (long long)upload, err.msg);
        return op_error(call, "internal", "cannot read the upload");
    }
    if (!sha256_matches(hex, sha)) {
        discard_upload(call, upload, "SHA-256 mismatch");
        return op_error(call, "invalid_request",
                        "SHA-256 '%.64s' does not match the %lld bytes "
                        "received (%s); the upload was discarded, upload "
                        "the file again",
                        sha, (long long)size, hex);
    }

    set_status(call, upload, "validating");
    snprintf(relative, sizeof(relative), "datasets/%lld/%lld",
             (long long)call->account_id, (long long)upload);
    snprintf(folder, sizeof(folder), "%s/%s", call->be->data_dir, relative);
    snprintf(partial, sizeof(partial), "%s.partial", folder);
    {
        char parent[PATH_TEXT_MAX];
        snprintf(parent, sizeof(parent), "%s/datasets/%lld",
                 call->be->data_dir, (long long)call->account_id);
        rc = fs_mkdir_p(parent, 0700, &err);
    }
    zipsafe_remove_tree(partial); /* left by a crash during extraction */
    zipsafe_limits_load(&limits);
    report = cJSON_CreateArray();
    if (rc == 0)
        rc = zipsafe_extract(zip_path, partial, &limits, report, &err);
    if (rc == 0 && rename(partial, folder) != 0)
        rc = error_errno(&err, errno, "cannot rename %s", partial);
    if (rc != 0) {
        zipsafe_remove_tree(partial);
        cJSON_Delete(report);
        log_warn("upload rejected account=%lld dataset=%lld: %s",
                 (long long)call->account_id, (long long)upload, err.msg);
        discard_upload(call, upload, "archive rejected");
        if (rc == -EINVAL || rc == -EFBIG)
            return op_error(call, "invalid_request",
                            "%s. Nothing was kept; fix the archive and "
                            "upload it again",
                            err.msg);
        return op_error(call, "internal", "cannot extract the archive");
    }
    if (unlink(zip_path) != 0)
        log_error("upload end account=%lld dataset=%lld: cannot remove %s: "
                  "%s",
                  (long long)call->account_id, (long long)upload, zip_path,
                  strerror(errno));

    /* NOTE: extraction and the scan run on the service loop, so a large
     * archive delays every other request until they finish. */
    if (validate(call, upload, folder, relative, report, &status, &images,
                 &task) != 0) {
        cJSON_Delete(report);
        return op_error(call, "internal", "cannot store the validation");
    }
    log_info("upload done account=%lld dataset=%lld task=%s status=%s "
             "images=%lld",
             (long long)call->account_id, (long long)upload, task, status,
             (long long)images);
    result = cJSON_CreateObject();
    cJSON_AddNumberToObject(result, "dataset", (double)upload);
    cJSON_AddStringToObject(result, "status", status);
    cJSON_AddStringToObject(result, "task", task);
    cJSON_AddNumberToObject(result, "images", (double)images);
    cJSON_AddItemToObject(result, "report", report);
    return result;
}

/* ---- report and delete ------------------------------------------------ */

static cJSON *dataset_not_found(struct op_call *call, int64_t dataset)
{
    return op_error(call, "not_found", "data set %lld not found",
                    (long long)dataset);
}

static cJSON *op_datasets_report(struct op_call *call)
{
    sqlite3_stmt *stmt;
    cJSON *result = NULL;
    int64_t dataset;

    if (need_account(call) != 0 || require_int64(call, "dataset", &dataset))
        return NULL;
    if (sqlite3_prepare_v2(call->be->store.db,
                           "SELECT name, status, images, report FROM "
                           "datasets WHERE id = ?1 AND account_id = ?2 AND "
                           "status IN ('ready', 'invalid', 'validating')",
                           -1, &stmt, NULL) != SQLITE_OK)
        return op_error(call, "internal", "cannot read data set %lld: %s",
                        (long long)dataset,
                        sqlite3_errmsg(call->be->store.db));
    sqlite3_bind_int64(stmt, 1, dataset);
    sqlite3_bind_int64(stmt, 2, call->account_id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        cJSON *report = cJSON_Parse((const char *)sqlite3_column_text(stmt,
                                                                      3));
        result = cJSON_CreateObject();
        cJSON_AddNumberToObject(result, "dataset", (double)dataset);
        cJSON_AddStringToObject(result, "name",
                                (const char *)sqlite3_column_text(stmt, 0));
        cJSON_AddStringToObject(result, "status",
                                (const char *)sqlite3_column_text(stmt, 1));
        cJSON_AddNumberToObject(result, "images",
                                sqlite3_column_int(stmt, 2));
        if (!cJSON_IsArray(report)) {
            cJSON_Delete(report);
            report = cJSON_CreateArray();
        }
        cJSON_AddItemToObject(result, "report", report);
    }
    sqlite3_finalize(stmt);
    return result ? result : dataset_not_found(call, dataset);
}

static cJSON *op_datasets_delete(struct op_call *call)
{
    sqlite3_stmt *stmt;
    char path[PATH_TEXT_MAX];
    int64_t dataset;
    int found, rc;

    if (need_account(call) != 0 || require_int64(call, "dataset", &dataset))
        return NULL;
    if (sqlite3_prepare_v2(call->be->store.db,
                           "SELECT path FROM datasets WHERE id = ?1 AND "
                           "account_id = ?2 AND status IN ('ready', "
                           "'invalid')",
                           -1, &stmt, NULL) != SQLITE_OK)
        return op_error(call, "internal", "cannot read data set %lld: %s",
                        (long long)dataset,
                        sqlite3_errmsg(call->be->store.db));
    sqlite3_bind_int64(stmt, 1, dataset);
    sqlite3_bind_int64(stmt, 2, call->account_id);
    found = sqlite3_step(stmt) == SQLITE_ROW;
    if (found)
        snprintf(path, sizeof(path), "%s/%s", call->be->data_dir,
                 (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    if (!found)
        return dataset_not_found(call, dataset);

    /* The update and the check of training sessions are one statement,
     * so no session can start between them. */
    if (exec_sql(call,
                 "UPDATE datasets SET status = 'deleted' WHERE id = ?1 AND "
                 "NOT EXISTS (SELECT 1 FROM sessions s JOIN models m ON "
                 "m.id = s.model_id WHERE m.dataset_id = ?1 AND s.state IN "
                 "('initializing', 'training'))",
                 dataset, 0, NULL) != 0)
        return op_error(call, "internal", "cannot delete data set %lld",
                        (long long)dataset);
    if (sqlite3_changes(call->be->store.db) == 0)
        return op_error(call, "conflict",
                        "data set %lld is used by a model that is training; "
                        "stop the training before deleting it",
                        (long long)dataset);
    rc = zipsafe_remove_tree(path);
    if (rc != 0)
        log_error("data set delete account=%lld dataset=%lld: cannot remove "
                  "%s: %s",
                  (long long)call->account_id, (long long)dataset, path,
                  strerror(-rc));
    log_info("data set deleted account=%lld dataset=%lld",
             (long long)call->account_id, (long long)dataset);
    return cJSON_CreateObject();
}

const struct proto_op proto_upload_ops[] = {
    {"datasets.upload_begin", op_upload_begin},
    {"datasets.upload_chunk", op_upload_chunk},
    {"datasets.upload_end", op_upload_end},
    {"datasets.upload_abort", op_upload_abort},
    {"datasets.report", op_datasets_report},
    {"datasets.delete", op_datasets_delete},
    {NULL, NULL},
};
