/*
 * REST endpoints for data sets, models and their training. Each forwards
 * to the backend op of the same meaning with the path's {id} as the
 * model; the backend checks that the model belongs to the account and
 * returns not_found for another account's model.
 */
#include <civetweb.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

void api_datasets_list(struct api_request *req)
{
    api_forward(req, "datasets.list", NULL, 200);
}

void api_models_list(struct api_request *req)
{
    api_forward(req, "models.list", NULL, 200);
}

/* Body: {"name", "dataset", "architecture", "args": {...}}. */
void api_models_create(struct api_request *req)
{
    api_forward(req, "models.create", cJSON_Duplicate(req->body, 1), 201);
}

/* The body's fields plus "model": the path's id. */
static cJSON *model_args(struct api_request *req)
{
    cJSON *args = req->body ? cJSON_Duplicate(req->body, 1)
                            : cJSON_CreateObject();

    cJSON_DeleteItemFromObjectCaseSensitive(args, "model");
    cJSON_AddNumberToObject(args, "model", (double)req->id);
    return args;
}

void api_models_get(struct api_request *req)
{
    api_forward(req, "models.get", model_args(req), 200);
}

void api_models_delete(struct api_request *req)
{
    api_forward(req, "models.delete", model_args(req), 200);
}

/* Body: {"mode": "epochs"|"timed", "epochs", "duration_ms",
 * "instance_type", "payment": "balance"|"prepaid", "card",
 * "idempotency_key"}. */
void api_training_start(struct api_request *req)
{
    api_forward(req, "training.start", model_args(req), 202);
}

/* Body: {"duration_ms", "instance_type"}: the exact price of timed
 * training, before it starts. */
void api_training_quote(struct api_request *req)
{
    api_forward(req, "training.quote", cJSON_Duplicate(req->body, 1), 200);
}

void api_training_stop(struct api_request *req)
{
    api_forward(req, "training.stop", model_args(req), 202);
}

void api_training_resume(struct api_request *req)
{
    api_forward(req, "training.resume", model_args(req), 202);
}

/* GET .../events?after=N&limit=M: stored progress events after N. */
void api_training_events(struct api_request *req)
{
    static const char *const names[] = {"after", "limit"};
    static const char *const fields[] = {"after_seq", "limit"};
    cJSON *args = model_args(req);
    char value[32];

    for (int i = 0; i < 2; i++) {
        int rc = api_query_value(req, names[i], value, sizeof(value));
        char *end;
        long long v;

        if (rc < 0) {
            cJSON_Delete(args);
            return;
        }
        if (rc > 0)
            continue;
        v = strtoll(value, &end, 10);
        if (value[0] == '\0' || *end != '\0' || v < 0) {
            cJSON_Delete(args);
            api_send_error(req, "invalid_request",
                           "query parameter '%s' must be a whole number "
                           ">= 0",
                           names[i]);
            return;
        }
        cJSON_AddNumberToObject(args, fields[i], (double)v);
    }
    api_forward(req, "progress.after", args, 200);
}
