/*
 * Helpers over the dom.js primitives: labelled form fields, formatted text
 * and money. They keep the view files to one call per visible thing, and
 * they give every input a <label for>, so screen readers name each field.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dom.h"

void dom_element(const char *tag, const char *parent_id, const char *id,
                 const char *class_name, const char *text)
{
    dom_create(tag, parent_id, id, text);
    if (id != NULL && class_name != NULL && class_name[0] != '\0')
        dom_set_attr(id, "class", class_name);
}

void dom_textf(const char *id, const char *format, ...)
{
    char text[512];
    va_list ap;

    va_start(ap, format);
    vsnprintf(text, sizeof(text), format, ap);
    va_end(ap);
    dom_set_text(id, text);
}

/* Create the <div class="field"> and its <label> for a field called id. */
static void make_field(const char *parent_id, const char *id,
                       const char *label, char *field_id, size_t size)
{
    char label_id[80];

    snprintf(field_id, size, "%s-field", id);
    snprintf(label_id, sizeof(label_id), "%s-label", id);
    dom_element("div", parent_id, field_id, "field", NULL);
    dom_create("label", field_id, label_id, label);
    dom_set_attr(label_id, "for", id);
}

void dom_input(const char *parent_id, const char *id, const char *label,
               const char *type, const char *value)
{
    char field_id[80];

    make_field(parent_id, id, label, field_id, sizeof(field_id));
    dom_create("input", field_id, id, NULL);
    dom_set_attr(id, "type", type);
    dom_set_attr(id, "name", id);
    if (value != NULL)
        dom_set_value(id, value);
}

void dom_select(const char *parent_id, const char *id, const char *label)
{
    char field_id[80];

    make_field(parent_id, id, label, field_id, sizeof(field_id));
    dom_create("select", field_id, id, NULL);
    dom_set_attr(id, "name", id);
}

void dom_option(const char *select_id, const char *value, const char *text)
{
    char option_id[120];

    snprintf(option_id, sizeof(option_id), "%s-opt-%s", select_id, value);
    dom_create("option", select_id, option_id, text);
    dom_set_attr(option_id, "value", value);
}

void dom_set_disabled(const char *id, int disabled)
{
    if (disabled)
        dom_set_attr(id, "disabled", "");
    else
        dom_remove_attr(id, "disabled");
}

void format_money(int64_t micros, char *buf, size_t size)
{
    const char *sign = micros < 0 ? "-" : "";
    uint64_t abs = micros < 0 ? (uint64_t)0 - (uint64_t)micros
                              : (uint64_t)micros;
    uint64_t dollars = abs / 1000000, fraction = abs % 1000000;
    char digits[8];
    int len;

    if (fraction % 10000 == 0) {
        snprintf(buf, size, "%s$%" PRIu64 ".%02" PRIu64, sign, dollars,
                 fraction / 10000);
        return;
    }
    snprintf(digits, sizeof(digits), "%06" PRIu64, fraction);
    len = 6;
    while (len > 2 && digits[len - 1] == '0')
        len--;
    digits[len] = '\0';
    snprintf(buf, size, "%s$%" PRIu64 ".%s", sign, dollars, digits);
}
