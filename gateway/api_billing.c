/*
 * REST endpoints for money: instance types and prices, the balance, the
 * ledger, top-ups, operator credits, and billing report downloads.
 *
 * Reports arrive from the backend as base64 in a JSON response and leave
 * as the file itself. The download's name goes into Content-Disposition
 * twice, as RFC 6266 asks: a plain ASCII `filename` with every character
 * outside [A-Za-z0-9._-] replaced by '_' (so no quote, line break or path
 * can reach the header), and `filename*` percent-encoded in UTF-8.
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

/* Replace every byte outside [A-Za-z0-9._-] with '_'. */
static void ascii_filename(const char *in, char *out, size_t len)
{
    size_t n = 0;

    for (; *in != '\0' && n + 1 < len; in++) {
        char c = *in;
        int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                   c == '-';
        out[n++] = keep ? c : '_';
    }
    out[n] = '\0';
    if (n == 0 || out[0] == '.')
        snprintf(out, len, "download");
}

/* Percent-encode every byte outside the RFC 5987 attr-char set. */
static void percent_filename(const char *in, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (const unsigned char *p = (const unsigned char *)in;
         *p != '\0' && n + 4 < len; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("!#$&+-.^_`|~", *p);
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
}

static void send_download(struct api_request *req, const cJSON *result)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(result,
                                                         "content_type");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(result, "filename");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(result,
                                                         "data_base64");
    char ascii[128], encoded[400], disposition[600], length[32];
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

    ascii_filename(name->valuestring, ascii, sizeof(ascii));
    percent_filename(name->valuestring, encoded, sizeof(encoded));
    snprintf(disposition, sizeof(disposition),
             "attachment; filename=\"%s\"; filename*=UTF-8''%s", ascii,
             encoded);
    snprintf(length, sizeof(length), "%zu", len);

    mg_response_header_start(req->conn, 200);
    mg_response_header_add(req->conn, "Content-Type", type->valuestring, -1);
    mg_response_header_add(req->conn, "Content-Disposition", disposition,
                           -1);
    mg_response_header_add(req->conn, "Content-Length", length, -1);
    mg_response_header_add(req->conn, "Cache-Control", "no-store", -1);
    mg_response_header_add_lines(req->conn, HTTP_SECURITY_HEADERS);
    mg_response_header_send(req->conn);
    mg_write(req->conn, bytes, len);
    req->status = 200;
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
