/*
 * The REST client: fetch through dom.js, JSON parsing, the CSRF header and
 * the view generation check. Each request carries a small heap record with
 * the callback, its context and the generation, which http_request hands
 * back when the reply arrives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dom.h"

unsigned api_generation;
void (*api_on_unauthorized)(void);

static char csrf[80];

struct request {
    api_callback cb;
    void *ctx;
    unsigned generation;
    int is_signin;
    void (*progress)(double loaded, double total, void *ctx);
};

void api_set_csrf(const char *token)
{
    snprintf(csrf, sizeof(csrf), "%s", token ? token : "");
}

static void on_reply(int status, const char *body, void *ctx)
{
    struct request *req = ctx;
    struct json *reply = json_parse(body);

    if (req->generation == api_generation) {
        if (status == 401 && !req->is_signin && api_on_unauthorized)
            api_on_unauthorized();
        else
            req->cb(status, reply, req->ctx);
    }
    json_free(reply);
    free(req);
}

static struct request *new_request(const char *path, api_callback cb,
                                    void *ctx)
{
    struct request *req = malloc(sizeof(*req));

    if (req == NULL)
        return NULL;
    req->cb = cb;
    req->ctx = ctx;
    req->generation = api_generation;
    req->is_signin = strcmp(path, "/auth/signin") == 0;
    req->progress = NULL;
    return req;
}

static void send(const char *method, const char *path, const char *body,
                 api_callback cb, void *ctx)
{
    char url[512];
    struct request *req = new_request(path, cb, ctx);
    int changes_state = strcmp(method, "GET") != 0;

    if (req == NULL)
        return;
    snprintf(url, sizeof(url), "/api/v1%s", path);
    http_request(method, url, changes_state && csrf[0] ? csrf : NULL, body,
                 on_reply, req);
}

void api_delete(const char *path, api_callback cb, void *ctx)
{
    send("DELETE", path, NULL, cb, ctx);
}

static void on_progress(double loaded, double total, void *ctx)
{
    struct request *req = ctx;

    if (req->generation == api_generation && req->progress != NULL)
        req->progress(loaded, total, req->ctx);
}

int api_upload(const char *path, const char *input_id,
               void (*progress)(double loaded, double total, void *ctx),
               api_callback cb, void *ctx)
{
    char url[512];
    struct request *req = new_request(path, cb, ctx);

    if (req == NULL)
        return -1;
    req->progress = progress;
    snprintf(url, sizeof(url), "/api/v1%s", path);
    if (http_upload(url, csrf[0] ? csrf : NULL, input_id, on_progress, on_reply,
                    req) != 0) {
        free(req);
        return -1;
    }
    return 0;
}

void api_get(const char *path, api_callback cb, void *ctx)
{
    send("GET", path, NULL, cb, ctx);
}

void api_post(const char *path, const char *body, api_callback cb,
              void *ctx)
{
    send("POST", path, body ? body : "{}", cb, ctx);
}

void api_error_text(int status, const struct json *reply, char *buf,
                    size_t size)
{
    const char *message =
        json_string(json_get(json_get(reply, "error"), "message"), NULL);

    /* The live WebSocket's error messages carry message at the top. */
    if (message == NULL)
        message = json_string(json_get(reply, "message"), NULL);

    if (status == 0) {
        snprintf(buf, size, "Cannot reach the server. Check your "
                            "connection and try again.");
    } else if (message != NULL && message[0] != '\0') {
        size_t len = strlen(message);
        char first = message[0];

        if (first >= 'a' && first <= 'z')
            first = (char)(first - 'a' + 'A');
        snprintf(buf, size, "%c%s%s", first, message + 1,
                 message[len - 1] == '.' ? "" : ".");
    } else {
        snprintf(buf, size, "The server returned HTTP status %d. Try again "
                            "later.", status);
    }
}
