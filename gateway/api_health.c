/*
 * GET /api/v1/health: the gateway's own state and the backend's, for
 * monitoring and for the UI's first request. It needs no sign-in. While
 * the backend is unreachable, it responds 503 with the gateway's part
 * still filled in.
 */
#include "api.h"

#include "upstream.h"

void api_health(struct api_request *req)
{
    cJSON *body = cJSON_CreateObject();
    cJSON *response = NULL;
    struct error err = {0};
    int rc;

    cJSON_AddStringToObject(body, "gateway", "ok");
    rc = upstream_call("health", NULL, API_BACKEND_TIMEOUT_MS, &response, &err);
    if (rc == 0) {
        cJSON *result =
            cJSON_DetachItemFromObjectCaseSensitive(response, "result");
        cJSON_AddItemToObject(body, "backend",
                              result ? result : cJSON_CreateNull());
        cJSON_Delete(response);
        api_send_json(req, 200, body);
    } else {
        cJSON *error = cJSON_AddObjectToObject(body, "error");
        cJSON_AddStringToObject(error, "code", "backend_unavailable");
        cJSON_AddStringToObject(error, "message", err.msg);
        api_send_json(req, 503, body);
    }
    cJSON_Delete(body);
}
