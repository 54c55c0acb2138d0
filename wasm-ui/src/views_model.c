/*
 * The model screen: the latest session's state, epochs done, progress
 * bars for the epoch and the run with the speed and the time left, Start,
 * Stop and Resume, and the model's billing. While the session is paused
 * for balance, a top-up form sits next to Resume. The charts show the
 * losses, and top-1/top-5 accuracy for classification or precision,
 * recall and mAP for detection, each with its last epoch's values in a
 * line of text. Live data comes from source.h, which calls on_model and
 * on_event. The screen keeps the epoch metrics it has seen, so charts
 * are redrawn from memory and never refetched.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "chart.h"
#include "dom.h"
#include "source.h"
#include "topup.h"
#include "views.h"

/* Epochs kept for the charts; later epochs are not drawn. */
#define MAX_EPOCHS 2000
#define CHART_W 600
#define CHART_H 220

/* The epoch metrics drawn for each task. The first classify_losses or
 * detect_losses entries go to the loss chart and the rest to the second
 * chart. Keys are the trainer's results.csv columns. */
#define SERIES_MAX 8

struct metric {
    const char *key;
    const char *label;
    const char *color;
};

static const struct metric classify_metrics[] = {
    {"train/loss", "train loss", "#2f6fdb"},
    {"val/loss", "val loss", "#d9822b"},
    {"metrics/accuracy_top1", "top-1", "#1b6e32"},
    {"metrics/accuracy_top5", "top-5", "#7a3db8"},
};
static const size_t classify_losses = 2;

static const struct metric detect_metrics[] = {
    {"train/box_loss", "box", "#2f6fdb"},
    {"train/cls_loss", "cls", "#d9822b"},
    {"train/dfl_loss", "dfl", "#1b6e32"},
    {"val/box_loss", "val box", "#a32020"},
    {"metrics/precision(B)", "precision", "#2f6fdb"},
    {"metrics/recall(B)", "recall", "#d9822b"},
    {"metrics/mAP50(B)", "mAP50", "#1b6e32"},
    {"metrics/mAP50-95(B)", "mAP50-95", "#7a3db8"},
};
static const size_t detect_losses = 4;

static struct {
    int64_t id;
    int active;
    int detect;
    /* values[0] has the classification metrics, values[1] the detection
     * ones. Both are kept, because replayed epoch events can arrive
     * before the model reply names the model's task. */
    double values[2][SERIES_MAX][MAX_EPOCHS];
    size_t epochs_seen;
    int64_t batch_size;
    int running;
    /* Events received, which the e2e test compares with the stored
     * events to find repeats or gaps. */
    long events;
    /* The next epoch's cost named by the pause reason, or -1. */
    int64_t pause_needed;
    int was_paused;
    /* The latest session's id and counts, from the last model reply. */
    int64_t session_id;
    int timed;
    int64_t epochs_total;
    int64_t epochs_done;
    /* Set by epoch and state events. The ledger is then requested once at
     * the next model reply, not once per event of a long replay. */
    int billing_stale;
} model;

static void load_billing(void);

/* The epochs typed in the New model form, for that model's screen. */
static int64_t suggested_model;
static long suggested_epochs;

void view_model_suggest_epochs(int64_t model_id, long epochs)
{
    suggested_model = model_id;
    suggested_epochs = epochs;
}

/* Set a <progress> to done of total, clamped to 0..total. */
static void set_progress(const char *id, double done, double total)
{
    char value[32], max[32];

    if (total <= 0)
        total = 1;
    if (done < 0)
        done = 0;
    if (done > total)
        done = total;
    snprintf(value, sizeof(value), "%g", done);
    snprintf(max, sizeof(max), "%g", total);
    dom_set_attr(id, "max", max);
    dom_set_attr(id, "value", value);
}

static void describe_state(const struct json *session, char *buf,
                           size_t size)
{
    const char *state = json_string(json_get(session, "state"), "");
    const char *reason = json_string(json_get(session, "reason"), NULL);
    int64_t queue = json_int(json_get(session, "queue_position"), 0);

    if (strcmp(state, "initializing") == 0 && queue > 0)
        snprintf(buf, size, "Initializing: waiting for a device, place %"
                 PRId64 " in the queue. Initializing is free of charge.",
                 queue);
    else if (strcmp(state, "initializing") == 0)
        snprintf(buf, size, "Initializing: loading the data set and the "
                            "model. Initializing is free of charge.");
    else if (strcmp(state, "training") == 0)
        snprintf(buf, size, "Training.");
    else if (strcmp(state, "paused") == 0)
        snprintf(buf, size, "Paused for balance: %s. Top up, then resume.",
                 reason ? reason : "the balance could not pay the next "
                                   "epoch");
    else if (strcmp(state, "stopped") == 0)
        snprintf(buf, size, "Stopped. Resume to continue from the last "
                            "checkpoint.");
    else if (strcmp(state, "completed") == 0)
        snprintf(buf, size, "Completed.");
    else if (strcmp(state, "expired") == 0)
        snprintf(buf, size, "Expired: the paid training time is used up.");
    else if (strcmp(state, "failed") == 0)
        snprintf(buf, size, "Failed: %s", reason ? reason : "no reason "
                                                            "given");
    else
        snprintf(buf, size, "State: %s", state);
}

static void draw_charts(void);
static void format_duration(double seconds, char *buf, size_t size);
static void show_pause_balance(int64_t balance);

/* Read the next epoch's cost from a pause reason such as "balance too low
 * for the next epoch ($12.50 needed)". Returns -1 when it names none.
 * NOTE: the session has no field with this cost, so this parses the
 * backend's wording, and a reworded reason only loses the prefill. */
static int64_t parse_needed(const char *reason)
{
    const char *start = reason ? strstr(reason, "($") : NULL;
    char amount[32];
    size_t n = 0;
    int64_t micros;

    if (start == NULL)
        return -1;
    for (start += 2; n + 1 < sizeof(amount) &&
                     ((*start >= '0' && *start <= '9') || *start == '.' ||
                      *start == ',');
         start++)
        amount[n++] = *start;
    amount[n] = '\0';
    if (strncmp(start, " needed)", 8) != 0 ||
        parse_money(amount, &micros) != 0)
        return -1;
    return micros;
}

static void on_pause_balance(int status, const struct json *reply,
                             void *ctx)
{
    (void)ctx;
    if (status == 200)
        show_pause_balance(json_int(json_get(reply, "balance"), 0));
}

/* Switch the charts to the task that the model reply names. */
static void set_task(const char *task)
{
    int detect = strcmp(task, "detect") == 0;

    if (detect == model.detect)
        return;
    model.detect = detect;
    dom_set_text("chart-acc-title", detect ? "Precision, recall and mAP"
                                           : "Accuracy");
    dom_set_attr("chart-acc", "aria-label",
                 detect ? "Validation precision, recall, mAP50 and "
                          "mAP50-95 per epoch"
                        : "Top-1 and top-5 validation accuracy per epoch");
    dom_set_attr("chart-loss", "aria-label",
                 detect ? "Box, class and DFL training losses and the "
                          "validation box loss per epoch"
                        : "Training and validation loss per epoch");
    draw_charts();
}

/* Show epochs done of the total, epochs left and the run bar of an
 * epoch-based session. */
static void show_epoch_count(void)
{
    int64_t left = model.epochs_total - model.epochs_done;

    if (left < 0)
        left = 0;
    dom_textf("m-epochs", "Epochs done: %" PRId64 " of %" PRId64,
              model.epochs_done, model.epochs_total);
    dom_textf("m-left", "Epochs left: %" PRId64, left);
    dom_set_text("m-run-label", "Run progress (epochs)");
    set_progress("m-run-bar", (double)model.epochs_done,
                 (double)model.epochs_total);
}

/* Show epochs done, epochs left and the run bar. A timed session shows
 * its training time of the time limit instead of epochs left. */
static void show_run(const struct json *session)
{
    const char *mode = json_string(json_get(session, "mode"), "epochs");
    int64_t limit = json_int(json_get(session, "time_limit_ms"), 0);
    int64_t trained = json_int(json_get(session, "trained_ms"), 0);
    int64_t old_total = model.epochs_total;
    int old_timed = model.timed;
    char used_text[40], limit_text[40];

    model.session_id = json_int(json_get(session, "id"), 0);
    model.timed = strcmp(mode, "timed") == 0 && limit > 0;
    model.epochs_total = json_int(json_get(session, "epochs"), 0);
    model.epochs_done = json_int(json_get(session, "epochs_done"), 0);
    /* The charts' x axis is the session's epoch count. */
    if (model.epochs_total != old_total || model.timed != old_timed)
        draw_charts();
    if (model.timed) {
        format_duration((double)(trained < limit ? trained : limit) / 1000.0,
                        used_text, sizeof(used_text));
        format_duration((double)limit / 1000.0, limit_text,
                        sizeof(limit_text));
        dom_textf("m-epochs", "Epochs done: %" PRId64 ". Trained %s of %s.",
                  model.epochs_done, used_text, limit_text);
        dom_set_text("m-run-label", "Run progress (training time)");
        set_progress("m-run-bar", (double)trained, (double)limit);
        dom_set_text("m-left", "");
        return;
    }
    show_epoch_count();
}

static void on_model(const struct json *reply)
{
    const struct json *session = json_get(reply, "session");
    const struct json *busy = json_get(reply, "account_training");
    const struct json *args = json_get(reply, "args");
    const char *state = json_string(json_get(session, "state"), "");
    int has_session = session != NULL && session->type == JSON_OBJECT;
    int running = strcmp(state, "initializing") == 0 ||
                  strcmp(state, "training") == 0;
    int paused = strcmp(state, "paused") == 0;
    int resumable = strcmp(state, "stopped") == 0 || paused ||
                    strcmp(state, "failed") == 0 ||
                    strcmp(state, "expired") == 0;
    int other_busy = busy != NULL && busy->type == JSON_OBJECT &&
                     json_int(json_get(busy, "model"), 0) != model.id;
    char text[400];

    if (model.billing_stale) {
        model.billing_stale = 0;
        load_billing();
    }
    /* A reply means the gateway is reachable again. */
    dom_set_text("m-source-error", "");
    set_task(json_string(json_get(reply, "task"), "classify"));
    /* The trainer's default batch when the model sets none. */
    model.batch_size = json_int(json_get(args, "batch"), 16);
    model.running = strcmp(state, "training") == 0;
    if (!model.running)
        dom_set_text("m-speed", "");
    dom_set_text("m-title", json_string(json_get(reply, "name"), "Model"));
    dom_textf("m-meta", "%s, %s, image size %" PRId64 ", batch %" PRId64,
              json_string(json_get(reply, "task"), "classify"),
              json_string(json_get(reply, "architecture"), "?"),
              json_int(json_get(args, "imgsz"), 0), model.batch_size);
    if (has_session) {
        describe_state(session, text, sizeof(text));
        show_run(session);
        if (strcmp(state, "completed") == 0)
            set_progress("m-epoch-bar", 1, 1);
    } else {
        snprintf(text, sizeof(text), "Not trained yet. Choose an instance "
                                     "type and start training.");
        dom_set_text("m-epochs", "");
        dom_set_text("m-left", "");
    }
    dom_set_text("m-status", text);
    dom_set_attr("m-status", "data-state", has_session ? state : "none");
    dom_set_class("m-paused", "hidden", !paused);
    if (paused && !model.was_paused) {
        model.pause_needed =
            parse_needed(json_string(json_get(session, "reason"), NULL));
        api_get("/balance", on_pause_balance, NULL);
    }
    model.was_paused = paused;
    if (other_busy) {
        dom_textf("m-unavailable", "Cloud training unavailable: model %s "
                  "is training. Stop it or wait until it ends.",
                  json_string(json_get(busy, "name"), "?"));
    } else {
        dom_set_text("m-unavailable", "");
    }
    dom_set_class("m-unavailable", "hidden", !other_busy);
    dom_set_disabled("m-start", running || other_busy);
    dom_set_disabled("m-options", running || other_busy);
    /* The epoch count is editable until the training starts. */
    dom_set_disabled("m-epochs-input", running);
    dom_set_disabled("m-stop", !running);
    dom_set_disabled("m-resume", !resumable || other_busy);
    dom_set_disabled("m-paused-resume", !paused || other_busy);
}

static void metric_table(int detect, const struct metric **metrics,
                         size_t *count, size_t *losses)
{
    if (detect) {
        *metrics = detect_metrics;
        *count = sizeof(detect_metrics) / sizeof(*detect_metrics);
        *losses = detect_losses;
    } else {
        *metrics = classify_metrics;
        *count = sizeof(classify_metrics) / sizeof(*classify_metrics);
        *losses = classify_losses;
    }
}

/* Write each series' value at the last epoch into the text element id,
 * such as "Epoch 2: box 3.12, cls 4.01", so that the numbers can be read
 * without the canvas. */
static void show_latest(const char *id, const struct chart_series *series,
                        size_t count)
{
    size_t epochs = count > 0 ? series[0].count : 0;
    char text[400];
    size_t len;

    if (epochs == 0) {
        dom_set_text(id, "No epochs yet.");
        return;
    }
    len = (size_t)snprintf(text, sizeof(text), "Epoch %zu:", epochs);
    for (size_t i = 0; i < count && len < sizeof(text); i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%s %.4g",
                                i == 0 ? " " : ", ", series[i].label,
                                series[i].values[epochs - 1]);
    dom_set_text(id, text);
}

static void draw_charts(void)
{
    struct chart_series series[SERIES_MAX];
    const struct metric *metrics;
    struct chart_axes axes;
    size_t count, losses;
    char epochs[24];

    metric_table(model.detect, &metrics, &count, &losses);
    for (size_t i = 0; i < count; i++) {
        series[i].label = metrics[i].label;
        series[i].color = metrics[i].color;
        series[i].values = model.values[model.detect][i];
        series[i].count = model.epochs_seen;
    }
    /* A timed session has no epoch count, so its axis grows instead. */
    axes.epochs = model.timed || model.epochs_total <= 0 ? 0
                  : model.epochs_total > MAX_EPOCHS ? MAX_EPOCHS
                                                    : (size_t)model.epochs_total;
    axes.fractions = 0;
    chart_draw("chart-loss", CHART_W, CHART_H, series, losses, &axes);
    axes.fractions = 1;
    chart_draw("chart-acc", CHART_W, CHART_H, series + losses,
               count - losses, &axes);
    show_latest("chart-loss-latest", series, losses);
    show_latest("chart-acc-latest", series + losses, count - losses);
    snprintf(epochs, sizeof(epochs), "%zu", model.epochs_seen);
    dom_set_attr("chart-loss", "data-epochs", epochs);
    dom_set_attr("chart-acc", "data-epochs", epochs);
}

/* Format seconds as "45 s", "12 min 5 s" or "3 h 20 min". */
static void format_duration(double seconds, char *buf, size_t size)
{
    long s = seconds < 0 ? 0 : (long)(seconds + 0.5);

    if (s < 60)
        snprintf(buf, size, "%ld s", s);
    else if (s < 3600)
        snprintf(buf, size, "%ld min %ld s", s / 60, s % 60);
    else
        snprintf(buf, size, "%ld h %ld min", s / 3600, s % 3600 / 60);
}

/* Show the speed and the time left from a batch event. The time left
 * counts the training batches only, so it leaves out validation. */
static void show_speed(const struct json *payload)
{
    double speed = json_number(json_get(payload, "images_per_s"), 0);
    double batch = json_number(json_get(payload, "batch"), 0);
    double batches = json_number(json_get(payload, "batches"), 0);
    double epoch = json_number(json_get(payload, "epoch"), 0);
    double epochs = json_number(json_get(payload, "epochs"), 0);
    double per_batch, epoch_left, run_left;
    char epoch_text[40], run_text[40];

    if (!model.running || speed <= 0 || batches <= 0) {
        dom_set_text("m-speed", "");
        return;
    }
    per_batch = (double)model.batch_size / speed;
    epoch_left = batches > batch ? (batches - batch) * per_batch : 0;
    run_left = epoch_left;
    if (epochs > epoch)
        run_left += (epochs - epoch) * batches * per_batch;
    format_duration(epoch_left, epoch_text, sizeof(epoch_text));
    format_duration(run_left, run_text, sizeof(run_text));
    dom_textf("m-speed", "Speed: %.0f images/s. Time left: %s in this "
              "epoch, about %s in the run, validation not counted.",
              speed, epoch_text, run_text);
}

static void on_event(const struct json *event)
{
    const char *kind = json_string(json_get(event, "kind"), "");
    const struct json *payload = json_get(event, "payload");
    char count[24];

    model.events++;
    snprintf(count, sizeof(count), "%ld", model.events);
    dom_set_attr("m-live", "data-events", count);
    snprintf(count, sizeof(count), "%" PRId64,
             json_int(json_get(event, "seq"), 0));
    dom_set_attr("m-live", "data-seq", count);

    if (strcmp(kind, "batch") == 0) {
        double batch = json_number(json_get(payload, "batch"), 0);
        double batches = json_number(json_get(payload, "batches"), 1);
        int64_t epoch = json_int(json_get(payload, "epoch"), 0);

        set_progress("m-epoch-bar", batch, batches);
        if (batch > batches)
            batch = batches;
        dom_textf("m-epoch-label", "Epoch %" PRId64 ": batch %.0f of %.0f",
                  epoch, batch, batches);
        show_speed(payload);
    } else if (strcmp(kind, "start") == 0) {
        const struct json *resumed = json_get(payload, "resumed");

        /* A fresh start trains from epoch 1 again, so the old curves
         * belong to an earlier run. */
        if (resumed == NULL || resumed->type != JSON_TRUE)
            model.epochs_seen = 0;
        draw_charts();
    } else if (strcmp(kind, "epoch") == 0) {
        const struct json *m = json_get(payload, "metrics");
        int64_t epoch = json_int(json_get(payload, "epoch"), 0);

        if (epoch >= 1 && epoch <= MAX_EPOCHS) {
            size_t i = (size_t)(epoch - 1), count, losses;
            const struct metric *metrics;

            for (int task = 0; task < 2; task++) {
                metric_table(task, &metrics, &count, &losses);
                for (size_t k = 0; k < count; k++)
                    model.values[task][k][i] =
                        json_number(json_get(m, metrics[k].key), 0);
            }
            model.epochs_seen = i + 1;
            draw_charts();
        }
        model.billing_stale = 1;
        /* The model reply that counts this epoch can come up to 10 s
         * later, so the run bar and the billing, which has the epoch's
         * charge, update now. Epochs of an earlier session, replayed,
         * are left out. */
        if (model.session_id != 0 && !model.timed &&
            json_int(json_get(event, "session"), 0) == model.session_id &&
            epoch > model.epochs_done && epoch <= model.epochs_total) {
            model.epochs_done = epoch;
            show_epoch_count();
            model.billing_stale = 0;
            load_billing();
        }
    } else if (strcmp(kind, "state") == 0) {
        /* The source requests the model at its next tick, which shows
         * the new state. */
        model.billing_stale = 1;
    }
}

static void on_source_mode(const char *mode)
{
    dom_set_attr("m-live", "data-mode", mode);
    if (strcmp(mode, "live") == 0)
        dom_set_text("m-live", "Live updates: connected.");
    else if (strcmp(mode, "polling") == 0)
        dom_set_text("m-live", "Live updates: the live connection cannot "
                               "open, so the screen asks the server every "
                               "second.");
    else
        dom_set_text("m-live", "Live updates: connecting...");
}

static void on_source_error(int status, const struct json *reply)
{
    char text[300];

    api_error_text(status, reply, text, sizeof(text));
    dom_set_text("m-source-error", text);
}

static void on_action(int status, const struct json *reply, void *ctx)
{
    char text[300];

    (void)ctx;
    if (status >= 200 && status < 300) {
        dom_set_text("m-error", "");
        source_refresh();
        return;
    }
    api_error_text(status, reply, text, sizeof(text));
    dom_set_text("m-error", text);
}

static void post_action(const char *action, const char *body)
{
    char path[80];

    snprintf(path, sizeof(path), "/models/%" PRId64 "/%s", model.id,
             action);
    api_post(path, body, on_action, NULL);
}

static void submit_start(void *ctx)
{
    char type[24], epochs[24], body[200], *end;
    long n;

    (void)ctx;
    dom_get_value("m-type", type, sizeof(type));
    dom_get_value("m-epochs-input", epochs, sizeof(epochs));
    n = strtol(epochs, &end, 10);
    if (end == epochs || *end != '\0' || n <= 0) {
        dom_set_text("m-error", "Epochs must be a whole number above "
                                "zero.");
        return;
    }
    if (type[0] == '\0') {
        dom_set_text("m-error", "Choose an instance type.");
        return;
    }
    snprintf(body, sizeof(body),
             "{\"mode\":\"epochs\",\"epochs\":%ld,\"instance_type\":%s}", n,
             type);
    post_action("train", body);
}

static void click_stop(void *ctx)
{
    (void)ctx;
    post_action("stop", NULL);
}

static void click_resume(void *ctx)
{
    (void)ctx;
    post_action("resume", NULL);
}

static void click_options(void *ctx)
{
    char epochs[24], *end;
    long n;

    (void)ctx;
    dom_get_value("m-epochs-input", epochs, sizeof(epochs));
    n = strtol(epochs, &end, 10);
    view_train_open_model(model.id, end != epochs && *end == '\0' ? n : 0);
}

static void on_instance_types(int status, const struct json *reply,
                              void *ctx)
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
        dom_option("m-type", value, text);
    }
}

static void on_ledger(int status, const struct json *reply, void *ctx)
{
    const struct json *entries = json_get(reply, "entries");
    int64_t total = 0;
    int rows = 0;
    char money[40];

    (void)ctx;
    if (status != 200)
        return;
    dom_clear("bill-rows");
    for (const struct json *e = entries ? entries->child : NULL; e != NULL;
         e = e->next) {
        int64_t amount = json_int(json_get(e, "amount"), 0);
        char row[40], cell[40];

        if (json_int(json_get(e, "model_id"), 0) != model.id)
            continue;
        total += amount;
        snprintf(row, sizeof(row), "bill-row-%d", rows);
        dom_create("tr", "bill-rows", row, NULL);
        dom_create("td", row, NULL,
                   json_string(json_get(e, "description"), ""));
        dom_create("td", row, NULL, json_string(json_get(e, "kind"), ""));
        format_money(amount, money, sizeof(money));
        snprintf(cell, sizeof(cell), "bill-amount-%d", rows);
        dom_element("td", row, cell, "num", money);
        rows++;
    }
    format_money(total, money, sizeof(money));
    dom_textf("bill-total", "%d %s, total %s", rows,
              rows == 1 ? "entry" : "entries", money);
    snprintf(money, sizeof(money), "%d", rows);
    dom_set_attr("bill-total", "data-rows", money);
}

static void load_billing(void)
{
    /* NOTE: /ledger returns the whole account's ledger without paging;
     * the rows of this model are picked out here. */
    api_get("/ledger", on_ledger, NULL);
}

static void build_controls(void)
{
    dom_element("section", "view", "m-control", "card", NULL);
    dom_create("h2", "m-control", NULL, "Training");
    dom_element("p", "m-control", "m-unavailable", "warning hidden", NULL);
    dom_set_attr("m-unavailable", "role", "status");
    dom_element("form", "m-control", "m-start-form", "grid", NULL);
    dom_set_attr("m-start-form", "aria-label", "Start training");
    dom_select("m-start-form", "m-type", "Instance type");
    dom_input("m-start-form", "m-epochs-input", "Epochs", "number", "10");
    dom_set_attr("m-epochs-input", "min", "1");
    if (suggested_model == model.id && suggested_epochs > 0) {
        char epochs[24];

        snprintf(epochs, sizeof(epochs), "%ld", suggested_epochs);
        dom_set_value("m-epochs-input", epochs);
    }
    dom_element("div", "m-start-form", "m-buttons", "buttons wide", NULL);
    dom_create("button", "m-buttons", "m-start", "Start");
    dom_set_attr("m-start", "type", "submit");
    dom_create("button", "m-buttons", "m-stop", "Stop");
    dom_set_attr("m-stop", "type", "button");
    dom_create("button", "m-buttons", "m-resume", "Resume");
    dom_set_attr("m-resume", "type", "button");
    dom_element("button", "m-buttons", "m-options", "secondary",
                "Timed or prepaid training");
    dom_set_attr("m-options", "type", "button");
    dom_element("p", "m-control", "m-error", "error", NULL);
    dom_set_attr("m-error", "role", "alert");
    dom_on("m-start-form", "submit", submit_start, NULL);
    dom_on("m-stop", "click", click_stop, NULL);
    dom_on("m-resume", "click", click_resume, NULL);
    dom_on("m-options", "click", click_options, NULL);
}

/* Show the balance in the pause card and, while it is short of the
 * next epoch's cost, prefill the top-up with the difference (at least the
 * $1.00 minimum, rounded up to cents). */
static void show_pause_balance(int64_t balance)
{
    char money[40], needed[40], amount[40];
    int64_t missing = model.pause_needed - balance;

    format_money(balance, money, sizeof(money));
    if (model.pause_needed < 0 || missing <= 0) {
        dom_textf("m-paused-balance", "Balance: %s. Resume to continue from "
                  "the last checkpoint.", money);
        return;
    }
    format_money(model.pause_needed, needed, sizeof(needed));
    if (missing < 1000000)
        missing = 1000000;
    missing = (missing + 9999) / 10000 * 10000;
    snprintf(amount, sizeof(amount), "%" PRId64 ".%02" PRId64,
             missing / 1000000, missing % 1000000 / 10000);
    dom_set_value("m-topup-amount", amount);
    dom_textf("m-paused-balance", "Balance: %s. The next epoch needs about "
              "%s, the cost of the last one. Top up at least $%s, then "
              "resume.", money, needed, amount);
}

static void on_topped_up(int64_t balance)
{
    show_pause_balance(balance);
    load_billing();
}

/* The card shown while the session is paused for balance: a top-up form
 * and Resume, so the user does not have to leave the screen. */
static void build_paused(void)
{
    dom_element("section", "view", "m-paused", "card warning hidden", NULL);
    dom_create("h2", "m-paused", NULL, "Paused for balance");
    dom_element("p", "m-paused", "m-paused-balance", NULL,
                "Top up the balance, then resume the training.");
    topup_form("m-paused", "m-topup", "20.00", on_topped_up);
    dom_element("p", "m-paused", "m-paused-buttons", "buttons", NULL);
    dom_create("button", "m-paused-buttons", "m-paused-resume",
               "Resume training");
    dom_set_attr("m-paused-resume", "type", "button");
    dom_on("m-paused-resume", "click", click_resume, NULL);
}

static void build_chart(const char *parent, const char *id,
                        const char *title, const char *description)
{
    char heading[40], wh[16];

    snprintf(heading, sizeof(heading), "%s-title", id);
    dom_create("h3", parent, heading, title);
    dom_element("canvas", parent, id, "chart", NULL);
    snprintf(wh, sizeof(wh), "%d", CHART_W);
    dom_set_attr(id, "width", wh);
    snprintf(wh, sizeof(wh), "%d", CHART_H);
    dom_set_attr(id, "height", wh);
    dom_set_attr(id, "role", "img");
    dom_set_attr(id, "aria-label", description);
    snprintf(heading, sizeof(heading), "%s-latest", id);
    dom_element("p", parent, heading, "muted small-text", NULL);
}

static void build_billing(void)
{
    char href[80];

    dom_element("section", "view", "bill", "card", NULL);
    dom_create("h2", "bill", NULL, "Billing");
    dom_element("div", "bill", "bill-scroll", "scroll", NULL);
    dom_create("table", "bill-scroll", "bill-table", NULL);
    dom_create("thead", "bill-table", "bill-head", NULL);
    dom_create("tr", "bill-head", "bill-head-row", NULL);
    dom_create("th", "bill-head-row", NULL, "Item");
    dom_create("th", "bill-head-row", NULL, "Kind");
    dom_element("th", "bill-head-row", "bill-head-amount", "num", "Amount");
    dom_create("tbody", "bill-table", "bill-rows", NULL);
    dom_element("p", "bill", "bill-total", "strong", "...");
    dom_element("p", "bill", "bill-links", "buttons", NULL);
    dom_element("a", "bill-links", "bill-csv", "button", "Download CSV");
    snprintf(href, sizeof(href), "/api/v1/models/%" PRId64 "/billing.csv",
             model.id);
    dom_set_attr("bill-csv", "href", href);
    dom_set_attr("bill-csv", "download", "");
    dom_element("a", "bill-links", "bill-pdf", "button", "Download PDF");
    snprintf(href, sizeof(href), "/api/v1/models/%" PRId64 "/billing.pdf",
             model.id);
    dom_set_attr("bill-pdf", "href", href);
    dom_set_attr("bill-pdf", "download", "");
}

void view_model_show(int64_t model_id)
{
    static const struct source_handlers handlers = {
        on_model, on_event, on_source_error, on_source_mode,
    };

    memset(&model, 0, sizeof(model));
    model.id = model_id;
    model.active = 1;

    dom_element("p", "view", "m-back", "muted", NULL);
    dom_create("a", "m-back", "m-back-link", "All models");
    dom_set_attr("m-back-link", "href", "#/");
    dom_element("section", "view", "m-head", "card", NULL);
    dom_create("h1", "m-head", "m-title", "Model");
    dom_element("p", "m-head", "m-meta", "muted", NULL);
    dom_element("p", "m-head", "m-status", "status", "Loading...");
    dom_set_attr("m-status", "role", "status");
    dom_set_attr("m-status", "aria-live", "polite");
    dom_create("p", "m-head", "m-epochs", NULL);
    dom_create("label", "m-head", "m-epoch-label", "Epoch progress");
    dom_set_attr("m-epoch-label", "for", "m-epoch-bar");
    dom_create("progress", "m-head", "m-epoch-bar", NULL);
    dom_create("label", "m-head", "m-run-label", "Run progress (epochs)");
    dom_set_attr("m-run-label", "for", "m-run-bar");
    dom_create("progress", "m-head", "m-run-bar", NULL);
    dom_element("p", "m-head", "m-left", "muted", NULL);
    dom_element("p", "m-head", "m-speed", "muted", NULL);
    dom_element("p", "m-head", "m-live", "muted small-text", NULL);
    dom_element("p", "m-head", "m-source-error", "error", NULL);
    dom_set_attr("m-source-error", "role", "alert");
    dom_set_attr("m-speed", "aria-live", "off");
    set_progress("m-epoch-bar", 0, 1);
    set_progress("m-run-bar", 0, 1);

    build_paused();
    build_controls();

    dom_element("section", "view", "m-charts", "card", NULL);
    dom_create("h2", "m-charts", NULL, "Metrics");
    build_chart("m-charts", "chart-loss", "Loss",
                "Training and validation loss per epoch");
    build_chart("m-charts", "chart-acc", "Accuracy",
                "Top-1 and top-5 validation accuracy per epoch");
    draw_charts();

    build_billing();

    api_get("/instance-types", on_instance_types, NULL);
    load_billing();
    source_start(model_id, &handlers);
}

void view_model_leave(void)
{
    if (!model.active)
        return;
    model.active = 0;
    source_stop();
}
