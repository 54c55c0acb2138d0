/*
 * Billing reports. Building one takes three steps: read the rows and
 * their names (model, instance) from the ledger in one query, sum them
 * into the totals, then render the same rows as CSV or PDF. Because both
 * formats print the rows that were summed, the totals always equal the
 * listed rows.
 *
 * The PDF uses libharu's built-in Helvetica with WinAnsiEncoding, which
 * covers Latin-1 only. Text from users is UTF-8, so characters outside
 * Latin-1 print as '?', and text too wide for its column is cut with
 * "...". The CSV keeps every character.
 */
#include "report.h"

#include <errno.h>
#include <hpdf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth_store.h"
#include "clock.h"
#include "fsutil.h"
#include "ledger.h"
#include "log.h"

/* ------------------------------------------------------------------------
 * A growing memory buffer. After an allocation failure it stays failed
 * and ignores further appends, so callers check once at the end. */

struct buffer {
    char *data;
    size_t len;
    size_t cap;
    int failed;
};

static void buf_append(struct buffer *b, const char *text, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *data;

        while (cap < b->len + n + 1)
            cap *= 2;
        data = realloc(b->data, cap);
        if (data == NULL) {
            b->failed = 1;
            return;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, text, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(struct buffer *b, const char *text)
{
    buf_append(b, text, strlen(text));
}

/* ------------------------------------------------------------------------
 * Rows. */

struct row {
    int64_t id;
    int64_t created_at;
    enum ledger_kind kind;
    int64_t amount;
    int64_t balance_after;
    int64_t session_id;
    int64_t model_id;
    int epoch;
    int64_t rate;
    double seconds;
    int64_t written_off;
    char *model;    /* model name, "" without a model */
    char *instance; /* instance type name, "" without a session */
    char *description;
};

struct document {
    int statement; /* 1: account statement, 0: model report */
    char title[400];
    char lines[4][600]; /* subtitle lines, "" when unused */
    struct row *rows;
    size_t count;
    size_t cap;
    struct report_totals totals;
};

static void document_free(struct document *doc)
{
    for (size_t i = 0; i < doc->count; i++) {
        free(doc->rows[i].model);
        free(doc->rows[i].instance);
        free(doc->rows[i].description);
    }
    free(doc->rows);
    doc->rows = NULL;
    doc->count = doc->cap = 0;
}

static char *copy_column(sqlite3_stmt *stmt, int column)
{
    const unsigned char *text = sqlite3_column_text(stmt, column);

    return strdup(text ? (const char *)text : "");
}

static int add_row(struct document *doc, sqlite3_stmt *stmt)
{
    struct row *r;

    if (doc->count == doc->cap) {
        size_t cap = doc->cap ? doc->cap * 2 : 64;
        struct row *rows = realloc(doc->rows, cap * sizeof(*rows));

        if (rows == NULL)
            return -ENOMEM;
        doc->rows = rows;
        doc->cap = cap;
    }
    r = &doc->rows[doc->count];
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(stmt, 0);
    r->created_at = sqlite3_column_int64(stmt, 1);
    ledger_kind_parse((const char *)sqlite3_column_text(stmt, 2), &r->kind);
    r->amount = sqlite3_column_int64(stmt, 3);
    r->balance_after = sqlite3_column_int64(stmt, 4);
    r->session_id = sqlite3_column_int64(stmt, 5);
    r->model_id = sqlite3_column_int64(stmt, 6);
    r->epoch = sqlite3_column_int(stmt, 7);
    r->rate = sqlite3_column_int64(stmt, 8);
    r->seconds = sqlite3_column_double(stmt, 9);
    r->description = copy_column(stmt, 10);
    r->model = copy_column(stmt, 11);
    r->instance = copy_column(stmt, 12);
    doc->count++;
    if (r->description == NULL || r->model == NULL || r->instance == NULL)
        return -ENOMEM;

    /* An epoch charge is billing_cost(seconds, rate) unless the balance
     * was short; the difference was written off (ledger.c). */
    if (r->kind == LEDGER_CHARGE && r->epoch > 0) {
        int64_t cost = billing_cost(r->seconds, r->rate);

        if (cost + r->amount > 0)
            r->written_off = cost + r->amount;
    }
    return 0;
}

#define ROW_QUERY                                                              \
    "SELECT l.id, l.created_at, l.kind, l.amount, l.balance_after,"            \
    " l.session_id, l.model_id, l.epoch, l.rate, l.seconds, l.description,"    \
    " m.name, i.name"                                                          \
    " FROM ledger l"                                                           \
    " LEFT JOIN models m ON m.id = l.model_id"                                 \
    " LEFT JOIN sessions s ON s.id = l.session_id"                             \
    " LEFT JOIN instance_types i ON i.id = s.instance_type_id"

/* Read the rows that stmt selects into doc and sum them. */
static int read_rows(struct store *st, sqlite3_stmt *stmt, struct document *doc,
                     struct error *err)
{
    struct report_totals *t = &doc->totals;
    int rc;

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const struct row *r;

        if (add_row(doc, stmt) != 0)
            return error_set(err, -ENOMEM, "out of memory reading report rows");
        r = &doc->rows[doc->count - 1];
        if (r->kind == LEDGER_CHARGE)
            t->charges += r->amount;
        else if (r->kind == LEDGER_REFUND)
            t->refunds += r->amount;
        else
            t->payments += r->amount;
        t->net += r->amount;
        t->written_off += r->written_off;
    }
    if (rc != SQLITE_DONE)
        return error_set(err, -EIO,
                         "database error while reading report "
                         "rows: %s",
                         sqlite3_errmsg(st->db));
    t->rows = doc->count;
    if (doc->count > 0) {
        t->opening_balance = doc->rows[0].balance_after - doc->rows[0].amount;
        t->closing_balance = doc->rows[doc->count - 1].balance_after;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Formatting cells. */

static void format_time(int64_t ms, int with_ms, char *out, size_t len)
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&seconds, &tm);
    if (with_ms)
        snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    else
        snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void format_item(const struct row *r, char *out, size_t len)
{
    if (r->kind == LEDGER_CHARGE && r->epoch > 0)
        snprintf(out, len, "epoch %d", r->epoch);
    else if (r->kind == LEDGER_CHARGE && r->session_id > 0)
        snprintf(out, len, "time block");
    else if (r->kind == LEDGER_REFUND && r->session_id > 0)
        snprintf(out, len, "unused time");
    else
        out[0] = '\0';
}

static void format_id(int64_t id, char *out, size_t len)
{
    if (id > 0)
        snprintf(out, len, "%lld", (long long)id);
    else
        out[0] = '\0';
}

static void format_seconds(double seconds, char *out, size_t len)
{
    if (seconds > 0)
        snprintf(out, len, "%.3f", seconds);
    else
        out[0] = '\0';
}

/* ------------------------------------------------------------------------
 * CSV. */

char *report_csv_field(const char *text)
{
    struct buffer b = {0};
    int neutralize, quote;

    if (text == NULL)
        text = "";
    neutralize = text[0] != '\0' && strchr("=+-@\t\r", text[0]) != NULL;
    quote = strpbrk(text, ",\"\r\n") != NULL;

    buf_append(&b, "", 0);
    if (quote)
        buf_puts(&b, "\"");
    if (neutralize)
        buf_puts(&b, "'");
    for (const char *p = text; *p != '\0'; p++) {
        if (*p == '"')
            buf_puts(&b, "\"\"");
        else
            buf_append(&b, p, 1);
    }
    if (quote)
        buf_puts(&b, "\"");
    if (b.failed) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

static void csv_text(struct buffer *b, const char *text, int last)
{
    char *field = report_csv_field(text);

    if (field == NULL) {
        b->failed = 1;
        return;
    }
    buf_puts(b, field);
    buf_puts(b, last ? "\r\n" : ",");
    free(field);
}

/* Numbers are written by this file, never by users, so they need neither
 * quotes nor neutralization; "-0.42" must stay a number. */
static void csv_number(struct buffer *b, const char *number, int last)
{
    buf_puts(b, number);
    buf_puts(b, last ? "\r\n" : ",");
}

static void csv_money(struct buffer *b, int64_t micro, int show, int last)
{
    char text[32];

    csv_number(b,
               show ? billing_format_decimal(micro, 6, text, sizeof(text)) : "",
               last);
}

static void csv_row(struct buffer *b, const struct row *r)
{
    char time_text[80], session[24], item[32], seconds[48];

    format_time(r->created_at, 1, time_text, sizeof(time_text));
    format_id(r->session_id, session, sizeof(session));
    format_item(r, item, sizeof(item));
    format_seconds(r->seconds, seconds, sizeof(seconds));

    csv_number(b, time_text, 0);
    csv_text(b, ledger_kind_name(r->kind), 0);
    csv_text(b, r->model, 0);
    csv_number(b, session, 0);
    csv_text(b, item, 0);
    csv_text(b, r->instance, 0);
    csv_money(b, r->rate, r->rate > 0, 0);
    csv_number(b, seconds, 0);
    csv_money(b, r->amount, 1, 0);
    csv_money(b, r->written_off, r->written_off > 0, 0);
    csv_money(b, r->balance_after, 1, 0);
    csv_text(b, r->description, 1);
}

/* Columns of a totals line that can carry its value. */
enum total_column { IN_AMOUNT, IN_WRITTEN_OFF, IN_BALANCE };

/* A totals line: kind "total", the total's name in the item column and
 * its value in the column that matches it. */
static void csv_total(struct buffer *b, const char *name, int64_t value,
                      enum total_column column)
{
    csv_text(b, "", 0);
    csv_text(b, "total", 0);
    csv_text(b, "", 0);
    csv_text(b, "", 0);
    csv_text(b, name, 0);
    csv_text(b, "", 0);
    csv_text(b, "", 0);
    csv_text(b, "", 0);
    csv_money(b, value, column == IN_AMOUNT, 0);
    csv_money(b, value, column == IN_WRITTEN_OFF, 0);
    csv_money(b, value, column == IN_BALANCE, 0);
    csv_text(b, "", 1);
}

static int render_csv(const struct document *doc, struct report *out,
                      struct error *err)
{
    const struct report_totals *t = &doc->totals;
    struct buffer b = {0};

    buf_puts(&b, "time_utc,kind,model,session,item,instance,"
                 "rate_usd_per_hour,seconds,amount_usd,written_off_usd,"
                 "balance_after_usd,description\r\n");
    for (size_t i = 0; i < doc->count; i++)
        csv_row(&b, &doc->rows[i]);

    if (doc->statement) {
        csv_total(&b, "opening balance", t->opening_balance, IN_BALANCE);
        csv_total(&b, "payments", t->payments, IN_AMOUNT);
    }
    csv_total(&b, "charges", t->charges, IN_AMOUNT);
    csv_total(&b, "refunds", t->refunds, IN_AMOUNT);
    csv_total(&b, "net", t->net, IN_AMOUNT);
    if (doc->statement)
        csv_total(&b, "closing balance", t->closing_balance, IN_BALANCE);
    /* Written off is money not charged, so it is not part of net. */
    csv_total(&b, "written off", t->written_off, IN_WRITTEN_OFF);

    if (b.failed) {
        free(b.data);
        return error_set(err, -ENOMEM, "out of memory writing a CSV report");
    }
    out->data = b.data;
    out->len = b.len;
    out->content_type = "text/csv; charset=utf-8";
    return 0;
}

/* ------------------------------------------------------------------------
 * PDF. */

#define PAGE_MARGIN 36.0f
#define ROW_HEIGHT 11.0f
#define FONT_SIZE 7.5f
#define CELL_PAD 6.0f

enum align { LEFT, RIGHT };

static const struct column {
    const char *title;
    float width;
    enum align align;
} columns[] = {
    {"Time (UTC)", 90, LEFT}, {"Kind", 54, LEFT},
    {"Model", 74, LEFT},      {"Session", 38, RIGHT},
    {"Item", 54, LEFT},       {"Instance", 52, LEFT},
    {"Rate $/h", 44, RIGHT},  {"Seconds", 48, RIGHT},
    {"Amount $", 50, RIGHT},  {"Written off $", 56, RIGHT},
    {"Balance $", 54, RIGHT}, {"Description", 0, LEFT},
};

#define COLUMN_COUNT ((int)(sizeof(columns) / sizeof(columns[0])))

struct pdf_state {
    HPDF_Doc pdf;
    HPDF_Page page;
    HPDF_Font regular;
    HPDF_Font bold;
    float width; /* page size, points */
    float height;
    float y; /* baseline of the next line */
    int pages;
    int rounded; /* 1 once a figure was rounded to cents */
    HPDF_STATUS error;
    HPDF_STATUS detail;
};

static void pdf_error(HPDF_STATUS error_no, HPDF_STATUS detail_no,
                      void *user_data)
{
    struct pdf_state *s = user_data;

    if (s->error == 0) {
        s->error = error_no;
        s->detail = detail_no;
    }
}

/* Convert UTF-8 to WinAnsi for the built-in fonts: Latin-1 code points
 * map to their byte, others become '?', control characters a space. */
static void to_winansi(const char *text, char *out, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t n = 0;

    while (*p != '\0' && n + 1 < len) {
        unsigned code;
        int extra;

        if (*p < 0x80) {
            code = *p++;
            extra = 0;
        } else if ((*p & 0xe0) == 0xc0) {
            code = *p++ & 0x1f;
            extra = 1;
        } else if ((*p & 0xf0) == 0xe0) {
            code = *p++ & 0x0f;
            extra = 2;
        } else {
            code = 0x110000; /* 4-byte or invalid lead byte: not Latin-1 */
            extra = (*p & 0xf8) == 0xf0 ? 3 : 0;
            p++;
        }
        for (; extra > 0 && (*p & 0xc0) == 0x80; extra--)
            code = (code << 6) | (*p++ & 0x3f);
        if (extra > 0)
            code = '?';

        if (code < 0x20 || code == 0x7f || (code >= 0x80 && code < 0xa0))
            out[n++] = ' ';
        else if (code < 0x100)
            out[n++] = (char)code;
        else
            out[n++] = '?';
    }
    out[n] = '\0';
}

/* Fit text into width points, cutting it with "..." when needed. */
static void fit_text(struct pdf_state *s, const char *text, float width,
                     char *out, size_t len)
{
    size_t n;

    to_winansi(text, out, len);
    if (HPDF_Page_TextWidth(s->page, out) <= width)
        return;
    n = strlen(out);
    while (n > 0) {
        n--;
        if (n + 4 > len)
            continue;
        memcpy(out + n, "...", 4);
        if (HPDF_Page_TextWidth(s->page, out) <= width)
            return;
    }
    out[0] = '\0';
}

/* Draw text in a cell of width points. Right-aligned text keeps room for
 * a trailing "*" (the rounding mark), so that the digits of marked and
 * unmarked figures line up. */
static void pdf_text(struct pdf_state *s, float x, float y, float width,
                     enum align align, const char *text)
{
    char fitted[512];

    fit_text(s, text, width, fitted, sizeof(fitted));
    if (align == RIGHT) {
        size_t len = strlen(fitted);
        float mark = HPDF_Page_TextWidth(s->page, "*");
        int marked = len > 0 && fitted[len - 1] == '*';

        if (marked)
            fitted[len - 1] = '\0';
        x += width - mark - HPDF_Page_TextWidth(s->page, fitted);
        if (marked)
            fitted[len - 1] = '*';
    }
    HPDF_Page_BeginText(s->page);
    HPDF_Page_TextOut(s->page, x, y, fitted);
    HPDF_Page_EndText(s->page);
}

static float column_width(int i, float page_width)
{
    float used = 0;

    if (columns[i].width > 0)
        return columns[i].width;
    for (int j = 0; j < COLUMN_COUNT; j++)
        used += columns[j].width;
    return page_width - 2 * PAGE_MARGIN - used;
}

static void pdf_cells(struct pdf_state *s, const char *const cells[],
                      HPDF_Font font)
{
    float x = PAGE_MARGIN;

    HPDF_Page_SetFontAndSize(s->page, font, FONT_SIZE);
    for (int i = 0; i < COLUMN_COUNT; i++) {
        float width = column_width(i, s->width);

        pdf_text(s, x, s->y, width - CELL_PAD, columns[i].align, cells[i]);
        x += width;
    }
    s->y -= ROW_HEIGHT;
}

static void pdf_rule(struct pdf_state *s)
{
    float y = s->y + ROW_HEIGHT - 3;

    HPDF_Page_SetLineWidth(s->page, 0.5f);
    HPDF_Page_MoveTo(s->page, PAGE_MARGIN, y);
    HPDF_Page_LineTo(s->page, s->width - PAGE_MARGIN, y);
    HPDF_Page_Stroke(s->page);
}

static void pdf_new_page(struct pdf_state *s, const struct document *doc,
                         int with_header)
{
    const char *titles[COLUMN_COUNT];
    char footer[64];

    s->page = HPDF_AddPage(s->pdf);
    HPDF_Page_SetSize(s->page, HPDF_PAGE_SIZE_A4, HPDF_PAGE_LANDSCAPE);
    s->width = HPDF_Page_GetWidth(s->page);
    s->height = HPDF_Page_GetHeight(s->page);
    s->pages++;
    s->y = s->height - PAGE_MARGIN - 10;

    HPDF_Page_SetFontAndSize(s->page, s->regular, FONT_SIZE);
    snprintf(footer, sizeof(footer), "Page %d", s->pages);
    pdf_text(s, PAGE_MARGIN, PAGE_MARGIN / 2, s->width - 2 * PAGE_MARGIN, RIGHT,
             footer);

    HPDF_Page_SetFontAndSize(s->page, s->bold, s->pages == 1 ? 14 : 9);
    pdf_text(s, PAGE_MARGIN, s->y, s->width - 2 * PAGE_MARGIN, LEFT,
             doc->title);
    s->y -= s->pages == 1 ? 18 : 14;
    if (s->pages == 1) {
        HPDF_Page_SetFontAndSize(s->page, s->regular, 9);
        for (int i = 0; i < 4 && doc->lines[i][0] != '\0'; i++) {
            pdf_text(s, PAGE_MARGIN, s->y, s->width - 2 * PAGE_MARGIN, LEFT,
                     doc->lines[i]);
            s->y -= 12;
        }
        s->y -= 6;
    }
    if (!with_header)
        return;
    for (int i = 0; i < COLUMN_COUNT; i++)
        titles[i] = columns[i].title;
    pdf_cells(s, titles, s->bold);
    pdf_rule(s);
}

/* Cents for display, with "*" when rounding hid micro-dollars. */
static void pdf_money(struct pdf_state *s, int64_t micro, char *out, size_t len)
{
    char number[32];

    billing_format_decimal(micro, 2, number, sizeof(number));
    if (micro % 10000 != 0) {
        snprintf(out, len, "%s*", number);
        s->rounded = 1;
    } else {
        snprintf(out, len, "%s", number);
    }
}

static void pdf_row(struct pdf_state *s, const struct row *r)
{
    char time_text[80], session[24], item[32], seconds[48];
    char rate[40], amount[40], off[40], balance[40];
    const char *cells[COLUMN_COUNT];

    format_time(r->created_at, 0, time_text, sizeof(time_text));
    format_id(r->session_id, session, sizeof(session));
    format_item(r, item, sizeof(item));
    format_seconds(r->seconds, seconds, sizeof(seconds));
    rate[0] = off[0] = '\0';
    if (r->rate > 0)
        pdf_money(s, r->rate, rate, sizeof(rate));
    if (r->written_off > 0)
        pdf_money(s, r->written_off, off, sizeof(off));
    pdf_money(s, r->amount, amount, sizeof(amount));
    pdf_money(s, r->balance_after, balance, sizeof(balance));

    cells[0] = time_text;
    cells[1] = ledger_kind_name(r->kind);
    cells[2] = r->model;
    cells[3] = session;
    cells[4] = item;
    cells[5] = r->instance;
    cells[6] = rate;
    cells[7] = seconds;
    cells[8] = amount;
    cells[9] = off;
    cells[10] = balance;
    cells[11] = r->description;
    pdf_cells(s, cells, s->regular);
}

struct total_line {
    const char *name;
    int64_t value;
};

static size_t total_lines(const struct document *doc,
                          struct total_line lines[8])
{
    const struct report_totals *t = &doc->totals;
    size_t n = 0;

    if (doc->statement) {
        lines[n++] = (struct total_line){"Opening balance", t->opening_balance};
        lines[n++] = (struct total_line){"Payments and credits", t->payments};
    }
    lines[n++] = (struct total_line){"Charges", t->charges};
    lines[n++] = (struct total_line){"Refunds", t->refunds};
    lines[n++] =
        (struct total_line){doc->statement ? "Net change" : "Net cost", t->net};
    if (doc->statement)
        lines[n++] = (struct total_line){"Closing balance", t->closing_balance};
    lines[n++] =
        (struct total_line){"Written off (not charged)", t->written_off};
    return n;
}

/* The totals block. A total whose cents hide micro-dollars shows its
 * exact figure beside it; a footnote explains the "*" marks. */
static void pdf_totals(struct pdf_state *s, const struct document *doc)
{
    struct total_line lines[8];
    size_t n = total_lines(doc, lines);
    char value[40], exact[48];

    /* Totals, footnote and a margin: start a page when they do not fit. */
    if (s->y - (float)(n + 5) * ROW_HEIGHT < PAGE_MARGIN)
        pdf_new_page(s, doc, 0);
    s->y -= ROW_HEIGHT;
    HPDF_Page_SetFontAndSize(s->page, s->bold, 9);
    pdf_text(s, PAGE_MARGIN, s->y, 200, LEFT, "Totals (US dollars)");
    s->y -= 13;

    HPDF_Page_SetFontAndSize(s->page, s->regular, 9);
    for (size_t i = 0; i < n; i++) {
        pdf_money(s, lines[i].value, value, sizeof(value));
        pdf_text(s, PAGE_MARGIN, s->y, 160, LEFT, lines[i].name);
        pdf_text(s, PAGE_MARGIN + 160, s->y, 90, RIGHT, value);
        if (lines[i].value % 10000 != 0) {
            char usd[32];

            snprintf(exact, sizeof(exact), "exact: %s",
                     billing_format_usd(lines[i].value, usd, sizeof(usd)));
            pdf_text(s, PAGE_MARGIN + 260, s->y, 200, LEFT, exact);
        }
        s->y -= 12;
    }
    if (!s->rounded)
        return;

    s->y -= 6;
    HPDF_Page_SetFontAndSize(s->page, s->regular, FONT_SIZE);
    pdf_text(s, PAGE_MARGIN, s->y, s->width - 2 * PAGE_MARGIN, LEFT,
             "* Rounded to the cent for display, halves away from zero. "
             "Each total shows its exact figure beside it, and the CSV "
             "report gives every amount to the micro-dollar ($0.000001).");
    s->y -= ROW_HEIGHT;
}

static int pdf_collect(struct pdf_state *s, struct report *out,
                       struct error *err)
{
    HPDF_UINT32 size, got;
    char *data;

    if (s->error == 0)
        HPDF_SaveToStream(s->pdf);
    if (s->error != 0)
        return error_set(err, -EIO,
                         "PDF rendering failed: libharu error 0x%04x "
                         "(detail %u)",
                         (unsigned)s->error, (unsigned)s->detail);

    size = HPDF_GetStreamSize(s->pdf);
    data = malloc(size ? size : 1);
    if (data == NULL)
        return error_set(err, -ENOMEM, "out of memory writing a PDF report");
    got = size;
    HPDF_ReadFromStream(s->pdf, (HPDF_BYTE *)data, &got);
    if (got != size || s->error != 0) {
        free(data);
        return error_set(err, -EIO,
                         "PDF rendering failed: read %u of %u bytes, "
                         "libharu error 0x%04x",
                         (unsigned)got, (unsigned)size, (unsigned)s->error);
    }
    out->data = data;
    out->len = size;
    out->content_type = "application/pdf";
    return 0;
}

static int render_pdf(const struct document *doc, struct report *out,
                      struct error *err)
{
    struct pdf_state s = {0};
    char title[400];
    int rc;

    s.pdf = HPDF_New(pdf_error, &s);
    if (s.pdf == NULL)
        return error_set(err, -ENOMEM, "out of memory starting a PDF report");
    HPDF_SetCompressionMode(s.pdf, HPDF_COMP_ALL);
    to_winansi(doc->title, title, sizeof(title));
    HPDF_SetInfoAttr(s.pdf, HPDF_INFO_TITLE, title);
    HPDF_SetInfoAttr(s.pdf, HPDF_INFO_CREATOR, "Trainyard");
    s.regular = HPDF_GetFont(s.pdf, "Helvetica", "WinAnsiEncoding");
    s.bold = HPDF_GetFont(s.pdf, "Helvetica-Bold", "WinAnsiEncoding");

    if (s.error == 0) {
        pdf_new_page(&s, doc, 1);
        for (size_t i = 0; i < doc->count && s.error == 0; i++) {
            if (s.y < PAGE_MARGIN + ROW_HEIGHT)
                pdf_new_page(&s, doc, 1);
            pdf_row(&s, &doc->rows[i]);
        }
        if (doc->count == 0) {
            HPDF_Page_SetFontAndSize(s.page, s.regular, 9);
            pdf_text(&s, PAGE_MARGIN, s.y, 400, LEFT,
                     "No charges or refunds in this report.");
            s.y -= ROW_HEIGHT;
        }
        pdf_totals(&s, doc);
    }
    rc = pdf_collect(&s, out, err);
    HPDF_Free(s.pdf);
    return rc;
}

/* ------------------------------------------------------------------------
 * Reports. */

static int render(struct document *doc, enum report_format format,
                  struct report *out, struct error *err)
{
    int rc;

    memset(out, 0, sizeof(*out));
    out->format = format;
    out->totals = doc->totals;
    if (format == REPORT_CSV)
        rc = render_csv(doc, out, err);
    else if (format == REPORT_PDF)
        rc = render_pdf(doc, out, err);
    else
        rc = error_set(err, -EINVAL,
                       "report format %d is invalid; use REPORT_CSV or "
                       "REPORT_PDF",
                       (int)format);
    document_free(doc);
    return rc;
}

static int read_model_name(struct store *st, int64_t account_id,
                           int64_t model_id, char *name, size_t len,
                           struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(st->db,
                           "SELECT name FROM models"
                           " WHERE id = ?1 AND account_id = ?2",
                           -1, &stmt, NULL) != SQLITE_OK)
        return error_set(err, -EIO,
                         "database error while reading a model: "
                         "%s",
                         sqlite3_errmsg(st->db));
    sqlite3_bind_int64(stmt, 1, model_id);
    sqlite3_bind_int64(stmt, 2, account_id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        snprintf(name, len, "%s", sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return error_set(err, -ENOENT,
                         "model %lld not found for account %lld; pass one "
                         "of the account's models",
                         (long long)model_id, (long long)account_id);
    return error_set(err, -EIO, "database error while reading a model: %s",
                     sqlite3_errmsg(st->db));
}

static void describe_generated(struct document *doc, int line)
{
    char now[80];

    format_time(clock_realtime_ms(), 0, now, sizeof(now));
    snprintf(doc->lines[line], sizeof(doc->lines[line]),
             "Generated %s. Amounts in US dollars; negative amounts are "
             "charges.",
             now);
}

int report_model(struct store *st, int64_t account_id, int64_t model_id,
                 enum report_format format, struct report *out,
                 struct error *err)
{
    struct document doc = {0};
    struct auth_account account;
    sqlite3_stmt *stmt;
    char name[256];
    int rc;

    memset(out, 0, sizeof(*out));
    rc = auth_account_get(st, account_id, &account, err);
    if (rc == 0)
        rc = read_model_name(st, account_id, model_id, name, sizeof(name), err);
    if (rc != 0)
        return rc;

    snprintf(doc.title, sizeof(doc.title), "Billing report: model %s", name);
    snprintf(doc.lines[0], sizeof(doc.lines[0]),
             "Model %lld of account %s (id %lld): every charge and refund.",
             (long long)model_id, account.email, (long long)account_id);
    describe_generated(&doc, 1);

    if (sqlite3_prepare_v2(st->db,
                           ROW_QUERY " WHERE l.account_id = ?1"
                                     " AND l.model_id = ?2"
                                     " AND l.kind IN ('charge', 'refund')"
                                     " ORDER BY l.id",
                           -1, &stmt, NULL) != SQLITE_OK)
        return error_set(err, -EIO,
                         "database error while reading report "
                         "rows: %s",
                         sqlite3_errmsg(st->db));
    sqlite3_bind_int64(stmt, 1, account_id);
    sqlite3_bind_int64(stmt, 2, model_id);
    rc = read_rows(st, stmt, &doc, err);
    sqlite3_finalize(stmt);
    /* Opening and closing balances belong to statements, whose rows are
     * contiguous; a model's rows are not. */
    doc.totals.opening_balance = doc.totals.closing_balance = 0;
    if (rc != 0) {
        document_free(&doc);
        return rc;
    }
    rc = render(&doc, format, out, err);
    if (rc == 0)
        log_info("report built kind=model account=%lld model=%lld rows=%zu "
                 "bytes=%zu",
                 (long long)account_id, (long long)model_id, out->totals.rows,
                 out->len);
    return rc;
}

/* Balance just before from_ms: the newest balance_after of an earlier
 * row, 0 without one. */
static int balance_before(struct store *st, int64_t account_id, int64_t from_ms,
                          int64_t *balance, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    *balance = 0;
    if (from_ms == 0)
        return 0;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT balance_after FROM ledger"
                           " WHERE account_id = ?1 AND created_at < ?2"
                           " ORDER BY id DESC LIMIT 1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return error_set(err, -EIO,
                         "database error while reading a "
                         "balance: %s",
                         sqlite3_errmsg(st->db));
    sqlite3_bind_int64(stmt, 1, account_id);
    sqlite3_bind_int64(stmt, 2, from_ms);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *balance = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return error_set(err, -EIO,
                         "database error while reading a "
                         "balance: %s",
                         sqlite3_errmsg(st->db));
    return 0;
}

int report_statement(struct store *st, int64_t account_id, int64_t from_ms,
                     int64_t to_ms, enum report_format format,
                     struct report *out, struct error *err)
{
    struct document doc = {.statement = 1};
    struct auth_account account;
    sqlite3_stmt *stmt;
    char from_text[80], to_text[80];
    int64_t before;
    int rc;

    memset(out, 0, sizeof(*out));
    if (from_ms < 0 || to_ms < 0 || (to_ms != 0 && to_ms <= from_ms))
        return error_set(err, -EINVAL,
                         "statement period %lld to %lld ms is invalid; pass "
                         "Unix ms with from before to, or 0 for an open end",
                         (long long)from_ms, (long long)to_ms);
    rc = auth_account_get(st, account_id, &account, err);
    if (rc == 0)
        rc = balance_before(st, account_id, from_ms, &before, err);
    if (rc != 0)
        return rc;

    snprintf(doc.title, sizeof(doc.title), "Account statement: %s",
             account.email);
    if (from_ms != 0)
        format_time(from_ms, 0, from_text, sizeof(from_text));
    if (to_ms != 0)
        format_time(to_ms, 0, to_text, sizeof(to_text));
    snprintf(doc.lines[0], sizeof(doc.lines[0]),
             "Account %lld: every ledger row, from %s to %s.",
             (long long)account_id, from_ms ? from_text : "the first",
             to_ms ? to_text : "now");
    describe_generated(&doc, 1);

    if (sqlite3_prepare_v2(st->db,
                           ROW_QUERY " WHERE l.account_id = ?1"
                                     " AND (?2 = 0 OR l.created_at >= ?2)"
                                     " AND (?3 = 0 OR l.created_at < ?3)"
                                     " ORDER BY l.id",
                           -1, &stmt, NULL) != SQLITE_OK)
        return error_set(err, -EIO,
                         "database error while reading report "
                         "rows: %s",
                         sqlite3_errmsg(st->db));
    sqlite3_bind_int64(stmt, 1, account_id);
    sqlite3_bind_int64(stmt, 2, from_ms);
    sqlite3_bind_int64(stmt, 3, to_ms);
    rc = read_rows(st, stmt, &doc, err);
    sqlite3_finalize(stmt);
    if (rc != 0) {
        document_free(&doc);
        return rc;
    }
    /* NOTE: rows are ordered by id and selected by created_at; a clock
     * that stepped back could interleave them, and then opening + net
     * differs from closing. */
    if (doc.count == 0)
        doc.totals.opening_balance = doc.totals.closing_balance = before;

    rc = render(&doc, format, out, err);
    if (rc == 0)
        log_info("report built kind=statement account=%lld rows=%zu "
                 "bytes=%zu",
                 (long long)account_id, out->totals.rows, out->len);
    return rc;
}

int report_save(const struct report *r, const char *path, struct error *err)
{
    return fs_write_atomic(path, r->data, r->len, 0640, err);
}

void report_free(struct report *r)
{
    free(r->data);
    r->data = NULL;
    r->len = 0;
}
