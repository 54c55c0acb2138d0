/*
 * DOM, fetch, timer, location and canvas access for the C UI. The
 * functions declared first are implemented in dom.js. The helpers after
 * them, in dom.c, build on those to create labelled form fields and
 * formatted text in fewer calls. Elements are addressed by id, so every
 * element that C touches later gets one.
 */
#ifndef TRAINYARD_UI_DOM_H
#define TRAINYARD_UI_DOM_H

#include <stddef.h>
#include <stdint.h>

/* dom.js */
void dom_create(const char *tag, const char *parent_id, const char *id,
                const char *text);
void dom_set_text(const char *id, const char *text);
void dom_set_attr(const char *id, const char *name, const char *value);
void dom_remove_attr(const char *id, const char *name);
void dom_set_class(const char *id, const char *name, int on);
void dom_clear(const char *id);
void dom_remove(const char *id);
void dom_focus(const char *id);
int dom_get_value(const char *id, char *buf, size_t size);
void dom_set_value(const char *id, const char *value);
void dom_on(const char *id, const char *type, void (*cb)(void *ctx),
            void *ctx);

typedef void (*http_callback)(int status, const char *body, void *ctx);
void http_request(const char *method, const char *url, const char *csrf,
                  const char *body, http_callback cb, void *ctx);

/* Upload the file chosen in <input type=file id=input_id> as the body of
 * a POST (application/zip). progress gets the bytes sent and the total.
 * Returns -1 without sending when no file is chosen. */
typedef void (*upload_progress)(double loaded, double total, void *ctx);
int http_upload(const char *url, const char *csrf, const char *input_id,
                upload_progress progress, http_callback cb, void *ctx);
/* The chosen file's name and size in bytes, or -1 when there is none. */
double dom_file_info(const char *input_id, char *name, size_t size);

/* A WebSocket to path on the page's host (ws: or wss: as the page).
 * on_close gets the close code and whether the socket had opened. */
typedef void (*ws_open_callback)(void *ctx);
typedef void (*ws_message_callback)(const char *text, void *ctx);
typedef void (*ws_close_callback)(int code, int opened, void *ctx);
int ws_open(const char *path, ws_open_callback on_open,
            ws_message_callback on_message, ws_close_callback on_close,
            void *ctx);
void ws_send(int handle, const char *text);
/* Close the socket; its on_close is not called. */
void ws_close(int handle);

int timer_every(int ms, void (*cb)(void *ctx), void *ctx);
void timer_clear(int timer);
int timer_after(int ms, void (*cb)(void *ctx), void *ctx);
void timer_cancel(int timer);

/* Fill buf with size - 1 random hex digits from crypto.getRandomValues. */
void random_hex(char *buf, size_t size);

int dom_get_checked(const char *id);
void dom_set_checked(const char *id, int on);
/* showModal() and close() of a <dialog>. */
void dom_dialog_open(const char *id);
void dom_dialog_close(const char *id);

void location_get_hash(char *buf, size_t size);
void location_set_hash(const char *hash);
void location_on_hash(void (*cb)(void *ctx), void *ctx);

void canvas_clear(const char *id);
void canvas_line(const char *id, double x0, double y0, double x1, double y1,
                 const char *color, double width);
void canvas_text(const char *id, double x, double y, const char *text,
                 const char *color);

/* dom.c */

/* Create an element with an id and a class ("" or NULL for none). */
void dom_element(const char *tag, const char *parent_id, const char *id,
                 const char *class_name, const char *text);

/* Set the element's text from a printf format. */
void dom_textf(const char *id, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Create a <label for=id> and an <input id=id type=type> under parent,
 * each wrapped in a <div class="field">. */
void dom_input(const char *parent_id, const char *id, const char *label,
               const char *type, const char *value);

/* Create a labelled, empty <select id=id>; add options with dom_option. */
void dom_select(const char *parent_id, const char *id, const char *label);
void dom_option(const char *select_id, const char *value, const char *text);

/* Set or remove the disabled attribute. */
void dom_set_disabled(const char *id, int disabled);

/* Format micro-dollars as dollars: cents when the amount is a whole number
 * of cents, else up to six decimals, such as "$24.99" or "-$0.000016". */
void format_money(int64_t micros, char *buf, size_t size);

#endif
