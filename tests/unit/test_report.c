/*
 * Tests of backend/daemon/report: the CSV rows and totals equal the ledger,
 * text fields are quoted per RFC 4180 and formulas neutralized, and the
 * PDF is a well-formed, multi-page document whose (Flate-compressed) page
 * text carries the totals. The fixture's names are hostile on purpose.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "daemon/ledger.h"
#include "daemon/report.h"
#include "daemon/store.h"
#include "fsutil.h"
#include "harness.h"
#include "log.h"

#define USD(x) ((int64_t)((x)*1000000LL))

#define MODEL_NAME "=HYPERLINK(\"http://evil.example\",\"click\")"
#define INSTANCE_NAME "-gpu, large"

struct fixture {
    char dir[PATH_MAX];
    struct store st;
    int64_t account;
    int64_t model;
    int64_t model2;
    int64_t instance;
};

static int64_t insert(struct store *st, char *sql)
{
    struct error err = {0};
    int rc = store_exec(st, sql, &err);

    if (rc != 0)
        fprintf(stderr, "fixture SQL failed: %s\n", err.msg);
    assert_int_equal(rc, 0);
    sqlite3_free(sql);
    return sqlite3_last_insert_rowid(st->db);
}

static int64_t add_model(struct fixture *f, const char *name)
{
    return insert(&f->st,
                  sqlite3_mprintf("INSERT INTO models (account_id,"
                                  " dataset_id, name, task, architecture,"
                                  " created_at) VALUES (%lld, 1, %Q,"
                                  " 'classify', 'yolov8n-cls.yaml', 0)",
                                  (long long)f->account, name));
}

static int64_t add_session(struct fixture *f, int64_t model,
                           const char *time_limit_ms)
{
    return insert(&f->st,
                  sqlite3_mprintf("INSERT INTO sessions (model_id,"
                                  " account_id, instance_type_id, mode,"
                                  " epochs, time_limit_ms, rate, created_at,"
                                  " updated_at) VALUES (%lld, %lld, %lld,"
                                  " %Q, 10, %s, 1200000, 0, 0)",
                                  (long long)model, (long long)f->account,
                                  (long long)f->instance,
                                  time_limit_ms ? "timed" : "epochs",
                                  time_limit_ms ? time_limit_ms : "NULL"));
}

static void append(struct fixture *f, enum ledger_kind kind, int64_t amount,
                   const char *description)
{
    struct ledger_entry e = {.account_id = f->account,
                             .kind = kind,
                             .amount = amount,
                             .description = description};
    struct error err = {0};

    assert_int_equal(ledger_append(&f->st, &e, NULL, NULL, &err), 0);
}

static void in_transaction(struct fixture *f, int rc)
{
    struct error err = {0};

    assert_int_equal(rc, 0);
    assert_int_equal(store_commit(&f->st, &err), 0);
}

/* Fill the fixture's ledger: a top-up, a credit, two epochs of model 1
 * and a timed hour of model 1 with a quarter used. Last comes an epoch of
 * model 2 that costs more than what is left, so part is written off. */
static void fill_ledger(struct fixture *f)
{
    int64_t epochs = add_session(f, f->model, NULL);
    int64_t timed = add_session(f, f->model, "3600000");
    int64_t other = add_session(f, f->model2, NULL);
    struct error err = {0};
    int64_t out;

    append(f, LEDGER_TOPUP, USD(2), "top-up");
    append(f, LEDGER_CREDIT, USD(0.5), "@SUM(A1:A9) goodwill, \"sorry\"");

    assert_int_equal(store_begin(&f->st, &err), 0);
    in_transaction(f,
                   billing_charge_epoch_tx(&f->st, f->account, epochs, f->model,
                                           1, 123.456, USD(1.2), &out, &err));
    assert_int_equal(store_begin(&f->st, &err), 0);
    in_transaction(f,
                   billing_charge_epoch_tx(&f->st, f->account, epochs, f->model,
                                           2, 300.5, USD(1.2), &out, &err));
    assert_int_equal(store_begin(&f->st, &err), 0);
    in_transaction(f, billing_pay_timed_tx(&f->st, f->account, timed, f->model,
                                           USD(1.2), USD(1.2), 0, &err));
    assert_int_equal(store_begin(&f->st, &err), 0);
    in_transaction(f, billing_refund_timed_tx(&f->st, f->account, timed,
                                              f->model, USD(1.2), 3600000,
                                              900000, &out, &err));
    assert_int_equal(store_begin(&f->st, &err), 0);
    in_transaction(f,
                   billing_charge_epoch_tx(&f->st, f->account, other, f->model2,
                                           1, 10000, USD(1.2), &out, &err));
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char path[PATH_MAX + 16];
    struct error err = {0};

    harness_tmpdir(f->dir, sizeof(f->dir));
    snprintf(path, sizeof(path), "%s/test.db", f->dir);
    assert_int_equal(store_open(&f->st, path, schema_sql, &err), 0);
    f->account =
        insert(&f->st, sqlite3_mprintf("INSERT INTO accounts (email, plan,"
                                       " created_at) VALUES"
                                       " ('ada@example.com', 'pro', 0)"));
    insert(&f->st, sqlite3_mprintf("INSERT INTO datasets (name, task, path,"
                                   " created_at) VALUES ('d', 'classify',"
                                   " 'd', 0)"));
    f->model = add_model(f, MODEL_NAME);
    f->model2 = add_model(f, "plain model");
    f->instance =
        insert(&f->st, sqlite3_mprintf("INSERT INTO instance_types (name,"
                                       " device, price_per_hour) VALUES"
                                       " (%Q, '0', 1200000)",
                                       INSTANCE_NAME));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    store_close(&f->st);
    harness_rmtree(f->dir);
    free(f);
    return 0;
}

static int64_t query_int(struct store *st, const char *sql)
{
    sqlite3_stmt *stmt;
    int64_t value = -1;

    assert_int_equal(sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL),
                     SQLITE_OK);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

/* ------------------------------------------------------------------------
 * A small RFC 4180 reader, strict enough to catch a broken quote. */

#define CSV_COLUMNS 12
#define CSV_MAX_ROWS 512
#define CSV_FIELD_MAX 256

struct csv {
    size_t rows;
    char field[CSV_MAX_ROWS][CSV_COLUMNS][CSV_FIELD_MAX];
};

static void csv_parse(const char *text, size_t len, struct csv *csv)
{
    size_t i = 0, column = 0, n = 0;

    csv->rows = 0;
    while (i < len) {
        char *out = csv->field[csv->rows][column];

        n = 0;
        if (text[i] == '"') {
            i++;
            for (;;) {
                assert_true(i < len); /* a quote must close */
                if (text[i] == '"' && i + 1 < len && text[i + 1] == '"') {
                    out[n++] = '"';
                    i += 2;
                } else if (text[i] == '"') {
                    i++;
                    break;
                } else {
                    out[n++] = text[i++];
                }
                assert_true(n < CSV_FIELD_MAX);
            }
        } else {
            while (i < len && text[i] != ',' && text[i] != '\r') {
                assert_true(text[i] != '"' && text[i] != '\n');
                out[n++] = text[i++];
                assert_true(n < CSV_FIELD_MAX);
            }
        }
        out[n] = '\0';
        assert_true(i < len);
        if (text[i] == ',') {
            i++;
            column++;
            assert_true(column < CSV_COLUMNS);
        } else {
            /* Every record ends with CRLF and has every column. */
            assert_true(text[i] == '\r' && i + 1 < len && text[i + 1] == '\n');
            assert_int_equal(column, CSV_COLUMNS - 1);
            i += 2;
            column = 0;
            csv->rows++;
            assert_true(csv->rows < CSV_MAX_ROWS);
        }
    }
    assert_int_equal(column, 0);
}

/* Parse "-12.345678" into micro-dollars exactly. */
static int64_t parse_micro(const char *text)
{
    int negative = text[0] == '-';
    int64_t whole = 0, fraction = 0;
    const char *p = text + negative;
    int digits = 0;

    assert_true(*p >= '0' && *p <= '9');
    while (*p >= '0' && *p <= '9')
        whole = whole * 10 + (*p++ - '0');
    assert_true(*p == '.');
    for (p++; *p >= '0' && *p <= '9'; p++, digits++)
        fraction = fraction * 10 + (*p - '0');
    assert_int_equal(digits, 6);
    assert_true(*p == '\0');
    return (negative ? -1 : 1) * (whole * 1000000 + fraction);
}

enum {
    COL_TIME,
    COL_KIND,
    COL_MODEL,
    COL_SESSION,
    COL_ITEM,
    COL_INSTANCE,
    COL_RATE,
    COL_SECONDS,
    COL_AMOUNT,
    COL_WRITTEN_OFF,
    COL_BALANCE,
    COL_DESCRIPTION,
};

/* Value of the totals line named name, from column. */
static int64_t csv_total(const struct csv *csv, const char *name, int column)
{
    for (size_t r = 1; r < csv->rows; r++)
        if (strcmp(csv->field[r][COL_KIND], "total") == 0 &&
            strcmp(csv->field[r][COL_ITEM], name) == 0)
            return parse_micro(csv->field[r][column]);
    fail_msg("no totals line '%s'", name);
    return 0;
}

/* ------------------------------------------------------------------------
 * CSV. */

static void csv_field_quotes_and_neutralizes(void **state)
{
    static const struct {
        const char *text;
        const char *field;
    } cases[] = {
        {"plain", "plain"},
        {"", ""},
        {"a,b", "\"a,b\""},
        {"say \"hi\"", "\"say \"\"hi\"\"\""},
        {"two\nlines", "\"two\nlines\""},
        {"cr\rhere", "\"cr\rhere\""},
        {"=1+2", "'=1+2"},
        {"+1", "'+1"},
        {"-1", "'-1"},
        {"@SUM(A1)", "'@SUM(A1)"},
        {"\tTAB", "'\tTAB"},
        {"\rCR", "\"'\rCR\""},
        {"=A1,B1", "\"'=A1,B1\""},
        {"a=b", "a=b"},
        {"caf\xc3\xa9", "caf\xc3\xa9"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *field = report_csv_field(cases[i].text);

        assert_non_null(field);
        assert_string_equal(field, cases[i].field);
        free(field);
    }
}

static void model_csv_matches_ledger(void **state)
{
    struct fixture *f = *state;
    struct csv *csv = calloc(1, sizeof(*csv));
    struct report r;
    struct error err = {0};
    int64_t sum = 0, charges = 0, refunds = 0;
    char sql[256];
    int64_t expected_rows, expected_sum;

    fill_ledger(f);
    assert_int_equal(
        report_model(&f->st, f->account, f->model, REPORT_CSV, &r, &err), 0);
    assert_string_equal(r.content_type, "text/csv; charset=utf-8");
    csv_parse(r.data, r.len, csv);

    assert_string_equal(csv->field[0][COL_TIME], "time_utc");
    assert_string_equal(csv->field[0][COL_AMOUNT], "amount_usd");
    assert_string_equal(csv->field[0][COL_DESCRIPTION], "description");

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM ledger WHERE model_id = %lld AND kind IN"
             " ('charge', 'refund')",
             (long long)f->model);
    expected_rows = query_int(&f->st, sql);
    snprintf(sql, sizeof(sql),
             "SELECT sum(amount) FROM ledger WHERE model_id = %lld AND kind"
             " IN ('charge', 'refund')",
             (long long)f->model);
    expected_sum = query_int(&f->st, sql);
    assert_int_equal(expected_rows, 4);

    for (size_t i = 1; i <= (size_t)expected_rows; i++) {
        const char *kind = csv->field[i][COL_KIND];
        int64_t amount = parse_micro(csv->field[i][COL_AMOUNT]);

        assert_true(strcmp(kind, "charge") == 0 || strcmp(kind, "refund") == 0);
        assert_string_equal(csv->field[i][COL_MODEL], "'" MODEL_NAME);
        assert_string_equal(csv->field[i][COL_INSTANCE], "'" INSTANCE_NAME);
        assert_int_equal(strlen(csv->field[i][COL_TIME]), 24);
        assert_int_equal(csv->field[i][COL_TIME][10], 'T');
        assert_int_equal(csv->field[i][COL_TIME][23], 'Z');
        assert_string_equal(csv->field[i][COL_RATE], "1.200000");
        sum += amount;
        if (strcmp(kind, "charge") == 0)
            charges += amount;
        else
            refunds += amount;
    }
    assert_string_equal(csv->field[expected_rows + 1][COL_KIND], "total");
    assert_int_equal(sum, expected_sum);

    /* 123.456 s at $1.20/h is 41,152 micro-dollars (41,152.0). */
    assert_string_equal(csv->field[1][COL_ITEM], "epoch 1");
    assert_string_equal(csv->field[1][COL_SECONDS], "123.456");
    assert_string_equal(csv->field[1][COL_AMOUNT], "-0.041152");
    assert_string_equal(csv->field[3][COL_ITEM], "time block");
    assert_string_equal(csv->field[4][COL_ITEM], "unused time");
    assert_string_equal(csv->field[4][COL_AMOUNT], "0.900000");

    assert_int_equal(csv_total(csv, "charges", COL_AMOUNT), charges);
    assert_int_equal(csv_total(csv, "refunds", COL_AMOUNT), refunds);
    assert_int_equal(csv_total(csv, "net", COL_AMOUNT), expected_sum);
    assert_int_equal(csv_total(csv, "written off", COL_WRITTEN_OFF), 0);
    assert_int_equal(r.totals.rows, (size_t)expected_rows);
    assert_int_equal(r.totals.net, expected_sum);
    assert_int_equal(r.totals.charges, charges);
    assert_int_equal(r.totals.refunds, refunds);

    /* The raw bytes: the formula is quoted, apostrophe first. */
    assert_non_null(strstr(r.data, ",\"'=HYPERLINK(\"\"http://evil.example"
                                   "\"\",\"\"click\"\")\","));
    assert_non_null(strstr(r.data, ",\"'-gpu, large\","));
    report_free(&r);
    free(csv);
}

static void model_csv_shows_write_off(void **state)
{
    struct fixture *f = *state;
    struct csv *csv = calloc(1, sizeof(*csv));
    struct report r;
    struct error err = {0};

    fill_ledger(f);
    assert_int_equal(
        report_model(&f->st, f->account, f->model2, REPORT_CSV, &r, &err), 0);
    csv_parse(r.data, r.len, csv);
    /* 10,000 s at $1.20/h is $3.333333 with $2.058681 left. */
    assert_string_equal(csv->field[1][COL_AMOUNT], "-2.058681");
    assert_string_equal(csv->field[1][COL_WRITTEN_OFF], "1.274652");
    assert_string_equal(csv->field[1][COL_BALANCE], "0.000000");
    assert_string_equal(csv->field[1][COL_MODEL], "plain model");
    assert_int_equal(csv_total(csv, "written off", COL_WRITTEN_OFF), 1274652);
    assert_int_equal(r.totals.written_off, 1274652);
    assert_int_equal(csv_total(csv, "net", COL_AMOUNT), -2058681);
    report_free(&r);
    free(csv);
}

static void statement_csv_balances(void **state)
{
    struct fixture *f = *state;
    struct csv *csv = calloc(1, sizeof(*csv));
    struct report r;
    struct error err = {0};
    int64_t sum = 0;
    size_t rows = 0;

    fill_ledger(f);
    assert_int_equal(
        report_statement(&f->st, f->account, 0, 0, REPORT_CSV, &r, &err), 0);
    csv_parse(r.data, r.len, csv);
    for (size_t i = 1; i < csv->rows; i++) {
        if (strcmp(csv->field[i][COL_KIND], "total") == 0)
            continue;
        sum += parse_micro(csv->field[i][COL_AMOUNT]);
        rows++;
    }
    assert_int_equal(rows, query_int(&f->st, "SELECT count(*) FROM ledger"));
    assert_int_equal(sum, query_int(&f->st, "SELECT sum(amount) FROM ledger"));
    assert_int_equal(csv_total(csv, "opening balance", COL_BALANCE), 0);
    assert_int_equal(csv_total(csv, "net", COL_AMOUNT), sum);
    assert_int_equal(csv_total(csv, "closing balance", COL_BALANCE), sum);
    assert_int_equal(csv_total(csv, "payments", COL_AMOUNT), USD(2.5));
    assert_int_equal(r.totals.closing_balance,
                     r.totals.opening_balance + r.totals.net);
    /* The credit's reason is user text: neutralized and quoted. */
    assert_string_equal(csv->field[2][COL_DESCRIPTION],
                        "'@SUM(A1:A9) goodwill, \"sorry\"");
    report_free(&r);

    /* A period after every row lists none; both balances are the last. */
    assert_int_equal(report_statement(&f->st, f->account, INT64_MAX - 1, 0,
                                      REPORT_CSV, &r, &err),
                     0);
    assert_int_equal(r.totals.rows, 0);
    assert_int_equal(r.totals.opening_balance, sum);
    assert_int_equal(r.totals.closing_balance, sum);
    report_free(&r);

    assert_int_equal(
        report_statement(&f->st, f->account, 10, 5, REPORT_CSV, &r, &err),
        -EINVAL);
    free(csv);
}

static void report_rejects_foreign_model(void **state)
{
    struct fixture *f = *state;
    struct report r;
    struct error err = {0};
    int64_t other =
        insert(&f->st, sqlite3_mprintf("INSERT INTO accounts (email,"
                                       " created_at) VALUES"
                                       " ('eve@example.com', 0)"));

    assert_int_equal(
        report_model(&f->st, other, f->model, REPORT_CSV, &r, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "not found"));
    assert_null(r.data);
    assert_int_equal(report_model(&f->st, f->account, f->model,
                                  (enum report_format)7, &r, &err),
                     -EINVAL);
    assert_null(r.data);
}

static void report_saves_to_file(void **state)
{
    struct fixture *f = *state;
    struct report r;
    struct error err = {0};
    char path[PATH_MAX + 16];
    char *data;
    size_t len;

    fill_ledger(f);
    snprintf(path, sizeof(path), "%s/model.csv", f->dir);
    assert_int_equal(
        report_model(&f->st, f->account, f->model, REPORT_CSV, &r, &err), 0);
    assert_int_equal(report_save(&r, path, &err), 0);
    assert_int_equal(fs_read_file(path, 1 << 20, &data, &len, &err), 0);
    assert_int_equal(len, r.len);
    assert_memory_equal(data, r.data, len);
    free(data);
    report_free(&r);
}

/* ------------------------------------------------------------------------
 * PDF. */

static size_t count_pages(const char *data, size_t len)
{
    const char *needle = "/Type /Page";
    size_t count = 0;

    for (const char *p = data;
         (p = memmem(p, len - (size_t)(p - data), needle, strlen(needle)));
         p++) {
        /* "/Type /Pages" is the page tree, not a page. */
        if (p[strlen(needle)] != 's')
            count++;
    }
    return count;
}

/* Inflate every Flate stream of a PDF into one text, to search the pages'
 * text operators. */
static char *inflate_streams(const char *data, size_t len)
{
    size_t cap = 1 << 20, used = 0;
    char *out = calloc(1, cap);
    const char *p = data;

    while ((p = memmem(p, len - (size_t)(p - data), "stream", 6)) != NULL) {
        z_stream z = {0};
        int rc;

        p += 6;
        if (*p == '\r')
            p++;
        if (*p != '\n')
            continue;
        p++;
        z.next_in = (Bytef *)p;
        z.avail_in = (uInt)(len - (size_t)(p - data));
        z.next_out = (Bytef *)out + used;
        z.avail_out = (uInt)(cap - used - 1);
        if (inflateInit(&z) != Z_OK)
            continue;
        rc = inflate(&z, Z_FINISH);
        if (rc == Z_STREAM_END || rc == Z_BUF_ERROR)
            used = cap - 1 - z.avail_out;
        inflateEnd(&z);
    }
    out[used] = '\0';
    return out;
}

static void model_pdf_is_well_formed(void **state)
{
    struct fixture *f = *state;
    struct report r;
    struct error err = {0};
    char *text;

    fill_ledger(f);
    assert_int_equal(
        report_model(&f->st, f->account, f->model, REPORT_PDF, &r, &err), 0);
    assert_string_equal(r.content_type, "application/pdf");
    assert_true(r.len > 1500);
    assert_memory_equal(r.data, "%PDF-", 5);
    assert_non_null(memmem(r.data + r.len - 16, 16, "%%EOF", 5));
    assert_non_null(memmem(r.data, r.len, "xref", 4));
    assert_non_null(memmem(r.data, r.len, "trailer", 7));
    assert_int_equal(count_pages(r.data, r.len), 1);

    text = inflate_streams(r.data, r.len);
    assert_non_null(strstr(text, "Net cost"));
    assert_non_null(strstr(text, "epoch 1"));
    /* -$0.041152 shows as -0.04 with a mark, explained by a footnote,
     * and the charges total -$1.341319 shows its exact figure. */
    assert_non_null(strstr(text, "-0.04*"));
    assert_non_null(strstr(text, "* Rounded to the cent"));
    assert_non_null(strstr(text, "exact: -$1.341319"));
    assert_int_equal(r.totals.net, -USD(1.2) + USD(0.9) - 41152 - 100167);
    free(text);
    report_free(&r);
}

static void statement_pdf_spans_pages(void **state)
{
    struct fixture *f = *state;
    struct report r;
    struct error err = {0};
    char *text;

    assert_int_equal(store_begin(&f->st, &err), 0);
    for (int i = 0; i < 150; i++) {
        struct ledger_entry e = {.account_id = f->account,
                                 .kind = LEDGER_TOPUP,
                                 .amount = USD(1),
                                 .description = "top-up \xe2\x82\xac caf"
                                                "\xc3\xa9"};

        assert_int_equal(ledger_append_tx(&f->st, &e, NULL, NULL, &err), 0);
    }
    assert_int_equal(store_commit(&f->st, &err), 0);

    assert_int_equal(
        report_statement(&f->st, f->account, 0, 0, REPORT_PDF, &r, &err), 0);
    assert_memory_equal(r.data, "%PDF-", 5);
    assert_true(count_pages(r.data, r.len) >= 3);
    text = inflate_streams(r.data, r.len);
    assert_non_null(strstr(text, "Closing balance"));
    assert_non_null(strstr(text, "150.00"));
    /* Whole cents everywhere: no exact figures, no footnote. */
    assert_null(strstr(text, "exact:"));
    assert_null(strstr(text, "* Rounded"));
    free(text);
    assert_int_equal(r.totals.rows, 150);
    assert_int_equal(r.totals.closing_balance, USD(150));
    report_free(&r);
}

static void empty_report_pdf(void **state)
{
    struct fixture *f = *state;
    struct report r;
    struct error err = {0};

    assert_int_equal(
        report_model(&f->st, f->account, f->model, REPORT_PDF, &r, &err), 0);
    assert_memory_equal(r.data, "%PDF-", 5);
    assert_int_equal(count_pages(r.data, r.len), 1);
    assert_int_equal(r.totals.rows, 0);
    report_free(&r);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(csv_field_quotes_and_neutralizes),
        TEST(model_csv_matches_ledger),
        TEST(model_csv_shows_write_off),
        TEST(statement_csv_balances),
        TEST(report_rejects_foreign_model),
        TEST(report_saves_to_file),
        TEST(model_pdf_is_well_formed),
        TEST(statement_pdf_spans_pages),
        TEST(empty_report_pdf),
    };

    log_init("test", LOG_LEVEL_WARN, 2);
    return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
