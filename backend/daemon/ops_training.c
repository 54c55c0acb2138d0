/*
 * Protocol ops for data sets, models and their training: list data sets
 * (the account's and the samples), create, list, get and delete models,
 * start, stop and resume training, the session's status, and the replay
 * of stored progress events after a sequence number.
 *
 * A model's architecture must be one of the shipped model files named by
 * their scale (yolov8n-cls.yaml ... yolov8x-cls.yaml for classification,
 * yolov8n.yaml ... yolov8x.yaml for detection), because the name goes to
 * the train program as model=, where a path would let a user make it read
 * any file. The architecture's task must be the data set's. Another
 * account's data set or model gets a not_found error. A model may name
 * another of the account's models of the same task as from_model, once
 * that one has a checkpoint; the launch then finds the file from the
 * database (sessions_model_weights), never from the request.
 *
 * "Pay now" for timed training charges the card for exactly the price as
 * a top-up and spends it at once from the balance, so the ledger shows
 * the payment and the charge side by side. If the start then fails (the
 * one-model rule, say), the payment stays in the balance.
 *
 * The weights ops read a model's newest checkpoint in pieces that fit in
 * one protocol message, and sign and check share links (share.h).
 */
#include "ops_training.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "ledger.h"
#include "log.h"
#include "payments.h"
#include "sessions.h"
#include "share.h"

#define MODEL_NAME_MAX 100
#define MODEL_ARGS_MAX 8192

struct architecture {
    const char *name;
    const char *task;
};

static const struct architecture architectures[] = {
    {"yolov8n-cls.yaml", "classify"}, {"yolov8s-cls.yaml", "classify"},
    {"yolov8m-cls.yaml", "classify"}, {"yolov8l-cls.yaml", "classify"},
    {"yolov8x-cls.yaml", "classify"}, {"yolov8n.yaml", "detect"},
    {"yolov8s.yaml", "detect"},       {"yolov8m.yaml", "detect"},
    {"yolov8l.yaml", "detect"},       {"yolov8x.yaml", "detect"},
};

static cJSON *from_errno(struct op_call *call, const struct error *err)
{
    const char *code = "internal";

    switch (err->code) {
    case -EINVAL:
        code = "invalid_request";
        break;
    case -ENOENT:
        code = "not_found";
        break;
    case -EPERM:
        code = "plan_required";
        break;
    case -EBUSY:
        code = "conflict";
        break;
    case -ENOSPC:
        code = "insufficient_balance";
        break;
    case -EACCES:
        code = "payment_declined";
        break;
    }
    return op_error(call, code, "%s", err->msg);
}

static int need_account(struct op_call *call)
{
    if (call->account_id > 0)
        return 0;
    op_error(call, "unauthorized", "sign in first");
    return -1;
}

/* Required whole-number argument; fills the error and returns -1. */
static int require_int64(struct op_call *call, const char *name,
                         int64_t *out)
{
    int rc = op_arg_int64(call, name, out);

    if (rc == 1)
        op_error(call, "invalid_request", "field '%s' is required", name);
    return rc == 0 ? 0 : -1;
}

/* 1 when the model exists, is not deleted and belongs to the account. */
static int model_owned(struct op_call *call, int64_t model)
{
    sqlite3_stmt *stmt;
    int found = 0;

    if (sqlite3_prepare_v2(call->be->store.db,
                           "SELECT 1 FROM models WHERE id = ?1 AND "
                           "account_id = ?2 AND deleted = 0",
                           -1, &stmt, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(stmt, 1, model);
    sqlite3_bind_int64(stmt, 2, call->account_id);
    found = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_finalize(stmt);
    return found;
}

static cJSON *model_not_found(struct op_call *call, int64_t model)
{
    return op_error(call, "not_found", "model %lld not found",
                    (long long)model);
}

/* ---- Data sets ------------------------------------------------------ */

static cJSON *op_datasets_list(struct op_call *call)
{
    sqlite3 *db = call->be->store.db;
    sqlite3_stmt *stmt;
    cJSON *result, *list;

    if (need_account(call) != 0)
        return NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, account_id, name, task, status, images, "
                           "created_at FROM datasets WHERE status != "
                           "'deleted' AND (account_id = ?1 OR account_id IS "
                           "NULL) ORDER BY id",
                           -1, &stmt, NULL) != SQLITE_OK)
        return op_error(call, "internal", "cannot list data sets: %s",
                        sqlite3_errmsg(db));
    sqlite3_bind_int64(stmt, 1, call->account_id);
    result = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(result, "datasets");
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "id", (double)sqlite3_column_int64(stmt, 0));
        cJSON_AddBoolToObject(d, "sample",
                              sqlite3_column_type(stmt, 1) == SQLITE_NULL);
        cJSON_AddStringToObject(d, "name",
                                (const char *)sqlite3_column_text(stmt, 2));
        cJSON_AddStringToObject(d, "task",
                                (const char *)sqlite3_column_text(stmt, 3));
        cJSON_AddStringToObject(d, "status",
                                (const char *)sqlite3_column_text(stmt, 4));
        cJSON_AddNumberToObject(d, "images", sqlite3_column_int(stmt, 5));
        cJSON_AddNumberToObject(d, "created_at",
                                (double)sqlite3_column_int64(stmt, 6));
        cJSON_AddItemToArray(list, d);
    }
    sqlite3_finalize(stmt);
    return result;
}

/* ---- Models ------------------------------------------------------------ */

static cJSON *model_json(struct op_call *call, sqlite3_stmt *stmt)
{
    cJSON *m = cJSON_CreateObject();
    int64_t id = sqlite3_column_int64(stmt, 0);
    struct error err = {0};
    char weights[PATH_MAX];
    cJSON *args = cJSON_Parse((const char *)sqlite3_column_text(stmt, 5));

    cJSON_AddNumberToObject(m, "id", (double)sqlite3_column_int64(stmt, 0));
    cJSON_AddNumberToObject(m, "dataset_id",
                            (double)sqlite3_column_int64(stmt, 1));
    cJSON_AddStringToObject(m, "name",
                            (const char *)sqlite3_column_text(stmt, 2));
    cJSON_AddStringToObject(m, "task",
                            (const char *)sqlite3_column_text(stmt, 3));
    cJSON_AddStringToObject(m, "architecture",
                            (const char *)sqlite3_column_text(stmt, 4));
    cJSON_AddItemToObject(m, "args", args ? args : cJSON_CreateObject());
    cJSON_AddNumberToObject(m, "created_at",
                            (double)sqlite3_column_int64(stmt, 6));
    if (sqlite3_column_type(stmt, 7) == SQLITE_NULL)
        cJSON_AddNullToObject(m, "from_model");
    else
        cJSON_AddNumberToObject(m, "from_model",
                                (double)sqlite3_column_int64(stmt, 7));
    /* Whether another model can start from this one's weights. */
    cJSON_AddBoolToObject(m, "has_weights",
                          sessions_model_weights(&call->be->store,
                                                 call->be->data_dir, id,
                                                 weights, sizeof(weights),
                                                 &err) == 1);
    return m;
}

#define MODEL_COLUMNS                                                         \
    "SELECT id, dataset_id, name, task, architecture, args, created_at, "    \
    "from_model_id FROM models "

/* The task of a shipped architecture, or NULL for an unknown name. */
static const char *architecture_task(const char *name)
{
    for (size_t i = 0; i < sizeof(architectures) / sizeof(architectures[0]);
         i++)
        if (strcmp(name, architectures[i].name) == 0)
            return architectures[i].task;
    return NULL;
}

/* The dataset's task, when the account may use the data set. */
static int dataset_task(struct op_call *call, int64_t dataset, char *task,
                        size_t len)
{
    sqlite3_stmt *stmt;
    int found;

    if (sqlite3_prepare_v2(call->be->store.db,
                           "SELECT task FROM datasets WHERE id = ?1 AND "
                           "status = 'ready' AND (account_id = ?2 OR "
                           "account_id IS NULL)",
                           -1, &stmt, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(stmt, 1, dataset);
    sqlite3_bind_int64(stmt, 2, call->account_id);
    found = sqlite3_step(stmt) == SQLITE_ROW;
    if (found)
        snprintf(task, len, "%s", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return found;
}

/* Read the optional "from_model" argument into *from_model (0 when absent
 * or null) and check that it is one of the account's models, of task,
 * with weights. Returns 0, or -1 with the error filled. */
static int check_from_model(struct op_call *call, const char *task,
                            int64_t *from_model)
{
    const cJSON *item = NULL;
    struct error err = {0};
    char source_task[16] = "", weights[PATH_MAX];
    sqlite3_stmt *stmt;
    int found, rc;

    *from_model = 0;
    if (call->args != NULL)
        item = cJSON_GetObjectItemCaseSensitive(call->args, "from_model");
    if (item == NULL || cJSON_IsNull(item))
        return 0;
    if (op_arg_int64(call, "from_model", from_model) != 0)
        return -1;

    if (sqlite3_prepare_v2(call->be->store.db,
                           "SELECT task FROM models WHERE id = ?1 AND "
                           "account_id = ?2 AND deleted = 0",
                           -1, &stmt, NULL) != SQLITE_OK) {
        op_error(call, "internal", "cannot read model %lld: %s",
                 (long long)*from_model, sqlite3_errmsg(call->be->store.db));
        return -1;
    }
    sqlite3_bind_int64(stmt, 1, *from_model);
    sqlite3_bind_int64(stmt, 2, call->account_id);
    found = sqlite3_step(stmt) == SQLITE_ROW;
    if (found)
        snprintf(source_task, sizeof(source_task), "%s",
                 (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    if (!found) {
        op_error(call, "not_found", "from_model %lld not found",
                 (long long)*from_model);
        return -1;
    }
    if (strcmp(source_task, task) != 0) {
        op_error(call, "invalid_request",
                 "from_model %lld is a %s model but the data set is for "
                 "%s; pick a %s model or start from scratch",
                 (long long)*from_model, source_task, task, task);
        return -1;
    }

    rc = sessions_model_weights(&call->be->store, call->be->data_dir,
                                *from_model, weights, sizeof(weights), &err);
    if (rc < 0) {
        op_error(call, "internal", "%s", err.msg);
        return -1;
    }
    if (rc == 0) {
        op_error(call, "invalid_request",
                 "from_model %lld has no weights yet: no completed or "
                 "stopped training left a checkpoint; train it first or "
                 "start from scratch",
                 (long long)*from_model);
        return -1;
    }
    return 0;
}

static cJSON *op_models_create(struct op_call *call)
{
    const char *name = NULL, *arch = NULL;
    const cJSON *args = NULL;
    int64_t dataset = 0, from_model = 0, id;
    char task[16], *args_text;
    sqlite3_stmt *stmt;

    if (need_account(call) != 0 || require_int64(call, "dataset", &dataset))
        return NULL;
    if (op_arg_string(call, "name", &name) != 0 ||
        op_arg_string(call, "architecture", &arch) != 0) {
        if (call->code == NULL)
            op_error(call, "invalid_request",
                     "name and architecture are required");
        return NULL;
    }
    if (name[0] == '\0' || strlen(name) > MODEL_NAME_MAX)
        return op_error(call, "invalid_request",
                        "name must have 1 to %d characters", MODEL_NAME_MAX);
    const char *arch_task = architecture_task(arch);
    if (arch_task == NULL)
        return op_error(call, "invalid_request",
                        "unknown architecture '%.64s'; use yolov8n-cls.yaml "
                        "... yolov8x-cls.yaml for classification or "
                        "yolov8n.yaml ... yolov8x.yaml for detection",
                        arch);
    if (!dataset_task(call, dataset, task, sizeof(task)))
        return op_error(call, "not_found", "data set %lld not found",
                        (long long)dataset);
    if (strcmp(arch_task, task) != 0)
        return op_error(call, "invalid_request",
                        "architecture '%s' is for %s but data set %lld is a "
                        "%s data set; use %s",
                        arch, arch_task, (long long)dataset, task,
                        strcmp(task, "detect") == 0 ? "yolov8n.yaml"
                                                    : "yolov8n-cls.yaml");
    if (check_from_model(call, task, &from_model) != 0)
        return NULL;
    if (call->args != NULL)
        args = cJSON_GetObjectItemCaseSensitive(call->args, "args");
    if (args != NULL && !cJSON_IsObject(args))
        return op_error(call, "invalid_request",
                        "field 'args' must be an object of training "
                        "arguments");
    args_text = args ? cJSON_PrintUnformatted(args) : strdup("{}");
    if (args_text == NULL || strlen(args_text) > MODEL_ARGS_MAX) {
        free(args_text);
        return op_error(call, "invalid_request",
                        "field 'args' is larger than %d bytes",
                        MODEL_ARGS_MAX);
    }

    if (sqlite3_prepare_v2(call->be->store.db,
                           "INSERT INTO models(account_id, dataset_id, name, "
                           "task, architecture, args, created_at, "
                           "from_model_id) VALUES "
                           "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                           -1, &stmt, NULL) != SQLITE_OK) {
        free(args_text);
        return op_error(call, "internal", "cannot create the model: %s",
                        sqlite3_errmsg(call->be->store.db));
    }
    sqlite3_bind_int64(stmt, 1, call->account_id);
    sqlite3_bind_int64(stmt, 2, dataset);
    sqlite3_bind_text(stmt, 3, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 4, task, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 5, arch, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 6, args_text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 7, clock_realtime_ms());
    if (from_model > 0)
        sqlite3_bind_int64(stmt, 8, from_model);
    else
        sqlite3_bind_null(stmt, 8);
    int done = sqlite3_step(stmt) == SQLITE_DONE;
    sqlite3_finalize(stmt);
    free(args_text);
    if (!done)
        return op_error(call, "internal", "cannot create the model: %s",
                        sqlite3_errmsg(call->be->store.db));
    id = sqlite3_last_insert_rowid(call->be->store.db);
    log_info("model created account=%lld model=%lld dataset=%lld "
             "architecture=%s from_model=%lld",
             (long long)call->account_id, (long long)id, (long long)dataset,
             arch, (long long)from_model);

    cJSON *result = cJSON_CreateObject();
    cJSON_AddNumberToObject(result, "id", (double)id);
    return result;
}

static cJSON *op_models_list(struct op_call *call)
{
    sqlite3_stmt *stmt;
    cJSON *result, *list;

    if (need_account(call) != 0)
        return NULL;
    if (sqlite3_prepare_v2(call->be->store.db,
                           MODEL_COLUMNS "WHERE account_id = ?1 AND "
                                         "deleted = 0 ORDER BY id",
                           -1, &stmt, NULL) != SQLITE_OK)
        return op_error(call, "internal", "cannot list models: %s",
                        sqlite3_errmsg(call->be->store.db));
    sqlite3_bind_int64(stmt, 1, call->account_id);
    result = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(result, "models");
    while (sqlite3_step(stmt) == SQLITE_ROW)
        cJSON_AddItemToArray(list, model_json(call, stmt));
    sqlite3_finalize(stmt);
    return result;
}

/* The model's latest session, or JSON null. */
static cJSON *latest_session(struct op_call *call, int64_t model)
{
    sqlite3_stmt *stmt;
    cJSON *s = NULL;

    if (sqlite3_prepare_v2(
            call->be->store.db,
            "SELECT s.id, s.state, s.mode, s.epochs, s.epochs_done, "
            "s.time_limit_ms, s.trained_ms, s.price, s.rate, s.reason, "
            "s.queue_position, t.name, s.updated_at FROM sessions s "
            "JOIN instance_types t ON t.id = s.instance_type_id "
            "WHERE s.model_id = ?1 ORDER BY s.id DESC LIMIT 1",
            -1, &stmt, NULL) != SQLITE_OK)
        return cJSON_CreateNull();
    sqlite3_bind_int64(stmt, 1, model);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        s = cJSON_CreateObject();
        cJSON_AddNumberToObject(s, "id", (double)sqlite3_column_int64(stmt, 0));
        cJSON_AddStringToObject(s, "state",
                                (const char *)sqlite3_column_text(stmt, 1));
        cJSON_AddStringToObject(s, "mode",
                                (const char *)sqlite3_column_text(stmt, 2));
        cJSON_AddNumberToObject(s, "epochs", sqlite3_column_int(stmt, 3));
        cJSON_AddNumberToObject(s, "epochs_done", sqlite3_column_int(stmt, 4));
        if (sqlite3_column_type(stmt, 5) != SQLITE_NULL)
            cJSON_AddNumberToObject(s, "time_limit_ms",
                                    (double)sqlite3_column_int64(stmt, 5));
        cJSON_AddNumberToObject(s, "trained_ms",
                                (double)sqlite3_column_int64(stmt, 6));
        if (sqlite3_column_type(stmt, 7) != SQLITE_NULL)
            cJSON_AddNumberToObject(s, "price",
                                    (double)sqlite3_column_int64(stmt, 7));
        cJSON_AddNumberToObject(s, "rate",
                                (double)sqlite3_column_int64(stmt, 8));
        if (sqlite3_column_type(stmt, 9) != SQLITE_NULL)
            cJSON_AddStringToObject(s, "reason",
                                    (const char *)sqlite3_column_text(stmt,
                                                                      9));
        if (sqlite3_column_type(stmt, 10) != SQLITE_NULL)
            cJSON_AddNumberToObject(s, "queue_position",
                                    sqlite3_column_int(stmt, 10));
        cJSON_AddStringToObject(s, "instance_type",
                                (const char *)sqlite3_column_text(stmt, 11));
        cJSON_AddNumberToObject(s, "updated_at",
                                (double)sqlite3_column_int64(stmt, 12));
    }
    sqlite3_finalize(stmt);
    return s ? s : cJSON_CreateNull();
}

/* The account's model that is initializing or training, for the
 * "cloud training unavailable" message. */
static void add_active_model(struct op_call *call, cJSON *result)
{
    sqlite3_stmt *stmt;

    if (sqlite3_prepare_v2(call->be->store.db,
                           "SELECT m.id, m.name FROM sessions s JOIN models "
                           "m ON m.id = s.model_id WHERE s.account_id = ?1 "
                           "AND s.state IN ('initializing', 'training')",
                           -1, &stmt, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(stmt, 1, call->account_id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        cJSON *a = cJSON_AddObjectToObject(result, "account_training");
        cJSON_AddNumberToObject(a, "model",
                                (double)sqlite3_column_int64(stmt, 0));
        cJSON_AddStringToObject(a, "name",
                                (const char *)sqlite3_column_text(stmt, 1));
    }
    sqlite3_finalize(stmt);
}

static cJSON *op_models_get(struct op_call *call)
{
    sqlite3_stmt *stmt;
    cJSON *result = NULL;
    int64_t model;

    if (need_account(call) != 0 || require_int64(call, "model", &model))
        return NULL;
    if (sqlite3_prepare_v2(call->be->store.db,
                           MODEL_COLUMNS "WHERE id = ?1 AND account_id = ?2 "
                                         "AND deleted = 0",
                           -1, &stmt, NULL) != SQLITE_OK)
        return op_error(call, "internal", "cannot read the model: %s",
                        sqlite3_errmsg(call->be->store.db));
    sqlite3_bind_int64(stmt, 1, model);
    sqlite3_bind_int64(stmt, 2, call->account_id);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        result = model_json(call, stmt);
    sqlite3_finalize(stmt);
    if (result == NULL)
        return model_not_found(call, model);
    cJSON_AddItemToObject(result, "session", latest_session(call, model));
    add_active_model(call, result);
    return result;
}

static cJSON *op_models_delete(struct op_call *call)
{
    sqlite3_stmt *stmt;
    int64_t model;
    int changed;

    if (need_account(call) != 0 || require_int64(call, "model", &model))
        return NULL;
    if (!model_owned(call, model))
        return model_not_found(call, model);
    if (sqlite3_prepare_v2(call->be->store.db,
                           "UPDATE models SET deleted = 1 WHERE id = ?1 AND "
                           "NOT EXISTS (SELECT 1 FROM sessions WHERE "
                           "model_id = ?1 AND state IN ('initializing', "
                           "'training'))",
                           -1, &stmt, NULL) != SQLITE_OK)
        return op_error(call, "internal", "cannot delete the model: %s",
                        sqlite3_errmsg(call->be->store.db));
    sqlite3_bind_int64(stmt, 1, model);
    sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    changed = sqlite3_changes(call->be->store.db);
    if (changed == 0)
        return op_error(call, "conflict",
                        "model %lld is training; stop it before deleting it",
                        (long long)model);
    log_info("model deleted account=%lld model=%lld",
             (long long)call->account_id, (long long)model);
    return cJSON_CreateObject();
}

/* ---- Training ----------------------------------------------------------- */

/* Find an enabled instance type by id or name; 0 when missing. */
static int64_t instance_type_id(struct op_call *call, int64_t *rate)
{
    const char *name = NULL;
    int64_t id = 0;
    sqlite3_stmt *stmt;

    if (op_arg_int64(call, "instance_type", &id) < 0) {
        call->code = NULL; /* a name is accepted too */
        op_arg_string(call, "instance_type", &name);
    }
    if (sqlite3_prepare_v2(call->be->store.db,
                           "SELECT id, price_per_hour FROM instance_types "
                           "WHERE enabled = 1 AND (id = ?1 OR name = ?2) "
                           "ORDER BY id LIMIT 1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_text(stmt, 2, name ? name : "", -1, SQLITE_TRANSIENT);
    id = 0;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        id = sqlite3_column_int64(stmt, 0);
        *rate = sqlite3_column_int64(stmt, 1);
    }
    sqlite3_finalize(stmt);
    return id;
}

/* Charge the card for price as a top-up keyed by the client's key. */
static int pay_now(struct op_call *call, int64_t price, struct error *err)
{
    const struct payment_provider *provider;
    const char *card = NULL, *key = NULL;
    char full_key[200];

    if (op_arg_string(call, "card", &card) != 0 ||
        op_arg_string(call, "idempotency_key", &key) != 0)
        return error_set(err, -EINVAL,
                         "pay now needs card and idempotency_key");
    provider = payments_provider(call->be->config.payment_provider);
    if (provider == NULL || strcmp(provider->name, "operator") == 0)
        return error_set(err, -EINVAL,
                         "pay now is off on this installation; pay from the "
                         "balance");
    snprintf(full_key, sizeof(full_key), "paynow:%lld:%.150s",
             (long long)call->account_id, key);
    return payments_topup(&call->be->store, provider, call->account_id, price,
                          card, full_key, err);
}

static cJSON *op_training_start(struct op_call *call)
{
    struct sessions_start_request req;
    const char *mode = "epochs", *payment = "balance";
    struct error err = {0};
    int64_t epochs = 0, duration = 0, rate = 0, session = 0;

    memset(&req, 0, sizeof(req));
    if (need_account(call) != 0 ||
        require_int64(call, "model", &req.model_id) != 0 ||
        op_arg_string(call, "mode", &mode) < 0 ||
        op_arg_string(call, "payment", &payment) < 0 ||
        op_arg_int64(call, "epochs", &epochs) < 0 ||
        op_arg_int64(call, "duration_ms", &duration) < 0)
        return NULL;
    if (!model_owned(call, req.model_id))
        return model_not_found(call, req.model_id);
    req.account_id = call->account_id;
    req.instance_type_id = instance_type_id(call, &rate);
    if (req.instance_type_id == 0)
        return op_error(call, "invalid_request",
                        "instance_type is missing or unknown; see "
                        "instances.list");

    if (strcmp(mode, "epochs") == 0) {
        req.mode = SESSION_MODE_EPOCHS;
        req.epochs = (int)epochs;
        req.payment = SESSION_PAY_BALANCE;
        if (strcmp(payment, "balance") != 0)
            return op_error(call, "invalid_request",
                            "epoch training is paid from the balance; top "
                            "up to add money");
    } else if (strcmp(mode, "timed") == 0) {
        req.mode = SESSION_MODE_TIMED;
        req.time_limit_ms = duration;
        req.epochs = epochs > 0 ? (int)epochs : 1000;
        req.payment = SESSION_PAY_BALANCE;
        if (strcmp(payment, "prepaid") == 0) {
            if (duration <= 0)
                return op_error(call, "invalid_request",
                                "duration_ms must be > 0");
            if (pay_now(call, billing_timed_price(duration, rate), &err))
                return from_errno(call, &err);
        } else if (strcmp(payment, "balance") != 0) {
            return op_error(call, "invalid_request",
                            "invalid payment '%.16s': use balance or "
                            "prepaid",
                            payment);
        }
    } else {
        return op_error(call, "invalid_request",
                        "invalid mode '%.16s': use epochs or timed", mode);
    }

    if (sessions_start(call->be->sessions, &req, &session, &err) != 0)
        return from_errno(call, &err);
    cJSON *result = cJSON_CreateObject();
    cJSON_AddNumberToObject(result, "session", (double)session);
    return result;
}

/* The exact price of timed training before it starts: duration_ms at the
 * instance type's rate, as the start will charge it. */
static cJSON *op_training_quote(struct op_call *call)
{
    int64_t duration = 0, rate = 0, type;
    cJSON *result;

    if (need_account(call) != 0 ||
        require_int64(call, "duration_ms", &duration) != 0)
        return NULL;
    if (duration <= 0 || duration > (int64_t)1000 * 3600 * 1000)
        return op_error(call, "invalid_request",
                        "duration_ms must be between 1 and 3,600,000,000 "
                        "(1,000 hours)");
    type = instance_type_id(call, &rate);
    if (type == 0)
        return op_error(call, "invalid_request",
                        "instance_type is missing or unknown; see "
                        "instances.list");
    result = cJSON_CreateObject();
    cJSON_AddNumberToObject(result, "instance_type", (double)type);
    cJSON_AddNumberToObject(result, "duration_ms", (double)duration);
    cJSON_AddNumberToObject(result, "price_per_hour", (double)rate);
    cJSON_AddNumberToObject(result, "price",
                            (double)billing_timed_price(duration, rate));
    return result;
}

static cJSON *op_training_stop(struct op_call *call)
{
    struct error err = {0};
    int64_t model;

    if (need_account(call) != 0 || require_int64(call, "model", &model))
        return NULL;
    if (!model_owned(call, model))
        return model_not_found(call, model);
    if (sessions_stop(call->be->sessions, call->account_id, model, &err))
        return from_errno(call, &err);
    return cJSON_CreateObject();
}

static cJSON *op_training_resume(struct op_call *call)
{
    struct error err = {0};
    int64_t model, session = 0;

    if (need_account(call) != 0 || require_int64(call, "model", &model))
        return NULL;
    if (!model_owned(call, model))
        return model_not_found(call, model);
    if (sessions_resume(call->be->sessions, call->account_id, model, &session,
                        &err))
        return from_errno(call, &err);
    cJSON *result = cJSON_CreateObject();
    cJSON_AddNumberToObject(result, "session", (double)session);
    return result;
}

struct replay {
    cJSON *list;
    int count, limit;
};

static int add_event(void *user, const struct sessions_event *ev)
{
    struct replay *r = user;
    cJSON *e = cJSON_CreateObject();
    cJSON *payload = cJSON_Parse(ev->payload);

    cJSON_AddNumberToObject(e, "seq", (double)ev->seq);
    cJSON_AddNumberToObject(e, "session", (double)ev->session_id);
    cJSON_AddStringToObject(e, "kind", ev->kind);
    cJSON_AddNumberToObject(e, "created_at", (double)ev->created_at);
    cJSON_AddItemToObject(e, "payload",
                          payload ? payload : cJSON_CreateObject());
    cJSON_AddItemToArray(r->list, e);
    return ++r->count >= r->limit;
}

/* Stored events after after_seq, oldest first, at most limit (default
 * and maximum 1000); `more` is true when others follow. */
static cJSON *op_progress_after(struct op_call *call)
{
    struct error err = {0};
    struct replay r = {NULL, 0, 1000};
    int64_t model, after = 0, limit = 1000;

    if (need_account(call) != 0 || require_int64(call, "model", &model) ||
        op_arg_int64(call, "after_seq", &after) < 0 ||
        op_arg_int64(call, "limit", &limit) < 0)
        return NULL;
    if (!model_owned(call, model))
        return model_not_found(call, model);
    if (limit >= 1 && limit < 1000)
        r.limit = (int)limit;
    cJSON *result = cJSON_CreateObject();
    r.list = cJSON_AddArrayToObject(result, "events");
    if (sessions_events_after(call->be->sessions, model, after, add_event, &r,
                              &err) != 0) {
        cJSON_Delete(result);
        return from_errno(call, &err);
    }
    cJSON_AddBoolToObject(result, "more", r.count >= r.limit);
    return result;
}

/* ---- Weights and share links ------------------------------------------ */

/* Largest piece of a checkpoint that one models.weights_chunk returns:
 * its base64 (about 700 KB) fits in PROTO_MESSAGE_MAX. */
#define WEIGHTS_CHUNK_MAX (512 * 1024)
#define SHARE_EXPIRES_MIN_S 60
#define SHARE_EXPIRES_MAX_S 604800

/* Read the "which" argument: "best" or "last". */
static int require_which(struct op_call *call, const char **which)
{
    int rc = op_arg_string(call, "which", which);

    if (rc == 1) {
        op_error(call, "invalid_request",
                 "field 'which' is required: \"best\" or \"last\"");
        return -1;
    }
    if (rc != 0)
        return -1;
    if (strcmp(*which, "best") != 0 && strcmp(*which, "last") != 0) {
        op_error(call, "invalid_request",
                 "field 'which' is '%.20s'; use \"best\" or \"last\"",
                 *which);
        return -1;
    }
    return 0;
}

/* Find the newest session of model with weights/WHICH.ckpt and write its
 * path; returns 1 when found, else 0. */
static int find_checkpoint(struct op_call *call, int64_t model,
                           const char *which, char *path, size_t len)
{
    sqlite3_stmt *stmt;
    struct stat st;
    int found = 0;

    if (sqlite3_prepare_v2(call->be->store.db,
                           "SELECT id FROM sessions WHERE model_id = ?1 "
                           "ORDER BY id DESC",
                           -1, &stmt, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(stmt, 1, model);
    while (!found && sqlite3_step(stmt) == SQLITE_ROW) {
        snprintf(path, len, "%s/runs/model-%lld/session-%lld/weights/%s.ckpt",
                 call->be->data_dir, (long long)model,
                 (long long)sqlite3_column_int64(stmt, 0), which);
        found = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    }
    sqlite3_finalize(stmt);
    return found;
}

/* The model's name, copied into out; "" when it has none. */
static void model_name(struct op_call *call, int64_t model, char *out,
                       size_t len)
{
    sqlite3_stmt *stmt;

    out[0] = '\0';
    if (sqlite3_prepare_v2(call->be->store.db,
                           "SELECT name FROM models WHERE id = ?1", -1,
                           &stmt, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(stmt, 1, model);
    if (sqlite3_step(stmt) == SQLITE_ROW &&
        sqlite3_column_text(stmt, 0) != NULL)
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
}

/* Args {model, which, offset}: up to WEIGHTS_CHUNK_MAX bytes of the
 * newest checkpoint from offset, as {filename, content_type, size,
 * offset, eof, data_base64}. */
static cJSON *op_models_weights_chunk(struct op_call *call)
{
    char path[PATH_MAX], name[MODEL_NAME_MAX + 16], filename[160];
    int64_t model, offset = 0;
    const char *which;
    unsigned char *bytes;
    char *encoded;
    struct stat st;
    ssize_t got;
    cJSON *result;
    int fd;

    if (need_account(call) != 0 || require_int64(call, "model", &model) ||
        require_which(call, &which) != 0 ||
        op_arg_int64(call, "offset", &offset) < 0)
        return NULL;
    if (!model_owned(call, model))
        return model_not_found(call, model);
    if (offset < 0)
        return op_error(call, "invalid_request",
                        "offset %lld is negative; start at 0",
                        (long long)offset);
    if (!find_checkpoint(call, model, which, path, sizeof(path)))
        return op_error(call, "not_found",
                        "model %lld has no %s checkpoint yet; train it first",
                        (long long)model, which);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        log_error("cannot open checkpoint %s: %s model=%lld", path,
                  strerror(errno), (long long)model);
        return op_error(call, "internal", "cannot read the checkpoint");
    }
    if (offset > st.st_size)
        offset = st.st_size;
    bytes = malloc(WEIGHTS_CHUNK_MAX);
    got = bytes != NULL ? pread(fd, bytes, WEIGHTS_CHUNK_MAX, (off_t)offset)
                        : -1;
    close(fd);
    if (got < 0) {
        free(bytes);
        log_error("cannot read checkpoint %s at %lld: %s model=%lld", path,
                  (long long)offset, strerror(errno), (long long)model);
        return op_error(call, "internal", "cannot read the checkpoint");
    }
    encoded = malloc(sodium_base64_ENCODED_LEN(
        (size_t)got, sodium_base64_VARIANT_ORIGINAL));
    if (encoded == NULL) {
        free(bytes);
        return op_error(call, "internal", "out of memory");
    }
    sodium_bin2base64(encoded,
                      sodium_base64_ENCODED_LEN(
                          (size_t)got, sodium_base64_VARIANT_ORIGINAL),
                      bytes, (size_t)got, sodium_base64_VARIANT_ORIGINAL);
    free(bytes);

    model_name(call, model, name, sizeof(name));
    snprintf(filename, sizeof(filename), "%s-%s.ckpt",
             name[0] != '\0' ? name : "model", which);
    result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "filename", filename);
    cJSON_AddStringToObject(result, "content_type",
                            "application/octet-stream");
    cJSON_AddNumberToObject(result, "size", (double)st.st_size);
    cJSON_AddNumberToObject(result, "offset", (double)offset);
    cJSON_AddBoolToObject(result, "eof", offset + got >= st.st_size);
    cJSON_AddStringToObject(result, "data_base64", encoded);
    free(encoded);
    return result;
}

/* Shortest expires_in_s that models.share_sign accepts. Tests may lower
 * it with TRAINYARD_SHARE_TEST_MIN_S; production must not set it. */
static int64_t share_expires_min_s(void)
{
    const char *text = getenv("TRAINYARD_SHARE_TEST_MIN_S");
    long long value;

    if (text != NULL && sscanf(text, "%lld", &value) == 1 && value >= 1 &&
        value < SHARE_EXPIRES_MIN_S)
        return value;
    return SHARE_EXPIRES_MIN_S;
}

/* Args {model, which, expires_in_s}: {token, expires_at}. */
static cJSON *op_models_share_sign(struct op_call *call)
{
    struct share_link link = {0};
    char token[SHARE_TOKEN_MAX];
    struct error err = {0};
    int64_t model, expires_in_s, min_s = share_expires_min_s();
    const char *which;
    cJSON *result;

    if (need_account(call) != 0 || require_int64(call, "model", &model) ||
        require_which(call, &which) != 0 ||
        require_int64(call, "expires_in_s", &expires_in_s))
        return NULL;
    if (!model_owned(call, model))
        return model_not_found(call, model);
    if (expires_in_s < min_s || expires_in_s > SHARE_EXPIRES_MAX_S)
        return op_error(call, "invalid_request",
                        "expires_in_s %lld is out of range; use %lld to %d "
                        "seconds",
                        (long long)expires_in_s, (long long)min_s,
                        SHARE_EXPIRES_MAX_S);
    link.model = model;
    snprintf(link.which, sizeof(link.which), "%s", which);
    link.expires_at = clock_realtime_ms() / 1000 + expires_in_s;
    link.account = call->account_id;
    if (share_sign(call->be->data_dir, &link, token, &err) != 0) {
        log_error("cannot sign a share link: %s model=%lld", err.msg,
                  (long long)model);
        return op_error(call, "internal", "cannot sign the share link");
    }
    result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "token", token);
    cJSON_AddNumberToObject(result, "expires_at", (double)link.expires_at);
    sodium_memzero(token, sizeof(token));
    log_info("share link signed account=%lld model=%lld which=%s",
             (long long)call->account_id, (long long)model, which);
    return result;
}

/* Args {token}: {model, which, account} of a valid, unexpired link whose
 * model its signer still owns. Needs no account. */
static cJSON *op_models_share_verify(struct op_call *call)
{
    struct share_link link = {0};
    struct error err = {0};
    const char *token;
    cJSON *result;
    int rc;

    rc = op_arg_string(call, "token", &token);
    if (rc == 1)
        return op_error(call, "invalid_request", "field 'token' is required");
    if (rc != 0)
        return NULL;
    rc = share_verify(call->be->data_dir, token, clock_realtime_ms() / 1000,
                      &link, &err);
    if (rc == -ETIME)
        return op_error(call, "link_expired", "%s", err.msg);
    if (rc == -EBADMSG)
        return op_error(call, "not_found", "no such share link");
    if (rc != 0) {
        log_error("cannot check a share link: %s", err.msg);
        return op_error(call, "internal", "cannot check the share link");
    }
    /* The signer's ownership is checked again, so deleting the model
     * ends its links. */
    struct op_call owner = *call;
    owner.account_id = link.account;
    if (!model_owned(&owner, link.model))
        return op_error(call, "not_found", "no such share link");
    result = cJSON_CreateObject();
    cJSON_AddNumberToObject(result, "model", (double)link.model);
    cJSON_AddStringToObject(result, "which", link.which);
    cJSON_AddNumberToObject(result, "account", (double)link.account);
    return result;
}

const struct proto_op proto_training_ops[] = {
    {"datasets.list", op_datasets_list},
    {"models.create", op_models_create},
    {"models.list", op_models_list},
    {"models.get", op_models_get},
    {"models.delete", op_models_delete},
    {"models.weights_chunk", op_models_weights_chunk},
    {"models.share_sign", op_models_share_sign},
    {"models.share_verify", op_models_share_verify},
    {"training.quote", op_training_quote},
    {"training.start", op_training_start},
    {"training.stop", op_training_stop},
    {"training.resume", op_training_resume},
    {"progress.after", op_progress_after},
    {NULL, NULL},
};
