/*
 * REST endpoints for money: instance types and prices, the balance, the
 * ledger, top-ups, operator credits, and billing report downloads.
 *
 * Reports arrive from the backend as base64 in a JSON response and leave
 * as the file itself, with the headers of api_send_attachment_headers,
 * which sanitizes the download's name.
 */
#include <civetweb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "http.h"
#include "log.h"

void api_instance_types(struct api_request *req)
{
    api_forward(req, "instances.list", NULL, 200);
}

void api_balance(struct api_request *req)
{
    api_forward(req, "billing.balance", NULL, 200);
}

void api_ledger(struct api_request *req)
{
    api_forward(req, "billing.ledger", NULL, 200);
}

/* Body: {"amount": micro-dollars, "card": "4242...", "idempotency_key":
 * "..."}; the backend checks every field. */
void api_topup(struct api_request *req)
{
    api_forward(req, "billing.topup", cJSON_Duplicate(req->body, 1), 200);
}

/* Body: {"amount": micro-dollars, "description": "why"}. */
void api_admin_credit(struct api_request *req)
{
    cJSON *args = cJSON_Duplicate(req->body, 1);

    cJSON_DeleteItemFromObjectCaseSensitive(args, "account");
    cJSON_AddNumberToObject(args, "account", (double)req->id);
    api_forward(req, "billing.credit", args, 201);
}

static void send_download(struct api_request *req, const cJSON *result)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(result,
                                                         "content_type");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(result, "filename");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(result,
                                                         "data_base64");
    unsigned char *bytes;
    size_t b64_len, max_len, len = 0;

    if (!cJSON_IsString(type) || !cJSON_IsString(name) ||
        !cJSON_IsString(data)) {
        api_send_error(req, "internal", "the backend sent no report");
        return;
    }
    b64_len = strlen(data->valuestring);
    max_len = b64_len / 4 * 3 + 3;
    bytes = malloc(max_len);
    if (bytes == NULL ||
        sodium_base642bin(bytes, max_len, data->valuestring, b64_len, NULL,
                          &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(bytes);
        api_send_error(req, "internal", "the backend sent a damaged report");
        return;
    }

    api_send_attachment_headers(req, type->valuestring, name->valuestring,
                                len);
    mg_write(req->conn, bytes, len);
    free(bytes);
}

static void download(struct api_request *req, int64_t model,
                     const char *format)
{
    cJSON *args = cJSON_CreateObject();
    cJSON *result;

    if (model > 0)
        cJSON_AddNumberToObject(args, "model", (double)model);
    cJSON_AddStringToObject(args, "format", format);
    result = api_call(req, "billing.report", args);
    cJSON_Delete(args);
    if (result == NULL)
        return;
    send_download(req, result);
    cJSON_Delete(result);
}

void api_model_billing_csv(struct api_request *req)
{
    download(req, req->id, "csv");
}

void api_model_billing_pdf(struct api_request *req)
{
    download(req, req->id, "pdf");
}

void api_statement_csv(struct api_request *req)
{
    download(req, 0, "csv");
}

void api_statement_pdf(struct api_request *req)
{
    download(req, 0, "pdf");
}
