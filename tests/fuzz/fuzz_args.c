/*
 * libFuzzer target for args_set (backend/engine/args.c), which applies
 * one key=value word of the train command line. The input is a list of
 * words, one per line, applied in order to the defaults; words that fail
 * are skipped. The arguments that result are then written with
 * args_format, as checkpoints store them, and read back into fresh
 * defaults: every line must be accepted and give the same text again.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/args.h"

#define FORMAT_MAX 16384

/* Apply each line of text to a. A rejected line makes a strict call
 * return -1 and is skipped otherwise. args_set may leave a value it
 * rejected in place, because its callers stop at the first error, so a
 * skipped line is undone here. */
static int apply_lines(struct train_args *a, char *text, int strict)
{
    struct error err = {0};
    struct train_args before;
    char *line = text;

    while (line != NULL && *line != '\0') {
        char *nl = strchr(line, '\n');

        if (nl != NULL)
            *nl = '\0';
        before = *a;
        if (args_set(a, line, &err) != 0) {
            if (strict)
                return -1;
            *a = before;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char first[FORMAT_MAX], second[FORMAT_MAX], copy[FORMAT_MAX];
    struct train_args a, b;
    char *text;

    if (size > 4096)
        return 0;
    text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    args_defaults(&a);
    apply_lines(&a, text, 0);
    free(text);
    if (args_format(&a, first, sizeof(first)) < 0)
        abort();

    memcpy(copy, first, sizeof(copy));
    args_defaults(&b);
    if (apply_lines(&b, copy, 1) != 0)
        abort();
    if (args_format(&b, second, sizeof(second)) < 0)
        abort();
    if (strcmp(first, second) != 0)
        abort();
    return 0;
}
