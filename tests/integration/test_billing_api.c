/*
 * The billing endpoints through the real backend and gateway on
 * 127.0.0.1: instance types and prices, the balance, the ledger, top-ups
 * with the TEST payment provider, operator credits, and the CSV and PDF
 * reports. The tests check money to the micro-dollar, idempotent top-ups,
 * declined and invalid cards, amount limits, CSRF and sign-in, admin-only
 * credits, and that another account's model reads as not found.
 *
 * One backend and gateway serve all tests, which keeps the program fast
 * under AddressSanitizer. Each test that moves money creates its own
 * accounts, so no test depends on the balance that another one left. The
 * gateway allows only STACK_SIGNIN_LIMIT sign-ins per minute from 127.0.0.1, so
 * new_user restarts it when the limit is reached; sessions live in the backend
 * and survive that.
 *
 * The TEST provider approves 4242 4242 4242 4242 and declines
 * 4000 0000 0000 0002 (docs/BILLING.md). Password hashing uses
 * TRAINYARD_PWHASH=fast, which exists for tests only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "stack.h"

#define ADMIN_EMAIL "admin@example.com"
#define ADMIN_PASSWORD "admin-pass-6130"
#define USER_PASSWORD "user-pass-2287"

#define CARD_APPROVED "4242 4242 4242 4242"
#define CARD_DECLINED "4000 0000 0000 0002"

#define USD 1000000 /* micro-dollars per dollar */

/* An SQL expression for the current Unix time in milliseconds. */
#define NOW_MS "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"

/* Columns of a billing CSV report, in the order of its header line. */
enum csv_column {
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
    COL_BALANCE_AFTER,
    COL_DESCRIPTION,
    CSV_COLUMNS
};

#define CSV_HEADER                                                             \
    "time_utc,kind,model,session,item,instance,rate_usd_per_hour,seconds,"     \
    "amount_usd,written_off_usd,balance_after_usd,description"

struct billing {
    struct stack *stack;
    struct browser admin;
    int64_t admin_id;
    int users; /* accounts created so far, for unique emails */
};

/* One parsed CSV file: rows of exactly CSV_COLUMNS fields. */
struct csv {
    char *(*rows)[CSV_COLUMNS];
    size_t count;
};

/* ---- fixture ------------------------------------------------------------ */

static int billing_setup(void **state)
{
    struct billing *fx = calloc(1, sizeof(*fx));
    struct http_reply r;
    char headers[512];

    assert_non_null(fx);
    fx->stack = stack_start(ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_int_equal(
        stack_signin(fx->stack, ADMIN_EMAIL, ADMIN_PASSWORD, &fx->admin), 200);
    browser_headers(&fx->admin, 0, headers, sizeof(headers));
    stack_request(fx->stack, "GET", "/api/v1/me", headers, NULL, &r);
    assert_int_equal(r.status, 200);
    fx->admin_id = (int64_t)json_number(r.body, "account", "id");
    harness_http_free(&r);
    assert_true(fx->admin_id > 0);
    *state = fx;
    return 0;
}

static int billing_teardown(void **state)
{
    /* No password and no whole card number may reach a log. */
    static const char *const secrets[] = {
        ADMIN_PASSWORD,     USER_PASSWORD, CARD_APPROVED,
        "4242424242424242", CARD_DECLINED, "4000000000000002",
        "4242424242424241",
    };
    struct billing *fx = *state;
    int rc;

    if (fx == NULL)
        return 0;
    rc = stack_stop(fx->stack, secrets, sizeof(secrets) / sizeof(secrets[0]));
    free(fx);
    return rc;
}

/* Create a new user account and sign it in; returns its id. */
static int64_t new_user(struct billing *fx, struct browser *user)
{
    char email[64];

    if (fx->stack->signins >= STACK_SIGNIN_LIMIT)
        stack_restart_gateway(fx->stack, NULL);
    snprintf(email, sizeof(email), "user%d@example.com", ++fx->users);
    return stack_create_user(fx->stack, &fx->admin, email, USER_PASSWORD, user);
}

/* ---- requests ----------------------------------------------------------- */

/* Fail the test at the caller's line unless two amounts are equal; the
 * message shows both in decimal, which cmocka's integer asserts do not. */
#define expect_micro(label, actual, expected)                                  \
    check_micro((label), (actual), (expected), __FILE__, __LINE__)

static void check_micro(const char *label, int64_t actual, int64_t expected,
                        const char *file, int line)
{
    if (actual == expected)
        return;
    print_error("%s: expected %" PRId64 " micro-dollars, got %" PRId64 "\n",
                label, expected, actual);
    _fail(file, line);
}

/* GET target as b and fail the test unless it returns 200. */
static void get_ok(struct billing *fx, const struct browser *b,
                   const char *target, struct http_reply *r)
{
    char headers[512];

    browser_headers(b, 0, headers, sizeof(headers));
    stack_request(fx->stack, "GET", target, headers, NULL, r);
    if (r->status != 200)
        fail_msg("GET %s: expected 200, got %d: %s", target, r->status,
                 r->body);
}

static int64_t get_balance(struct billing *fx, const struct browser *b)
{
    struct http_reply r;
    int64_t balance;

    get_ok(fx, b, "/api/v1/balance", &r);
    balance = (int64_t)json_number(r.body, "balance", NULL);
    harness_http_free(&r);
    return balance;
}

/* The account's ledger entries; free the result with cJSON_Delete. */
static cJSON *get_ledger(struct billing *fx, const struct browser *b)
{
    struct http_reply r;
    cJSON *root;

    get_ok(fx, b, "/api/v1/ledger", &r);
    root = cJSON_Parse(r.body);
    harness_http_free(&r);
    assert_non_null(root);
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(root, "entries")));
    return root;
}

static int ledger_count(struct billing *fx, const struct browser *b)
{
    cJSON *root = get_ledger(fx, b);
    int count = cJSON_GetArraySize(cJSON_GetObjectItem(root, "entries"));

    cJSON_Delete(root);
    return count;
}

static int64_t entry_int(const cJSON *entry, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, name);

    if (!cJSON_IsNumber(v))
        fail_msg("ledger entry has no number '%s'", name);
    return (int64_t)v->valuedouble;
}

static const char *entry_text(const cJSON *entry, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, name);

    if (!cJSON_IsString(v))
        fail_msg("ledger entry has no string '%s'", name);
    return v->valuestring;
}

/* POST /api/v1/topup as b, with its CSRF token. */
static void topup(struct billing *fx, const struct browser *b, int64_t amount,
                  const char *card, const char *key, struct http_reply *r)
{
    char headers[512], body[256];

    browser_headers(b, 1, headers, sizeof(headers));
    snprintf(body, sizeof(body),
             "{\"amount\":%" PRId64 ",\"card\":\"%s\","
             "\"idempotency_key\":\"%s\"}",
             amount, card, key);
    stack_request(fx->stack, "POST", "/api/v1/topup", headers, body, r);
}

/* Top up with the approved card and fail the test unless it returns 200
 * with the new balance. */
static void topup_ok(struct billing *fx, const struct browser *b,
                     int64_t amount, const char *key)
{
    struct http_reply r;

    topup(fx, b, amount, CARD_APPROVED, key, &r);
    if (r.status != 200)
        fail_msg("top-up of %" PRId64 " with key %s: expected 200, got %d: %s",
                 amount, key, r.status, r.body);
    assert_true(json_number(r.body, "balance", NULL) >= (double)amount);
    harness_http_free(&r);
}

/* POST /api/v1/admin/accounts/{account}/credits as the admin. */
static void credit(struct billing *fx, int64_t account, const char *body,
                   struct http_reply *r)
{
    char headers[512], target[96];

    browser_headers(&fx->admin, 1, headers, sizeof(headers));
    snprintf(target, sizeof(target),
             "/api/v1/admin/accounts/%" PRId64 "/credits", account);
    stack_request(fx->stack, "POST", target, headers, body, r);
}

/* Fail the test unless r is an error with status and code whose message
 * contains needle. */
static void assert_error_names(const struct http_reply *r, int status,
                               const char *code, const char *needle)
{
    char message[512];

    assert_error(r, status, code);
    json_text(r->body, "error", "message", message, sizeof(message));
    if (strstr(message, needle) == NULL)
        fail_msg("error message does not name '%s': %s", needle, message);
}

/* ---- CSV ---------------------------------------------------------------- */

static void csv_free(struct csv *csv)
{
    for (size_t i = 0; i < csv->count; i++)
        for (int c = 0; c < CSV_COLUMNS; c++)
            free(csv->rows[i][c]);
    free(csv->rows);
    csv->rows = NULL;
    csv->count = 0;
}

/* Parse RFC 4180 text with CRLF line ends into csv, header line included.
 * Fails the test on a row without CSV_COLUMNS fields or a bare LF. */
static void csv_parse(const char *text, size_t len, struct csv *csv)
{
    char *field = malloc(len + 1);
    size_t cap = 0, field_len = 0, i = 0;
    int column = 0;

    assert_non_null(field);
    memset(csv, 0, sizeof(*csv));
    while (i < len) {
        int quoted = text[i] == '"';

        /* One field, up to the comma or CRLF after it. */
        field_len = 0;
        if (quoted) {
            for (i++; i < len; i++) {
                if (text[i] == '"' && i + 1 < len && text[i + 1] == '"')
                    field[field_len++] = text[i++];
                else if (text[i] == '"')
                    break;
                else
                    field[field_len++] = text[i];
            }
            assert_true(i < len); /* the closing quote */
            i++;
        } else {
            while (i < len && text[i] != ',' && text[i] != '\r' &&
                   text[i] != '\n')
                field[field_len++] = text[i++];
        }
        field[field_len] = '\0';

        if (column == 0) {
            if (csv->count == cap) {
                cap = cap ? cap * 2 : 16;
                csv->rows = realloc(csv->rows, cap * sizeof(*csv->rows));
                assert_non_null(csv->rows);
            }
            memset(csv->rows[csv->count], 0, sizeof(*csv->rows));
            csv->count++;
        }
        if (column >= CSV_COLUMNS)
            fail_msg("CSV row %zu has more than %d fields", csv->count,
                     CSV_COLUMNS);
        csv->rows[csv->count - 1][column++] = strdup(field);

        if (i < len && text[i] == ',') {
            i++;
            continue;
        }
        if (i + 1 < len && text[i] == '\r' && text[i + 1] == '\n') {
            i += 2;
        } else if (i < len) {
            fail_msg("CSV row %zu: expected ',' or CRLF at byte %zu",
                     csv->count, i);
        }
        if (column != CSV_COLUMNS)
            fail_msg("CSV row %zu has %d fields, expected %d", csv->count,
                     column, CSV_COLUMNS);
        column = 0;
    }
    free(field);
}

/* Parse a CSV dollar figure with exactly six decimals ("-0.150000") into
 * micro-dollars, without floating point. */
static int64_t parse_usd(const char *text)
{
    const char *p = text;
    int negative = *p == '-';
    int64_t whole = 0, fraction = 0;
    int digits = 0;

    if (negative)
        p++;
    for (; *p >= '0' && *p <= '9'; p++, digits++)
        whole = whole * 10 + (*p - '0');
    if (digits == 0 || *p != '.')
        fail_msg("'%s' is not a dollar figure with six decimals", text);
    for (p++, digits = 0; *p >= '0' && *p <= '9'; p++, digits++)
        fraction = fraction * 10 + (*p - '0');
    if (digits != 6 || *p != '\0')
        fail_msg("'%s' is not a dollar figure with six decimals", text);
    return (negative ? -1 : 1) * (whole * USD + fraction);
}

/* The value of the totals line named name, from column. */
static int64_t csv_total(const struct csv *csv, const char *name,
                         enum csv_column column)
{
    for (size_t i = 1; i < csv->count; i++)
        if (strcmp(csv->rows[i][COL_KIND], "total") == 0 &&
            strcmp(csv->rows[i][COL_ITEM], name) == 0)
            return parse_usd(csv->rows[i][column]);
    fail_msg("the CSV has no totals line '%s'", name);
    return 0;
}

/* Fail the test unless r is a download of content_type named filename,
 * with a whole body. */
static void assert_download(const struct http_reply *r,
                            const char *content_type, const char *filename)
{
    char value[512], expected[512];

    if (r->status != 200)
        fail_msg("expected 200 with %s, got %d: %s", filename, r->status,
                 r->body);
    assert_int_equal(harness_header(r, "Content-Type", value, sizeof(value)),
                     0);
    assert_string_equal(value, content_type);

    /* The name is safe as it is, so the sanitized ASCII form and the
     * percent-encoded form are both the name itself. */
    for (const char *p = filename; *p != '\0'; p++)
        assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
                               *p));
    assert_int_equal(
        harness_header(r, "Content-Disposition", value, sizeof(value)), 0);
    snprintf(expected, sizeof(expected),
             "attachment; filename=\"%s\"; filename*=UTF-8''%s", filename,
             filename);
    assert_string_equal(value, expected);

    assert_int_equal(harness_header(r, "Content-Length", value, sizeof(value)),
                     0);
    assert_int_equal(strtoull(value, NULL, 10), r->body_len);
    assert_int_equal(harness_header(r, "Cache-Control", value, sizeof(value)),
                     0);
    assert_string_equal(value, "no-store");
}

/* ---- tests -------------------------------------------------------------- */

static void balance_starts_at_zero(void **state)
{
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;

    new_user(fx, &user);
    get_ok(fx, &user, "/api/v1/balance", &r);
    expect_micro("balance", (int64_t)json_number(r.body, "balance", NULL), 0);
    /* Starting an epoch training needs $5.00 (docs/BILLING.md). */
    expect_micro("epoch_start_minimum",
                 (int64_t)json_number(r.body, "epoch_start_minimum", NULL),
                 5 * USD);
    harness_http_free(&r);
    assert_int_equal(ledger_count(fx, &user), 0);
}

static void topup_adds_exact_amount(void **state)
{
    /* Not whole cents, so that any rounding would show. */
    const int64_t amount = 12345678;
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;
    cJSON *root, *entry;

    new_user(fx, &user);
    topup(fx, &user, amount, CARD_APPROVED, "topup-exact-1", &r);
    if (r.status != 200)
        fail_msg("expected 200, got %d: %s", r.status, r.body);
    expect_micro("balance in the response",
                 (int64_t)json_number(r.body, "balance", NULL), amount);
    harness_http_free(&r);
    expect_micro("balance", get_balance(fx, &user), amount);

    root = get_ledger(fx, &user);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "entries")),
                     1);
    entry = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "entries"), 0);
    assert_string_equal(entry_text(entry, "kind"), "topup");
    expect_micro("amount", entry_int(entry, "amount"), amount);
    expect_micro("balance_after", entry_int(entry, "balance_after"), amount);
    /* The description marks a TEST payment and shows only the last four
     * digits of the card. */
    assert_non_null(strstr(entry_text(entry, "description"), "TEST"));
    assert_non_null(strstr(entry_text(entry, "description"), "ending 4242"));
    assert_null(strstr(entry_text(entry, "description"), "4242 4242"));
    assert_null(strstr(entry_text(entry, "description"), "42424242"));
    cJSON_Delete(root);
}

static void topup_same_key_adds_nothing(void **state)
{
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;

    new_user(fx, &user);
    topup_ok(fx, &user, 10 * USD, "topup-retry-1");

    /* A retry with the same key succeeds and writes nothing, even with
     * another amount. */
    topup(fx, &user, 10 * USD, CARD_APPROVED, "topup-retry-1", &r);
    assert_int_equal(r.status, 200);
    expect_micro("balance in the retry's response",
                 (int64_t)json_number(r.body, "balance", NULL), 10 * USD);
    harness_http_free(&r);
    topup(fx, &user, 3 * USD, CARD_APPROVED, "topup-retry-1", &r);
    assert_int_equal(r.status, 200);
    harness_http_free(&r);
    expect_micro("balance after retries", get_balance(fx, &user), 10 * USD);
    assert_int_equal(ledger_count(fx, &user), 1);

    /* A new key is a new payment. */
    topup_ok(fx, &user, 10 * USD, "topup-retry-2");
    expect_micro("balance after a new key", get_balance(fx, &user), 20 * USD);
    assert_int_equal(ledger_count(fx, &user), 2);
}

static void topup_declined_card_402(void **state)
{
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;

    new_user(fx, &user);
    topup(fx, &user, 5 * USD, CARD_DECLINED, "topup-declined-1", &r);
    assert_error_names(&r, 402, "payment_declined", "card declined");
    harness_http_free(&r);
    expect_micro("balance", get_balance(fx, &user), 0);
    assert_int_equal(ledger_count(fx, &user), 0);

    /* The declined payment did not use up its key. */
    topup_ok(fx, &user, 5 * USD, "topup-declined-1");
    expect_micro("balance after a good card", get_balance(fx, &user), 5 * USD);
}

static void topup_invalid_card_400(void **state)
{
    static const struct {
        const char *card, *needle;
    } cases[] = {
        {"4242 4242 4242 4241", "Luhn"}, /* wrong check digit */
        {"4242-4242-4242-4242", "'-'"},  /* not a digit */
        {"4242 4242", "has 8 digits"},   /* too short */
        {"4242 4242 4242 4242 4242", "has 20 digits"},
        {"", "missing"},
    };
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;

    new_user(fx, &user);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        topup(fx, &user, 5 * USD, cases[i].card, "topup-invalid-1", &r);
        if (r.status != 400)
            fail_msg("card '%s': expected 400, got %d: %s", cases[i].card,
                     r.status, r.body);
        assert_error_names(&r, 400, "invalid_request", cases[i].needle);
        harness_http_free(&r);
    }
    expect_micro("balance", get_balance(fx, &user), 0);
    assert_int_equal(ledger_count(fx, &user), 0);
}

static void topup_amount_out_of_range(void **state)
{
    /* A top-up is $1.00 to $10,000.00 inclusive (docs/BILLING.md). */
    static const struct {
        int64_t amount;
        const char *needle;
    } cases[] = {
        {500000, "$0.50"},                    /* below the minimum */
        {20000LL * USD, "$20000.00"},         /* above the maximum */
        {USD - 1, "$0.999999"},               /* just below */
        {10000LL * USD + 1, "$10000.000001"}, /* just above */
        {0, "$0.00"},
        {-USD, "-$1.00"},
    };
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;
    char key[32];

    new_user(fx, &user);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(key, sizeof(key), "topup-range-%zu", i);
        topup(fx, &user, cases[i].amount, CARD_APPROVED, key, &r);
        if (r.status != 400)
            fail_msg("amount %" PRId64 ": expected 400, got %d: %s",
                     cases[i].amount, r.status, r.body);
        assert_error_names(&r, 400, "invalid_request", cases[i].needle);
        harness_http_free(&r);
    }
    expect_micro("balance after rejected amounts", get_balance(fx, &user), 0);
    assert_int_equal(ledger_count(fx, &user), 0);

    /* Both limits are allowed. */
    topup_ok(fx, &user, USD, "topup-range-min");
    topup_ok(fx, &user, 10000LL * USD, "topup-range-max");
    expect_micro("balance after both limits", get_balance(fx, &user),
                 10001LL * USD);
}

static void topup_malformed_400(void **state)
{
    static const struct {
        const char *body, *needle;
    } cases[] = {
        {"{\"card\":\"" CARD_APPROVED "\",\"idempotency_key\":\"k\"}",
         "amount"},
        {"{\"amount\":\"5000000\",\"card\":\"" CARD_APPROVED
         "\",\"idempotency_key\":\"k\"}",
         "'amount' must be a whole number"},
        {"{\"amount\":5000000.5,\"card\":\"" CARD_APPROVED
         "\",\"idempotency_key\":\"k\"}",
         "'amount' must be a whole number"},
        {"{\"amount\":5000000,\"idempotency_key\":\"k\"}", "card"},
        {"{\"amount\":5000000,\"card\":4242424242424242,"
         "\"idempotency_key\":\"k\"}",
         "'card' must be a string"},
        {"{\"amount\":5000000,\"card\":\"" CARD_APPROVED "\"}",
         "idempotency_key"},
        {"{\"amount\":5000000,\"card\":\"" CARD_APPROVED
         "\",\"idempotency_key\":\"\"}",
         "idempotency key is missing"},
    };
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;
    char headers[512];

    new_user(fx, &user);
    browser_headers(&user, 1, headers, sizeof(headers));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        stack_request(fx->stack, "POST", "/api/v1/topup", headers,
                      cases[i].body, &r);
        if (r.status != 400)
            fail_msg("body %s: expected 400, got %d: %s", cases[i].body,
                     r.status, r.body);
        assert_error_names(&r, 400, "invalid_request", cases[i].needle);
        harness_http_free(&r);
    }
    expect_micro("balance", get_balance(fx, &user), 0);
}

static void topup_without_csrf_403(void **state)
{
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;
    char headers[512];

    new_user(fx, &user);
    browser_headers(&user, 0, headers, sizeof(headers));
    stack_request(fx->stack, "POST", "/api/v1/topup", headers,
                  "{\"amount\":5000000,\"card\":\"" CARD_APPROVED
                  "\",\"idempotency_key\":\"topup-csrf-1\"}",
                  &r);
    assert_error(&r, 403, "csrf_failed");
    harness_http_free(&r);
    expect_micro("balance", get_balance(fx, &user), 0);
    assert_int_equal(ledger_count(fx, &user), 0);
}

static void billing_needs_signin_401(void **state)
{
    static const struct {
        const char *method, *target, *body;
    } cases[] = {
        {"GET", "/api/v1/balance", NULL},
        {"GET", "/api/v1/ledger", NULL},
        {"GET", "/api/v1/instance-types", NULL},
        {"GET", "/api/v1/statement.csv", NULL},
        {"GET", "/api/v1/statement.pdf", NULL},
        {"GET", "/api/v1/models/1/billing.csv", NULL},
        {"GET", "/api/v1/models/1/billing.pdf", NULL},
        {"POST", "/api/v1/topup",
         "{\"amount\":5000000,\"card\":\"" CARD_APPROVED
         "\",\"idempotency_key\":\"topup-anonymous-1\"}"},
        {"POST", "/api/v1/admin/accounts/1/credits",
         "{\"amount\":5000000,\"description\":\"anonymous\"}"},
    };
    struct billing *fx = *state;
    struct http_reply r;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        stack_request(fx->stack, cases[i].method, cases[i].target,
                      STACK_JSON_HEADER, cases[i].body, &r);
        if (r.status != 401)
            fail_msg("%s %s: expected 401, got %d: %s", cases[i].method,
                     cases[i].target, r.status, r.body);
        assert_error(&r, 401, "unauthorized");
        harness_http_free(&r);
    }
}

static void admin_credit_reaches_user(void **state)
{
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;
    char expected[128];
    cJSON *root, *entry;
    int64_t id;

    id = new_user(fx, &user);
    credit(fx, id, "{\"amount\":7500000,\"description\":\"outage goodwill\"}",
           &r);
    if (r.status != 201)
        fail_msg("expected 201, got %d: %s", r.status, r.body);
    assert_int_equal((int64_t)json_number(r.body, "account", NULL), id);
    expect_micro("amount in the response",
                 (int64_t)json_number(r.body, "amount", NULL), 7500000);
    harness_http_free(&r);

    expect_micro("balance", get_balance(fx, &user), 7500000);
    root = get_ledger(fx, &user);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "entries")),
                     1);
    entry = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "entries"), 0);
    assert_string_equal(entry_text(entry, "kind"), "credit");
    expect_micro("amount", entry_int(entry, "amount"), 7500000);
    expect_micro("balance_after", entry_int(entry, "balance_after"), 7500000);
    /* The ledger has no admin column, so the description names the
     * admin. */
    snprintf(expected, sizeof(expected),
             "credit by admin %" PRId64 ": outage goodwill", fx->admin_id);
    assert_string_equal(entry_text(entry, "description"), expected);
    cJSON_Delete(root);

    /* The admin's own balance is untouched. */
    expect_micro("admin balance", get_balance(fx, &fx->admin), 0);
}

static void admin_credit_invalid_400(void **state)
{
    static const struct {
        const char *body, *needle;
    } cases[] = {
        {"{\"amount\":0,\"description\":\"zero\"}", "$0.00"},
        {"{\"amount\":-1000000,\"description\":\"negative\"}", "-$1.00"},
        {"{\"amount\":10000000001,\"description\":\"too much\"}", "$10000.00"},
        {"{\"amount\":1000000,\"description\":\"\"}", "reason"},
        {"{\"amount\":1000000}", "description"},
        {"{\"description\":\"no amount\"}", "amount"},
    };
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;
    int64_t id;

    id = new_user(fx, &user);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        credit(fx, id, cases[i].body, &r);
        if (r.status != 400)
            fail_msg("body %s: expected 400, got %d: %s", cases[i].body,
                     r.status, r.body);
        assert_error_names(&r, 400, "invalid_request", cases[i].needle);
        harness_http_free(&r);
    }
    expect_micro("balance", get_balance(fx, &user), 0);
    assert_int_equal(ledger_count(fx, &user), 0);
}

static void user_credit_forbidden_403(void **state)
{
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;
    char headers[512], target[96];
    int64_t id;

    id = new_user(fx, &user);
    browser_headers(&user, 1, headers, sizeof(headers));
    snprintf(target, sizeof(target),
             "/api/v1/admin/accounts/%" PRId64 "/credits", id);
    stack_request(fx->stack, "POST", target, headers,
                  "{\"amount\":5000000,\"description\":\"self\"}", &r);
    assert_error(&r, 403, "forbidden");
    harness_http_free(&r);
    expect_micro("balance", get_balance(fx, &user), 0);
    assert_int_equal(ledger_count(fx, &user), 0);
}

static void statement_csv_matches_ledger(void **state)
{
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;
    struct csv csv;
    char header[256] = "", expected[128];
    cJSON *root, *entries;
    int64_t id, balance, sum = 0, payments = 0;
    size_t rows = 0;

    id = new_user(fx, &user);
    topup_ok(fx, &user, 20 * USD, "statement-1");
    credit(fx, id,
           "{\"amount\":2500001,\"description\":\"for \\\"slow\\\", sorry\"}",
           &r);
    assert_int_equal(r.status, 201);
    harness_http_free(&r);
    topup_ok(fx, &user, 1234567, "statement-2");
    balance = get_balance(fx, &user);
    expect_micro("balance", balance, 20 * USD + 2500001 + 1234567);
    root = get_ledger(fx, &user);
    entries = cJSON_GetObjectItem(root, "entries");

    get_ok(fx, &user, "/api/v1/statement.csv", &r);
    assert_download(&r, "text/csv; charset=utf-8", "trainyard-statement.csv");
    csv_parse(r.body, r.body_len, &csv);
    harness_http_free(&r);

    assert_true(csv.count > 1);
    for (int c = 0; c < CSV_COLUMNS; c++) {
        strcat(header, csv.rows[0][c]);
        strcat(header, c + 1 < CSV_COLUMNS ? "," : "");
    }
    assert_string_equal(header, CSV_HEADER);

    /* Each ledger row appears once, in order, with the same figures. */
    for (size_t i = 1; i < csv.count; i++) {
        const cJSON *entry;
        int64_t amount;

        if (strcmp(csv.rows[i][COL_KIND], "total") == 0)
            continue;
        entry = cJSON_GetArrayItem(entries, (int)rows);
        assert_non_null(entry);
        assert_string_equal(csv.rows[i][COL_KIND], entry_text(entry, "kind"));
        amount = parse_usd(csv.rows[i][COL_AMOUNT]);
        expect_micro("CSV amount_usd", amount, entry_int(entry, "amount"));
        expect_micro("CSV balance_after_usd",
                     parse_usd(csv.rows[i][COL_BALANCE_AFTER]),
                     entry_int(entry, "balance_after"));
        sum += amount;
        if (strcmp(csv.rows[i][COL_KIND], "topup") == 0 ||
            strcmp(csv.rows[i][COL_KIND], "credit") == 0)
            payments += amount;
        rows++;
    }
    assert_int_equal(rows, cJSON_GetArraySize(entries));
    assert_int_equal(rows, 3);
    expect_micro("sum of CSV amount_usd", sum, balance);

    /* Commas and quotes survive the CSV quoting. */
    snprintf(expected, sizeof(expected),
             "credit by admin %" PRId64 ": for \"slow\", sorry", fx->admin_id);
    assert_string_equal(csv.rows[2][COL_DESCRIPTION], expected);

    expect_micro("opening balance",
                 csv_total(&csv, "opening balance", COL_BALANCE_AFTER), 0);
    expect_micro("payments", csv_total(&csv, "payments", COL_AMOUNT), payments);
    expect_micro("charges", csv_total(&csv, "charges", COL_AMOUNT), 0);
    expect_micro("refunds", csv_total(&csv, "refunds", COL_AMOUNT), 0);
    expect_micro("net", csv_total(&csv, "net", COL_AMOUNT), balance);
    expect_micro("closing balance",
                 csv_total(&csv, "closing balance", COL_BALANCE_AFTER),
                 balance);
    expect_micro("written off", csv_total(&csv, "written off", COL_WRITTEN_OFF),
                 0);
    csv_free(&csv);
    cJSON_Delete(root);
}

static void statement_pdf_is_pdf(void **state)
{
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;
    size_t tail;

    new_user(fx, &user);
    topup_ok(fx, &user, 12345678, "statement-pdf-1");
    get_ok(fx, &user, "/api/v1/statement.pdf", &r);
    assert_download(&r, "application/pdf", "trainyard-statement.pdf");
    assert_true(r.body_len > 100);
    assert_memory_equal(r.body, "%PDF-", 5);
    /* The end-of-file marker sits in the last bytes. */
    tail = r.body_len > 32 ? r.body_len - 32 : 0;
    assert_non_null(memmem(r.body + tail, r.body_len - tail, "%%EOF", 5));
    harness_http_free(&r);
}

static void model_billing_owner_only(void **state)
{
    struct billing *fx = *state;
    struct browser owner, other;
    struct http_reply r;
    struct csv csv;
    char sql[512], target[96], headers[512];
    int64_t owner_id, model_id = 41;
    size_t rows = 0;

    owner_id = new_user(fx, &owner);
    new_user(fx, &other);

    /* No endpoint creates models yet, and only a training charges one, so
     * the data set, model and charge are written with SQL, as the backend
     * would leave them after a training. The charge follows a top-up, so that
     * balance_after stays the running sum. The model name starts with '=' and
     * has a comma, which the CSV must neutralize and quote. */
    topup_ok(fx, &owner, 5 * USD, "model-billing-1");
    snprintf(sql, sizeof(sql),
             "INSERT INTO datasets (id, account_id, name, task, path, "
             "created_at) VALUES (41, %" PRId64 ", 'flowers', 'classify', "
             "'datasets/41', " NOW_MS ")",
             owner_id);
    stack_database_exec(fx->stack, sql);
    snprintf(
        sql, sizeof(sql),
        "INSERT INTO models (id, account_id, dataset_id, name, task, "
        "architecture, created_at) VALUES (%" PRId64 ", %" PRId64
        ", 41, '=SUM(A1), flowers', 'classify', 'yolov8n-cls.yaml', " NOW_MS
        ")",
        model_id, owner_id);
    stack_database_exec(fx->stack, sql);
    snprintf(sql, sizeof(sql),
             "INSERT INTO ledger (account_id, kind, amount, balance_after, "
             "idempotency_key, model_id, description, created_at) VALUES "
             "(%" PRId64 ", 'charge', -150000, 4850000, 'fixture:charge', "
             "%" PRId64 ", 'fixture charge', " NOW_MS ")",
             owner_id, model_id);
    stack_database_exec(fx->stack, sql);

    /* Another account gets the same 404 that a missing model gets. */
    browser_headers(&other, 0, headers, sizeof(headers));
    snprintf(target, sizeof(target), "/api/v1/models/%" PRId64 "/billing.csv",
             model_id);
    stack_request(fx->stack, "GET", target, headers, NULL, &r);
    assert_error(&r, 404, "not_found");
    assert_null(strstr(r.body, "flowers"));
    harness_http_free(&r);
    snprintf(target, sizeof(target), "/api/v1/models/%" PRId64 "/billing.pdf",
             model_id);
    stack_request(fx->stack, "GET", target, headers, NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);
    stack_request(fx->stack, "GET", "/api/v1/models/999999/billing.csv",
                  headers, NULL, &r);
    assert_error(&r, 404, "not_found");
    harness_http_free(&r);

    /* The owner gets the model's charges and nothing else. */
    snprintf(target, sizeof(target), "/api/v1/models/%" PRId64 "/billing.csv",
             model_id);
    get_ok(fx, &owner, target, &r);
    assert_download(&r, "text/csv; charset=utf-8",
                    "trainyard-model-41-billing.csv");
    csv_parse(r.body, r.body_len, &csv);
    harness_http_free(&r);
    for (size_t i = 1; i < csv.count; i++) {
        if (strcmp(csv.rows[i][COL_KIND], "total") == 0)
            continue;
        assert_string_equal(csv.rows[i][COL_KIND], "charge");
        assert_string_equal(csv.rows[i][COL_MODEL], "'=SUM(A1), flowers");
        expect_micro("charge", parse_usd(csv.rows[i][COL_AMOUNT]), -150000);
        rows++;
    }
    assert_int_equal(rows, 1);
    expect_micro("charges", csv_total(&csv, "charges", COL_AMOUNT), -150000);
    expect_micro("net", csv_total(&csv, "net", COL_AMOUNT), -150000);
    csv_free(&csv);

    snprintf(target, sizeof(target), "/api/v1/models/%" PRId64 "/billing.pdf",
             model_id);
    get_ok(fx, &owner, target, &r);
    assert_download(&r, "application/pdf", "trainyard-model-41-billing.pdf");
    assert_memory_equal(r.body, "%PDF-", 5);
    harness_http_free(&r);
}

static void ledger_oldest_first(void **state)
{
    static const struct {
        const char *kind;
        int64_t amount;
    } expected[] = {
        {"topup", 3 * USD},
        {"credit", 1}, /* one micro-dollar */
        {"topup", 1500000},
    };
    struct billing *fx = *state;
    struct browser user;
    struct http_reply r;
    cJSON *root, *entries;
    int64_t id, running = 0, previous_id = 0, previous_time = 0;

    id = new_user(fx, &user);
    topup_ok(fx, &user, 3 * USD, "ledger-order-1");
    credit(fx, id, "{\"amount\":1,\"description\":\"one micro-dollar\"}", &r);
    assert_int_equal(r.status, 201);
    harness_http_free(&r);
    topup_ok(fx, &user, 1500000, "ledger-order-2");

    root = get_ledger(fx, &user);
    entries = cJSON_GetObjectItem(root, "entries");
    assert_int_equal(cJSON_GetArraySize(entries), 3);
    for (int i = 0; i < 3; i++) {
        const cJSON *entry = cJSON_GetArrayItem(entries, i);

        assert_string_equal(entry_text(entry, "kind"), expected[i].kind);
        expect_micro("amount", entry_int(entry, "amount"), expected[i].amount);
        running += expected[i].amount;
        expect_micro("balance_after", entry_int(entry, "balance_after"),
                     running);
        assert_true(entry_int(entry, "id") > previous_id);
        assert_true(entry_int(entry, "created_at") >= previous_time);
        previous_id = entry_int(entry, "id");
        previous_time = entry_int(entry, "created_at");
    }
    cJSON_Delete(root);
    expect_micro("balance", get_balance(fx, &user), running);
}

static void instance_types_default_cpu(void **state)
{
    struct billing *fx = *state;
    struct http_reply r;
    cJSON *root, *types, *type;

    get_ok(fx, &fx->admin, "/api/v1/instance-types", &r);
    root = cJSON_Parse(r.body);
    harness_http_free(&r);
    assert_non_null(root);
    types = cJSON_GetObjectItem(root, "instance_types");
    assert_true(cJSON_IsArray(types));
    /* Without a configuration file the backend sells one CPU type at
     * $0.50 an hour. */
    assert_int_equal(cJSON_GetArraySize(types), 1);
    type = cJSON_GetArrayItem(types, 0);
    assert_string_equal(entry_text(type, "name"), "cpu");
    assert_string_equal(entry_text(type, "device"), "cpu");
    expect_micro("price_per_hour", entry_int(type, "price_per_hour"), 500000);
    assert_int_equal(entry_int(type, "capacity"), 1);
    assert_true(entry_int(type, "id") > 0);
    cJSON_Delete(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(balance_starts_at_zero),
        cmocka_unit_test(topup_adds_exact_amount),
        cmocka_unit_test(topup_same_key_adds_nothing),
        cmocka_unit_test(topup_declined_card_402),
        cmocka_unit_test(topup_invalid_card_400),
        cmocka_unit_test(topup_amount_out_of_range),
        cmocka_unit_test(topup_malformed_400),
        cmocka_unit_test(topup_without_csrf_403),
        cmocka_unit_test(billing_needs_signin_401),
        cmocka_unit_test(admin_credit_reaches_user),
        cmocka_unit_test(admin_credit_invalid_400),
        cmocka_unit_test(user_credit_forbidden_403),
        cmocka_unit_test(statement_csv_matches_ledger),
        cmocka_unit_test(statement_pdf_is_pdf),
        cmocka_unit_test(model_billing_owner_only),
        cmocka_unit_test(ledger_oldest_first),
        cmocka_unit_test(instance_types_default_cpu),
    };

    /* Minimum-cost password hashes keep the suite fast; for tests only. */
    setenv("TRAINYARD_PWHASH", "fast", 1);
    unsetenv("TRAINYARD_ADMIN_PASSWORD");
    return cmocka_run_group_tests_name("billing_api", tests, billing_setup,
                                       billing_teardown);
}
