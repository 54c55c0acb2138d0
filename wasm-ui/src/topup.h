/*
 * The top-up form, shown on the account screen, in the Train Model
 * dialog and on a model paused for balance: an amount in dollars, a card
 * number and a Top up button that posts to /topup. Each form has its own
 * idempotency key, so a double click or a retried request charges the
 * card once. A new key is drawn after each approved top-up.
 */
#ifndef TRAINYARD_UI_TOPUP_H
#define TRAINYARD_UI_TOPUP_H

#include <stdint.h>

/* Build the form under parent_id. Its element ids start with prefix
 * ("PREFIX-amount", "PREFIX-card", "PREFIX-submit", "PREFIX-message").
 * on_done gets the new balance in micro-dollars after an approved top-up.
 * At most 4 forms exist at once; a form with a prefix in use replaces
 * the old one. */
void topup_form(const char *parent_id, const char *prefix,
                const char *amount, void (*on_done)(int64_t balance));

/* Parse dollars such as "20", "20.5" or "$1,000.25" into micro-dollars.
 * Returns 0, or -1 when text is not an amount with at most 6 decimals. */
int parse_money(const char *text, int64_t *micros);

#endif
