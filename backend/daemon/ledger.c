/*
 * The ledger and the billing rules that write to it.
 *
 * Every money movement is one row appended to the ledger table, and the
 * row stores the account's balance after it (balance_after). Appending
 * reads the newest balance_after and adds the amount inside one BEGIN
 * IMMEDIATE transaction, so no other writer can slip a row in between, and
 * the schema's CHECK (balance_after >= 0) backs the -ENOSPC check here.
 * Rows that a retry could write twice carry an idempotency key under
 * UNIQUE. Appending looks the key up first and, when it exists, writes
 * nothing and reports the existing row, so a retried epoch charge, timed
 * payment or refund costs the user nothing.
 *
 * Arithmetic is exact: costs are computed in 128-bit integers from the
 * exact binary value of the seconds, then rounded to the nearest
 * micro-dollar with halves rounded up. Refunds round down, so that a refund
 * never returns more than the unused share. docs/BILLING.md states the
 * rules for operators and users.
 */
#include "ledger.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"

/* Maximum length of an idempotency key and of a description, in bytes. */
#define KEY_MAX 200
#define DESCRIPTION_MAX 1000
/* Maximum time that one ledger row may cover: 10 years. A longer value
 * comes from a broken clock or caller, not from training. */
#define SECONDS_MAX (10.0 * 366 * 24 * 3600)

static const char *const kind_names[] = {
    [LEDGER_TOPUP] = "topup",   [LEDGER_PREPAYMENT] = "prepayment",
    [LEDGER_CHARGE] = "charge", [LEDGER_REFUND] = "refund",
    [LEDGER_CREDIT] = "credit",
};

#define KIND_COUNT ((int)(sizeof(kind_names) / sizeof(kind_names[0])))

#define ROW_COLUMNS                                                            \
    "id, account_id, kind, amount, balance_after, idempotency_key, "           \
    "session_id, model_id, epoch, rate, seconds, description, created_at"

const char *ledger_kind_name(enum ledger_kind kind)
{
    if ((int)kind < 0 || (int)kind >= KIND_COUNT)
        return "unknown";
    return kind_names[kind];
}

int ledger_kind_parse(const char *name, enum ledger_kind *kind)
{
    for (int i = 0; i < KIND_COUNT; i++) {
        if (name != NULL && strcmp(name, kind_names[i]) == 0) {
            *kind = (enum ledger_kind)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* ------------------------------------------------------------------------
 * Formatting money. */

char *billing_format_decimal(int64_t micro, int decimals, char *buf, size_t len)
{
    static const uint64_t pow10[] = {1, 10, 100, 1000, 10000, 100000, 1000000};
    uint64_t magnitude, unit, whole, fraction;
    int negative = micro < 0;

    if (decimals < 0)
        decimals = 0;
    if (decimals > 6)
        decimals = 6;

    /* The magnitude of INT64_MIN does not fit in int64_t. */
    magnitude = negative ? (uint64_t)(-(micro + 1)) + 1 : (uint64_t)micro;
    unit = pow10[6 - decimals];
    magnitude = (magnitude + unit / 2) / unit;
    whole = magnitude / pow10[decimals];
    fraction = magnitude % pow10[decimals];

    if (decimals == 0)
        snprintf(buf, len, "%s%llu", negative && magnitude ? "-" : "",
                 (unsigned long long)whole);
    else
        snprintf(buf, len, "%s%llu.%0*llu", negative && magnitude ? "-" : "",
                 (unsigned long long)whole, decimals,
                 (unsigned long long)fraction);
    return buf;
}

char *billing_format_usd(int64_t micro, char *buf, size_t len)
{
    char number[32];
    int whole_cents = micro % 10000 == 0;

    billing_format_decimal(micro, whole_cents ? 2 : 6, number, sizeof(number));
    if (number[0] == '-')
        snprintf(buf, len, "-$%s", number + 1);
    else
        snprintf(buf, len, "$%s", number);
    return buf;
}

/* ------------------------------------------------------------------------
 * Costs and prices. */

/* Seconds that are negative or NaN, and rates of 0 or less, cost 0. A
 * cost above INT64_MAX, which no real training reaches, saturates. */
int64_t billing_cost(double seconds, int64_t rate)
{
    const unsigned __int128 top_bit = (unsigned __int128)1 << 126;
    unsigned __int128 numerator, denominator, quotient;
    uint64_t mantissa;
    int exponent, shift;

    /* !(seconds > 0) is also true for NaN. */
    if (!(seconds > 0) || rate <= 0)
        return 0;
    if (isinf(seconds))
        return INT64_MAX;

    /* seconds == mantissa * 2^-shift exactly, with mantissa < 2^53. */
    mantissa = (uint64_t)ldexp(frexp(seconds, &exponent), 53);
    shift = 53 - exponent;
    numerator = (unsigned __int128)mantissa * (uint64_t)rate; /* < 2^116 */

    if (shift <= 0) {
        /* At least 2^52 seconds: scale the numerator up while it fits. */
        while (shift < 0 && numerator < top_bit) {
            numerator <<= 1;
            shift++;
        }
        if (shift < 0)
            return INT64_MAX;
        denominator = 3600;
    } else {
        /* Here numerator / (3600 * 2^shift) < 2^116 / 2^128 rounds to 0. */
        if (shift > 116)
            return 0;
        denominator = (unsigned __int128)3600 << shift;
    }

    /* Nearest, halves up: floor(x + 1/2). Neither sum can overflow. */
    quotient = (numerator + denominator / 2) / denominator;
    return quotient > INT64_MAX ? INT64_MAX : (int64_t)quotient;
}

/* Durations and rates of 0 or less cost 0; the price saturates at
 * INT64_MAX like billing_cost. */
int64_t billing_timed_price(int64_t duration_ms, int64_t rate)
{
    unsigned __int128 quotient;
    const uint64_t ms_per_hour = 3600 * 1000;

    if (duration_ms <= 0 || rate <= 0)
        return 0;
    /* Both factors are below 2^63, so the product fits in 126 bits. */
    quotient =
        ((unsigned __int128)duration_ms * (uint64_t)rate + ms_per_hour / 2) /
        ms_per_hour;
    return quotient > INT64_MAX ? INT64_MAX : (int64_t)quotient;
}

int billing_covers_next_epoch(int64_t balance, int64_t last_epoch_cost)
{
    return balance >= last_epoch_cost;
}

int billing_covers_epoch_start(int64_t balance)
{
    return balance >= EPOCH_START_MINIMUM;
}

/* ------------------------------------------------------------------------
 * Reading the ledger. */

static int db_error(struct store *st, struct error *err,
                    const char *operation)
{
    return error_set(err, -EIO, "database error while %s: %s", operation,
                     sqlite3_errmsg(st->db));
}

static void read_row(sqlite3_stmt *stmt, struct ledger_row *row)
{
    memset(row, 0, sizeof(*row));
    row->id = sqlite3_column_int64(stmt, 0);
    row->account_id = sqlite3_column_int64(stmt, 1);
    ledger_kind_parse((const char *)sqlite3_column_text(stmt, 2), &row->kind);
    row->amount = sqlite3_column_int64(stmt, 3);
    row->balance_after = sqlite3_column_int64(stmt, 4);
    row->idempotency_key = (const char *)sqlite3_column_text(stmt, 5);
    row->session_id = sqlite3_column_int64(stmt, 6);
    row->model_id = sqlite3_column_int64(stmt, 7);
    row->epoch = sqlite3_column_int(stmt, 8);
    row->rate = sqlite3_column_int64(stmt, 9);
    row->seconds = sqlite3_column_double(stmt, 10);
    row->description = (const char *)sqlite3_column_text(stmt, 11);
    row->created_at = sqlite3_column_int64(stmt, 12);
}

int ledger_find_key(struct store *st, const char *key, struct ledger_row *row,
                    struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(st->db,
                           "SELECT " ROW_COLUMNS
                           " FROM ledger WHERE idempotency_key = ?1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "looking up an idempotency key");
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);

    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        read_row(stmt, row);
        row->idempotency_key = NULL;
        row->description = NULL;
        rc = 1;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = db_error(st, err, "looking up an idempotency key");
    }
    sqlite3_finalize(stmt);
    return rc;
}

int ledger_foreach(struct store *st, int64_t account_id,
                   int (*fn)(const struct ledger_row *row, void *ctx),
                   void *ctx, struct error *err)
{
    struct ledger_row row;
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(st->db,
                           "SELECT " ROW_COLUMNS " FROM ledger"
                           " WHERE account_id = ?1 ORDER BY id",
                           -1, &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "listing the ledger");
    sqlite3_bind_int64(stmt, 1, account_id);

    for (;;) {
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE) {
            rc = 0;
            break;
        }
        if (rc != SQLITE_ROW) {
            rc = db_error(st, err, "listing the ledger");
            break;
        }
        read_row(stmt, &row);
        rc = fn(&row, ctx);
        if (rc != 0)
            break;
    }
    sqlite3_finalize(stmt);
    return rc;
}

static int check_account(struct store *st, int64_t account_id,
                         struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM accounts WHERE id = ?1", -1,
                           &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "looking up an account");
    sqlite3_bind_int64(stmt, 1, account_id);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return error_set(err, -ENOENT,
                         "account %lld not found; pass the id of an "
                         "existing account",
                         (long long)account_id);
    return db_error(st, err, "looking up an account");
}

/* Balance of an account that exists: its newest balance_after, 0 without
 * rows. */
static int read_balance(struct store *st, int64_t account_id, int64_t *balance,
                        struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(st->db,
                           "SELECT balance_after FROM ledger"
                           " WHERE account_id = ?1 ORDER BY id DESC LIMIT 1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "reading a balance");
    sqlite3_bind_int64(stmt, 1, account_id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *balance = sqlite3_column_int64(stmt, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        *balance = 0;
        rc = 0;
    } else {
        rc = db_error(st, err, "reading a balance");
    }
    sqlite3_finalize(stmt);
    return rc;
}

int ledger_balance(struct store *st, int64_t account_id, int64_t *balance,
                   struct error *err)
{
    int rc = check_account(st, account_id, err);

    if (rc != 0)
        return rc;
    return read_balance(st, account_id, balance, err);
}

/* ------------------------------------------------------------------------
 * Appending. */

static int validate_sign(const struct ledger_entry *e, struct error *err)
{
    char amount[32];
    int ok;

    /* -INT64_MIN does not exist, and no real amount comes near it. */
    if (e->amount == INT64_MIN)
        return error_set(err, -EINVAL,
                         "amount %lld is out of range; pass a real amount",
                         (long long)e->amount);
    switch (e->kind) {
    case LEDGER_TOPUP:
    case LEDGER_PREPAYMENT:
    case LEDGER_CREDIT:
        ok = e->amount > 0;
        break;
    case LEDGER_REFUND:
        ok = e->amount >= 0;
        break;
    case LEDGER_CHARGE:
        ok = e->amount <= 0;
        break;
    default:
        return error_set(err, -EINVAL,
                         "ledger kind %d is invalid; use a value of enum "
                         "ledger_kind",
                         (int)e->kind);
    }
    if (ok)
        return 0;
    billing_format_usd(e->amount, amount, sizeof(amount));
    return error_set(err, -EINVAL,
                     "a %s of %s is invalid: charges are zero or negative, "
                     "refunds zero or positive, and top-ups, prepayments "
                     "and credits positive",
                     ledger_kind_name(e->kind), amount);
}

static int validate_entry(const struct ledger_entry *e, struct error *err)
{
    int rc;

    if (e == NULL)
        return error_set(err, -EINVAL, "ledger entry is missing (NULL)");
    if (e->account_id <= 0)
        return error_set(err, -EINVAL,
                         "account id %lld is invalid; pass the id of an "
                         "existing account",
                         (long long)e->account_id);
    rc = validate_sign(e, err);
    if (rc != 0)
        return rc;
    if (e->idempotency_key != NULL &&
        (e->idempotency_key[0] == '\0' || strlen(e->idempotency_key) > KEY_MAX))
        return error_set(err, -EINVAL,
                         "idempotency key of %zu bytes is invalid; use 1 to "
                         "%d bytes, or NULL for none",
                         strlen(e->idempotency_key), KEY_MAX);
    if (e->description != NULL && strlen(e->description) > DESCRIPTION_MAX)
        return error_set(err, -EINVAL,
                         "description of %zu bytes is too long; shorten it "
                         "to %d bytes",
                         strlen(e->description), DESCRIPTION_MAX);
    if (e->session_id < 0 || e->model_id < 0 || e->epoch < 0 || e->rate < 0)
        return error_set(err, -EINVAL,
                         "negative id, epoch or rate in a ledger entry "
                         "(session %lld, model %lld, epoch %d, rate %lld); "
                         "use 0 for none",
                         (long long)e->session_id, (long long)e->model_id,
                         e->epoch, (long long)e->rate);
    if (!(e->seconds >= 0 && e->seconds <= SECONDS_MAX))
        return error_set(err, -EINVAL, "seconds %g is invalid; pass 0 to %.0f",
                         e->seconds, SECONDS_MAX);
    return 0;
}

static void bind_id_or_null(sqlite3_stmt *stmt, int index, int64_t value)
{
    if (value > 0)
        sqlite3_bind_int64(stmt, index, value);
    else
        sqlite3_bind_null(stmt, index);
}

static int insert_row(struct store *st, const struct ledger_entry *e,
                      int64_t balance_after, int64_t *id, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(
            st->db,
            "INSERT INTO ledger (account_id, kind, amount, balance_after,"
            " idempotency_key, session_id, model_id, epoch, rate, seconds,"
            " description, created_at)"
            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            -1, &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "appending to the ledger");
    sqlite3_bind_int64(stmt, 1, e->account_id);
    sqlite3_bind_text(stmt, 2, ledger_kind_name(e->kind), -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, e->amount);
    sqlite3_bind_int64(stmt, 4, balance_after);
    if (e->idempotency_key != NULL)
        sqlite3_bind_text(stmt, 5, e->idempotency_key, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, 5);
    bind_id_or_null(stmt, 6, e->session_id);
    bind_id_or_null(stmt, 7, e->model_id);
    bind_id_or_null(stmt, 8, e->epoch);
    bind_id_or_null(stmt, 9, e->rate);
    if (e->seconds > 0)
        sqlite3_bind_double(stmt, 10, e->seconds);
    else
        sqlite3_bind_null(stmt, 10);
    sqlite3_bind_text(stmt, 11, e->description ? e->description : "", -1,
                      SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 12, clock_realtime_ms());

    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) {
        *id = sqlite3_last_insert_rowid(st->db);
        rc = 0;
    } else if (sqlite3_extended_errcode(st->db) ==
               SQLITE_CONSTRAINT_FOREIGNKEY) {
        rc = error_set(err, -ENOENT,
                       "session %lld or model %lld not found; pass existing "
                       "ids, or 0 for none",
                       (long long)e->session_id, (long long)e->model_id);
    } else {
        rc = db_error(st, err, "appending to the ledger");
    }
    sqlite3_finalize(stmt);
    return rc;
}

static void log_row(const char *what, int64_t id, const struct ledger_entry *e,
                    int64_t balance_after)
{
    char amount[32], balance[32];

    if (!log_enabled(LOG_LEVEL_INFO))
        return;
    log_info("ledger %s %s id=%lld account=%lld model=%lld session=%lld "
             "epoch=%d amount_usd=%s balance_usd=%s key=%s",
             ledger_kind_name(e->kind), what, (long long)id,
             (long long)e->account_id, (long long)e->model_id,
             (long long)e->session_id, e->epoch,
             billing_format_decimal(e->amount, 6, amount, sizeof(amount)),
             billing_format_decimal(balance_after, 6, balance, sizeof(balance)),
             e->idempotency_key ? e->idempotency_key : "-");
}

/* When e's key exists: check that the row is the same kind of movement
 * for the same account, and return 1 with its id. */
static int find_duplicate(struct store *st, const struct ledger_entry *e,
                          int64_t *id, struct error *err)
{
    struct ledger_row row;
    int rc;

    if (e->idempotency_key == NULL)
        return 0;
    rc = ledger_find_key(st, e->idempotency_key, &row, err);
    if (rc <= 0)
        return rc;
    if (row.account_id != e->account_id || row.kind != e->kind)
        return error_set(err, -EEXIST,
                         "idempotency key '%s' belongs to ledger row %lld "
                         "(a %s of account %lld), not to this %s of account "
                         "%lld; use a key unique to this payment",
                         e->idempotency_key, (long long)row.id,
                         ledger_kind_name(row.kind), (long long)row.account_id,
                         ledger_kind_name(e->kind), (long long)e->account_id);
    *id = row.id;
    log_row("retry: key exists, nothing written", row.id, e, row.balance_after);
    return 1;
}

int ledger_append_tx(struct store *st, const struct ledger_entry *e,
                     int64_t *id, int *duplicate, struct error *err)
{
    char balance_text[32], amount_text[32], missing_text[32];
    int64_t balance, existing_id = 0, new_id = 0;
    int rc;

    if (sqlite3_get_autocommit(st->db))
        return error_set(err, -EINVAL,
                         "ledger_append_tx needs the caller's transaction; "
                         "call store_begin first, or use ledger_append");
    rc = validate_entry(e, err);
    if (rc != 0)
        return rc;

    rc = find_duplicate(st, e, &existing_id, err);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        if (id != NULL)
            *id = existing_id;
        if (duplicate != NULL)
            *duplicate = 1;
        return 0;
    }

    rc = check_account(st, e->account_id, err);
    if (rc == 0)
        rc = read_balance(st, e->account_id, &balance, err);
    if (rc != 0)
        return rc;

    if (e->amount < 0 && -e->amount > balance) {
        billing_format_usd(balance, balance_text, sizeof(balance_text));
        billing_format_usd(-e->amount, amount_text, sizeof(amount_text));
        billing_format_usd(-e->amount - balance, missing_text,
                           sizeof(missing_text));
        return error_set(err, -ENOSPC,
                         "balance %s of account %lld does not cover the %s "
                         "of %s; top up at least %s",
                         balance_text, (long long)e->account_id,
                         ledger_kind_name(e->kind), amount_text, missing_text);
    }
    if (e->amount > 0 && balance > INT64_MAX - e->amount)
        return error_set(err, -EOVERFLOW,
                         "balance of account %lld would exceed the largest "
                         "amount the ledger stores",
                         (long long)e->account_id);

    rc = insert_row(st, e, balance + e->amount, &new_id, err);
    if (rc != 0)
        return rc;
    log_row("written", new_id, e, balance + e->amount);
    if (id != NULL)
        *id = new_id;
    if (duplicate != NULL)
        *duplicate = 0;
    return 0;
}

int ledger_append(struct store *st, const struct ledger_entry *e, int64_t *id,
                  int *duplicate, struct error *err)
{
    int rc = store_begin(st, err);

    if (rc != 0)
        return rc;
    rc = ledger_append_tx(st, e, id, duplicate, err);
    if (rc == 0)
        rc = store_commit(st, err);
    if (rc != 0)
        store_rollback(st);
    return rc;
}

/* ------------------------------------------------------------------------
 * Billing rules. */

struct session_facts {
    int64_t model_id;
    int64_t time_limit_ms; /* 0: not set */
};

/* Check that session_id exists and belongs to account_id (and model_id,
 * when not 0), and read the facts billing needs. */
static int read_session(struct store *st, int64_t session_id,
                        int64_t account_id, int64_t model_id,
                        struct session_facts *facts, struct error *err)
{
    sqlite3_stmt *stmt;
    int64_t owner;
    int rc;

    if (sqlite3_prepare_v2(st->db,
                           "SELECT account_id, model_id, time_limit_ms"
                           " FROM sessions WHERE id = ?1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "looking up a session");
    sqlite3_bind_int64(stmt, 1, session_id);
    rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(stmt);
        if (rc == SQLITE_DONE)
            return error_set(err, -ENOENT,
                             "session %lld not found; pass the id of an "
                             "existing session",
                             (long long)session_id);
        return db_error(st, err, "looking up a session");
    }
    owner = sqlite3_column_int64(stmt, 0);
    facts->model_id = sqlite3_column_int64(stmt, 1);
    facts->time_limit_ms = sqlite3_column_int64(stmt, 2);
    sqlite3_finalize(stmt);

    if (owner != account_id)
        return error_set(err, -EINVAL,
                         "session %lld belongs to account %lld, not %lld; "
                         "bill the session's own account",
                         (long long)session_id, (long long)owner,
                         (long long)account_id);
    if (model_id != 0 && model_id != facts->model_id)
        return error_set(err, -EINVAL,
                         "session %lld trains model %lld, not %lld; pass "
                         "the session's model, or 0",
                         (long long)session_id, (long long)facts->model_id,
                         (long long)model_id);
    return 0;
}

static int check_ids(int64_t account_id, int64_t session_id, struct error *err)
{
    if (account_id <= 0 || session_id <= 0)
        return error_set(err, -EINVAL,
                         "account %lld or session %lld is invalid; pass "
                         "existing ids",
                         (long long)account_id, (long long)session_id);
    return 0;
}

int billing_charge_epoch_tx(struct store *st, int64_t account_id,
                            int64_t session_id, int64_t model_id, int epoch,
                            double seconds, int64_t rate, int64_t *charged,
                            struct error *err)
{
    char key[64], description[160], rate_text[32], off_text[32];
    struct session_facts facts;
    struct ledger_entry e;
    int64_t cost, balance, take, id;
    int duplicate, rc;

    rc = check_ids(account_id, session_id, err);
    if (rc != 0)
        return rc;
    if (epoch < 1)
        return error_set(err, -EINVAL,
                         "epoch %d is invalid; epochs count from 1", epoch);
    if (!(seconds >= 0 && seconds <= SECONDS_MAX) || rate < 0)
        return error_set(err, -EINVAL,
                         "epoch %d of session %lld has invalid seconds %g or "
                         "rate %lld; pass 0 to %.0f seconds and a rate of 0 "
                         "or more",
                         epoch, (long long)session_id, seconds, (long long)rate,
                         SECONDS_MAX);
    rc = read_session(st, session_id, account_id, model_id, &facts, err);
    if (rc != 0)
        return rc;

    snprintf(key, sizeof(key), "epoch:%lld:%d", (long long)session_id, epoch);
    cost = billing_cost(seconds, rate);
    rc = read_balance(st, account_id, &balance, err);
    if (rc != 0)
        return rc;

    /* Write-off: an epoch that costs more than the balance takes all of
     * it, and the rest is not charged (the session then pauses). */
    take = cost <= balance ? cost : balance;
    billing_format_usd(rate, rate_text, sizeof(rate_text));
    if (take < cost)
        snprintf(description, sizeof(description),
                 "epoch %d: %.3f s at %s/h; %s written off because the "
                 "balance was short",
                 epoch, seconds, rate_text,
                 billing_format_usd(cost - take, off_text, sizeof(off_text)));
    else
        snprintf(description, sizeof(description), "epoch %d: %.3f s at %s/h",
                 epoch, seconds, rate_text);

    e = (struct ledger_entry){
        .account_id = account_id,
        .kind = LEDGER_CHARGE,
        .amount = -take,
        .idempotency_key = key,
        .session_id = session_id,
        .model_id = facts.model_id,
        .epoch = epoch,
        .rate = rate,
        .seconds = seconds,
        .description = description,
    };
    rc = ledger_append_tx(st, &e, &id, &duplicate, err);
    if (rc != 0)
        return rc;

    if (duplicate) {
        struct ledger_row row;

        /* Report what the first charge took, not this retry's figure. */
        rc = ledger_find_key(st, key, &row, err);
        if (rc < 0)
            return rc;
        take = -row.amount;
    } else if (take < cost) {
        char take_text[32];

        log_info(
            "billing epoch cost exceeded the balance account=%lld "
            "model=%lld session=%lld epoch=%d charged_usd=%s "
            "written_off_usd=%s",
            (long long)account_id, (long long)facts.model_id,
            (long long)session_id, epoch,
            billing_format_decimal(take, 6, take_text, sizeof(take_text)),
            billing_format_decimal(cost - take, 6, off_text, sizeof(off_text)));
    }
    if (charged != NULL)
        *charged = take;
    return 0;
}

int billing_pay_timed_tx(struct store *st, int64_t account_id,
                         int64_t session_id, int64_t model_id, int64_t price,
                         int64_t rate, int prepaid, struct error *err)
{
    char pay_key[64], prepay_key[64], description[160];
    char price_text[32], expected_text[32], balance_text[32], short_text[32];
    char rate_text[32];
    struct session_facts facts;
    struct ledger_row existing;
    struct ledger_entry e;
    int64_t balance, id;
    int duplicate, rc;

    rc = check_ids(account_id, session_id, err);
    if (rc != 0)
        return rc;
    if (price < 0 || rate < 0)
        return error_set(err, -EINVAL,
                         "timed training of session %lld has invalid price "
                         "%lld or rate %lld; pass 0 or more micro-dollars",
                         (long long)session_id, (long long)price,
                         (long long)rate);
    snprintf(pay_key, sizeof(pay_key), "timed:%lld:pay", (long long)session_id);
    snprintf(prepay_key, sizeof(prepay_key), "timed:%lld:prepayment",
             (long long)session_id);

    /* A retry after the payment committed writes nothing, prepayment
     * included. */
    rc = ledger_find_key(st, pay_key, &existing, err);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        e = (struct ledger_entry){.account_id = account_id,
                                  .kind = LEDGER_CHARGE,
                                  .amount = -price,
                                  .idempotency_key = pay_key,
                                  .session_id = session_id,
                                  .model_id = model_id};
        return ledger_append_tx(st, &e, &id, &duplicate, err);
    }

    rc = read_session(st, session_id, account_id, model_id, &facts, err);
    if (rc != 0)
        return rc;
    billing_format_usd(price, price_text, sizeof(price_text));
    if (facts.time_limit_ms > 0 &&
        billing_timed_price(facts.time_limit_ms, rate) != price)
        return error_set(
            err, -EINVAL,
            "price %s does not match session %lld's %lld ms at rate %lld "
            "(%s); compute it with billing_timed_price",
            price_text, (long long)session_id, (long long)facts.time_limit_ms,
            (long long)rate,
            billing_format_usd(billing_timed_price(facts.time_limit_ms, rate),
                               expected_text, sizeof(expected_text)));

    if (prepaid && price > 0) {
        snprintf(description, sizeof(description),
                 "prepayment of timed training, session %lld",
                 (long long)session_id);
        e = (struct ledger_entry){
            .account_id = account_id,
            .kind = LEDGER_PREPAYMENT,
            .amount = price,
            .idempotency_key = prepay_key,
            .session_id = session_id,
            .model_id = facts.model_id,
            .description = description,
        };
        rc = ledger_append_tx(st, &e, &id, &duplicate, err);
        if (rc != 0)
            return rc;
    } else if (!prepaid) {
        rc = read_balance(st, account_id, &balance, err);
        if (rc != 0)
            return rc;
        if (balance < price)
            return error_set(
                err, -ENOSPC,
                "balance %s does not cover the price %s of timed training "
                "(session %lld); top up %s or pay now",
                billing_format_usd(balance, balance_text, sizeof(balance_text)),
                price_text, (long long)session_id,
                billing_format_usd(price - balance, short_text,
                                   sizeof(short_text)));
    }

    snprintf(description, sizeof(description),
             "timed training: %.3f s at %s/h, paid %s",
             (double)facts.time_limit_ms / 1000.0,
             billing_format_usd(rate, rate_text, sizeof(rate_text)),
             prepaid ? "now" : "from the balance");
    e = (struct ledger_entry){
        .account_id = account_id,
        .kind = LEDGER_CHARGE,
        .amount = -price,
        .idempotency_key = pay_key,
        .session_id = session_id,
        .model_id = facts.model_id,
        .rate = rate,
        .seconds = (double)facts.time_limit_ms / 1000.0,
        .description = description,
    };
    return ledger_append_tx(st, &e, &id, &duplicate, err);
}

/* price * unused / limit, rounded down; price, unused and limit are below
 * 2^63, so the product fits in 126 bits. */
static int64_t pro_rata_floor(int64_t price, int64_t unused, int64_t limit)
{
    return (int64_t)((unsigned __int128)price * (uint64_t)unused /
                     (uint64_t)limit);
}

int billing_refund_timed_tx(struct store *st, int64_t account_id,
                            int64_t session_id, int64_t model_id, int64_t price,
                            int64_t limit_ms, int64_t used_ms,
                            int64_t *refunded, struct error *err)
{
    char pay_key[64], refund_key[64], description[160];
    char price_text[32], paid_text[32];
    struct session_facts facts;
    struct ledger_row pay, existing;
    struct ledger_entry e;
    int64_t unused_ms, refund, id;
    int duplicate, rc;

    rc = check_ids(account_id, session_id, err);
    if (rc != 0)
        return rc;
    if (price < 0 || limit_ms <= 0 || used_ms < 0)
        return error_set(err, -EINVAL,
                         "refund of session %lld has invalid price %lld, "
                         "limit %lld ms or used %lld ms; the limit must be "
                         "positive and the others 0 or more",
                         (long long)session_id, (long long)price,
                         (long long)limit_ms, (long long)used_ms);
    snprintf(pay_key, sizeof(pay_key), "timed:%lld:pay", (long long)session_id);
    snprintf(refund_key, sizeof(refund_key), "timed:%lld:refund",
             (long long)session_id);

    rc = ledger_find_key(st, refund_key, &existing, err);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        e = (struct ledger_entry){.account_id = account_id,
                                  .kind = LEDGER_REFUND,
                                  .idempotency_key = refund_key,
                                  .session_id = session_id,
                                  .model_id = model_id};
        rc = ledger_append_tx(st, &e, &id, &duplicate, err);
        if (rc == 0 && refunded != NULL)
            *refunded = existing.amount;
        return rc;
    }

    rc = read_session(st, session_id, account_id, model_id, &facts, err);
    if (rc != 0)
        return rc;
    rc = ledger_find_key(st, pay_key, &pay, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return error_set(err, -ENOENT,
                         "session %lld has no timed payment (key %s) to "
                         "refund; refund only a paid timed session",
                         (long long)session_id, pay_key);
    if (-pay.amount != price)
        return error_set(
            err, -EINVAL,
            "refund price %s of session %lld differs from the "
            "%s paid (ledger row %lld); pass the paid price",
            billing_format_usd(price, price_text, sizeof(price_text)),
            (long long)session_id,
            billing_format_usd(-pay.amount, paid_text, sizeof(paid_text)),
            (long long)pay.id);

    /* Time used beyond the limit refunds nothing. */
    unused_ms = used_ms >= limit_ms ? 0 : limit_ms - used_ms;
    refund = pro_rata_floor(price, unused_ms, limit_ms);
    snprintf(description, sizeof(description),
             "unused timed training: %.3f s of %.3f s",
             (double)unused_ms / 1000.0, (double)limit_ms / 1000.0);
    e = (struct ledger_entry){
        .account_id = account_id,
        .kind = LEDGER_REFUND,
        .amount = refund,
        .idempotency_key = refund_key,
        .session_id = session_id,
        .model_id = facts.model_id,
        .rate = pay.rate,
        .seconds = (double)unused_ms / 1000.0,
        .description = description,
    };
    rc = ledger_append_tx(st, &e, &id, &duplicate, err);
    if (rc == 0 && refunded != NULL)
        *refunded = refund;
    return rc;
}
