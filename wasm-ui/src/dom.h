/* DOM and fetch access for the C UI; implemented in dom.js. */
#ifndef TRAINYARD_UI_DOM_H
#define TRAINYARD_UI_DOM_H

void dom_create(const char *tag, const char *parent_id, const char *id,
                const char *text);
void dom_set_text(const char *id, const char *text);
void dom_set_attr(const char *id, const char *name, const char *value);

typedef void (*http_callback)(int status, const char *body, void *ctx);
void http_get(const char *url, http_callback cb, void *ctx);

#endif
