/*
 * The built-in payment providers and the flows that turn an approved
 * payment into a ledger row.
 *
 * A provider is called outside any database transaction, because a real
 * processor responds over the network and SQLite's write lock must not wait
 * for it. The flows therefore run in three steps: look the idempotency key
 * up (a retry after success stops here, without charging), charge, then
 * append the row in its own transaction, where the UNIQUE key turns a
 * concurrent duplicate into a no-op. Between the charge and the append a
 * crash can leave a charge without a row. A real processor that honours
 * the idempotency key then returns the first charge's approval when the
 * client retries, so the retry records it without charging again.
 */
#include "payments.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "auth_store.h"
#include "log.h"

#define CARD_DIGITS_MIN 12
#define CARD_DIGITS_MAX 19
#define CREDIT_DESCRIPTION_MAX 800

static void set_result(struct payment_result *result,
                       enum payment_status status, const char *message)
{
    result->status = status;
    snprintf(result->message, sizeof(result->message), "%s", message);
}

int payments_luhn_valid(const char *digits)
{
    size_t len = strlen(digits);
    int sum = 0;

    if (len == 0)
        return 0;
    /* From the right, double every second digit; a doubled digit above 9
     * counts as the sum of its two digits (d * 2 - 9). */
    for (size_t i = 0; i < len; i++) {
        char c = digits[len - 1 - i];
        int d;

        if (c < '0' || c > '9')
            return 0;
        d = c - '0';
        if (i % 2 == 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return sum % 10 == 0;
}

/* Copy the digits of card into digits (CARD_DIGITS_MAX + 1 bytes),
 * skipping spaces. Returns 0, or -1 with the reason in *result. */
static int card_digits(const char *card, char *digits,
                       struct payment_result *result)
{
    char message[160];
    size_t count = 0;

    if (card == NULL || card[0] == '\0') {
        set_result(result, PAYMENT_INVALID,
                   "card number is missing; enter the digits on the card");
        return -1;
    }
    for (const char *p = card; *p != '\0'; p++) {
        if (*p == ' ')
            continue;
        if (*p < '0' || *p > '9') {
            snprintf(message, sizeof(message),
                     "card number contains '%c', which is not a digit; "
                     "enter digits only (spaces are allowed)",
                     (*p > ' ' && *p < 0x7f) ? *p : '?');
            set_result(result, PAYMENT_INVALID, message);
            return -1;
        }
        if (count < CARD_DIGITS_MAX)
            digits[count] = *p;
        count++;
    }
    if (count < CARD_DIGITS_MIN || count > CARD_DIGITS_MAX) {
        snprintf(message, sizeof(message),
                 "card number has %zu digits; card numbers have %d to %d",
                 count, CARD_DIGITS_MIN, CARD_DIGITS_MAX);
        set_result(result, PAYMENT_INVALID, message);
        return -1;
    }
    digits[count] = '\0';
    if (!payments_luhn_valid(digits)) {
        set_result(result, PAYMENT_INVALID,
                   "card number fails the check digit (Luhn) test; check "
                   "it for a typo");
        return -1;
    }
    return 0;
}

/* Last 4 digits of a card for logs, or "-" when there are fewer. */
static void card_last4(const char *card, char out[5])
{
    int missing = 4;

    out[4] = '\0';
    for (size_t i = card ? strlen(card) : 0; i > 0 && missing > 0; i--) {
        if (card[i - 1] >= '0' && card[i - 1] <= '9')
            out[--missing] = card[i - 1];
    }
    if (missing > 0)
        snprintf(out, 5, "-");
}

static int test_charge(const struct payment_provider *provider, int64_t amount,
                       const char *card, const char *idempotency_key,
                       struct payment_result *result, struct error *err)
{
    char digits[CARD_DIGITS_MAX + 1];

    (void)provider;
    (void)err;
    memset(result, 0, sizeof(*result));
    if (amount <= 0) {
        set_result(result, PAYMENT_INVALID,
                   "amount must be positive; enter the amount to pay");
        return 0;
    }
    if (card_digits(card, digits, result) != 0)
        return 0;

    if (strcmp(digits, "4242424242424242") == 0) {
        set_result(result, PAYMENT_APPROVED, "approved (TEST, no real money)");
        snprintf(result->reference, sizeof(result->reference), "test:%.80s",
                 idempotency_key ? idempotency_key : "-");
    } else if (strcmp(digits, "4000000000000002") == 0) {
        set_result(result, PAYMENT_DECLINED, "card declined");
    } else {
        set_result(result, PAYMENT_DECLINED,
                   "the TEST provider approves only card 4242 4242 4242 "
                   "4242 and declines 4000 0000 0000 0002; it charges no "
                   "real card");
    }
    return 0;
}

static int operator_charge(const struct payment_provider *provider,
                           int64_t amount, const char *card,
                           const char *idempotency_key,
                           struct payment_result *result, struct error *err)
{
    (void)provider;
    (void)amount;
    (void)card;
    (void)idempotency_key;
    (void)err;
    memset(result, 0, sizeof(*result));
    set_result(result, PAYMENT_INVALID,
               "the operator provider takes no card payments; ask an admin "
               "to grant credit");
    return 0;
}

const struct payment_provider payment_provider_test = {
    .name = "test",
    .label = "TEST payments: no real money moves; for development and "
             "demos only",
    .is_test = 1,
    .charge = test_charge,
};

const struct payment_provider payment_provider_operator = {
    .name = "operator",
    .label = "Operator credit: granted by an admin, no card payment",
    .is_test = 0,
    .charge = operator_charge,
};

const struct payment_provider *payments_provider(const char *name)
{
    if (name == NULL)
        return NULL;
    if (strcmp(name, payment_provider_test.name) == 0)
        return &payment_provider_test;
    if (strcmp(name, payment_provider_operator.name) == 0)
        return &payment_provider_operator;
    return NULL;
}

int payments_check_topup_amount(int64_t amount, struct error *err)
{
    char amount_text[32], min_text[32], max_text[32];

    if (amount >= PAYMENT_TOPUP_MIN && amount <= PAYMENT_TOPUP_MAX)
        return 0;
    billing_format_usd(amount, amount_text, sizeof(amount_text));
    billing_format_usd(PAYMENT_TOPUP_MIN, min_text, sizeof(min_text));
    billing_format_usd(PAYMENT_TOPUP_MAX, max_text, sizeof(max_text));
    return error_set(
        err, -EINVAL,
        "top-up amount %s is %s the %s of %s; enter between %s "
        "and %s",
        amount_text, amount < PAYMENT_TOPUP_MIN ? "below" : "above",
        amount < PAYMENT_TOPUP_MIN ? "minimum" : "maximum",
        amount < PAYMENT_TOPUP_MIN ? min_text : max_text, min_text, max_text);
}

/* Look up key. Returns 1 when a row of kind for account_id has it (a
 * retry), 0 when none has it, or a negative error, -EEXIST when another
 * account's row or another kind has it. */
static int find_retry(struct store *st, const char *key, int64_t account_id,
                      enum ledger_kind kind, struct error *err)
{
    struct ledger_row row;
    int rc = ledger_find_key(st, key, &row, err);

    if (rc <= 0)
        return rc;
    if (row.account_id != account_id || row.kind != kind)
        return error_set(err, -EEXIST,
                         "idempotency key '%s' belongs to another payment "
                         "(ledger row %lld); use a new key for this one",
                         key, (long long)row.id);
    log_info("payment retry: key exists, nothing charged account=%lld "
             "key=%s row=%lld",
             (long long)account_id, key, (long long)row.id);
    return 1;
}

/* Charge card through provider and turn a declined or invalid outcome into
 * an error. */
static int charge_card(const struct payment_provider *provider,
                       int64_t account_id, int64_t amount, const char *card,
                       const char *key, struct payment_result *result,
                       struct error *err)
{
    char amount_text[32], last4[5];
    int rc;

    memset(result, 0, sizeof(*result));
    card_last4(card, last4);
    rc = provider->charge(provider, amount, card, key, result, err);
    if (rc != 0) {
        log_error("payment failed provider=%s account=%lld card_last4=%s "
                  "key=%s: %s",
                  provider->name, (long long)account_id, last4, key,
                  err ? err->msg : "");
        return rc;
    }

    billing_format_usd(amount, amount_text, sizeof(amount_text));
    log_info("payment %s provider=%s%s account=%lld amount=%s "
             "card_last4=%s key=%s",
             result->status == PAYMENT_APPROVED   ? "approved"
             : result->status == PAYMENT_DECLINED ? "declined"
                                                  : "rejected as invalid",
             provider->name, provider->is_test ? " (TEST)" : "",
             (long long)account_id, amount_text, last4, key);
    switch (result->status) {
    case PAYMENT_APPROVED:
        return 0;
    case PAYMENT_DECLINED:
        return error_set(err, -EACCES,
                         "payment of %s declined by the %s provider: %s; "
                         "use another card",
                         amount_text, provider->name, result->message);
    default:
        return error_set(err, -EINVAL, "payment of %s rejected: %s",
                         amount_text, result->message);
    }
}

static int check_provider(const struct payment_provider *provider,
                          const char *key, struct error *err)
{
    if (provider == NULL || provider->charge == NULL)
        return error_set(err, -EINVAL,
                         "payment provider is missing; configure one, such "
                         "as \"test\"");
    if (key == NULL || key[0] == '\0')
        return error_set(err, -EINVAL,
                         "idempotency key is missing; generate one per "
                         "payment form so that a retry does not charge "
                         "twice");
    return 0;
}

/* Report a charge that went through while its ledger row did not, so that
 * an operator can reconcile it with the provider. */
static void log_unrecorded(const struct payment_provider *provider,
                           int64_t account_id, int64_t amount,
                           const struct payment_result *result, const char *key,
                           const struct error *err)
{
    char amount_text[32];

    log_error("payment approved but not recorded provider=%s account=%lld "
              "amount=%s reference=%s key=%s: %s; retry with the same key "
              "or reconcile with the provider",
              provider->name, (long long)account_id,
              billing_format_usd(amount, amount_text, sizeof(amount_text)),
              result->reference, key, err ? err->msg : "");
}

int payments_topup(struct store *st, const struct payment_provider *provider,
                   int64_t account_id, int64_t amount, const char *card,
                   const char *idempotency_key, struct error *err)
{
    struct payment_result result;
    struct ledger_entry e;
    char description[256], last4[5];
    int64_t balance;
    int rc;

    rc = check_provider(provider, idempotency_key, err);
    if (rc == 0)
        rc = payments_check_topup_amount(amount, err);
    if (rc == 0)
        rc = ledger_balance(st, account_id, &balance, err);
    if (rc != 0)
        return rc;

    rc = find_retry(st, idempotency_key, account_id, LEDGER_TOPUP, err);
    if (rc != 0)
        return rc < 0 ? rc : 0;

    rc = charge_card(provider, account_id, amount, card, idempotency_key,
                     &result, err);
    if (rc != 0)
        return rc;

    card_last4(card, last4);
    snprintf(description, sizeof(description),
             "%stop-up through provider %s, card ending %s, reference %s",
             provider->is_test ? "TEST " : "", provider->name, last4,
             result.reference[0] ? result.reference : "-");
    e = (struct ledger_entry){
        .account_id = account_id,
        .kind = LEDGER_TOPUP,
        .amount = amount,
        .idempotency_key = idempotency_key,
        .description = description,
    };
    rc = ledger_append(st, &e, NULL, NULL, err);
    if (rc != 0)
        log_unrecorded(provider, account_id, amount, &result, idempotency_key,
                       err);
    return rc;
}

int payments_pay_timed(struct store *st,
                       const struct payment_provider *provider,
                       int64_t account_id, int64_t session_id, int64_t model_id,
                       int64_t price, int64_t rate, const char *card,
                       struct error *err)
{
    struct payment_result result;
    char key[64], price_text[32], max_text[32];
    int rc;

    snprintf(key, sizeof(key), "timed:%lld:pay", (long long)session_id);
    rc = check_provider(provider, key, err);
    if (rc != 0)
        return rc;
    if (price <= 0 || price > PAYMENT_PREPAY_MAX)
        return error_set(
            err, -EINVAL,
            "price %s of session %lld cannot be paid now; pay "
            "more than $0.00 and at most %s, or pay from the "
            "balance",
            billing_format_usd(price, price_text, sizeof(price_text)),
            (long long)session_id,
            billing_format_usd(PAYMENT_PREPAY_MAX, max_text, sizeof(max_text)));

    rc = find_retry(st, key, account_id, LEDGER_CHARGE, err);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    rc = charge_card(provider, account_id, price, card, key, &result, err);
    if (rc != 0)
        return rc;

    rc = store_begin(st, err);
    if (rc == 0)
        rc = billing_pay_timed_tx(st, account_id, session_id, model_id, price,
                                  rate, 1, err);
    if (rc == 0)
        rc = store_commit(st, err);
    if (rc != 0) {
        store_rollback(st);
        log_unrecorded(provider, account_id, price, &result, key, err);
    }
    return rc;
}

int payments_credit(struct store *st, int64_t admin_id, int64_t account_id,
                    int64_t amount, const char *description,
                    const char *idempotency_key, struct error *err)
{
    char amount_text[32], max_text[32], text[CREDIT_DESCRIPTION_MAX + 64];
    struct ledger_entry e;
    int64_t id;
    int duplicate, rc;

    if (amount <= 0 || amount > PAYMENT_CREDIT_MAX)
        return error_set(
            err, -EINVAL,
            "credit of %s is invalid; grant more than $0.00 "
            "and at most %s",
            billing_format_usd(amount, amount_text, sizeof(amount_text)),
            billing_format_usd(PAYMENT_CREDIT_MAX, max_text, sizeof(max_text)));
    if (description == NULL || description[0] == '\0' ||
        strlen(description) > CREDIT_DESCRIPTION_MAX)
        return error_set(err, -EINVAL,
                         "credit reason is missing or longer than %d bytes; "
                         "describe why the credit is granted",
                         CREDIT_DESCRIPTION_MAX);

    /* NOTE: the ledger has no column for the admin, so the admin's id is
     * kept in the description, in this fixed form. */
    snprintf(text, sizeof(text), "credit by admin %lld: %s",
             (long long)admin_id, description);
    e = (struct ledger_entry){
        .account_id = account_id,
        .kind = LEDGER_CREDIT,
        .amount = amount,
        .idempotency_key = idempotency_key,
        .description = text,
    };

    rc = store_begin(st, err);
    if (rc != 0)
        return rc;
    rc = auth_account_require_admin(st, admin_id, "grant credit", err);
    if (rc == 0)
        rc = ledger_append_tx(st, &e, &id, &duplicate, err);
    if (rc == 0)
        rc = store_commit(st, err);
    if (rc != 0) {
        store_rollback(st);
        return rc;
    }
    if (!duplicate)
        log_info("operator credit granted admin=%lld account=%lld amount=%s "
                 "row=%lld",
                 (long long)admin_id, (long long)account_id,
                 billing_format_usd(amount, amount_text, sizeof(amount_text)),
                 (long long)id);
    return 0;
}
