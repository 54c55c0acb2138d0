/*
 * Billing reports from the ledger, as CSV and as PDF, built in memory so
 * that the gateway can stream them, and saved to a file on request.
 *
 * Two reports exist. A model report lists every charge and refund of one
 * model, and its net total is what the model's training cost. An account
 * statement lists every ledger row of an account in a time range:
 * top-ups, credits, prepayments, charges and refunds. Its opening balance
 * plus the rows equals its closing balance. Each row shows the time (ISO
 * 8601, UTC), kind, model, session, item ("epoch 3", "time block",
 * "unused time"), instance, rate in $/h, seconds, amount, written-off part
 * and balance after. Every total is the sum of the listed rows.
 *
 * Money: the CSV prints dollars with 6 decimals, which is exact. The PDF
 * prints cents and marks with "*" each figure whose rounding hides
 * micro-dollars. Such a total shows its exact figure beside it, and a
 * footnote explains the marks.
 *
 * Names in reports come from users, so CSV text fields are quoted per RFC
 * 4180, and a field that starts with = + - @, tab or carriage return gets
 * a leading apostrophe, so that a spreadsheet shows it as text and never
 * runs it as a formula.
 */
#ifndef TRAINYARD_REPORT_H
#define TRAINYARD_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "store.h"

enum report_format {
    REPORT_CSV,
    REPORT_PDF,
};

/* Sums of the listed rows, in micro-dollars. */
struct report_totals {
    size_t rows;
    int64_t charges;         /* charge rows, <= 0 */
    int64_t refunds;         /* refund rows, >= 0 */
    int64_t payments;        /* top-up, prepayment and credit rows, >= 0 */
    int64_t net;             /* all listed rows: charges + refunds + payments */
    int64_t written_off;     /* epoch costs not charged because the balance
                              * was short, >= 0 (not part of net) */
    int64_t opening_balance; /* before the first row */
    int64_t closing_balance; /* after the last row */
};

struct report {
    enum report_format format;
    char *data; /* the file's bytes; free with report_free */
    size_t len;
    const char *content_type; /* "text/csv; charset=utf-8" or
                               * "application/pdf" */
    struct report_totals totals;
};

/* Build the report of model_id, which must belong to account_id (-ENOENT
 * otherwise, so that one user cannot read another's model). */
int report_model(struct store *st, int64_t account_id, int64_t model_id,
                 enum report_format format, struct report *out,
                 struct error *err);

/* Build the statement of account_id for rows created from from_ms
 * (inclusive) to to_ms (exclusive), Unix ms; 0 leaves that end open. */
int report_statement(struct store *st, int64_t account_id, int64_t from_ms,
                     int64_t to_ms, enum report_format format,
                     struct report *out, struct error *err);

/* Write r to path atomically (fs_write_atomic), mode 0640. */
int report_save(const struct report *r, const char *path, struct error *err);

void report_free(struct report *r);

/* Quote text as one CSV field (RFC 4180) with formula neutralization, as
 * the reports do. Returns a new string that the caller frees, or NULL when
 * out of memory. */
char *report_csv_field(const char *text);

#endif
