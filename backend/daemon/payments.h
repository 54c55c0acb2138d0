/*
 * Payment providers: where money from outside enters the ledger.
 *
 * A provider is a struct with a charge function. The backend calls it to
 * charge a card (or a token that the provider's own payment form created)
 * and writes a ledger row only when the provider approves. Two providers
 * come with Trainyard:
 *
 *   "test"      labelled TEST: it moves no real money and exists for
 *               development and demos. It approves 4242 4242 4242 4242,
 *               declines 4000 0000 0000 0002 with "card declined", and
 *               rejects numbers that fail the Luhn check digit test.
 *   "operator"  takes no card payments; an admin grants credit with
 *               payments_credit.
 *
 * A real card processor plugs in as one more struct payment_provider whose
 * charge function calls the processor's API, passing the idempotency key
 * on so that a retried request charges the card once (docs/BILLING.md).
 *
 * Card numbers are never stored or logged; logs show the last 4 digits.
 */
#ifndef TRAINYARD_PAYMENTS_H
#define TRAINYARD_PAYMENTS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "ledger.h"
#include "store.h"

/* Limits of one top-up, inclusive: $1.00 to $10,000.00. */
#define PAYMENT_TOPUP_MIN (1 * MICRO_PER_DOLLAR)
#define PAYMENT_TOPUP_MAX (10000 * MICRO_PER_DOLLAR)
/* Largest operator credit and largest timed prepayment: $10,000.00. */
#define PAYMENT_CREDIT_MAX (10000 * MICRO_PER_DOLLAR)
#define PAYMENT_PREPAY_MAX (10000 * MICRO_PER_DOLLAR)

enum payment_status {
    PAYMENT_APPROVED,
    PAYMENT_DECLINED, /* the card is valid, but the issuer declined it */
    PAYMENT_INVALID,  /* the request is malformed: card number, amount */
};

struct payment_result {
    enum payment_status status;
    char message[256];  /* for the user: "approved", "card declined", ... */
    char reference[96]; /* the provider's id of the charge, for support */
};

struct payment_provider {
    const char *name;  /* "test", "operator", or a processor's name */
    const char *label; /* shown to users next to every payment form */
    int is_test;       /* 1: no real money moves */
    /* Charge amount micro-dollars to card, a card number or a token of
     * the provider. Returns 0 with the outcome in *result. Returns a
     * negative error when the provider could not be reached, and then the
     * caller may retry with the same idempotency_key. */
    int (*charge)(const struct payment_provider *provider, int64_t amount,
                  const char *card, const char *idempotency_key,
                  struct payment_result *result, struct error *err);
    void *context; /* the provider's own state, such as an API client */
};

extern const struct payment_provider payment_provider_test;
extern const struct payment_provider payment_provider_operator;

/* The built-in provider with this name, or NULL. */
const struct payment_provider *payments_provider(const char *name);

/* 1 when digits (only '0' to '9') pass the Luhn check digit test. */
int payments_luhn_valid(const char *digits);

/* Check that amount is a valid top-up: PAYMENT_TOPUP_MIN to
 * PAYMENT_TOPUP_MAX. Fails with -EINVAL naming the amount. */
int payments_check_topup_amount(int64_t amount, struct error *err);

/* Charge card through provider and, when it approves, append a LEDGER_TOPUP
 * of amount with idempotency_key (required: one per payment form). A
 * retry with a key that is already in the ledger charges nothing and
 * returns 0. Fails with -EINVAL for an invalid amount or card, -EACCES
 * when the provider declines, or the provider's error when it could not
 * be reached. */
int payments_topup(struct store *st, const struct payment_provider *provider,
                   int64_t account_id, int64_t amount, const char *card,
                   const char *idempotency_key, struct error *err);

/* Pay for timed training now ("pay now"): charge price to card through
 * provider and, when it approves, record it with billing_pay_timed_tx
 * (prepaid). A session that is paid already is not charged again. Errors
 * as payments_topup. */
int payments_pay_timed(struct store *st,
                       const struct payment_provider *provider,
                       int64_t account_id, int64_t session_id, int64_t model_id,
                       int64_t price, int64_t rate, const char *card,
                       struct error *err);

/* Grant amount (1 micro-dollar to PAYMENT_CREDIT_MAX) to account_id as a
 * LEDGER_CREDIT from the operator. admin_id must be an admin (-EPERM
 * otherwise); description, the reason, is required and stored with the
 * admin's id. idempotency_key may be NULL. */
int payments_credit(struct store *st, int64_t admin_id, int64_t account_id,
                    int64_t amount, const char *description,
                    const char *idempotency_key, struct error *err);

#endif
