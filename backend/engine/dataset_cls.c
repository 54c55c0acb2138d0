/*
 * Scanning, reporting and loading of classification data sets; the
 * layout and the contract are in dataset_cls.h.
 *
 * The scan walks train/ and then val/ (or test/) with scandir in byte
 * order, so samples come out sorted by class and then by path, the same
 * on every run and file system. Every problem goes into the report as it
 * is found; only running out of memory stops the walk.
 *
 * The loader keeps two arrays per split: a flag for samples that failed
 * to decode and the cached image of each sample (NULL when not cached).
 * Both are read and written under one mutex, but decoding and resizing
 * run outside it. A cached image is never changed or freed before
 * dataset_cls_free, so a pointer read under the lock stays valid.
 */
#include "dataset_cls.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image.h"
#include "log.h"

/* Maximum depth of subfolders below a class folder. Loops through
 * symbolic links, which stat() follows, are caught before this by the
 * folder identities in struct folder_path. */
#define MAX_FOLDER_DEPTH 16

/* The folders from a class folder down to the one being walked, by
 * device and inode: a folder that is its own ancestor is a symbolic link
 * loop. Without this check two links to "." would make a walk visit
 * 2^MAX_FOLDER_DEPTH folders. */
struct folder_path {
    dev_t dev[MAX_FOLDER_DEPTH + 2];
    ino_t ino[MAX_FOLDER_DEPTH + 2];
    int depth;
};

/* Push the folder at full onto path; returns 1 when it is already an
 * ancestor (a loop) or cannot be read, else 0. */
static int folder_enter(struct folder_path *path, const char *full)
{
    struct stat st;

    if (stat(full, &st) != 0 || path->depth >= MAX_FOLDER_DEPTH + 2)
        return 1;
    for (int i = 0; i < path->depth; i++)
        if (path->dev[i] == st.st_dev && path->ino[i] == st.st_ino)
            return 1;
    path->dev[path->depth] = st.st_dev;
    path->ino[path->depth] = st.st_ino;
    path->depth++;
    return 0;
}

struct dataset_cls_state {
    pthread_mutex_t lock;
    size_t problem_capacity;
    size_t cache_max_bytes;
    size_t cache_bytes;
    uint32_t cache_max_pixels;
    bool cache_full_logged;
    uint8_t *skipped[2];     /* per sample: 1 after a failed decode */
    struct image **cache[2]; /* per sample: the cached image or NULL */
};

/* A growing list of samples for one split. */
struct sample_list {
    struct dataset_cls_sample *items;
    size_t count;
    size_t capacity;
};

/* ------------------------------------------------------------------------
 * Report
 */

const char *dataset_problem_kind_name(enum dataset_problem_kind kind)
{
    static const char *const names[] = {
        [DATASET_PROBLEM_NOT_IMAGE] = "not_image",
        [DATASET_PROBLEM_UNSUPPORTED] = "unsupported_format",
        [DATASET_PROBLEM_CORRUPT] = "corrupt",
        [DATASET_PROBLEM_TOO_LARGE] = "too_large",
        [DATASET_PROBLEM_UNREADABLE] = "unreadable",
        [DATASET_PROBLEM_LOAD_FAILED] = "load_failed",
        [DATASET_PROBLEM_OUTSIDE_CLASS] = "outside_class",
        [DATASET_PROBLEM_TOO_DEEP] = "too_deep",
        [DATASET_PROBLEM_EMPTY_CLASS] = "empty_class",
        [DATASET_PROBLEM_MISSING_FROM_VAL] = "missing_from_val",
        [DATASET_PROBLEM_NOT_IN_TRAIN] = "not_in_train",
        [DATASET_PROBLEM_NO_VAL] = "no_val",
    };

    if ((unsigned)kind >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[kind];
}

int dataset_problem_format(const struct dataset_problem *p, char *buf,
                           size_t len)
{
    return snprintf(buf, len, "%s: %s; %s", p->path, p->problem, p->action);
}

/* Append a report entry. Callers hold the lock or run before the data set
 * is shared. Returns 0 or -ENOMEM. */
__attribute__((format(printf, 5, 6)))
static int add_problem(struct dataset_cls *ds, enum dataset_problem_kind kind,
                       const char *path, const char *action,
                       const char *fmt, ...)
{
    struct dataset_cls_state *st = ds->state;
    struct dataset_problem *p;
    va_list ap;
    int n;

    if (ds->problem_count == st->problem_capacity) {
        size_t capacity = st->problem_capacity ? 2 * st->problem_capacity
                                               : 16;
        p = realloc(ds->problems, capacity * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        ds->problems = p;
        st->problem_capacity = capacity;
    }

    p = &ds->problems[ds->problem_count];
    p->kind = kind;
    p->path = strdup(path);
    p->action = strdup(action);
    va_start(ap, fmt);
    n = vasprintf(&p->problem, fmt, ap);
    va_end(ap);
    if (n < 0)
        p->problem = NULL;
    if (p->path == NULL || p->action == NULL || p->problem == NULL) {
        free(p->path);
        free(p->action);
        free(p->problem);
        return -ENOMEM;
    }
    ds->problem_count++;
    return 0;
}

char *dataset_cls_report_text(struct dataset_cls *ds)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out;

    out = open_memstream(&text, &size);
    if (out == NULL)
        return NULL;
    pthread_mutex_lock(&ds->state->lock);
    for (size_t i = 0; i < ds->problem_count; i++) {
        const struct dataset_problem *p = &ds->problems[i];

        fprintf(out, "%s: %s; %s\n", p->path, p->problem, p->action);
    }
    pthread_mutex_unlock(&ds->state->lock);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

void dataset_cls_log_report(struct dataset_cls *ds, size_t max_lines)
{
    char line[1024];
    size_t shown;

    pthread_mutex_lock(&ds->state->lock);
    if (ds->problem_count == 0) {
        pthread_mutex_unlock(&ds->state->lock);
        return;
    }
    log_warn("data set '%s': %zu problems found", ds->root,
             ds->problem_count);
    shown = ds->problem_count < max_lines ? ds->problem_count : max_lines;
    for (size_t i = 0; i < shown; i++) {
        dataset_problem_format(&ds->problems[i], line, sizeof(line));
        log_warn("data set '%s': %s", ds->root, line);
    }
    if (shown < ds->problem_count)
        log_warn("data set '%s': %zu more problems not shown", ds->root,
                 ds->problem_count - shown);
    pthread_mutex_unlock(&ds->state->lock);
}

/* ------------------------------------------------------------------------
 * Scanning helpers
 */

static char *join_path(const char *a, const char *b)
{
    size_t n = strlen(a);
    char *out;

    if (n > 0 && a[n - 1] == '/')
        return asprintf(&out, "%s%s", a, b) < 0 ? NULL : out;
    return asprintf(&out, "%s/%s", a, b) < 0 ? NULL : out;
}

/* The part of a full sample path below the data set root. */
static const char *relative_path(const struct dataset_cls *ds,
                                 const char *path)
{
    size_t n = strlen(ds->root);

    if (n > 0 && ds->root[n - 1] != '/')
        n++;
    return strlen(path) >= n ? path + n : path;
}

/* The message of an image error without its "'path': " prefix, which the
 * report already shows as the entry's path. */
static const char *strip_path_prefix(const char *msg, const char *path)
{
    size_t n = strlen(path);

    if (msg[0] == '\'' && strncmp(msg + 1, path, n) == 0 &&
        strncmp(msg + 1 + n, "': ", 3) == 0)
        return msg + n + 4;
    return msg;
}

static int filter_visible(const struct dirent *entry)
{
    return entry->d_name[0] != '.';
}

static int compare_names(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static bool is_folder(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void free_entries(struct dirent **entries, int n)
{
    for (int i = 0; i < n; i++)
        free(entries[i]);
    free(entries);
}

static int append_sample(struct sample_list *list, char *path, int label)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 256;
        struct dataset_cls_sample *items =
            realloc(list->items, capacity * sizeof(*items));

        if (items == NULL)
            return -ENOMEM;
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count].path = path;
    list->items[list->count].label = label;
    list->count++;
    return 0;
}

static enum dataset_problem_kind problem_kind_of(int code)
{
    switch (code) {
    case -EINVAL:
        return DATASET_PROBLEM_NOT_IMAGE;
    case -ENOTSUP:
        return DATASET_PROBLEM_UNSUPPORTED;
    case -EBADMSG:
        return DATASET_PROBLEM_CORRUPT;
    case -EFBIG:
        return DATASET_PROBLEM_TOO_LARGE;
    default:
        return DATASET_PROBLEM_UNREADABLE;
    }
}

/* ------------------------------------------------------------------------
 * Walking class folders
 */

/* Everything the recursive walk of one class folder needs. */
struct class_walk {
    struct dataset_cls *ds;
    struct sample_list *list;
    int label;
    size_t files_seen; /* regular files found, usable or not */
    struct folder_path path;
};

static int walk_folder(struct class_walk *walk, const char *rel, int depth);

/* Probe one regular file and add it as a sample or as a problem. */
static int walk_file(struct class_walk *walk, const char *rel, char *full)
{
    struct image_info info;
    struct error err = {0};
    int rc;

    walk->files_seen++;
    rc = image_probe_file(full, &info, &err);
    if (rc == -ENOMEM) {
        free(full);
        return rc;
    }
    if (rc != 0) {
        rc = add_problem(walk->ds, problem_kind_of(rc), rel, "skipped", "%s",
                         strip_path_prefix(err.msg, full));
        free(full);
        return rc;
    }
    rc = append_sample(walk->list, full, walk->label);
    if (rc != 0)
        free(full);
    return rc;
}

static int walk_entry(struct class_walk *walk, const char *rel, int depth)
{
    char *full = join_path(walk->ds->root, rel);
    struct stat st;
    int rc;

    if (full == NULL)
        return -ENOMEM;
    if (stat(full, &st) != 0) {
        rc = add_problem(walk->ds, DATASET_PROBLEM_UNREADABLE, rel,
                         "skipped", "cannot read file information: %s",
                         strerror(errno));
        free(full);
        return rc;
    }

    if (S_ISDIR(st.st_mode)) {
        free(full);
        if (depth >= MAX_FOLDER_DEPTH)
            return add_problem(walk->ds, DATASET_PROBLEM_TOO_DEEP, rel,
                               "folder skipped",
                               "more than %d folders below the class "
                               "folder (a symbolic link loop?)",
                               MAX_FOLDER_DEPTH);
        return walk_folder(walk, rel, depth + 1);
    }
    if (!S_ISREG(st.st_mode)) {
        free(full);
        walk->files_seen++;
        return add_problem(walk->ds, DATASET_PROBLEM_UNREADABLE, rel,
                           "skipped", "not a regular file");
    }
    return walk_file(walk, rel, full);
}

/* Add the images below the folder rel (relative to the root), visiting
 * entries in byte order of their names. */
static int walk_folder(struct class_walk *walk, const char *rel, int depth)
{
    char *full = join_path(walk->ds->root, rel);
    struct dirent **entries = NULL;
    int n, rc = 0;

    if (full == NULL)
        return -ENOMEM;
    if (folder_enter(&walk->path, full)) {
        free(full);
        return add_problem(walk->ds, DATASET_PROBLEM_TOO_DEEP, rel,
                           "folder skipped",
                           "a symbolic link loop: the folder is one of "
                           "its own parents");
    }
    n = scandir(full, &entries, filter_visible, compare_names);
    free(full);
    if (n < 0) {
        walk->path.depth--;
        return add_problem(walk->ds, DATASET_PROBLEM_UNREADABLE, rel,
                           "folder skipped", "cannot list the folder: %s",
                           strerror(errno));
    }

    for (int i = 0; i < n && rc == 0; i++) {
        char *child = join_path(rel, entries[i]->d_name);

        if (child == NULL) {
            rc = -ENOMEM;
            break;
        }
        rc = walk_entry(walk, child, depth);
        free(child);
    }
    free_entries(entries, n);
    walk->path.depth--;
    return rc;
}

/* Count the visible regular files below a folder, for the report of a
 * class that is skipped as a whole. */
static size_t count_files(const char *full, int depth,
                          struct folder_path *path)
{
    struct dirent **entries = NULL;
    size_t total = 0;
    int n;

    if (folder_enter(path, full))
        return 0;
    n = scandir(full, &entries, filter_visible, compare_names);

    for (int i = 0; i < n; i++) {
        char *child = join_path(full, entries[i]->d_name);
        struct stat st;

        if (child != NULL && stat(child, &st) == 0) {
            if (S_ISDIR(st.st_mode) && depth < MAX_FOLDER_DEPTH)
                total += count_files(child, depth + 1, path);
            else if (S_ISREG(st.st_mode))
                total++;
        }
        free(child);
    }
    if (n > 0)
        free_entries(entries, n);
    path->depth--;
    return total;
}

/* ------------------------------------------------------------------------
 * Splits and classes
 */

/* List the class folders of a split folder, sorted, into *names; files
 * directly in the split folder are reported. */
static int list_class_folders(struct dataset_cls *ds, const char *split,
                              char ***names, int *count)
{
    char *full = join_path(ds->root, split);
    struct dirent **entries = NULL;
    int n, rc = 0;

    *names = NULL;
    *count = 0;
    if (full == NULL)
        return -ENOMEM;
    n = scandir(full, &entries, filter_visible, compare_names);
    if (n < 0) {
        rc = add_problem(ds, DATASET_PROBLEM_UNREADABLE, split,
                         "folder skipped", "cannot list the folder: %s",
                         strerror(errno));
        free(full);
        return rc;
    }
    *names = calloc((size_t)n + 1, sizeof(char *));
    if (*names == NULL)
        rc = -ENOMEM;

    for (int i = 0; i < n && rc == 0; i++) {
        char *rel = join_path(split, entries[i]->d_name);
        char *child = join_path(full, entries[i]->d_name);

        if (rel == NULL || child == NULL) {
            rc = -ENOMEM;
        } else if (is_folder(child)) {
            (*names)[*count] = strdup(entries[i]->d_name);
            rc = (*names)[*count] == NULL ? -ENOMEM : 0;
            (*count)++;
        } else {
            rc = add_problem(ds, DATASET_PROBLEM_OUTSIDE_CLASS, rel,
                             "skipped",
                             "not in a class folder; images go in "
                             "%s/<class>/", split);
        }
        free(rel);
        free(child);
    }
    free_entries(entries, n);
    free(full);
    return rc;
}

static void free_names(char **names, int count)
{
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

static int find_class(const struct dataset_cls *ds, const char *name)
{
    int lo = 0, hi = ds->class_count - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int cmp = strcmp(ds->class_names[mid], name);

        if (cmp == 0)
            return mid;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* Walk one class folder of a split and report it when it has no usable
 * image. */
static int scan_class(struct dataset_cls *ds, struct sample_list *list,
                      const char *split, int label, const char *action)
{
    struct class_walk walk = {ds, list, label, 0, {.depth = 0}};
    size_t before = list->count;
    char *rel = join_path(split, ds->class_names[label]);
    int rc;

    if (rel == NULL)
        return -ENOMEM;
    rc = walk_folder(&walk, rel, 0);
    if (rc == 0 && list->count == before) {
        if (walk.files_seen == 0)
            rc = add_problem(ds, DATASET_PROBLEM_EMPTY_CLASS, rel, action,
                             "class folder has no images");
        else
            rc = add_problem(ds, DATASET_PROBLEM_EMPTY_CLASS, rel, action,
                             "class folder has no usable image among "
                             "its %zu file(s)", walk.files_seen);
    }
    free(rel);
    return rc;
}

/* Move a sample list into a split and count its samples per class. */
static int finish_split(struct dataset_cls *ds, enum dataset_cls_split id,
                        const char *name, struct sample_list *list)
{
    struct dataset_cls_split_set *set = &ds->splits[id];

    snprintf(set->name, sizeof(set->name), "%s", name);
    set->samples = list->items;
    set->count = list->count;
    list->items = NULL;
    list->count = 0; /* dataset_cls_free owns the samples now */
    set->class_counts = calloc((size_t)ds->class_count + 1, sizeof(size_t));
    if (set->class_counts == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < set->count; i++)
        set->class_counts[set->samples[i].label]++;
    return 0;
}

static int scan_train(struct dataset_cls *ds, struct error *err)
{
    struct sample_list list = {0};
    int rc;

    rc = list_class_folders(ds, "train", &ds->class_names,
                            &ds->class_count);
    for (int c = 0; c < ds->class_count && rc == 0; c++)
        rc = scan_class(ds, &list, "train", c,
                        "class kept without training images, so the "
                        "class indices still follow the folder order");
    if (rc == 0)
        rc = finish_split(ds, DATASET_CLS_TRAIN, "train", &list);
    if (rc != 0) {
        for (size_t i = 0; i < list.count; i++)
            free(list.items[i].path);
        free(list.items);
        return error_set(err, rc, "out of memory scanning '%s/train'",
                         ds->root);
    }
    return 0;
}

/* Report a val class folder that train/ does not have; its files are not
 * used. */
static int report_unknown_class(struct dataset_cls *ds, const char *split,
                                const char *name)
{
    char *rel = join_path(split, name);
    char *full = rel ? join_path(ds->root, rel) : NULL;
    int rc = -ENOMEM;

    if (full != NULL) {
        struct folder_path path = {.depth = 0};
        size_t files = count_files(full, 0, &path);
        char action[64];

        snprintf(action, sizeof(action), "its %zu file(s) skipped", files);
        rc = add_problem(ds, DATASET_PROBLEM_NOT_IN_TRAIN, rel, action,
                         "class '%s' has no folder in train/", name);
    }
    free(full);
    free(rel);
    return rc;
}

/* Walk the val class folders, then report train classes that have no
 * folder there. */
static int scan_val_classes(struct dataset_cls *ds, const char *split,
                            struct sample_list *list)
{
    char **names = NULL;
    int count = 0;
    bool *present = calloc((size_t)ds->class_count + 1, sizeof(bool));
    int rc = present ? list_class_folders(ds, split, &names, &count)
                     : -ENOMEM;

    for (int i = 0; i < count && rc == 0; i++) {
        int label = find_class(ds, names[i]);

        if (label < 0) {
            rc = report_unknown_class(ds, split, names[i]);
            continue;
        }
        present[label] = true;
        rc = scan_class(ds, list, split, label, "class not validated");
    }

    for (int c = 0; c < ds->class_count && rc == 0; c++) {
        char *rel;

        if (present[c])
            continue;
        rel = join_path(split, ds->class_names[c]);
        rc = rel ? add_problem(ds, DATASET_PROBLEM_MISSING_FROM_VAL, rel,
                               "class not validated",
                               "class folder missing; train/%s has %zu "
                               "image(s)", ds->class_names[c],
                               ds->splits[DATASET_CLS_TRAIN]
                                   .class_counts[c])
                 : -ENOMEM;
        free(rel);
    }
    free_names(names, count);
    free(present);
    return rc;
}

static int scan_val(struct dataset_cls *ds, struct error *err)
{
    struct sample_list list = {0};
    const char *split = NULL;
    char *val = join_path(ds->root, "val");
    char *test = join_path(ds->root, "test");
    int rc = 0;

    if (val == NULL || test == NULL)
        rc = -ENOMEM;
    else if (is_folder(val))
        split = "val";
    else if (is_folder(test))
        split = "test";
    free(val);
    free(test);

    if (rc == 0 && split == NULL)
        rc = add_problem(ds, DATASET_PROBLEM_NO_VAL, "val",
                         "training runs without validation",
                         "no 'val' or 'test' folder");
    if (rc == 0 && split != NULL) {
        if (strcmp(split, "test") == 0)
            log_info("data set '%s': no val/ folder, validating on test/ "
                     "as Ultralytics does", ds->root);
        rc = scan_val_classes(ds, split, &list);
    }
    if (rc == 0)
        rc = finish_split(ds, DATASET_CLS_VAL, split ? split : "", &list);
    if (rc != 0) {
        for (size_t i = 0; i < list.count; i++)
            free(list.items[i].path);
        free(list.items);
        return error_set(err, rc, "out of memory scanning '%s'", ds->root);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Scan entry point
 */

static int check_root(const char *root, struct error *err)
{
    struct stat st;
    char *train;
    bool has_train;

    if (stat(root, &st) != 0 && errno == ENOENT)
        return error_set(err, -ENOENT, "data set folder '%s' not found",
                         root);
    if (stat(root, &st) != 0)
        return error_errno(err, errno, "cannot access data set folder '%s'",
                           root);
    if (!S_ISDIR(st.st_mode))
        return error_set(err, -ENOTDIR, "data set path '%s' is not a "
                         "folder", root);
    train = join_path(root, "train");
    if (train == NULL)
        return error_set(err, -ENOMEM, "out of memory");
    has_train = is_folder(train);
    free(train);
    if (!has_train)
        return error_set(err, -ENOENT,
                         "no 'train' folder in data set '%s'; a "
                         "classification data set needs "
                         "train/<class>/<image> and val/<class>/<image>",
                         root);
    return 0;
}

/* Fail unless at least 2 classes have usable training images. */
static int check_usable(const struct dataset_cls *ds, struct error *err)
{
    const struct dataset_cls_split_set *train =
        &ds->splits[DATASET_CLS_TRAIN];
    char first[512] = "none";
    int usable = 0;

    for (int c = 0; c < ds->class_count; c++)
        usable += train->class_counts[c] > 0;
    if (usable >= 2)
        return 0;

    if (ds->problem_count > 0)
        dataset_problem_format(&ds->problems[0], first, sizeof(first));
    if (ds->class_count == 0)
        return error_set(err, -EINVAL,
                         "no class folders in '%s/train'; put each "
                         "class's images in train/<class>/ (%zu "
                         "problems, first: %s)", ds->root,
                         ds->problem_count, first);
    if (train->count == 0)
        return error_set(err, -EINVAL,
                         "no usable training images in '%s/train' (%zu "
                         "problems, first: %s)", ds->root,
                         ds->problem_count, first);
    return error_set(err, -EINVAL,
                     "data set '%s' has training images in %d of %d "
                     "classes; at least 2 classes need images (%zu "
                     "problems, first: %s)", ds->root, usable,
                     ds->class_count, ds->problem_count, first);
}

static int init_state(struct dataset_cls *ds,
                      const struct dataset_cls_options *options)
{
    struct dataset_cls_state *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return -ENOMEM;
    pthread_mutex_init(&st->lock, NULL);
    if (options != NULL) {
        st->cache_max_bytes = options->cache_max_bytes;
        st->cache_max_pixels = options->cache_max_pixels;
    }
    if (st->cache_max_pixels == 0)
        st->cache_max_pixels = DATASET_CLS_CACHE_MAX_PIXELS_DEFAULT;
    ds->state = st;
    return 0;
}

/* Allocate the per-sample skip flags and cache slots. */
static int init_loader(struct dataset_cls *ds)
{
    struct dataset_cls_state *st = ds->state;

    for (int s = 0; s < 2; s++) {
        size_t n = ds->splits[s].count + 1;

        st->skipped[s] = calloc(n, 1);
        if (st->skipped[s] == NULL)
            return -ENOMEM;
        if (st->cache_max_bytes > 0) {
            st->cache[s] = calloc(n, sizeof(struct image *));
            if (st->cache[s] == NULL)
                return -ENOMEM;
        }
    }
    return 0;
}

int dataset_cls_scan(const char *root,
                     const struct dataset_cls_options *options,
                     struct dataset_cls **out, struct error *err)
{
    struct dataset_cls *ds;
    int rc;

    *out = NULL;
    rc = check_root(root, err);
    if (rc != 0)
        return rc;

    ds = calloc(1, sizeof(*ds));
    if (ds == NULL || (ds->root = strdup(root)) == NULL ||
        init_state(ds, options) != 0) {
        dataset_cls_free(ds);
        return error_set(err, -ENOMEM, "out of memory");
    }
    for (size_t n = strlen(ds->root); n > 1 && ds->root[n - 1] == '/'; n--)
        ds->root[n - 1] = '\0';

    rc = scan_train(ds, err);
    if (rc == 0)
        rc = check_usable(ds, err);
    if (rc == 0)
        rc = scan_val(ds, err);
    if (rc == 0 && init_loader(ds) != 0)
        rc = error_set(err, -ENOMEM, "out of memory");
    if (rc != 0) {
        dataset_cls_free(ds);
        return rc;
    }

    log_info("data set '%s': %d classes, %zu train and %zu %s images, "
             "%zu problems", root, ds->class_count,
             ds->splits[DATASET_CLS_TRAIN].count,
             ds->splits[DATASET_CLS_VAL].count,
             ds->splits[DATASET_CLS_VAL].name[0]
                 ? ds->splits[DATASET_CLS_VAL].name
                 : "val",
             ds->problem_count);
    *out = ds;
    return 0;
}

void dataset_cls_free(struct dataset_cls *ds)
{
    struct dataset_cls_state *st;

    if (ds == NULL)
        return;
    st = ds->state;
    for (int s = 0; s < 2; s++) {
        struct dataset_cls_split_set *set = &ds->splits[s];

        for (size_t i = 0; i < set->count; i++) {
            free(set->samples[i].path);
            if (st != NULL && st->cache[s] != NULL && st->cache[s][i]) {
                image_free(st->cache[s][i]);
                free(st->cache[s][i]);
            }
        }
        free(set->samples);
        free(set->class_counts);
        if (st != NULL) {
            free(st->skipped[s]);
            free(st->cache[s]);
        }
    }
    for (size_t i = 0; i < ds->problem_count; i++) {
        free(ds->problems[i].path);
        free(ds->problems[i].problem);
        free(ds->problems[i].action);
    }
    free(ds->problems);
    free_names(ds->class_names, ds->class_count);
    if (st != NULL) {
        pthread_mutex_destroy(&st->lock);
        free(st);
    }
    free(ds->root);
    free(ds);
}

/* ------------------------------------------------------------------------
 * Loading
 */

static int check_load_args(const struct dataset_cls *ds,
                           enum dataset_cls_split split, int size,
                           struct error *err)
{
    if (split != DATASET_CLS_TRAIN && split != DATASET_CLS_VAL)
        return error_set(err, -EINVAL, "invalid split %d; expected "
                         "DATASET_CLS_TRAIN or DATASET_CLS_VAL", split);
    if (size < 1 || size > DATASET_CLS_MAX_SIZE)
        return error_set(err, -EINVAL, "invalid image size %d for data "
                         "set '%s'; expected 1 to %d", size, ds->root,
                         DATASET_CLS_MAX_SIZE);
    return 0;
}

/* Mark a sample as skipped and report it, once. */
static int skip_sample(struct dataset_cls *ds, enum dataset_cls_split split,
                       size_t index, const struct error *decode_err)
{
    struct dataset_cls_state *st = ds->state;
    const char *path = ds->splits[split].samples[index].path;
    const char *problem = strip_path_prefix(decode_err->msg, path);
    bool first = false;
    int rc = 0;

    pthread_mutex_lock(&st->lock);
    if (!st->skipped[split][index]) {
        st->skipped[split][index] = 1;
        first = true;
        rc = add_problem(ds, DATASET_PROBLEM_LOAD_FAILED,
                         relative_path(ds, path), "skipped in every epoch",
                         "%s", problem);
    }
    pthread_mutex_unlock(&st->lock);

    if (first)
        log_warn("data set '%s': %s: %s; skipped", ds->root,
                 relative_path(ds, path), problem);
    return rc;
}

static bool is_gray(const struct image *img)
{
    size_t n = (size_t)img->width * (size_t)img->height;

    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = img->pixels + i * 3;

        if (p[0] != p[1] || p[0] != p[2])
            return false;
    }
    return true;
}

/* Copy img into a new heap image, with one channel when it is gray. */
static struct image *compact_copy(const struct image *img)
{
    size_t n = (size_t)img->width * (size_t)img->height;
    struct image *copy = calloc(1, sizeof(*copy));
    bool gray = is_gray(img);

    if (copy == NULL)
        return NULL;
    copy->width = img->width;
    copy->height = img->height;
    copy->channels = gray ? 1 : 3;
    copy->pixels = malloc(n * (size_t)copy->channels);
    if (copy->pixels == NULL) {
        free(copy);
        return NULL;
    }
    if (gray) {
        for (size_t i = 0; i < n; i++)
            copy->pixels[i] = img->pixels[i * 3];
    } else {
        memcpy(copy->pixels, img->pixels, n * 3);
    }
    return copy;
}

/* Keep a decoded image in the cache when it is small enough and the
 * budget allows. Running out of memory here only means no caching. */
static void cache_image(struct dataset_cls *ds, enum dataset_cls_split split,
                        size_t index, const struct image *img)
{
    struct dataset_cls_state *st = ds->state;
    struct image *copy;
    size_t bytes;
    bool full_now = false;

    if (st->cache[split] == NULL ||
        (uint64_t)img->width * (uint64_t)img->height > st->cache_max_pixels)
        return;
    copy = compact_copy(img);
    if (copy == NULL)
        return;
    bytes = sizeof(*copy) + (size_t)copy->width * (size_t)copy->height *
                                (size_t)copy->channels;

    pthread_mutex_lock(&st->lock);
    if (st->cache[split][index] == NULL &&
        st->cache_bytes + bytes <= st->cache_max_bytes) {
        st->cache[split][index] = copy;
        st->cache_bytes += bytes;
        copy = NULL;
    } else if (st->cache[split][index] == NULL && !st->cache_full_logged) {
        st->cache_full_logged = true;
        full_now = true;
    }
    pthread_mutex_unlock(&st->lock);

    if (full_now)
        log_info("data set '%s': image cache full at %zu bytes "
                 "(cache_max_bytes); further images are decoded each "
                 "epoch", ds->root, st->cache_max_bytes);
    if (copy != NULL) {
        image_free(copy);
        free(copy);
    }
}

int dataset_cls_load(struct dataset_cls *ds, enum dataset_cls_split split,
                     size_t index, int size, float *chw, struct error *err)
{
    struct dataset_cls_state *st = ds->state;
    const struct image *cached = NULL;
    struct image img;
    struct error decode_err = {0};
    bool skipped;
    int rc;

    rc = check_load_args(ds, split, size, err);
    if (rc != 0)
        return rc;
    if (index >= ds->splits[split].count)
        return error_set(err, -EINVAL, "sample %zu out of range; split "
                         "'%s' of '%s' has %zu samples", index,
                         ds->splits[split].name, ds->root,
                         ds->splits[split].count);

    pthread_mutex_lock(&st->lock);
    skipped = st->skipped[split][index];
    if (st->cache[split] != NULL)
        cached = st->cache[split][index];
    pthread_mutex_unlock(&st->lock);
    if (skipped)
        return DATASET_CLS_SKIPPED;
    if (cached != NULL)
        return image_resize_chw_float(cached, size, size, chw, err);

    rc = image_decode_file(ds->splits[split].samples[index].path, &img,
                           &decode_err);
    if (rc == -ENOMEM)
        return error_set(err, rc, "%s", decode_err.msg);
    if (rc != 0) {
        if (skip_sample(ds, split, index, &decode_err) != 0)
            return error_set(err, -ENOMEM, "out of memory");
        return DATASET_CLS_SKIPPED;
    }

    rc = image_resize_chw_float(&img, size, size, chw, err);
    if (rc == 0)
        cache_image(ds, split, index, &img);
    image_free(&img);
    return rc;
}

int dataset_cls_load_batch(struct dataset_cls *ds,
                           enum dataset_cls_split split,
                           const size_t *indices, size_t count, int size,
                           float *chw, int *labels, size_t *loaded,
                           struct error *err)
{
    size_t per_image = 3 * (size_t)size * (size_t)size;
    int first_rc = 0;
    size_t packed = 0;
    int *status;
    int rc;

    *loaded = 0;
    rc = check_load_args(ds, split, size, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < count; i++) {
        if (indices[i] >= ds->splits[split].count)
            return error_set(err, -EINVAL, "sample %zu at batch position "
                             "%zu out of range; split '%s' has %zu "
                             "samples", indices[i], i,
                             ds->splits[split].name,
                             ds->splits[split].count);
    }
    status = malloc((count + 1) * sizeof(*status));
    if (status == NULL)
        return error_set(err, -ENOMEM, "out of memory");

#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < count; i++) {
        struct error item_err = {0};

        status[i] = dataset_cls_load(ds, split, indices[i], size,
                                     chw + i * per_image, &item_err);
        if (status[i] < 0) {
#pragma omp critical(dataset_cls_batch_error)
            if (first_rc == 0) {
                first_rc = status[i];
                if (err != NULL)
                    *err = item_err;
            }
        }
    }

    for (size_t i = 0; i < count && first_rc == 0; i++) {
        if (status[i] != 0)
            continue;
        if (packed != i)
            memmove(chw + packed * per_image, chw + i * per_image,
                    per_image * sizeof(float));
        labels[packed] = ds->splits[split].samples[indices[i]].label;
        packed++;
    }
    free(status);
    *loaded = packed;
    return first_rc;
}
