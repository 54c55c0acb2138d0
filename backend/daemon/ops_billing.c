/*
 * Protocol ops for money: instance types and prices, the balance, the
 * ledger, top-ups through the configured payment provider, operator
 * credits, and billing reports. Every op acts for the envelope's account;
 * a report of another account's model gets a not_found error.
 *
 * Errors from the billing modules map to stable codes: -EINVAL
 * invalid_request, -ENOENT not_found, -EPERM forbidden, -EACCES
 * payment_declined, -ENOSPC insufficient_balance, -EEXIST conflict;
 * anything else is internal and logged.
 *
 * Clients choose idempotency keys, so the ops prefix them with the
 * account ("topup:ACCOUNT:KEY"): one account can never use up, or see,
 * another account's keys.
 */
#include "ops_billing.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "log.h"
#include "payments.h"
#include "report.h"

/* Turn a module's error into the op's error. */
static cJSON *fail(struct op_call *call, const struct error *err)
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
        code = "forbidden";
        break;
    case -EACCES:
        code = "payment_declined";
        break;
    case -ENOSPC:
        code = "insufficient_balance";
        break;
    case -EEXIST:
        code = "conflict";
        break;
    }
    return op_error(call, code, "%s", err->msg);
}

static cJSON *need_account(struct op_call *call)
{
    return op_error(call, "unauthorized", "sign in first");
}

static cJSON *op_instances_list(struct op_call *call)
{
    sqlite3 *db = call->be->store.db;
    sqlite3_stmt *stmt;
    cJSON *result = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(result, "instance_types");

    if (sqlite3_prepare_v2(db,
                           "SELECT id, name, device, price_per_hour, "
                           "capacity FROM instance_types WHERE enabled = 1 "
                           "ORDER BY id",
                           -1, &stmt, NULL) != SQLITE_OK) {
        cJSON_Delete(result);
        return op_error(call, "internal", "cannot list instance types: %s",
                        sqlite3_errmsg(db));
    }
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", (double)sqlite3_column_int64(stmt, 0));
        cJSON_AddStringToObject(t, "name",
                                (const char *)sqlite3_column_text(stmt, 1));
        cJSON_AddStringToObject(t, "device",
                                (const char *)sqlite3_column_text(stmt, 2));
        cJSON_AddNumberToObject(t, "price_per_hour",
                                (double)sqlite3_column_int64(stmt, 3));
        cJSON_AddNumberToObject(t, "capacity", sqlite3_column_int(stmt, 4));
        cJSON_AddItemToArray(list, t);
    }
    sqlite3_finalize(stmt);
    return result;
}

static cJSON *op_balance(struct op_call *call)
{
    struct error err = {0};
    int64_t balance;
    cJSON *result;

    if (call->account_id <= 0)
        return need_account(call);
    if (ledger_balance(&call->be->store, call->account_id, &balance, &err))
        return fail(call, &err);
    result = cJSON_CreateObject();
    cJSON_AddNumberToObject(result, "balance", (double)balance);
    cJSON_AddNumberToObject(result, "epoch_start_minimum",
                            (double)EPOCH_START_MINIMUM);
    return result;
}

static int add_row(const struct ledger_row *row, void *ctx)
{
    cJSON *r = cJSON_CreateObject();

    cJSON_AddNumberToObject(r, "id", (double)row->id);
    cJSON_AddStringToObject(r, "kind", ledger_kind_name(row->kind));
    cJSON_AddNumberToObject(r, "amount", (double)row->amount);
    cJSON_AddNumberToObject(r, "balance_after", (double)row->balance_after);
    if (row->session_id)
        cJSON_AddNumberToObject(r, "session_id", (double)row->session_id);
    if (row->model_id)
        cJSON_AddNumberToObject(r, "model_id", (double)row->model_id);
    if (row->epoch)
        cJSON_AddNumberToObject(r, "epoch", row->epoch);
    if (row->rate)
        cJSON_AddNumberToObject(r, "rate", (double)row->rate);
    if (row->seconds > 0)
        cJSON_AddNumberToObject(r, "seconds", row->seconds);
    cJSON_AddStringToObject(r, "description",
                            row->description ? row->description : "");
    cJSON_AddNumberToObject(r, "created_at", (double)row->created_at);
    cJSON_AddItemToArray((cJSON *)ctx, r);
    return 0;
}

/* The account's ledger, oldest first; with model, that model's rows. */
static cJSON *op_ledger(struct op_call *call)
{
    struct error err = {0};
    cJSON *result, *rows;
    int64_t model = 0;

    if (call->account_id <= 0)
        return need_account(call);
    if (op_arg_int64(call, "model", &model) < 0)
        return NULL;
    result = cJSON_CreateObject();
    rows = cJSON_AddArrayToObject(result, "entries");
    if (ledger_foreach(&call->be->store, call->account_id, add_row, rows,
                       &err) != 0) {
        cJSON_Delete(result);
        return fail(call, &err);
    }
    if (model > 0) {
        /* Keep the model's rows only; ids are not secret, the filter is a
         * convenience for the billing tab. */
        cJSON *all = cJSON_DetachItemFromObject(result, "entries");
        cJSON *kept = cJSON_AddArrayToObject(result, "entries");
        cJSON *row;
        cJSON_ArrayForEach(row, all)
        {
            cJSON *m = cJSON_GetObjectItem(row, "model_id");
            if (cJSON_IsNumber(m) && (int64_t)m->valuedouble == model)
                cJSON_AddItemToArray(kept, cJSON_Duplicate(row, 1));
        }
        cJSON_Delete(all);
    }
    return result;
}

static cJSON *op_topup(struct op_call *call)
{
    const struct payment_provider *provider;
    const char *card = NULL, *key = NULL;
    struct error err = {0};
    int64_t amount = 0;

    if (call->account_id <= 0)
        return need_account(call);
    if (op_arg_int64(call, "amount", &amount) != 0 ||
        op_arg_string(call, "card", &card) != 0 ||
        op_arg_string(call, "idempotency_key", &key) != 0) {
        if (call->code == NULL)
            op_error(call, "invalid_request",
                     "amount (micro-dollars), card and idempotency_key are "
                     "required");
        return NULL;
    }
    provider = payments_provider(call->be->config.payment_provider);
    if (provider == NULL || strcmp(provider->name, "operator") == 0)
        return op_error(call, "forbidden",
                        "top-ups by card are off on this installation; ask "
                        "your operator for credit");
    if (key[0] == '\0' || strlen(key) > 150)
        return op_error(call, "invalid_request",
                        "idempotency key is missing or longer than 150 "
                        "characters; send a unique key per payment form");
    char scoped[200];
    snprintf(scoped, sizeof(scoped), "topup:%lld:%.150s",
             (long long)call->account_id, key);
    if (payments_topup(&call->be->store, provider, call->account_id, amount,
                       card, scoped, &err) != 0)
        return fail(call, &err);
    return op_balance(call);
}

static cJSON *op_credit(struct op_call *call)
{
    const char *description = NULL, *key = NULL;
    struct error err = {0};
    int64_t account = 0, amount = 0;
    char scoped[200];
    cJSON *result;

    if (call->account_id <= 0)
        return need_account(call);
    if (op_arg_int64(call, "account", &account) != 0 ||
        op_arg_int64(call, "amount", &amount) != 0 ||
        op_arg_string(call, "description", &description) != 0) {
        if (call->code == NULL)
            op_error(call, "invalid_request",
                     "account, amount (micro-dollars) and description are "
                     "required");
        return NULL;
    }
    /* Optional: a retried credit with the same key is granted once. */
    if (op_arg_string(call, "idempotency_key", &key) < 0)
        return NULL;
    if (key != NULL)
        snprintf(scoped, sizeof(scoped), "credit:%lld:%.150s",
                 (long long)call->account_id, key);
    if (payments_credit(&call->be->store, call->account_id, account, amount,
                        description, key ? scoped : NULL, &err) != 0)
        return fail(call, &err);
    result = cJSON_CreateObject();
    cJSON_AddNumberToObject(result, "account", (double)account);
    cJSON_AddNumberToObject(result, "amount", (double)amount);
    return result;
}

/* A report as base64 with its type and a suggested file name; the
 * gateway decodes it for the download. */
static cJSON *op_report(struct op_call *call)
{
    const char *format = "csv";
    struct error err = {0};
    struct report rep;
    int64_t model = 0;
    enum report_format fmt;
    int rc;

    if (call->account_id <= 0)
        return need_account(call);
    if (op_arg_int64(call, "model", &model) < 0 ||
        op_arg_string(call, "format", &format) < 0)
        return NULL;
    if (strcmp(format, "csv") == 0)
        fmt = REPORT_CSV;
    else if (strcmp(format, "pdf") == 0)
        fmt = REPORT_PDF;
    else
        return op_error(call, "invalid_request",
                        "invalid format '%.16s': use csv or pdf", format);

    if (model > 0)
        rc = report_model(&call->be->store, call->account_id, model, fmt,
                          &rep, &err);
    else
        rc = report_statement(&call->be->store, call->account_id, 0, 0, fmt,
                              &rep, &err);
    if (rc != 0)
        return fail(call, &err);

    size_t b64_len = sodium_base64_encoded_len(rep.len,
                                               sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(b64_len);
    if (b64 == NULL) {
        report_free(&rep);
        return op_error(call, "internal", "out of memory for the report");
    }
    sodium_bin2base64(b64, b64_len, (const unsigned char *)rep.data, rep.len,
                      sodium_base64_VARIANT_ORIGINAL);

    char name[64];
    if (model > 0)
        snprintf(name, sizeof(name), "trainyard-model-%lld-billing.%s",
                 (long long)model, format);
    else
        snprintf(name, sizeof(name), "trainyard-statement.%s", format);
    cJSON *result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "content_type", rep.content_type);
    cJSON_AddStringToObject(result, "filename", name);
    cJSON_AddStringToObject(result, "data_base64", b64);
    cJSON_AddNumberToObject(result, "total_net", (double)rep.totals.net);
    cJSON_AddNumberToObject(result, "total_charges",
                            (double)rep.totals.charges);
    cJSON_AddNumberToObject(result, "total_refunds",
                            (double)rep.totals.refunds);
    cJSON_AddNumberToObject(result, "rows", (double)rep.totals.rows);
    free(b64);
    report_free(&rep);
    return result;
}

const struct proto_op proto_billing_ops[] = {
    {"instances.list", op_instances_list},
    {"billing.balance", op_balance},
    {"billing.ledger", op_ledger},
    {"billing.topup", op_topup},
    {"billing.credit", op_credit},
    {"billing.report", op_report},
    {NULL, NULL},
};
