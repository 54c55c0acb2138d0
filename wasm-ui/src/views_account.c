/*
 * The account screen: the balance, the top-up form, the ledger with
 * links to the statement as CSV and PDF, and the API keys. A new key is
 * shown once, right after POST /apikeys returns it, because the gateway
 * stores only its hash. Revoking takes two clicks, like deleting a data
 * set.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "dom.h"
#include "topup.h"
#include "views.h"

/* API keys whose Revoke buttons are tracked; the gateway allows 25. */
#define MAX_KEYS 64
/* Ledger rows shown until the user asks for all of them. */
#define LEDGER_ROWS_SHOWN 25

static struct {
    int64_t key_ids[MAX_KEYS];
    int armed[MAX_KEYS];
    size_t key_count;
    int ledger_all;
} screen;

static void on_keys(int status, const struct json *reply, void *ctx);

/* Format Unix milliseconds as "YYYY-MM-DD HH:MM UTC". */
static void format_time(int64_t ms, char *buf, size_t size)
{
    time_t seconds = (time_t)(ms / 1000);
    const struct tm *tm = ms > 0 ? gmtime(&seconds) : NULL;

    if (tm == NULL) {
        snprintf(buf, size, "-");
        return;
    }
    strftime(buf, size, "%Y-%m-%d %H:%M UTC", tm);
}

static void on_balance(int status, const struct json *reply, void *ctx)
{
    char money[40], text[300];

    (void)ctx;
    if (status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("acct-balance", text);
        return;
    }
    format_money(json_int(json_get(reply, "balance"), 0), money,
                 sizeof(money));
    dom_set_text("acct-balance", money);
}

static void on_ledger(int status, const struct json *reply, void *ctx)
{
    const struct json *entries = json_get(reply, "entries");
    char text[300];
    int row = 0;

    (void)ctx;
    dom_clear("ledger-rows");
    if (status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("ledger-error", text);
        return;
    }
    /* Newest first, because the latest movements matter most. */
    for (size_t i = entries ? entries->count : 0; i-- > 0;) {
        const struct json *e = json_at(entries, i);
        char id[40], cell[40], money[40];

        if (!screen.ledger_all && row >= LEDGER_ROWS_SHOWN)
            break;
        snprintf(id, sizeof(id), "ledger-row-%d", row);
        dom_create("tr", "ledger-rows", id, NULL);
        format_time(json_int(json_get(e, "created_at"), 0), text,
                    sizeof(text));
        dom_element("td", id, NULL, "nowrap", text);
        dom_create("td", id, NULL, json_string(json_get(e, "kind"), ""));
        dom_create("td", id, NULL,
                   json_string(json_get(e, "description"), ""));
        format_money(json_int(json_get(e, "amount"), 0), money,
                     sizeof(money));
        snprintf(cell, sizeof(cell), "ledger-amount-%d", row);
        dom_element("td", id, cell, "num", money);
        format_money(json_int(json_get(e, "balance_after"), 0), money,
                     sizeof(money));
        dom_element("td", id, NULL, "num", money);
        row++;
    }
    snprintf(text, sizeof(text), "%zu", entries ? entries->count : 0);
    dom_set_attr("ledger-rows", "data-rows", text);
    if (row == 0)
        dom_set_text("ledger-error", "No money movements yet.");
    else
        dom_set_text("ledger-error", "");
    if (entries != NULL && (size_t)row < entries->count) {
        dom_textf("ledger-more", "Show all %zu rows", entries->count);
        dom_set_class("ledger-more", "hidden", 0);
    } else {
        dom_set_class("ledger-more", "hidden", 1);
    }
}

static void click_ledger_more(void *ctx)
{
    (void)ctx;
    screen.ledger_all = 1;
    api_get("/ledger", on_ledger, NULL);
}

static void on_revoked(int status, const struct json *reply, void *ctx)
{
    char text[300];

    (void)ctx;
    if (status != 204 && status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("key-error", text);
    }
    api_get("/apikeys", on_keys, NULL);
}

static void click_revoke(void *ctx)
{
    size_t i = (size_t)(uintptr_t)ctx;
    char id[40], path[40];

    snprintf(id, sizeof(id), "key-revoke-%" PRId64, screen.key_ids[i]);
    if (!screen.armed[i]) {
        screen.armed[i] = 1;
        dom_set_text(id, "Confirm revoke");
        return;
    }
    dom_set_disabled(id, 1);
    snprintf(path, sizeof(path), "/apikeys/%" PRId64, screen.key_ids[i]);
    api_delete(path, on_revoked, NULL);
}

static void on_keys(int status, const struct json *reply, void *ctx)
{
    const struct json *keys = json_get(reply, "api_keys");
    char text[300];

    (void)ctx;
    dom_clear("key-list");
    screen.key_count = 0;
    if (status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("key-error", text);
        return;
    }
    for (const struct json *k = keys ? keys->child : NULL; k != NULL;
         k = k->next) {
        int64_t id = json_int(json_get(k, "id"), 0);
        const struct json *revoked = json_get(k, "revoked_at");
        const struct json *used = json_get(k, "last_used_at");
        int is_revoked = revoked != NULL && revoked->type == JSON_NUMBER;
        char li[40], button[40], created[40], last[40];
        size_t i = screen.key_count;

        format_time(json_int(json_get(k, "created_at"), 0), created,
                    sizeof(created));
        if (used != NULL && used->type == JSON_NUMBER)
            format_time(json_int(used, 0), last, sizeof(last));
        else
            snprintf(last, sizeof(last), "never");
        snprintf(li, sizeof(li), "key-%" PRId64, id);
        snprintf(text, sizeof(text), "%s (%s...), created %s, last used %s%s ",
                 json_string(json_get(k, "name"), "?"),
                 json_string(json_get(k, "prefix"), "?"), created, last,
                 is_revoked ? ", revoked" : "");
        dom_create("li", "key-list", li, text);
        dom_set_attr(li, "data-revoked", is_revoked ? "1" : "0");
        if (is_revoked || i >= MAX_KEYS)
            continue;
        screen.key_ids[i] = id;
        screen.armed[i] = 0;
        screen.key_count++;
        snprintf(button, sizeof(button), "key-revoke-%" PRId64, id);
        dom_element("button", li, button, "small danger", "Revoke");
        dom_set_attr(button, "type", "button");
        dom_on(button, "click", click_revoke, (void *)(uintptr_t)i);
    }
    if (keys == NULL || keys->count == 0)
        dom_element("li", "key-list", NULL, "muted", "No API keys yet.");
}

static void on_key_created(int status, const struct json *reply, void *ctx)
{
    char text[300];

    (void)ctx;
    dom_set_disabled("key-submit", 0);
    if (status != 201) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text("key-error", text);
        return;
    }
    dom_set_text("key-error", "");
    dom_set_value("key-name", "");
    dom_set_class("key-new", "hidden", 0);
    dom_set_text("key-new-value", json_string(json_get(reply, "key"), ""));
    dom_focus("key-new-value");
    api_get("/apikeys", on_keys, NULL);
}

static void submit_key(void *ctx)
{
    char name[100], name_json[220], body[260];

    (void)ctx;
    dom_get_value("key-name", name, sizeof(name));
    if (name[0] == '\0' || strlen(name) > 64) {
        dom_set_text("key-error", "Enter a key name of 1 to 64 characters, "
                                  "such as \"laptop\".");
        return;
    }
    json_quote(name, name_json, sizeof(name_json));
    snprintf(body, sizeof(body), "{\"name\":%s}", name_json);
    dom_set_disabled("key-submit", 1);
    api_post("/apikeys", body, on_key_created, NULL);
}

static void on_topped_up(int64_t balance)
{
    char money[40];

    format_money(balance, money, sizeof(money));
    dom_set_text("acct-balance", money);
    api_get("/ledger", on_ledger, NULL);
}

static void load_account(void)
{
    api_get("/balance", on_balance, NULL);
    api_get("/ledger", on_ledger, NULL);
    api_get("/apikeys", on_keys, NULL);
}

static void build_ledger(void)
{
    dom_element("section", "view", "ledger", "card", NULL);
    dom_create("h2", "ledger", NULL, "Ledger");
    dom_element("p", "ledger", "ledger-error", "muted", NULL);
    dom_element("div", "ledger", "ledger-scroll", "scroll", NULL);
    dom_create("table", "ledger-scroll", "ledger-table", NULL);
    dom_create("thead", "ledger-table", "ledger-head", NULL);
    dom_create("tr", "ledger-head", "ledger-head-row", NULL);
    dom_create("th", "ledger-head-row", NULL, "Time");
    dom_create("th", "ledger-head-row", NULL, "Kind");
    dom_create("th", "ledger-head-row", NULL, "Description");
    dom_element("th", "ledger-head-row", NULL, "num", "Amount");
    dom_element("th", "ledger-head-row", NULL, "num", "Balance");
    dom_create("tbody", "ledger-table", "ledger-rows", NULL);
    dom_element("p", "ledger", "ledger-links", "buttons", NULL);
    dom_element("button", "ledger-links", "ledger-more", "secondary hidden",
                "Show all rows");
    dom_set_attr("ledger-more", "type", "button");
    dom_on("ledger-more", "click", click_ledger_more, NULL);
    dom_element("a", "ledger-links", "statement-csv", "button",
                "Statement CSV");
    dom_set_attr("statement-csv", "href", "/api/v1/statement.csv");
    dom_set_attr("statement-csv", "download", "");
    dom_element("a", "ledger-links", "statement-pdf", "button",
                "Statement PDF");
    dom_set_attr("statement-pdf", "href", "/api/v1/statement.pdf");
    dom_set_attr("statement-pdf", "download", "");
}

static void build_keys(void)
{
    dom_element("section", "view", "keys", "card", NULL);
    dom_create("h2", "keys", "keys-title", "API keys");
    dom_element("p", "keys", NULL, "muted",
                "Scripts send a key as \"Authorization: Bearer KEY\".");
    dom_element("ul", "keys", "key-list", "list", NULL);
    dom_element("form", "keys", "key-form", "grid", NULL);
    dom_set_attr("key-form", "aria-label", "Create an API key");
    dom_input("key-form", "key-name", "Key name", "text", NULL);
    dom_set_attr("key-name", "maxlength", "64");
    dom_element("div", "key-form", "key-buttons", "field", NULL);
    dom_element("button", "key-buttons", "key-submit", NULL, "Create key");
    dom_set_attr("key-submit", "type", "submit");
    dom_element("p", "key-form", "key-error", "error wide", NULL);
    dom_set_attr("key-error", "role", "alert");
    dom_on("key-form", "submit", submit_key, NULL);
    dom_element("div", "keys", "key-new", "warning hidden", NULL);
    dom_create("p", "key-new", "key-new-label",
               "Your new key. Copy it now: it is not shown again.");
    dom_element("output", "key-new", "key-new-value", "secret", NULL);
    dom_set_attr("key-new-value", "tabindex", "0");
    dom_set_attr("key-new-value", "aria-labelledby", "key-new-label");
}

void view_account_show(void)
{
    memset(&screen, 0, sizeof(screen));
    dom_element("section", "view", "acct", "card", NULL);
    dom_create("h1", "acct", NULL, "Account");
    dom_create("h2", "acct", NULL, "Balance");
    dom_element("p", "acct", "acct-balance", "big", "...");
    dom_create("h3", "acct", NULL, "Top up");
    topup_form("acct", "acct-topup", "20.00", on_topped_up);

    build_ledger();
    build_keys();
    load_account();
}
