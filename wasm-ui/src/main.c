/*
 * The Trainyard browser app, compiled to WebAssembly. For now it shows the
 * service's health: whether the gateway answers and which backend version
 * and schema it reaches.
 */
#include <stdio.h>
#include <string.h>

#include "dom.h"

/* Find "key":"value" or "key":number in a flat JSON text; enough for the
 * health reply, whose shape the gateway fixes. */
static int json_field(const char *json, const char *key, char *out,
                      size_t out_len)
{
    char pattern[64];
    const char *p;
    size_t n = 0;

    snprintf(pattern, sizeof(pattern), "\"%s\":", key);
    p = strstr(json, pattern);
    if (p == NULL)
        return -1;
    p += strlen(pattern);
    if (*p == '"')
        p++;
    while (p[n] != '\0' && p[n] != '"' && p[n] != ',' && p[n] != '}' &&
           n + 1 < out_len) {
        out[n] = p[n];
        n++;
    }
    out[n] = '\0';
    return 0;
}

static void on_health(int status, const char *body, void *ctx)
{
    char text[256], version[32] = "?", schema[16] = "?", message[160];

    (void)ctx;
    if (status == 200) {
        json_field(body, "version", version, sizeof(version));
        json_field(body, "schema_version", schema, sizeof(schema));
        snprintf(text, sizeof(text),
                 "Service is up: backend %s, database schema %s.", version,
                 schema);
        dom_set_attr("health", "class", "ok");
    } else if (status == 0) {
        snprintf(text, sizeof(text),
                 "Cannot reach the gateway. Check that `make run` is still "
                 "running.");
        dom_set_attr("health", "class", "error");
    } else {
        if (json_field(body, "message", message, sizeof(message)) != 0)
            snprintf(message, sizeof(message), "HTTP status %d", status);
        snprintf(text, sizeof(text), "The service is not ready: %s",
                 message);
        dom_set_attr("health", "class", "error");
    }
    dom_set_text("health", text);
}

int main(void)
{
    dom_create("h1", "app", NULL, "Trainyard");
    dom_create("p", "app", "tagline", "Train YOLO vision models on your own "
                                      "GPUs, from the browser.");
    dom_create("p", "app", "health", "Checking the service...");
    dom_set_attr("health", "role", "status");
    http_get("/api/v1/health", on_health, NULL);
    return 0;
}
