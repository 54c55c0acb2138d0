/*
 * Money: the append-only ledger and the billing rules that write to it.
 *
 * Amounts are int64 micro-dollars (1 USD = 1,000,000). The balance of an
 * account is the balance_after of its newest ledger row (0 without rows),
 * which always equals the sum of its amounts, and never goes below zero:
 * the schema's CHECK rejects such a row. Every row that a retry, crash or
 * resume could write twice carries an idempotency key under a UNIQUE
 * constraint, so the second write is a no-op that reports the first.
 *
 * Functions named *_tx run inside a transaction the caller has open (BEGIN
 * IMMEDIATE), so that a charge and the state change it belongs to commit
 * together; the others open and commit their own.
 */
#ifndef TRAINYARD_LEDGER_H
#define TRAINYARD_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "store.h"

#define MICRO_PER_DOLLAR 1000000LL
/* Epoch training needs this balance to start: $5.00. */
#define EPOCH_START_MINIMUM (5 * MICRO_PER_DOLLAR)

enum ledger_kind {
    LEDGER_TOPUP,      /* money in through a payment provider */
    LEDGER_PREPAYMENT, /* timed training paid now, through a provider */
    LEDGER_CHARGE,     /* training time used */
    LEDGER_REFUND,     /* unused timed training returned */
    LEDGER_CREDIT,     /* granted by an operator */
};

struct ledger_entry {
    int64_t account_id;
    enum ledger_kind kind;
    int64_t amount;           /* > 0 adds, < 0 takes */
    const char *idempotency_key; /* NULL: none */
    int64_t session_id;       /* 0: none */
    int64_t model_id;         /* 0: none */
    int epoch;                /* 0: none */
    int64_t rate;             /* price per hour used; 0: none */
    double seconds;           /* time charged; 0: none */
    const char *description;
};

/* A stored ledger row. In ledger_foreach the strings point into SQLite's
 * memory and stay valid only during the callback; ledger_find_key sets
 * them to NULL. */
struct ledger_row {
    int64_t id;
    int64_t account_id;
    enum ledger_kind kind;
    int64_t amount;
    int64_t balance_after;
    const char *idempotency_key; /* NULL: none */
    int64_t session_id;          /* 0: none */
    int64_t model_id;            /* 0: none */
    int epoch;                   /* 0: none */
    int64_t rate;                /* 0: none */
    double seconds;              /* 0: none */
    const char *description;
    int64_t created_at;          /* Unix time, ms */
};

/* Name of kind as the schema spells it ("topup", "charge", ...). */
const char *ledger_kind_name(enum ledger_kind kind);

/* Parse a schema kind name; returns 0, or -EINVAL for an unknown name. */
int ledger_kind_parse(const char *name, enum ledger_kind *kind);

/* Look up the row that carries idempotency key `key`. Returns 1 and fills
 * *row when it exists, 0 when it does not, or a negative error. */
int ledger_find_key(struct store *st, const char *key, struct ledger_row *row,
                    struct error *err);

/* Call fn for each row of an account, oldest first. A non-zero return
 * from fn stops the walk and is returned. */
int ledger_foreach(struct store *st, int64_t account_id,
                   int (*fn)(const struct ledger_row *row, void *ctx),
                   void *ctx, struct error *err);

/* Current balance of an account. */
int ledger_balance(struct store *st, int64_t account_id, int64_t *balance,
                   struct error *err);

/* Append e. When its idempotency key exists already, nothing is written,
 * *id is the existing row and *duplicate is 1. A row that would take the
 * balance below zero fails with -ENOSPC and a message naming the balance
 * and the amount. */
int ledger_append_tx(struct store *st, const struct ledger_entry *e,
                     int64_t *id, int *duplicate, struct error *err);
int ledger_append(struct store *st, const struct ledger_entry *e,
                  int64_t *id, int *duplicate, struct error *err);

/* Cost of seconds of training at rate micro-dollars per hour, rounded to
 * the nearest micro-dollar, halves up (docs/BILLING.md). */
int64_t billing_cost(double seconds, int64_t rate);

/* Charge epoch `epoch` of a session once (key "epoch:SESSION:EPOCH"):
 * seconds * rate. When the balance is below the cost, the charge takes
 * the whole balance and the rest is written off, so the balance stays at
 * zero or above; *charged receives the amount taken (positive). */
int billing_charge_epoch_tx(struct store *st, int64_t account_id,
                            int64_t session_id, int64_t model_id, int epoch,
                            double seconds, int64_t rate, int64_t *charged,
                            struct error *err);

/* 1 when the balance covers the estimated cost of one more epoch (the
 * last epoch's cost), else 0. */
int billing_covers_next_epoch(int64_t balance, int64_t last_epoch_cost);

/* 1 when the balance allows epoch training to start (at least
 * EPOCH_START_MINIMUM), else 0. */
int billing_covers_epoch_start(int64_t balance);

/* Exact price of timed training: duration_ms at rate, as billing_cost. */
int64_t billing_timed_price(int64_t duration_ms, int64_t rate);

/* Pay for timed training from the balance (kind charge) or as a
 * prepayment received through a provider (a prepayment row and the charge
 * that spends it), key "timed:SESSION:pay". Fails with -ENOSPC when the
 * balance does not cover the price. */
int billing_pay_timed_tx(struct store *st, int64_t account_id,
                         int64_t session_id, int64_t model_id, int64_t price,
                         int64_t rate, int prepaid, struct error *err);

/* Refund the unused part of timed training, pro rata: price * (limit -
 * used) / limit, rounded down, key "timed:SESSION:refund". */
int billing_refund_timed_tx(struct store *st, int64_t account_id,
                            int64_t session_id, int64_t model_id,
                            int64_t price, int64_t limit_ms, int64_t used_ms,
                            int64_t *refunded, struct error *err);

/* Format micro-dollars as a decimal number of dollars with `decimals`
 * digits after the point (0 to 6), such as "-0.420000" for 6. Fewer than
 * 6 digits round to the nearest, halves away from zero. Returns buf. */
char *billing_format_decimal(int64_t micro, int decimals, char *buf,
                             size_t len);

/* Format micro-dollars for messages: "$5.00" when the amount is whole
 * cents, else all six digits ("$0.123457"), so that no message hides a
 * micro-dollar. Negative amounts read "-$0.42". Returns buf. */
char *billing_format_usd(int64_t micro, char *buf, size_t len);

#endif
