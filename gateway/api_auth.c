/*
 * Endpoints for sign-in, sessions, API keys and account administration.
 * api.c has already checked the route's requirements (credentials, role,
 * CSRF, JSON body) before a handler here runs. Each handler checks the
 * types of its fields, builds the backend op's arguments from the known
 * fields only, and builds its response from the op's result.
 *
 * The session token travels only in the HttpOnly cookie and never in a
 * response body, so page scripts cannot read it. Passwords are wiped from
 * the request body and the op arguments once the backend has responded.
 * NOTE: the copy queued on the backend connection (common/wsqueue.c) is
 * freed without wiping.
 */
#include "api.h"

#include <sodium.h>
#include <string.h>

#include "clock.h"
#include "log.h"

/* Overwrite a secret string held by cJSON once it is no longer needed. */
static void wipe_string(const char *text)
{
    if (text != NULL)
        sodium_memzero((char *)text, strlen(text));
}

/* Send 429 when this client has used up its sign-in attempts. Returns 1
 * when it has. */
static int signin_limited(struct api_request *req)
{
    int64_t retry_ms = 0;
    enum rate_result result = rate_limiter_hit(&api_signin_limiter, req->client,
                                               clock_monotonic_ms(), &retry_ms);

    if (result == RATE_ALLOWED)
        return 0;
    req->retry_after_s = (int)((retry_ms + 999) / 1000);
    if (req->retry_after_s < 1)
        req->retry_after_s = 1;
    if (result == RATE_LIMITED_FIRST)
        log_warn("sign-in limit of %d per %d s reached addr=%s",
                 AUTH_SIGNIN_ATTEMPTS, AUTH_SIGNIN_WINDOW_MS / 1000,
                 req->client);
    api_send_error(req, "rate_limited",
                   "too many sign-in attempts from this address; retry in "
                   "%d s",
                   req->retry_after_s);
    return 1;
}

void api_signin(struct api_request *req)
{
    const char *email, *password;
    cJSON *args, *result, *body;
    const cJSON *token, *item;

    if (signin_limited(req))
        return;
    if (api_body_string(req, "email", 1, &email) != 0 ||
        api_body_string(req, "password", 1, &password) != 0)
        return;

    args = cJSON_CreateObject();
    cJSON_AddStringToObject(args, "email", email);
    cJSON_AddStringToObject(args, "password", password);
    result = api_call(req, "auth.signin", args);
    wipe_string(password);
    wipe_string(cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(args, "password")));
    cJSON_Delete(args);
    if (result == NULL)
        return;

    token = cJSON_GetObjectItemCaseSensitive(result, "token");
    if (!cJSON_IsString(token) ||
        auth_session_cookie(req->set_cookie, sizeof(req->set_cookie),
                            token->valuestring, req->secure) != 0) {
        cJSON_Delete(result);
        api_send_error(req, "internal",
                       "the backend's sign-in response has no valid token");
        return;
    }
    wipe_string(token->valuestring);

    body = cJSON_CreateObject();
    item = cJSON_GetObjectItemCaseSensitive(result, "account");
    cJSON_AddItemToObject(body, "account", cJSON_Duplicate(item, 1));
    item = cJSON_GetObjectItemCaseSensitive(result, "csrf");
    cJSON_AddItemToObject(body, "csrf", cJSON_Duplicate(item, 1));
    item = cJSON_GetObjectItemCaseSensitive(result, "expires_at");
    cJSON_AddItemToObject(body, "expires_at", cJSON_Duplicate(item, 1));
    api_send_json(req, 200, body);
    cJSON_Delete(body);
    cJSON_Delete(result);
}

void api_signout(struct api_request *req)
{
    cJSON *args, *result;

    if (req->who.method != AUTH_METHOD_SESSION) {
        api_send_error(req, "invalid_request",
                       "sign-out ends a cookie session; to stop an API key, "
                       "revoke it with DELETE /api/v1/apikeys/{id}");
        return;
    }
    args = cJSON_CreateObject();
    cJSON_AddStringToObject(args, "token", req->session_token);
    result = api_call(req, "auth.signout", args);
    cJSON_Delete(args);
    if (result == NULL)
        return;
    cJSON_Delete(result);
    auth_cache_forget(&api_credential_cache, req->session_token);
    auth_session_cookie(req->set_cookie, sizeof(req->set_cookie), NULL,
                        req->secure);
    api_send_no_content(req);
}

void api_me(struct api_request *req)
{
    cJSON *account = api_call(req, "accounts.me", NULL);
    cJSON *body;

    if (account == NULL)
        return;
    body = cJSON_CreateObject();
    cJSON_AddItemToObject(body, "account", account);
    if (req->who.method == AUTH_METHOD_SESSION) {
        cJSON_AddStringToObject(body, "auth", "session");
        cJSON_AddStringToObject(body, "csrf", req->who.csrf);
    } else {
        cJSON_AddStringToObject(body, "auth", "api_key");
    }
    api_send_json(req, 200, body);
    cJSON_Delete(body);
}

/* Call op with args (may be NULL) and send its result with status. */
void api_apikeys_list(struct api_request *req)
{
    api_forward(req, "apikeys.list", NULL, 200);
}

void api_apikeys_create(struct api_request *req)
{
    const char *name;
    cJSON *args;

    if (api_body_string(req, "name", 1, &name) != 0)
        return;
    args = cJSON_CreateObject();
    cJSON_AddStringToObject(args, "name", name);
    api_forward(req, "apikeys.create", args, 201);
}

void api_apikeys_revoke(struct api_request *req)
{
    cJSON *args = cJSON_CreateObject();
    cJSON *result;

    cJSON_AddNumberToObject(args, "id", (double)req->id);
    result = api_call(req, "apikeys.revoke", args);
    cJSON_Delete(args);
    if (result == NULL)
        return;
    cJSON_Delete(result);
    /* The cache keys entries by key digest, not id, so drop all of this
     * account's key entries; they come back on their next use. */
    auth_cache_forget_account(&api_credential_cache, req->who.account_id,
                              AUTH_METHOD_API_KEY);
    api_send_no_content(req);
}

void api_admin_accounts_list(struct api_request *req)
{
    api_forward(req, "accounts.list", NULL, 200);
}

void api_admin_accounts_create(struct api_request *req)
{
    const char *email, *password, *role, *plan;
    int has_role, has_plan;
    cJSON *args, *result;

    if (api_body_string(req, "email", 1, &email) != 0 ||
        api_body_string(req, "password", 1, &password) != 0 ||
        (has_role = api_body_string(req, "role", 0, &role)) < 0 ||
        (has_plan = api_body_string(req, "plan", 0, &plan)) < 0)
        return;

    args = cJSON_CreateObject();
    cJSON_AddStringToObject(args, "email", email);
    cJSON_AddStringToObject(args, "password", password);
    if (has_role == 0)
        cJSON_AddStringToObject(args, "role", role);
    if (has_plan == 0)
        cJSON_AddStringToObject(args, "plan", plan);
    result = api_call(req, "accounts.create", args);
    wipe_string(password);
    wipe_string(cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(args, "password")));
    cJSON_Delete(args);
    if (result == NULL)
        return;
    api_send_json(req, 201, result);
    cJSON_Delete(result);
}

void api_admin_accounts_plan(struct api_request *req)
{
    const char *plan;
    cJSON *args, *result;

    if (api_body_string(req, "plan", 1, &plan) != 0)
        return;
    args = cJSON_CreateObject();
    cJSON_AddNumberToObject(args, "id", (double)req->id);
    cJSON_AddStringToObject(args, "plan", plan);
    result = api_call(req, "accounts.set_plan", args);
    cJSON_Delete(args);
    if (result == NULL)
        return;
    /* Let this gateway see the new plan at once. */
    auth_cache_forget_account(&api_credential_cache, req->id, AUTH_METHOD_NONE);
    api_send_json(req, 200, result);
    cJSON_Delete(result);
}
