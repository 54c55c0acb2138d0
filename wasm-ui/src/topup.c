/*
 * The top-up form. The card number goes only to POST /topup, which the
 * gateway forwards to the payment provider; the form clears it after an
 * approved top-up.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "dom.h"
#include "topup.h"

#define FORMS_MAX 4
/* The gateway's range for one top-up, in micro-dollars. */
#define TOPUP_MIN 1000000
#define TOPUP_MAX 10000000000LL

struct topup {
    char prefix[24];
    char key[33];
    void (*on_done)(int64_t balance);
};

static struct topup forms[FORMS_MAX];
static size_t next_slot;

int parse_money(const char *text, int64_t *micros)
{
    int64_t whole = 0, fraction = 0;
    int digits = 0, decimals = -1;

    while (*text == ' ')
        text++;
    if (*text == '$')
        text++;
    for (; *text != '\0' && *text != ' '; text++) {
        if (*text == ',' && decimals < 0)
            continue;
        if (*text == '.' && decimals < 0) {
            decimals = 0;
            continue;
        }
        if (*text < '0' || *text > '9')
            return -1;
        if (decimals >= 0) {
            if (++decimals > 6)
                return -1;
            fraction = fraction * 10 + (*text - '0');
        } else {
            if (whole > 1000000000000LL)
                return -1;
            whole = whole * 10 + (*text - '0');
        }
        digits++;
    }
    while (*text == ' ')
        text++;
    if (digits == 0 || *text != '\0')
        return -1;
    for (int i = decimals < 0 ? 0 : decimals; i < 6; i++)
        fraction *= 10;
    *micros = whole * 1000000 + fraction;
    return 0;
}

static void element_id(const struct topup *form, const char *suffix,
                       char *buf, size_t size)
{
    snprintf(buf, size, "%s-%s", form->prefix, suffix);
}

static void on_topup(int status, const struct json *reply, void *ctx)
{
    struct topup *form = ctx;
    char id[48], text[300], money[40];
    int64_t balance;

    element_id(form, "submit", id, sizeof(id));
    dom_set_disabled(id, 0);
    element_id(form, "message", id, sizeof(id));
    if (status != 200) {
        api_error_text(status, reply, text, sizeof(text));
        dom_set_text(id, text);
        dom_set_attr(id, "class", "error wide");
        return;
    }
    balance = json_int(json_get(reply, "balance"), 0);
    format_money(balance, money, sizeof(money));
    dom_textf(id, "Top-up approved. Your balance is %s.", money);
    dom_set_attr(id, "class", "ok wide");
    random_hex(form->key, sizeof(form->key));
    element_id(form, "card", id, sizeof(id));
    dom_set_value(id, "");
    if (form->on_done != NULL)
        form->on_done(balance);
}

static void submit_topup(void *ctx)
{
    struct topup *form = ctx;
    char id[48], amount[40], card[64], card_json[140], body[300];
    int64_t micros;

    element_id(form, "amount", id, sizeof(id));
    dom_get_value(id, amount, sizeof(amount));
    element_id(form, "card", id, sizeof(id));
    dom_get_value(id, card, sizeof(card));
    element_id(form, "message", id, sizeof(id));
    dom_set_attr(id, "class", "error wide");
    if (parse_money(amount, &micros) != 0 || micros < TOPUP_MIN ||
        micros > TOPUP_MAX) {
        dom_textf(id, "Amount \"%s\" is invalid. Enter dollars from 1.00 "
                      "to 10000.00, such as 20.00.", amount);
        return;
    }
    if (card[0] == '\0') {
        dom_set_text(id, "Enter a card number.");
        return;
    }
    json_quote(card, card_json, sizeof(card_json));
    snprintf(body, sizeof(body),
             "{\"amount\":%" PRId64 ",\"card\":%s,\"idempotency_key\":\"%s\"}",
             micros, card_json, form->key);
    dom_set_text(id, "Charging the card...");
    dom_set_attr(id, "class", "muted wide");
    element_id(form, "submit", id, sizeof(id));
    dom_set_disabled(id, 1);
    api_post("/topup", body, on_topup, form);
}

void topup_form(const char *parent_id, const char *prefix,
                const char *amount, void (*on_done)(int64_t balance))
{
    struct topup *form = NULL;
    char id[48], label[48];

    for (size_t i = 0; i < FORMS_MAX; i++)
        if (strcmp(forms[i].prefix, prefix) == 0)
            form = &forms[i];
    if (form == NULL) {
        form = &forms[next_slot];
        next_slot = (next_slot + 1) % FORMS_MAX;
    }
    snprintf(form->prefix, sizeof(form->prefix), "%s", prefix);
    random_hex(form->key, sizeof(form->key));
    form->on_done = on_done;

    element_id(form, "form", id, sizeof(id));
    dom_element("form", parent_id, id, "grid", NULL);
    dom_set_attr(id, "aria-label", "Top up the balance");
    element_id(form, "amount", label, sizeof(label));
    dom_input(id, label, "Amount (USD)", "text", amount);
    dom_set_attr(label, "inputmode", "decimal");
    element_id(form, "card", label, sizeof(label));
    dom_input(id, label, "Card number", "text", NULL);
    dom_set_attr(label, "inputmode", "numeric");
    dom_set_attr(label, "autocomplete", "cc-number");
    element_id(form, "message", label, sizeof(label));
    dom_element("p", id, label, "muted wide", NULL);
    dom_set_attr(label, "role", "status");
    element_id(form, "submit", label, sizeof(label));
    dom_element("button", id, label, "wide", "Top up");
    dom_set_attr(label, "type", "submit");
    dom_on(id, "submit", submit_topup, form);
}
