/*
 * The Train Model dialog, a modal <dialog> in three steps:
 *   1. the data set (ready ones only);
 *   2. the model: name, the task of the data set, the architecture and
 *      scale for that task, epochs, image size, batch, and an Advanced
 *      section with the other training arguments (train_args.h). A
 *      "Start from" select picks scratch or one of the user's models of
 *      that task that has weights, sent as from_model. Next creates the
 *      model with POST /models;
 *   3. training: Epochs or Timed, the instance type with its price per
 *      hour, the payment (the balance, or pay now by card for timed
 *      training), the exact price of timed training from POST /quote, the
 *      $5.00 balance rule for epoch training with a top-up form, and
 *      Start, which posts /models/{id}/train and opens the model screen.
 * Closing the dialog at step 3 keeps the model, so it can be trained
 * later from its screen, which the dialog then opens. The model screen
 * opens the dialog at step 3 for timed or prepaid training.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dom.h"
#include "topup.h"
#include "train_args.h"
#include "views.h"

#define MAX_SETS 100
/* The gateway's limit on a timed training: 1,000 hours. */
#define TIMED_MAX_MS (1000LL * 3600 * 1000)
/* Paying now charges the card as a top-up, whose minimum is $1.00. */
#define PAY_NOW_MIN 1000000

static const char *const scales[] = {"n", "s", "m", "l", "x"};
static const char *const scale_names[] = {"nano", "small", "medium",
                                          "large", "extra large"};

static struct {
    int64_t set_ids[MAX_SETS];
    char set_tasks[MAX_SETS][16];
    char set_names[MAX_SETS][104];
    size_t set_count;
    size_t set;            /* the chosen index into set_ids */
    int64_t model_id;      /* 0 until step 2 created the model */
    long epochs;
    int64_t balance;
    int64_t epoch_minimum;
    unsigned quote_seq;    /* drops replies to older quotes */
    char pay_key[33];
    int for_existing;      /* opened at step 3 from a model's screen */
} dialog;

/* Numbers each step 2's model list request, so that a late reply to an
 * earlier one, even of an earlier dialog, is dropped. */
static unsigned from_seq;

static void show_step1(void);
static void show_step2(void);
static void show_step3(void);

static void set_step(int step, const char *title)
{
    dom_textf("train-step", "Step %d of 3: %s", step, title);
    dom_set_attr("train-dialog", "data-step", step == 1 ? "1" :
                 step == 2 ? "2" : "3");
    dom_clear("train-body");
    dom_set_text("train-error", "");
}

/* Read a whole number above zero; returns -1 when the input is not one. */
static long read_positive(const char *id)
{
    char buf[32], *end;
    long v;

    dom_get_value(id, buf, sizeof(buf));
    v = strtol(buf, &end, 10);
    if (end == buf || *end != '\0' || v <= 0)
        return -1;
    return v;
}

/* ---- Step 1: data set ------------------------------------------------ */

static void next_from_step1(void *ctx)
{
    char value[24];

    (void)ctx;
    dom_get_value("train-dataset", value, sizeof(value));
    for (size_t i = 0; i < dialog.set_count; i++) {
        char id[24];

        snprintf(id, sizeof(id), "%" PRId64, dialog.set_ids[i]);
        if (strcmp(id, value) == 0) {
            dialog.set = i;
            show_step2();
            return;
        }
    }
    dom_set_text("train-error", "Choose a data set, or upload one on the "
                                "Data sets screen.");
}

static void on_sets(int status, const struct json *reply, void *ctx)
{
    const struct json *sets = json_get(reply, "datasets");
    char text[300];

    (void)ctx;
    if (status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("train-error", text);
        return;
    }
    dialog.set_count = 0;
    for (const struct json *d = sets ? sets->child : NULL;
         d != NULL && dialog.set_count < MAX_SETS; d = d->next) {
        const struct json *sample = json_get(d, "sample");
        size_t i = dialog.set_count;
        char value[24];

        if (strcmp(json_string(json_get(d, "status"), ""), "ready") != 0)
            continue;
        dialog.set_ids[i] = json_int(json_get(d, "id"), 0);
        snprintf(dialog.set_tasks[i], sizeof(dialog.set_tasks[i]), "%s",
                 json_string(json_get(d, "task"), "classify"));
        snprintf(dialog.set_names[i], sizeof(dialog.set_names[i]), "%s",
                 json_string(json_get(d, "name"), "?"));
        snprintf(value, sizeof(value), "%" PRId64, dialog.set_ids[i]);
        snprintf(text, sizeof(text), "%s%s: %s, %" PRId64 " images",
                 dialog.set_names[i],
                 sample != NULL && sample->type == JSON_TRUE ? " (sample)"
                                                             : "",
                 dialog.set_tasks[i], json_int(json_get(d, "images"), 0));
        dom_option("train-dataset", value, text);
        dialog.set_count++;
    }
    if (dialog.set_count == 0)
        dom_set_text("train-error", "No data set is ready. Upload one on "
                                    "the Data sets screen first.");
}

static void show_step1(void)
{
    set_step(1, "Data set");
    dom_select("train-body", "train-dataset", "Data set");
    dom_element("p", "train-body", "train-upload-hint", "muted", NULL);
    dom_create("a", "train-upload-hint", "train-upload-link",
               "Upload a data set");
    dom_set_attr("train-upload-link", "href", "#/datasets");
    dom_element("div", "train-body", "train-nav", "buttons", NULL);
    dom_create("button", "train-nav", "train-next", "Next");
    dom_set_attr("train-next", "type", "button");
    dom_on("train-next", "click", next_from_step1, NULL);
    api_get("/datasets", on_sets, NULL);
    dom_focus("train-dataset");
}

/* ---- Step 2: model ---------------------------------------------------- */

static void on_model_created(int status, const struct json *reply,
                             void *ctx)
{
    char text[300];

    (void)ctx;
    dom_set_disabled("train-next", 0);
    if (status != 201 && status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("train-error", text);
        return;
    }
    dialog.model_id = json_int(json_get(reply, "id"), 0);
    view_model_suggest_epochs(dialog.model_id, dialog.epochs);
    show_step3();
}

/* Check an Advanced field and append "name":value to args when it
 * differs from the default. Returns 0, or -1 with the error shown. */
static int add_advanced(const struct train_arg *arg, char *args,
                        size_t size)
{
    char id[48], value[200], quoted[420], *end;
    size_t used = strlen(args);

    snprintf(id, sizeof(id), "arg-%s", arg->name);
    dom_get_value(id, value, sizeof(value));
    if (strcmp(value, arg->def) == 0)
        return 0;
    switch (arg->type) {
    case TRAIN_ARG_INT:
        if (value[0] == '\0' || (strtol(value, &end, 10), *end != '\0')) {
            dom_textf("train-error", "Advanced setting %s=\"%s\" is "
                      "invalid: enter a whole number, such as %s.",
                      arg->name, value, arg->def);
            dom_focus(id);
            return -1;
        }
        if (strtol(value, NULL, 10) == strtol(arg->def, NULL, 10))
            return 0;
        snprintf(args + used, size - used, ",\"%s\":%ld", arg->name,
                 strtol(value, NULL, 10));
        return 0;
    case TRAIN_ARG_FLOAT:
        if (value[0] == '\0' || (strtod(value, &end), *end != '\0')) {
            dom_textf("train-error", "Advanced setting %s=\"%s\" is "
                      "invalid: enter a number, such as %s.", arg->name,
                      value, arg->def);
            dom_focus(id);
            return -1;
        }
        if (strtod(value, NULL) == strtod(arg->def, NULL))
            return 0;
        snprintf(args + used, size - used, ",\"%s\":%.17g", arg->name,
                 strtod(value, NULL));
        return 0;
    case TRAIN_ARG_BOOL:
        snprintf(args + used, size - used, ",\"%s\":%s", arg->name,
                 strcmp(value, "true") == 0 ? "true" : "false");
        return 0;
    case TRAIN_ARG_TEXT:
        json_quote(value, quoted, sizeof(quoted));
        snprintf(args + used, size - used, ",\"%s\":%s", arg->name, quoted);
        return 0;
    }
    return 0;
}

/* Fill the "Start from" select with the user's models of the data set's
 * task that have weights; "Scratch" stays the first choice. */
static void on_source_models(int status, const struct json *reply,
                             void *ctx)
{
    const struct json *models = json_get(reply, "models");
    const char *task = dialog.set_tasks[dialog.set];

    if (status != 200 || (uintptr_t)ctx != from_seq)
        return;
    for (const struct json *m = models ? models->child : NULL; m != NULL;
         m = m->next) {
        const struct json *weights = json_get(m, "has_weights");
        char value[24], text[240];

        if (weights == NULL || weights->type != JSON_TRUE ||
            strcmp(json_string(json_get(m, "task"), ""), task) != 0)
            continue;
        snprintf(value, sizeof(value), "%" PRId64,
                 json_int(json_get(m, "id"), 0));
        snprintf(text, sizeof(text), "%s (%s)",
                 json_string(json_get(m, "name"), "?"),
                 json_string(json_get(m, "architecture"), "?"));
        dom_option("train-from", value, text);
    }
}

static void next_from_step2(void *ctx)
{
    char name[200], name_json[420], arch[40], args[4096], body[5000];
    char from[24], from_json[40] = "";
    long imgsz = read_positive("train-imgsz");
    long batch = read_positive("train-batch");

    (void)ctx;
    dialog.epochs = read_positive("train-epochs");
    dom_get_value("train-name", name, sizeof(name));
    dom_get_value("train-arch", arch, sizeof(arch));
    if (name[0] == '\0') {
        dom_set_text("train-error", "Enter a name for the model.");
        dom_focus("train-name");
        return;
    }
    if (dialog.epochs < 0 || imgsz < 0 || batch < 0) {
        dom_set_text("train-error", "Epochs, image size and batch must be "
                                    "whole numbers above zero.");
        return;
    }
    snprintf(args, sizeof(args), "{\"imgsz\":%ld,\"batch\":%ld", imgsz,
             batch);
    for (size_t i = 0; i < train_args_count; i++)
        if (add_advanced(&train_args[i], args, sizeof(args)) != 0) {
            dom_set_attr("train-advanced", "open", "");
            return;
        }
    if (strlen(args) + 2 >= sizeof(args)) {
        dom_set_text("train-error", "The advanced settings are too long. "
                                    "Shorten the text values.");
        return;
    }
    strcat(args, "}");
    /* The select's values are model ids written by on_source_models, or
     * "" for scratch. */
    dom_get_value("train-from", from, sizeof(from));
    if (from[0] != '\0' && strspn(from, "0123456789") == strlen(from))
        snprintf(from_json, sizeof(from_json), ",\"from_model\":%s", from);
    json_quote(name, name_json, sizeof(name_json));
    snprintf(body, sizeof(body),
             "{\"name\":%s,\"dataset\":%" PRId64 ",\"architecture\":\"%s\","
             "\"args\":%s%s}",
             name_json, dialog.set_ids[dialog.set], arch, args, from_json);
    dom_set_disabled("train-next", 1);
    api_post("/models", body, on_model_created, NULL);
}

static void back_to_step1(void *ctx)
{
    (void)ctx;
    show_step1();
}

static void build_advanced(void)
{
    dom_element("details", "train-body", "train-advanced", NULL, NULL);
    dom_create("summary", "train-advanced", "train-advanced-title",
               "Advanced: every training argument");
    dom_element("p", "train-advanced", NULL, "muted",
                "Ultralytics names and defaults. Only changed values are "
                "sent. The session sets these itself:");
    dom_element("p", "train-advanced", NULL, "muted", train_args_reserved);
    dom_element("div", "train-advanced", "train-args", "grid", NULL);
    for (size_t i = 0; i < train_args_count; i++) {
        const struct train_arg *arg = &train_args[i];
        char id[48], label[160];

        snprintf(id, sizeof(id), "arg-%s", arg->name);
        snprintf(label, sizeof(label), "%s: %s (default %s)", arg->name,
                 arg->help, arg->def);
        if (arg->type == TRAIN_ARG_BOOL) {
            dom_select("train-args", id, label);
            dom_option(id, "true", "true");
            dom_option(id, "false", "false");
            dom_set_value(id, arg->def);
        } else {
            dom_input("train-args", id, label, "text", arg->def);
            if (arg->type != TRAIN_ARG_TEXT)
                dom_set_attr(id, "inputmode", "decimal");
        }
    }
}

static void show_step2(void)
{
    const char *task = dialog.set_tasks[dialog.set];
    int detect = strcmp(task, "detect") == 0;

    set_step(2, "Model");
    dom_element("div", "train-body", "train-model", "grid", NULL);
    dom_input("train-model", "train-name", "Name", "text", NULL);
    dom_set_attr("train-name", "maxlength", "100");
    dom_element("p", "train-model", "train-task", "field", NULL);
    dom_textf("train-task", "Task: %s (from data set %s)", task,
              dialog.set_names[dialog.set]);
    dom_select("train-model", "train-arch", "Architecture and scale");
    for (size_t i = 0; i < sizeof(scales) / sizeof(*scales); i++) {
        char file[40], text[80];

        snprintf(file, sizeof(file), "yolov8%s%s.yaml", scales[i],
                 detect ? "" : "-cls");
        snprintf(text, sizeof(text), "YOLOv8 %s: %s", scale_names[i], file);
        dom_option("train-arch", file, text);
    }
    dom_select("train-model", "train-from", "Start from");
    dom_option("train-from", "", "Scratch");
    from_seq++;
    api_get("/models", on_source_models, (void *)(uintptr_t)from_seq);
    dom_input("train-model", "train-epochs", "Epochs", "number", "10");
    dom_set_attr("train-epochs", "min", "1");
    dom_input("train-model", "train-imgsz", "Image size (pixels)", "number",
              detect ? "640" : "32");
    dom_set_attr("train-imgsz", "min", "8");
    dom_input("train-model", "train-batch", "Batch size", "number", "16");
    dom_set_attr("train-batch", "min", "1");
    build_advanced();
    dom_element("div", "train-body", "train-nav", "buttons", NULL);
    dom_create("button", "train-nav", "train-back", "Back");
    dom_set_attr("train-back", "type", "button");
    dom_set_attr("train-back", "class", "secondary");
    dom_create("button", "train-nav", "train-next", "Create model");
    dom_set_attr("train-next", "type", "button");
    dom_on("train-back", "click", back_to_step1, NULL);
    dom_on("train-next", "click", next_from_step2, NULL);
    dom_focus("train-name");
}

/* ---- Step 3: training ------------------------------------------------- */

static int timed_mode(void)
{
    return dom_get_checked("train-mode-timed");
}

/* The timed duration in milliseconds, or -1 with the error shown. */
static int64_t read_duration(void)
{
    char hours[24], minutes[24], *end_h, *end_m;
    long h, m;

    dom_get_value("train-hours", hours, sizeof(hours));
    dom_get_value("train-minutes", minutes, sizeof(minutes));
    h = hours[0] ? strtol(hours, &end_h, 10) : 0;
    m = minutes[0] ? strtol(minutes, &end_m, 10) : 0;
    if ((hours[0] && *end_h != '\0') || (minutes[0] && *end_m != '\0') ||
        h < 0 || m < 0 || m > 59 || (h == 0 && m == 0) || h > 1000 ||
        (int64_t)h * 3600000 + (int64_t)m * 60000 > TIMED_MAX_MS) {
        dom_textf("train-price", "Duration %s h %s min is invalid: enter "
                  "0 to 1000 hours and 0 to 59 minutes, at least 1 "
                  "minute in all.", hours[0] ? hours : "0",
                  minutes[0] ? minutes : "0");
        return -1;
    }
    return (int64_t)h * 3600000 + (int64_t)m * 60000;
}

static void on_quote(int status, const struct json *reply, void *ctx)
{
    char text[300], price[40], rate[40];

    if ((unsigned)(uintptr_t)ctx != dialog.quote_seq)
        return;
    if (status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("train-price", text);
        return;
    }
    format_money(json_int(json_get(reply, "price"), 0), price,
                 sizeof(price));
    format_money(json_int(json_get(reply, "price_per_hour"), 0), rate,
                 sizeof(rate));
    dom_textf("train-price", "Price: %s exactly, for %" PRId64 " min at %s "
              "per hour. Stopping early refunds the unused time.%s",
              price, json_int(json_get(reply, "duration_ms"), 0) / 60000,
              rate,
              json_int(json_get(reply, "price"), 0) < PAY_NOW_MIN
                  ? " Paying now by card needs a price of at least $1.00, "
                    "so pay this one from the balance."
                  : "");
    dom_set_attr("train-price", "data-price", price);
}

/* Show the price or the balance rule for the chosen mode. */
static void update_price(void)
{
    char type[24], body[120], money[40], minimum[40];
    int timed = timed_mode();
    int64_t duration;

    dom_set_class("train-run-epochs-field", "hidden", timed);
    dom_set_class("train-duration", "hidden", !timed);
    dom_set_disabled("train-pay-opt-prepaid", !timed);
    if (!timed)
        dom_set_value("train-pay", "balance");
    dom_get_value("train-pay", body, sizeof(body));
    dom_set_class("train-card-field", "hidden",
                  !timed || strcmp(body, "prepaid") != 0);
    dom_remove_attr("train-price", "data-price");
    dialog.quote_seq++;
    if (!timed) {
        format_money(dialog.balance, money, sizeof(money));
        format_money(dialog.epoch_minimum, minimum, sizeof(minimum));
        if (dialog.balance >= dialog.epoch_minimum) {
            dom_textf("train-price", "Epoch training needs a balance of at "
                      "least %s to start; yours is %s. Each completed "
                      "epoch is charged for its time.", minimum, money);
            dom_set_class("train-topup-box", "hidden", 1);
        } else {
            dom_textf("train-price", "Epoch training needs a balance of at "
                      "least %s to start; yours is %s. Top up below.",
                      minimum, money);
            dom_set_class("train-topup-box", "hidden", 0);
        }
        return;
    }
    dom_set_class("train-topup-box", "hidden", 1);
    dom_get_value("train-type", type, sizeof(type));
    duration = read_duration();
    if (duration < 0 || type[0] == '\0')
        return;
    dom_set_text("train-price", "Getting the price...");
    snprintf(body, sizeof(body),
             "{\"duration_ms\":%" PRId64 ",\"instance_type\":%s}", duration,
             type);
    api_post("/quote", body, on_quote, (void *)(uintptr_t)dialog.quote_seq);
}

static void on_change(void *ctx)
{
    (void)ctx;
    update_price();
}

static void on_balance(int status, const struct json *reply, void *ctx)
{
    (void)ctx;
    if (status != 200)
        return;
    dialog.balance = json_int(json_get(reply, "balance"), 0);
    dialog.epoch_minimum =
        json_int(json_get(reply, "epoch_start_minimum"), 5000000);
    update_price();
}

static void on_types(int status, const struct json *reply, void *ctx)
{
    const struct json *types = json_get(reply, "instance_types");

    (void)ctx;
    if (status != 200)
        return;
    for (const struct json *t = types ? types->child : NULL; t != NULL;
         t = t->next) {
        char value[24], price[40], text[200];

        snprintf(value, sizeof(value), "%" PRId64,
                 json_int(json_get(t, "id"), 0));
        format_money(json_int(json_get(t, "price_per_hour"), 0), price,
                     sizeof(price));
        snprintf(text, sizeof(text), "%s (%s), %s per hour",
                 json_string(json_get(t, "name"), "?"),
                 json_string(json_get(t, "device"), "?"), price);
        dom_option("train-type", value, text);
    }
    update_price();
}

static void on_topped_up(int64_t balance)
{
    dialog.balance = balance;
    update_price();
}

static void on_started(int status, const struct json *reply, void *ctx)
{
    char text[300];

    (void)ctx;
    dom_set_disabled("train-start", 0);
    if (status != 202 && status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("train-error", text);
        api_get("/balance", on_balance, NULL);
        return;
    }
    /* The close handler opens the model's screen. */
    dom_dialog_close("train-dialog");
}

static void click_start(void *ctx)
{
    char type[24], pay[16], card[64], card_json[140], body[500];
    int timed = timed_mode();
    int64_t duration = 0;
    long epochs = read_positive("train-run-epochs");

    (void)ctx;
    dom_get_value("train-type", type, sizeof(type));
    dom_get_value("train-pay", pay, sizeof(pay));
    if (type[0] == '\0') {
        dom_set_text("train-error", "Choose an instance type.");
        return;
    }
    if (timed) {
        duration = read_duration();
        if (duration < 0) {
            dom_set_text("train-error", "Enter a valid duration.");
            return;
        }
    } else if (epochs < 0) {
        dom_set_text("train-error", "Epochs must be a whole number above "
                                    "zero.");
        return;
    }
    if (timed && strcmp(pay, "prepaid") == 0) {
        dom_get_value("train-card", card, sizeof(card));
        if (card[0] == '\0') {
            dom_set_text("train-error", "Enter a card number to pay now.");
            dom_focus("train-card");
            return;
        }
        json_quote(card, card_json, sizeof(card_json));
        snprintf(body, sizeof(body),
                 "{\"mode\":\"timed\",\"duration_ms\":%" PRId64
                 ",\"instance_type\":%s,\"payment\":\"prepaid\","
                 "\"card\":%s,\"idempotency_key\":\"%s\"}",
                 duration, type, card_json, dialog.pay_key);
    } else if (timed) {
        snprintf(body, sizeof(body),
                 "{\"mode\":\"timed\",\"duration_ms\":%" PRId64
                 ",\"instance_type\":%s,\"payment\":\"balance\"}",
                 duration, type);
    } else {
        snprintf(body, sizeof(body),
                 "{\"mode\":\"epochs\",\"epochs\":%ld,\"instance_type\":%s}",
                 epochs, type);
    }
    dom_set_text("train-error", "");
    dom_set_disabled("train-start", 1);
    snprintf(card, sizeof(card), "/models/%" PRId64 "/train",
             dialog.model_id);
    api_post(card, body, on_started, NULL);
}

static void build_mode(void)
{
    dom_element("fieldset", "train-body", "train-mode", "wide", NULL);
    dom_create("legend", "train-mode", NULL, "Duration");
    dom_element("label", "train-mode", "train-mode-epochs-label", "choice",
                NULL);
    dom_create("input", "train-mode-epochs-label", "train-mode-epochs",
               NULL);
    dom_set_attr("train-mode-epochs", "type", "radio");
    dom_set_attr("train-mode-epochs", "name", "train-mode");
    dom_set_attr("train-mode-epochs", "value", "epochs");
    dom_set_checked("train-mode-epochs", 1);
    dom_create("span", "train-mode-epochs-label", NULL, " Epochs");
    dom_element("label", "train-mode", "train-mode-timed-label", "choice",
                NULL);
    dom_create("input", "train-mode-timed-label", "train-mode-timed", NULL);
    dom_set_attr("train-mode-timed", "type", "radio");
    dom_set_attr("train-mode-timed", "name", "train-mode");
    dom_set_attr("train-mode-timed", "value", "timed");
    dom_create("span", "train-mode-timed-label", NULL,
               " Timed (hours and minutes)");
    dom_on("train-mode-epochs", "change", on_change, NULL);
    dom_on("train-mode-timed", "change", on_change, NULL);
}

static void show_step3(void)
{
    char epochs[24];

    set_step(3, "Train");
    random_hex(dialog.pay_key, sizeof(dialog.pay_key));
    dom_element("p", "train-body", "train-created",
                dialog.for_existing ? "muted" : "ok", NULL);
    if (dialog.for_existing)
        dom_set_text("train-created", "Choose how long to train and how "
                                      "to pay.");
    else
        dom_set_text("train-created", "Model created. Start its training "
                                      "now, or close this dialog and "
                                      "start it later from the model's "
                                      "screen.");
    build_mode();
    dom_element("div", "train-body", "train-settings", "grid", NULL);
    snprintf(epochs, sizeof(epochs), "%ld", dialog.epochs);
    dom_input("train-settings", "train-run-epochs", "Epochs", "number",
              epochs);
    dom_set_attr("train-run-epochs", "min", "1");
    dom_element("div", "train-settings", "train-duration", "grid wide hidden",
                NULL);
    dom_input("train-duration", "train-hours", "Hours", "number", "1");
    dom_set_attr("train-hours", "min", "0");
    dom_input("train-duration", "train-minutes", "Minutes", "number", "0");
    dom_set_attr("train-minutes", "min", "0");
    dom_set_attr("train-minutes", "max", "59");
    dom_select("train-settings", "train-type", "Instance type");
    dom_select("train-settings", "train-pay", "Payment");
    dom_option("train-pay", "balance", "Account balance");
    dom_option("train-pay", "prepaid", "Pay now by card (timed only)");
    dom_input("train-settings", "train-card", "Card number", "text", NULL);
    dom_set_attr("train-card", "inputmode", "numeric");
    dom_set_attr("train-card", "autocomplete", "cc-number");
    dom_set_attr("train-card-field", "class", "field hidden");
    dom_element("p", "train-body", "train-price", "strong", NULL);
    dom_set_attr("train-price", "role", "status");
    dom_set_attr("train-price", "aria-live", "polite");
    dom_element("div", "train-body", "train-topup-box", "hidden", NULL);
    topup_form("train-topup-box", "train-topup", "20.00", on_topped_up);
    dom_on("train-hours", "input", on_change, NULL);
    dom_on("train-minutes", "input", on_change, NULL);
    dom_on("train-type", "change", on_change, NULL);
    dom_on("train-pay", "change", on_change, NULL);
    dom_element("div", "train-body", "train-nav", "buttons", NULL);
    dom_create("button", "train-nav", "train-start", "Start training");
    dom_set_attr("train-start", "type", "button");
    dom_on("train-start", "click", click_start, NULL);
    api_get("/instance-types", on_types, NULL);
    api_get("/balance", on_balance, NULL);
    dom_focus("train-mode-epochs");
}

/* ---- The dialog -------------------------------------------------------- */

static void on_dialog_close(void *ctx)
{
    char hash[40], current[40];

    (void)ctx;
    if (dialog.model_id <= 0)
        return;
    snprintf(hash, sizeof(hash), "#/models/%" PRId64, dialog.model_id);
    dialog.model_id = 0;
    location_get_hash(current, sizeof(current));
    /* On the model's own screen the hash does not change, so the screen
     * is rebuilt to show a session that the dialog started. */
    if (strcmp(hash, current) == 0)
        app_route();
    else
        location_set_hash(hash);
}

static void click_close(void *ctx)
{
    (void)ctx;
    dom_dialog_close("train-dialog");
}

static void build_dialog(void)
{
    memset(&dialog, 0, sizeof(dialog));
    dialog.epoch_minimum = 5000000;
    dom_remove("train-dialog");
    dom_element("dialog", "view", "train-dialog", "dialog", NULL);
    dom_set_attr("train-dialog", "aria-labelledby", "train-title");
    dom_element("div", "train-dialog", "train-head", "dialog-head", NULL);
    dom_create("h2", "train-head", "train-title", "Train model");
    dom_element("button", "train-head", "train-close", "secondary", "Close");
    dom_set_attr("train-close", "type", "button");
    dom_element("p", "train-dialog", "train-step", "muted", NULL);
    dom_create("div", "train-dialog", "train-body", NULL);
    dom_element("p", "train-dialog", "train-error", "error", NULL);
    dom_set_attr("train-error", "role", "alert");
    dom_on("train-close", "click", click_close, NULL);
    dom_on("train-dialog", "close", on_dialog_close, NULL);
}

void view_train_open(void)
{
    build_dialog();
    /* showModal focuses the first control, so each step's own focus
     * comes after it. */
    dom_dialog_open("train-dialog");
    show_step1();
}

void view_train_open_model(int64_t model_id, long epochs)
{
    build_dialog();
    dialog.model_id = model_id;
    dialog.epochs = epochs > 0 ? epochs : 10;
    dialog.for_existing = 1;
    dom_dialog_open("train-dialog");
    show_step3();
}
