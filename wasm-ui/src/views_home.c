/*
 * The home screen: the balance, the account's models with the state of
 * each one's latest session, the data sets (samples included) and the
 * Train model button, which opens the Train Model dialog (views_train.c). /models lists models without sessions, so the screen
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
                    "No models yet. Choose Train model to create one.");
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
        const char *name = json_string(json_get(d, "name"), "?");
        const char *state = json_string(json_get(d, "status"), "?");
        int sample = json_get(d, "sample") != NULL &&
                     json_get(d, "sample")->type == JSON_TRUE;

        snprintf(text, sizeof(text), "%s%s: %s, %" PRId64 " images, %s",
                 name, sample ? " (sample)" : "",
                 json_string(json_get(d, "task"), "?"),
                 json_int(json_get(d, "images"), 0), state);
        dom_create("li", "datasets", NULL, text);
    }
    if (sets == NULL || sets->count == 0)
        dom_element("li", "datasets", NULL, "muted", "No data sets yet.");
}

static void click_train(void *ctx)
{
    (void)ctx;
    view_train_open();
}

void view_home_show(void)
{
    dom_element("section", "view", "account", "card", NULL);
    dom_create("h2", "account", NULL, "Balance");
    dom_element("p", "account", "balance", "big", "...");

    dom_element("section", "view", "models-card", "card", NULL);
    dom_create("h2", "models-card", NULL, "Models");
    dom_element("ul", "models-card", "models", "list", NULL);
    dom_element("p", "models-card", "models-buttons", "buttons", NULL);
    dom_create("button", "models-buttons", "train-open", "Train model");
    dom_set_attr("train-open", "type", "button");
    dom_on("train-open", "click", click_train, NULL);

    dom_element("section", "view", "datasets-card", "card", NULL);
    dom_create("h2", "datasets-card", NULL, "Data sets");
    dom_element("ul", "datasets-card", "datasets", "list", NULL);
    dom_element("p", "datasets-card", "datasets-more", NULL, NULL);
    dom_create("a", "datasets-more", "datasets-link",
               "Upload or delete data sets");
    dom_set_attr("datasets-link", "href", "#/datasets");

    api_get("/balance", on_balance, NULL);
    api_get("/models", on_models, NULL);
    api_get("/datasets", on_datasets, NULL);
}
