/*
 * libFuzzer target for report_csv_field (backend/daemon/report.c), which
 * quotes one CSV field of a billing report. The input is the field's text,
 * cut at the first NUL as a C string would be. Each result is
 * read back as RFC 4180 reads a field and must give the text again, with
 * a "'" in front when the text starts with a formula character.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/report.h"

/* Undo RFC 4180 quoting of field into out (room for strlen(field) + 1).
 * Returns 0, or -1 when field is not one well-formed CSV field. */
static int csv_unquote(const char *field, char *out)
{
    size_t len = strlen(field), n = 0;

    if (len == 0 || field[0] != '"') {
        if (strpbrk(field, ",\"\r\n") != NULL)
            return -1;
        memcpy(out, field, len + 1);
        return 0;
    }
    if (len < 2 || field[len - 1] != '"')
        return -1;
    for (size_t i = 1; i + 1 < len; i++) {
        if (field[i] == '"') {
            if (i + 2 >= len || field[i + 1] != '"')
                return -1;
            i++;
        }
        out[n++] = field[i];
    }
    out[n] = '\0';
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    char *field, *back;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    field = report_csv_field(text);
    if (field == NULL) {
        free(text);
        return 0;
    }
    back = malloc(strlen(field) + 1);
    if (back != NULL) {
        const char *plain = back;

        if (csv_unquote(field, back) != 0)
            abort();
        if (text[0] != '\0' && strchr("=+-@\t\r", text[0]) != NULL) {
            if (back[0] != '\'')
                abort();
            plain = back + 1;
        }
        if (strcmp(plain, text) != 0)
            abort();
    }
    free(back);
    free(field);
    free(text);
    return 0;
}
