/*
 * libFuzzer target for dataset_cls_scan (backend/engine/dataset_cls.c),
 * which scans an image classification data set folder. The input
 * describes a folder tree, one entry per line:
 *
 *   d PATH          a folder
 *   f PATH=TEXT     a file holding TEXT (no newline, may be empty)
 *   f PATH=@png     a file holding a valid 2 x 2 PNG
 *   f PATH=@pngN    a file holding the first N bytes of that PNG
 *   l PATH=TARGET   a symbolic link to TARGET (the first one only)
 *   p PATH          a FIFO
 *
 * PATH is relative to the data set root, and its parent folders are
 * created as needed. Names may hold any byte but '/', NUL and newline.
 * Entries that would leave the root (an absolute PATH, a ".." component,
 * or a link TARGET that is absolute or goes up more than one level) are
 * skipped, and so are lines in any other form. The tree is built in a
 * folder under $TMPDIR (default /tmp) made once per process, emptied
 * before each input and removed at exit. After a successful scan the
 * report is rendered and the first training sample is loaded at 8 x 8.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/dataset_cls.h"
#include "engine/image.h"
#include "fuzz_files.h"

#define ENTRIES_MAX 64
#define PATH_TEXT_MAX 200
/* One link per input, as in the recorded runs. Two looping links once
 * made dataset_cls_scan walk 2^16 folders; the scan now detects loops by
 * device and inode. */
#define LINKS_MAX 1

static char base_dir[4096];
static char root_dir[4096 + 8];
static void *png_data;
static size_t png_size;
static int links_made;

/* Remove root_dir and everything below it; links are not followed. */
static void clear_root(void)
{
    fuzz_remove_tree(root_dir);
}

static void init_once(void)
{
    static const uint8_t pixels[2 * 2 * 3] = {255, 0, 0, 0, 255, 0,
                                              0, 0, 255, 9, 9, 9};
    struct error err = {0};

    fuzz_temp_folder("fuzz_dataset_cls", base_dir, sizeof(base_dir));
    snprintf(root_dir, sizeof(root_dir), "%s/root", base_dir);
    if (image_encode_png(pixels, 2, 2, 3, 8, &png_data, &png_size, &err))
        abort();
}

/* 1 when rel stays below the root: relative and without "..". */
static int path_is_inside(const char *rel)
{
    const char *p = rel;

    if (rel[0] == '/' || rel[0] == '\0')
        return 0;
    while (*p != '\0') {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        p += n;
        if (*p == '/')
            p++;
    }
    return 1;
}

/* Create the parent folders of full below root_dir. */
static void make_parents(char *full)
{
    for (char *p = full + strlen(root_dir) + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(full, 0700);
        *p = '/';
    }
}

static void write_file(const char *full, const char *text)
{
    const void *bytes = text;
    size_t len = strlen(text);
    int fd;

    if (strncmp(text, "@png", 4) == 0) {
        bytes = png_data;
        len = png_size;
        if (text[4] != '\0') {
            size_t cut = strtoul(text + 4, NULL, 10);
            len = cut < png_size ? cut : png_size;
        }
    }
    fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    if (write(fd, bytes, len) < 0)
        (void)0; /* a short file is an input like any other */
    close(fd);
}

/* Apply one line "K PATH[=VALUE]". */
static void apply_line(char *line)
{
    char full[sizeof(root_dir) + PATH_TEXT_MAX + 2];
    char kind = line[0];
    char *rel, *value;

    if (line[0] == '\0' || line[1] != ' ')
        return;
    rel = line + 2;
    value = strchr(rel, '=');
    if (value != NULL)
        *value++ = '\0';
    if (strlen(rel) > PATH_TEXT_MAX || !path_is_inside(rel))
        return;
    snprintf(full, sizeof(full), "%s/%s", root_dir, rel);
    make_parents(full);

    switch (kind) {
    case 'd':
        mkdir(full, 0700);
        break;
    case 'f':
        write_file(full, value != NULL ? value : "");
        break;
    case 'l':
        /* "." and ".." make loops; other targets stay inside. */
        if (links_made < LINKS_MAX && value != NULL &&
            (strcmp(value, "..") == 0 || path_is_inside(value)) &&
            symlink(value, full) == 0)
            links_made++;
        break;
    case 'p':
        mkfifo(full, 0600);
        break;
    default:
        break;
    }
}

static void exercise(struct dataset_cls *ds)
{
    char line[512];
    char *report = dataset_cls_report_text(ds);
    static float chw[3 * 8 * 8];
    struct error err = {0};

    free(report);
    for (size_t i = 0; i < ds->problem_count; i++) {
        dataset_problem_format(&ds->problems[i], line, sizeof(line));
        dataset_problem_kind_name(ds->problems[i].kind);
    }
    if (ds->class_count < 2)
        abort();
    if (ds->splits[DATASET_CLS_TRAIN].count > 0)
        dataset_cls_load(ds, DATASET_CLS_TRAIN, 0, 8, chw, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    struct dataset_cls *ds = NULL;
    struct error err = {0};
    char *text, *line;
    int entries = 0;

    if (size > 16384)
        return 0;
    if (!ready) {
        init_once();
        ready = 1;
    }
    clear_root();
    if (mkdir(root_dir, 0700) != 0)
        abort();
    links_made = 0;

    text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    line = text;
    while (line != NULL && entries++ < ENTRIES_MAX) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        apply_line(line);
        line = nl != NULL ? nl + 1 : NULL;
    }
    free(text);

    if (dataset_cls_scan(root_dir, NULL, &ds, &err) == 0) {
        exercise(ds);
        dataset_cls_free(ds);
    } else if (ds != NULL) {
        abort();
    }
    return 0;
}
