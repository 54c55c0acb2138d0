/*
 * The data sets screen: the account's data sets and the samples, each
 * with its validation report, Delete for the account's own, and the
 * upload form. An upload sends the chosen zip archive as the raw body of
 * POST /datasets?name=NAME through XMLHttpRequest, whose upload progress
 * drives the progress bar. After the last byte the backend extracts and
 * validates the archive before it replies, so the screen then says that
 * it validates. The reply is the validation report, shown at once.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "dom.h"
#include "views.h"

/* Data sets whose Delete buttons are tracked; more are listed without. */
#define MAX_DATASETS 200

static struct {
    int64_t ids[MAX_DATASETS];
    int armed[MAX_DATASETS];
    size_t count;
    int uploading;
} screen;

static void load_datasets(void);

/* Percent-encode text for a query string value. */
static void url_encode(const char *text, char *buf, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t used = 0;

    for (const unsigned char *p = (const unsigned char *)text;
         *p != '\0' && used + 4 < size; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
                    *p == '.' || *p == '~';

        if (plain) {
            buf[used++] = (char)*p;
        } else {
            buf[used++] = '%';
            buf[used++] = hex[*p >> 4];
            buf[used++] = hex[*p & 15];
        }
    }
    buf[used] = '\0';
}

static void format_bytes(double bytes, char *buf, size_t size)
{
    if (bytes >= 1024.0 * 1024.0)
        snprintf(buf, size, "%.1f MiB", bytes / (1024.0 * 1024.0));
    else if (bytes >= 1024.0)
        snprintf(buf, size, "%.1f KiB", bytes / 1024.0);
    else
        snprintf(buf, size, "%.0f bytes", bytes);
}

/* Count the report entries whose action is action. */
static int count_action(const struct json *report, const char *action)
{
    int n = 0;

    for (const struct json *e = report ? report->child : NULL; e != NULL;
         e = e->next)
        if (strcmp(json_string(json_get(e, "action"), ""), action) == 0)
            n++;
    return n;
}

/* Show a data set's report (the reply of the upload or of GET
 * /datasets/{id}/report) in the report card. */
static void show_report(const struct json *reply, const char *name)
{
    const struct json *report = json_get(reply, "report");
    const char *status = json_string(json_get(reply, "status"), "?");
    size_t problems = report != NULL ? report->count : 0;
    int skipped = count_action(report, "skipped");
    int row = 0, has_lines = 0;

    dom_clear("ds-report");
    dom_set_class("ds-report-card", "hidden", 0);
    dom_textf("ds-report-title", "Validation report: %s", name);
    dom_element("p", "ds-report", "ds-report-status", "status", NULL);
    if (strcmp(status, "ready") == 0)
        dom_textf("ds-report-status", "Ready to train: %" PRId64
                  " images accepted.",
                  json_int(json_get(reply, "images"), 0));
    else if (strcmp(status, "invalid") == 0)
        dom_textf("ds-report-status", "Invalid: %s Fix the archive and "
                  "upload it again.",
                  json_string(json_get(json_at(report, 0), "problem"),
                              "the scan found no usable images."));
    else
        dom_textf("ds-report-status", "Status: %s.", status);
    dom_set_attr("ds-report-status", "data-status", status);
    dom_element("p", "ds-report", "ds-report-totals", "strong", NULL);
    dom_textf("ds-report-totals", "%zu %s: %d skipped, %zu other. %" PRId64
              " images accepted.", problems,
              problems == 1 ? "problem" : "problems", skipped,
              problems - (size_t)skipped,
              json_int(json_get(reply, "images"), 0));
    dom_set_attr("ds-report-totals", "data-problems", problems ? "1" : "0");
    if (problems == 0)
        return;
    /* Image sets have no text files, so the scan names no lines. A Line
     * column is shown only when an entry has one. */
    for (const struct json *e = report->child; e != NULL; e = e->next)
        if (json_get(e, "line") != NULL)
            has_lines = 1;
    dom_element("div", "ds-report", "ds-report-scroll", "scroll", NULL);
    dom_create("table", "ds-report-scroll", "ds-report-table", NULL);
    dom_create("thead", "ds-report-table", "ds-report-head", NULL);
    dom_create("tr", "ds-report-head", "ds-report-head-row", NULL);
    dom_create("th", "ds-report-head-row", NULL, "File");
    if (has_lines)
        dom_create("th", "ds-report-head-row", NULL, "Line");
    dom_create("th", "ds-report-head-row", NULL, "Rule");
    dom_create("th", "ds-report-head-row", NULL, "Problem");
    dom_create("th", "ds-report-head-row", NULL, "Action");
    dom_create("tbody", "ds-report-table", "ds-report-rows", NULL);
    for (const struct json *e = report->child; e != NULL; e = e->next) {
        const char *path = json_string(json_get(e, "path"), "");
        char id[40];

        snprintf(id, sizeof(id), "ds-problem-%d", row++);
        dom_create("tr", "ds-report-rows", id, NULL);
        dom_create("td", id, NULL, path[0] ? path : "(whole data set)");
        if (has_lines) {
            char line[24] = "-";

            if (json_get(e, "line") != NULL)
                snprintf(line, sizeof(line), "%" PRId64,
                         json_int(json_get(e, "line"), 0));
            dom_create("td", id, NULL, line);
        }
        dom_create("td", id, NULL, json_string(json_get(e, "kind"), "-"));
        dom_create("td", id, NULL, json_string(json_get(e, "problem"), ""));
        dom_create("td", id, NULL, json_string(json_get(e, "action"), ""));
    }
}

static void on_upload_progress(double loaded, double total, void *ctx)
{
    char done[32], all[32];

    (void)ctx;
    if (total <= 0)
        total = 1;
    if (loaded > total)
        loaded = total;
    dom_set_attr("ds-upload-bar", "max", "1000");
    dom_textf("ds-upload-bar", "%.0f%%", 100.0 * loaded / total);
    snprintf(done, sizeof(done), "%.0f", 1000.0 * loaded / total);
    dom_set_attr("ds-upload-bar", "value", done);
    format_bytes(loaded, done, sizeof(done));
    format_bytes(total, all, sizeof(all));
    if (loaded >= total)
        dom_textf("ds-upload-label", "Uploaded %s. Validating the archive "
                  "on the server...", all);
    else
        dom_textf("ds-upload-label", "Uploading: %s of %s (%.0f%%)", done,
                  all, 100.0 * loaded / total);
}

static void on_uploaded(int status, const struct json *reply, void *ctx)
{
    char text[400], name[120];

    (void)ctx;
    screen.uploading = 0;
    dom_set_disabled("ds-upload-submit", 0);
    dom_get_value("ds-name", name, sizeof(name));
    if (status != 201) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("ds-upload-error", text);
        dom_set_text("ds-upload-label", "Upload failed.");
        return;
    }
    dom_set_text("ds-upload-label", "Upload complete.");
    show_report(reply, name);
    load_datasets();
}

static void submit_upload(void *ctx)
{
    char name[120], encoded[400], path[460], file[300];
    double size;

    (void)ctx;
    if (screen.uploading)
        return;
    dom_get_value("ds-name", name, sizeof(name));
    size = dom_file_info("ds-file", file, sizeof(file));
    dom_set_text("ds-upload-error", "");
    if (name[0] == '\0') {
        dom_set_text("ds-upload-error", "Enter a name for the data set.");
        dom_focus("ds-name");
        return;
    }
    if (size < 0) {
        dom_set_text("ds-upload-error", "Choose a zip archive to upload.");
        dom_focus("ds-file");
        return;
    }
    if (size == 0) {
        dom_textf("ds-upload-error", "File \"%s\" is empty. Choose a zip "
                  "archive with train/ and val/ folders.", file);
        return;
    }
    url_encode(name, encoded, sizeof(encoded));
    snprintf(path, sizeof(path), "/datasets?name=%s&task=classify", encoded);
    dom_set_class("ds-progress", "hidden", 0);
    on_upload_progress(0, size, NULL);
    if (api_upload(path, "ds-file", on_upload_progress, on_uploaded, NULL) !=
        0) {
        dom_set_text("ds-upload-error", "Choose a zip archive to upload.");
        return;
    }
    screen.uploading = 1;
    dom_set_disabled("ds-upload-submit", 1);
}

static void on_report(int status, const struct json *reply, void *ctx)
{
    char text[300];

    (void)ctx;
    if (status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("ds-error", text);
        return;
    }
    show_report(reply, json_string(json_get(reply, "name"), "?"));
    dom_focus("ds-report-title");
}

static void click_report(void *ctx)
{
    char path[60];

    snprintf(path, sizeof(path), "/datasets/%" PRId64 "/report",
             screen.ids[(size_t)(uintptr_t)ctx]);
    api_get(path, on_report, NULL);
}

static void on_deleted(int status, const struct json *reply, void *ctx)
{
    char text[300];

    (void)ctx;
    if (status != 200 && status != 204) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("ds-error", text);
        load_datasets();
        return;
    }
    dom_set_text("ds-error", "");
    dom_set_class("ds-report-card", "hidden", 1);
    load_datasets();
}

/* The first click arms the button and the second deletes, so one slip
 * of a key does not delete a data set. */
static void click_delete(void *ctx)
{
    size_t i = (size_t)(uintptr_t)ctx;
    char id[40], path[40];

    snprintf(id, sizeof(id), "ds-delete-%" PRId64, screen.ids[i]);
    if (!screen.armed[i]) {
        screen.armed[i] = 1;
        dom_set_text(id, "Confirm delete");
        return;
    }
    dom_set_disabled(id, 1);
    snprintf(path, sizeof(path), "/datasets/%" PRId64, screen.ids[i]);
    api_delete(path, on_deleted, NULL);
}

static void on_datasets(int status, const struct json *reply, void *ctx)
{
    const struct json *sets = json_get(reply, "datasets");
    char text[300];

    (void)ctx;
    dom_clear("ds-list");
    screen.count = 0;
    if (status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_create("li", "ds-list", NULL, text);
        return;
    }
    for (const struct json *d = sets ? sets->child : NULL; d != NULL;
         d = d->next) {
        int64_t id = json_int(json_get(d, "id"), 0);
        const struct json *sample = json_get(d, "sample");
        int is_sample = sample != NULL && sample->type == JSON_TRUE;
        char li[40], button[40];
        size_t i = screen.count;

        snprintf(li, sizeof(li), "ds-%" PRId64, id);
        snprintf(text, sizeof(text), "%s%s: %s, %" PRId64 " images, %s ",
                 json_string(json_get(d, "name"), "?"),
                 is_sample ? " (sample)" : "",
                 json_string(json_get(d, "task"), "?"),
                 json_int(json_get(d, "images"), 0),
                 json_string(json_get(d, "status"), "?"));
        dom_create("li", "ds-list", li, text);
        if (i >= MAX_DATASETS)
            continue;
        screen.ids[i] = id;
        screen.armed[i] = 0;
        screen.count++;
        snprintf(button, sizeof(button), "ds-report-%" PRId64, id);
        dom_element("button", li, button, "small", "Report");
        dom_set_attr(button, "type", "button");
        dom_on(button, "click", click_report, (void *)(uintptr_t)i);
        if (is_sample)
            continue;
        snprintf(button, sizeof(button), "ds-delete-%" PRId64, id);
        dom_element("button", li, button, "small danger", "Delete");
        dom_set_attr(button, "type", "button");
        dom_on(button, "click", click_delete, (void *)(uintptr_t)i);
    }
    if (sets == NULL || sets->count == 0)
        dom_element("li", "ds-list", NULL, "muted", "No data sets yet.");
}

static void load_datasets(void)
{
    api_get("/datasets", on_datasets, NULL);
}

void view_datasets_show(void)
{
    memset(&screen, 0, sizeof(screen));
    dom_element("section", "view", "ds-card", "card", NULL);
    dom_create("h1", "ds-card", NULL, "Data sets");
    dom_element("p", "ds-card", "ds-error", "error", NULL);
    dom_set_attr("ds-error", "role", "alert");
    dom_element("ul", "ds-card", "ds-list", "list", NULL);

    dom_element("section", "view", "ds-upload", "card", NULL);
    dom_create("h2", "ds-upload", "ds-upload-title", "Upload a data set");
    dom_element("p", "ds-upload", NULL, "muted",
                "A zip archive in the classification layout: "
                "train/CLASS/IMAGE and val/CLASS/IMAGE, optionally under "
                "one top folder. At most 2 GiB.");
    dom_element("form", "ds-upload", "ds-upload-form", "grid", NULL);
    dom_set_attr("ds-upload-form", "aria-labelledby", "ds-upload-title");
    dom_input("ds-upload-form", "ds-name", "Name", "text", NULL);
    dom_set_attr("ds-name", "maxlength", "100");
    dom_input("ds-upload-form", "ds-file", "Zip archive", "file", NULL);
    dom_set_attr("ds-file", "accept", ".zip,application/zip");
    dom_element("div", "ds-upload-form", "ds-progress", "wide hidden", NULL);
    dom_create("label", "ds-progress", "ds-upload-label", "Uploading");
    dom_set_attr("ds-upload-label", "for", "ds-upload-bar");
    dom_create("progress", "ds-progress", "ds-upload-bar", NULL);
    dom_set_attr("ds-upload-label", "aria-live", "polite");
    dom_element("p", "ds-upload-form", "ds-upload-error", "error wide", NULL);
    dom_set_attr("ds-upload-error", "role", "alert");
    dom_element("button", "ds-upload-form", "ds-upload-submit", "wide",
                "Upload");
    dom_set_attr("ds-upload-submit", "type", "submit");
    dom_on("ds-upload-form", "submit", submit_upload, NULL);

    dom_element("section", "view", "ds-report-card", "card hidden", NULL);
    dom_create("h2", "ds-report-card", "ds-report-title", "Validation report");
    dom_set_attr("ds-report-title", "tabindex", "-1");
    dom_create("div", "ds-report-card", "ds-report", NULL);

    load_datasets();
}
