/*
 * The home screen: the balance, the account's models with the state of
 * each one's latest session, the data sets (samples included) and the
 * "New model" form. /models lists models without sessions, so the screen
 * requests GET /models/{id} for each listed model to show its state.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dom.h"
#include "views.h"

/* The models whose states are fetched; more are listed without one. */
#define MAX_STATE_FETCHES 50

static const char *const architectures[] = {
    "yolov8n-cls.yaml", "yolov8s-cls.yaml", "yolov8m-cls.yaml",
    "yolov8l-cls.yaml", "yolov8x-cls.yaml",
};

static long new_model_epochs;

static void on_balance(int status, const struct json *reply, void *ctx)
{
    char money[40], text[300];

    (void)ctx;
    if (status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("balance", text);
        return;
    }
    format_money(json_int(json_get(reply, "balance"), 0), money,
                 sizeof(money));
    dom_set_text("balance", money);
}

static void on_model_state(int status, const struct json *reply, void *ctx)
{
    const struct json *session = json_get(reply, "session");
    char id[40];

    (void)ctx;
    if (status != 200)
        return;
    snprintf(id, sizeof(id), "model-state-%" PRId64,
             json_int(json_get(reply, "id"), 0));
    if (session == NULL || session->type != JSON_OBJECT) {
        dom_set_text(id, "not trained yet");
        return;
    }
    dom_textf(id, "%s, %" PRId64 " of %" PRId64 " epochs",
              json_string(json_get(session, "state"), "unknown"),
              json_int(json_get(session, "epochs_done"), 0),
              json_int(json_get(session, "epochs"), 0));
}

static void on_models(int status, const struct json *reply, void *ctx)
{
    const struct json *models = json_get(reply, "models");
    char text[300];
    size_t n = 0;

    (void)ctx;
    dom_clear("models");
    if (status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_create("li", "models", NULL, text);
        return;
    }
    for (const struct json *m = models ? models->child : NULL; m != NULL;
         m = m->next, n++) {
        int64_t id = json_int(json_get(m, "id"), 0);
        char li[40], link[40], href[40], state[40], path[40];

        snprintf(li, sizeof(li), "model-%" PRId64, id);
        snprintf(link, sizeof(link), "model-link-%" PRId64, id);
        snprintf(href, sizeof(href), "#/models/%" PRId64, id);
        snprintf(state, sizeof(state), "model-state-%" PRId64, id);
        dom_create("li", "models", li, NULL);
        dom_create("a", li, link, json_string(json_get(m, "name"), "?"));
        dom_set_attr(link, "href", href);
        dom_create("span", li, NULL, " ");
        dom_element("span", li, state, "muted", "");
        if (n < MAX_STATE_FETCHES) {
            snprintf(path, sizeof(path), "/models/%" PRId64, id);
            api_get(path, on_model_state, NULL);
        }
    }
    if (n == 0)
        dom_element("li", "models", "models-none", "muted",
                    "No models yet. Create one below.");
}

static void on_datasets(int status, const struct json *reply, void *ctx)
{
    const struct json *sets = json_get(reply, "datasets");
    char text[300];

    (void)ctx;
    dom_clear("datasets");
    if (status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_create("li", "datasets", NULL, text);
        return;
    }
    for (const struct json *d = sets ? sets->child : NULL; d != NULL;
         d = d->next) {
        int64_t id = json_int(json_get(d, "id"), 0);
        const char *name = json_string(json_get(d, "name"), "?");
        const char *state = json_string(json_get(d, "status"), "?");
        int sample = json_get(d, "sample") != NULL &&
                     json_get(d, "sample")->type == JSON_TRUE;
        char value[24], option[300];

        snprintf(text, sizeof(text), "%s%s: %s, %" PRId64 " images, %s",
                 name, sample ? " (sample)" : "",
                 json_string(json_get(d, "task"), "?"),
                 json_int(json_get(d, "images"), 0), state);
        dom_create("li", "datasets", NULL, text);
        if (strcmp(state, "ready") != 0)
            continue;
        snprintf(value, sizeof(value), "%" PRId64, id);
        snprintf(option, sizeof(option), "%s%s", name,
                 sample ? " (sample)" : "");
        dom_option("new-dataset", value, option);
    }
    if (sets == NULL || sets->count == 0)
        dom_element("li", "datasets", NULL, "muted", "No data sets yet.");
}

static void on_created(int status, const struct json *reply, void *ctx)
{
    char text[300];

    (void)ctx;
    dom_set_disabled("new-submit", 0);
    if (status >= 200 && status < 300) {
        view_model_suggest_epochs(json_int(json_get(reply, "id"), 0),
                                  new_model_epochs);
        snprintf(text, sizeof(text), "#/models/%" PRId64,
                 json_int(json_get(reply, "id"), 0));
        location_set_hash(text);
        return;
    }
    api_error_text(status, reply, text, sizeof(text));
    dom_set_text("new-error", text);
}

/* Read a whole number from an input; returns -1 when it is not one. */
static long read_count(const char *id)
{
    char buf[32], *end;
    long v;

    dom_get_value(id, buf, sizeof(buf));
    v = strtol(buf, &end, 10);
    if (end == buf || *end != '\0' || v <= 0)
        return -1;
    return v;
}

static void submit_new_model(void *ctx)
{
    char name[200], name_json[420], dataset[24], arch[40], body[700];
    long epochs = read_count("new-epochs"), imgsz = read_count("new-imgsz");
    long batch = read_count("new-batch");

    (void)ctx;
    dom_get_value("new-name", name, sizeof(name));
    dom_get_value("new-dataset", dataset, sizeof(dataset));
    dom_get_value("new-arch", arch, sizeof(arch));
    if (name[0] == '\0' || dataset[0] == '\0') {
        dom_set_text("new-error", "Enter a name and choose a data set.");
        return;
    }
    if (epochs < 0 || imgsz < 0 || batch < 0) {
        dom_set_text("new-error", "Epochs, image size and batch must be "
                                  "whole numbers above zero.");
        return;
    }
    json_quote(name, name_json, sizeof(name_json));
    snprintf(body, sizeof(body),
             "{\"name\":%s,\"dataset\":%s,\"architecture\":\"%s\","
             "\"args\":{\"imgsz\":%ld,\"batch\":%ld}}",
             name_json, dataset, arch, imgsz, batch);
    /* The epoch count belongs to a training session, not to the model,
     * so the model screen gets it as the Start form's default. */
    new_model_epochs = epochs;
    dom_set_text("new-error", "");
    dom_set_disabled("new-submit", 1);
    api_post("/models", body, on_created, NULL);
}

static void build_new_model_form(void)
{
    dom_element("section", "view", "new", "card", NULL);
    dom_create("h2", "new", "new-title", "New model");
    dom_element("form", "new", "new-form", "grid", NULL);
    dom_set_attr("new-form", "aria-labelledby", "new-title");
    dom_input("new-form", "new-name", "Name", "text", NULL);
    dom_set_attr("new-name", "required", "");
    dom_select("new-form", "new-dataset", "Data set");
    dom_select("new-form", "new-arch", "Architecture");
    for (size_t i = 0; i < sizeof(architectures) / sizeof(*architectures);
         i++)
        dom_option("new-arch", architectures[i], architectures[i]);
    dom_input("new-form", "new-epochs", "Epochs", "number", "10");
    dom_input("new-form", "new-imgsz", "Image size (pixels)", "number",
              "32");
    dom_input("new-form", "new-batch", "Batch size", "number", "64");
    dom_set_attr("new-epochs", "min", "1");
    dom_set_attr("new-imgsz", "min", "8");
    dom_set_attr("new-batch", "min", "1");
    dom_element("p", "new-form", "new-error", "error wide", NULL);
    dom_set_attr("new-error", "role", "alert");
    dom_element("button", "new-form", "new-submit", "wide", "Create model");
    dom_set_attr("new-submit", "type", "submit");
    dom_on("new-form", "submit", submit_new_model, NULL);
}

void view_home_show(void)
{
    dom_element("section", "view", "account", "card", NULL);
    dom_create("h2", "account", NULL, "Balance");
    dom_element("p", "account", "balance", "big", "...");

    dom_element("section", "view", "models-card", "card", NULL);
    dom_create("h2", "models-card", NULL, "Models");
    dom_element("ul", "models-card", "models", "list", NULL);

    dom_element("section", "view", "datasets-card", "card", NULL);
    dom_create("h2", "datasets-card", NULL, "Data sets");
    dom_element("ul", "datasets-card", "datasets", "list", NULL);

    build_new_model_form();

    api_get("/balance", on_balance, NULL);
    api_get("/models", on_models, NULL);
    api_get("/datasets", on_datasets, NULL);
}
