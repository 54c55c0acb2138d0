/*
 * Scanning, validation and reporting of detection data sets; the layout
 * and the contract are in dataset_det.h.
 *
 * The scan runs in three steps. It locates and parses data.yaml, then
 * collects the image paths of each split. Folders are walked with scandir
 * in byte order, so the order is the same on every run and file system.
 * Last, chunk by chunk, it decodes the images in parallel and validates
 * their label files in scan order. Every problem goes into the report as it is found; only
 * running out of memory and the data.yaml errors listed in dataset_det.h
 * stop the scan.
 */
#include "dataset_det.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <yaml.h>

#include "fsutil.h"
#include "log.h"

/* Maximum depth of subfolders below a split folder. */
#define MAX_FOLDER_DEPTH 16

/* Report entries kept per rule. Later ones are only counted in a
 * closing entry, so a data set with a million bad rows gets a short
 * report. */
#define PROBLEMS_PER_RULE 100

/* Images decoded in parallel before their results are recorded. */
#define DECODE_CHUNK 64

static const char *const split_names[DATASET_DET_SPLITS] = {"train", "val",
                                                            "test"};

/* Per-rule counts of report entries, for the cap. */
struct rule_count {
    const char *rule;
    size_t count;
};

/* State of one scan that does not outlive it. */
struct scan {
    struct dataset_det *ds;
    char *root_real; /* realpath of ds->root */
    struct rule_count rules[48];
    int rule_count;
    char **label_paths; /* label files expected by the images found */
    size_t label_count, label_capacity;
    int threads;
    size_t cache_limit;
};

/* A growing list of image paths for one split. */
struct path_list {
    char **items;
    size_t count, capacity;
};

/* ------------------------------------------------------------------------
 * Report
 */

const char *dataset_det_level_name(enum dataset_det_level level)
{
    switch (level) {
    case DATASET_DET_INFO:
        return "info";
    case DATASET_DET_WARNING:
        return "warning";
    case DATASET_DET_ERROR:
        return "error";
    }
    return "unknown";
}

int dataset_det_problem_format(const struct dataset_det_problem *p,
                               char *buf, size_t len)
{
    if (p->line > 0)
        return snprintf(buf, len, "%s:%d: %s [%s]; %s", p->file, p->line,
                        p->message, p->rule, p->action);
    return snprintf(buf, len, "%s: %s [%s]; %s", p->file, p->message,
                    p->rule, p->action);
}

static int push_problem(struct dataset_det *ds, enum dataset_det_level level,
                        const char *file, int line, const char *rule,
                        const char *action, char *message)
{
    struct dataset_det_problem *p;

    if (message == NULL)
        return -ENOMEM;
    if (ds->problem_count == ds->problem_capacity) {
        size_t capacity = ds->problem_capacity ? 2 * ds->problem_capacity
                                               : 32;
        p = realloc(ds->problems, capacity * sizeof(*p));
        if (p == NULL) {
            free(message);
            return -ENOMEM;
        }
        ds->problems = p;
        ds->problem_capacity = capacity;
    }
    p = &ds->problems[ds->problem_count];
    p->level = level;
    p->file = strdup(file);
    p->line = line;
    p->rule = rule;
    p->message = message;
    p->action = action;
    if (p->file == NULL) {
        free(message);
        return -ENOMEM;
    }
    ds->problem_count++;
    return 0;
}

/* Append a report entry unless PROBLEMS_PER_RULE entries of this rule
 * exist already. rule and action must be string literals. */
__attribute__((format(printf, 7, 8)))
static int add_problem(struct scan *sc, enum dataset_det_level level,
                       const char *file, int line, const char *rule,
                       const char *action, const char *fmt, ...)
{
    struct rule_count *rc = NULL;
    char *message;
    va_list ap;
    int n;

    for (int i = 0; i < sc->rule_count; i++)
        if (strcmp(sc->rules[i].rule, rule) == 0)
            rc = &sc->rules[i];
    if (rc == NULL && sc->rule_count < (int)(sizeof(sc->rules) /
                                              sizeof(sc->rules[0]))) {
        rc = &sc->rules[sc->rule_count++];
        rc->rule = rule;
        rc->count = 0;
    }
    if (rc != NULL && rc->count++ >= PROBLEMS_PER_RULE)
        return 0;

    va_start(ap, fmt);
    n = vasprintf(&message, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    return push_problem(sc->ds, level, file, line, rule, action, message);
}

/* One closing entry per rule whose entries were capped. */
static int add_cap_notes(struct scan *sc)
{
    for (int i = 0; i < sc->rule_count; i++) {
        struct rule_count *rc = &sc->rules[i];
        char *message;

        if (rc->count <= PROBLEMS_PER_RULE)
            continue;
        if (asprintf(&message, "%zu more entries of this rule",
                     rc->count - PROBLEMS_PER_RULE) < 0)
            return -ENOMEM;
        if (push_problem(sc->ds, DATASET_DET_INFO, "", 0, rc->rule,
                         "not listed", message) != 0)
            return -ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Paths
 */

/* Remove "." components, empty components and "x/.." pairs in place,
 * so that report paths read "images/train/a.png". The result is only
 * used after realpath() has checked where it leads. */
static void normalize_path(char *path)
{
    bool absolute = path[0] == '/';
    char *out = path + (absolute ? 1 : 0);
    char *in = out;
    char *start = out;

    while (in != NULL && *in != '\0') {
        char *end = strchr(in, '/');
        size_t len = end ? (size_t)(end - in) : strlen(in);
        char *next = end ? end + 1 : NULL;

        if ((len == 1 && in[0] == '.') || len == 0) {
            /* dropped */
        } else if (len == 2 && in[0] == '.' && in[1] == '.' && out > start &&
                   !(out - start >= 3 && strncmp(out - 3, "../", 3) == 0 &&
                     (out - start == 3 || out[-4] == '/'))) {
            out--; /* the '/' after the previous component */
            while (out > start && out[-1] != '/')
                out--;
        } else {
            memmove(out, in, len);
            out += len;
            *out++ = '/';
        }
        in = next;
    }
    if (out > start)
        out--;
    *out = '\0';
    if (path[0] == '\0')
        strcpy(path, ".");
}

static char *join_path(const char *a, const char *b)
{
    char *out;

    if (a[0] == '\0')
        out = strdup(b);
    else if (asprintf(&out, "%s/%s", a, b) < 0)
        out = NULL;
    if (out != NULL)
        normalize_path(out);
    return out;
}

/* The part of a full path below the data set folder. */
static const char *rel_path(const struct dataset_det *ds, const char *path)
{
    size_t n = strlen(ds->root);

    if (strncmp(path, ds->root, n) != 0 || (path[n] != '/' && path[n]))
        return path;
    path += n;
    while (*path == '/')
        path++;
    return path;
}

/* 1 when real (a resolved path) is root_real or below it. */
static bool is_inside(const char *root_real, const char *real)
{
    size_t n = strlen(root_real);

    if (strncmp(real, root_real, n) != 0)
        return false;
    return real[n] == '\0' || real[n] == '/' ||
           (n > 0 && root_real[n - 1] == '/');
}

/* Resolve path and check that it stays inside the data set. Returns 0,
 * -ENOENT (missing) or -EXDEV (outside); -ENOMEM when out of memory. */
static int check_inside(const struct scan *sc, const char *path)
{
    char *real = realpath(path, NULL);
    int rc = 0;

    if (real == NULL)
        return errno == ENOMEM ? -ENOMEM : -ENOENT;
    if (!is_inside(sc->root_real, real))
        rc = -EXDEV;
    free(real);
    return rc;
}

static const char *extension(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');

    if (dot == NULL || (slash != NULL && dot < slash))
        return "";
    return dot + 1;
}

static bool is_decoded_ext(const char *ext)
{
    return strcasecmp(ext, "jpg") == 0 || strcasecmp(ext, "jpeg") == 0 ||
           strcasecmp(ext, "png") == 0;
}

/* Image extensions that Ultralytics accepts but this decoder does not. */
static bool is_other_image_ext(const char *ext)
{
    static const char *const exts[] = {"bmp", "webp", "tif", "tiff", "dng",
                                       "mpo", "pfm",  "heic", "gif"};

    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
        if (strcasecmp(ext, exts[i]) == 0)
            return true;
    return false;
}

/* The label path of an image: the last "/images/" becomes "/labels/" and
 * the extension ".txt". A path without "/images/" keeps its folder. */
static char *label_path_of(const char *image)
{
    const char *ext = extension(image);
    size_t stem = strlen(image) - (ext[0] ? strlen(ext) + 1 : 0);
    char *out = malloc(stem + 5);
    char *mark = NULL;

    if (out == NULL)
        return NULL;
    memcpy(out, image, stem);
    memcpy(out + stem, ".txt", 5);
    for (char *p = strstr(out, "/images/"); p != NULL && p < out + stem;
         p = strstr(p + 1, "/images/"))
        mark = p;
    if (mark != NULL)
        memcpy(mark, "/labels/", 8);
    return out;
}

static int path_list_add(struct path_list *list, char *path)
{
    if (path == NULL)
        return -ENOMEM;
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 256;
        char **items = realloc(list->items, capacity * sizeof(*items));

        if (items == NULL) {
            free(path);
            return -ENOMEM;
        }
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count++] = path;
    return 0;
}

static void path_list_free(struct path_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    memset(list, 0, sizeof(*list));
}

static int filter_visible(const struct dirent *entry)
{
    return entry->d_name[0] != '.';
}

static int compare_names(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void free_entries(struct dirent **entries, int n)
{
    for (int i = 0; i < n; i++)
        free(entries[i]);
    free(entries);
}

/* ------------------------------------------------------------------------
 * Locating and parsing data.yaml
 */

static bool is_yaml_name(const char *name)
{
    const char *ext = extension(name);

    return name[0] != '.' &&
           (strcasecmp(ext, "yaml") == 0 || strcasecmp(ext, "yml") == 0);
}

/* Find data.yaml, or the single *.yaml, in folder. Returns 0 with *out
 * set, -ENOENT when there is none, -EINVAL when several are found. */
static int find_yaml_in(const char *folder, char **out, struct error *err)
{
    struct dirent **entries;
    char *found = NULL;
    int yaml_count = 0;
    int n = scandir(folder, &entries, filter_visible, compare_names);

    *out = NULL;
    if (n < 0)
        return -ENOENT;
    for (int i = 0; i < n; i++) {
        if (strcmp(entries[i]->d_name, "data.yaml") == 0) {
            free(found);
            found = join_path(folder, "data.yaml");
            yaml_count = 1;
            break;
        }
        if (is_yaml_name(entries[i]->d_name)) {
            yaml_count++;
            if (found == NULL)
                found = join_path(folder, entries[i]->d_name);
        }
    }
    free_entries(entries, n);
    if (found != NULL && yaml_count == 1) {
        struct stat st;

        if (lstat(found, &st) == 0 && S_ISLNK(st.st_mode)) {
            error_set(err, -EINVAL, "'%s' is a symbolic link, which is not "
                      "followed; put the file itself in the data set",
                      found);
            free(found);
            return -EINVAL;
        }
    }
    if (yaml_count > 1) {
        free(found);
        return error_set(err, -EINVAL, "data set folder '%s' holds several "
                         "YAML files and no data.yaml; name the data set's "
                         "file data.yaml", folder);
    }
    if (yaml_count == 0)
        return -ENOENT;
    if (found == NULL)
        return -ENOMEM;
    *out = found;
    return 0;
}

/* The only visible subfolder of folder, or NULL. */
static char *single_subfolder(const char *folder)
{
    struct dirent **entries;
    char *sub = NULL;
    int folders = 0;
    int n = scandir(folder, &entries, filter_visible, compare_names);

    if (n < 0)
        return NULL;
    for (int i = 0; i < n; i++) {
        char *full = join_path(folder, entries[i]->d_name);
        struct stat st;

        if (full != NULL && lstat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
            folders++;
            free(sub);
            sub = full;
        } else {
            free(full);
        }
    }
    free_entries(entries, n);
    if (folders != 1) {
        free(sub);
        return NULL;
    }
    return sub;
}

int dataset_det_find_yaml(const char *path, char **yaml_path,
                          struct error *err)
{
    struct stat st;
    char *sub;
    int rc;

    if (stat(path, &st) != 0)
        return error_errno(err, errno, "data set '%s' not found", path);
    if (S_ISREG(st.st_mode)) {
        *yaml_path = strdup(path);
        return *yaml_path ? 0 : -ENOMEM;
    }
    if (!S_ISDIR(st.st_mode))
        return error_set(err, -EINVAL, "data set '%s' is neither a folder "
                         "nor a YAML file", path);
    rc = find_yaml_in(path, yaml_path, err);
    if (rc != -ENOENT)
        return rc;
    sub = single_subfolder(path);
    if (sub != NULL) {
        rc = find_yaml_in(sub, yaml_path, err);
        free(sub);
        if (rc != -ENOENT)
            return rc;
    }
    return error_set(err, -ENOENT, "no data.yaml found in '%s' or in its "
                     "only subfolder; a detection data set needs a "
                     "data.yaml with train, val and names", path);
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map,
                            const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);

        if (k != NULL && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

static const char *scalar_of(const yaml_node_t *n)
{
    if (n == NULL || n->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)n->data.scalar.value;
}

/* Parse a whole decimal integer. Returns 0 or -1. */
static int parse_int(const char *s, long *out)
{
    char *end;

    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    *out = strtol(s, &end, 10);
    return errno != 0 || *end != '\0' ? -1 : 0;
}

static int set_names_from_list(struct dataset_det *ds, yaml_document_t *doc,
                               yaml_node_t *names, const char *yaml_rel,
                               struct error *err)
{
    int n = (int)(names->data.sequence.items.top -
                  names->data.sequence.items.start);

    if (n < 1 || n > DATASET_DET_MAX_CLASSES)
        return error_set(err, -EINVAL, "%s: names has %d entries; expected "
                         "1 to %d class names", yaml_rel, n,
                         DATASET_DET_MAX_CLASSES);
    ds->class_names = calloc((size_t)n, sizeof(char *));
    if (ds->class_names == NULL)
        return -ENOMEM;
    ds->class_count = n;
    for (int i = 0; i < n; i++) {
        const char *s = scalar_of(yaml_document_get_node(
            doc, names->data.sequence.items.start[i]));

        if (s == NULL)
            return error_set(err, -EINVAL, "%s: names[%d] is not a plain "
                             "name; write each class name as a string",
                             yaml_rel, i);
        ds->class_names[i] = strdup(s);
        if (ds->class_names[i] == NULL)
            return -ENOMEM;
    }
    return 0;
}

static int set_names_from_map(struct dataset_det *ds, yaml_document_t *doc,
                              yaml_node_t *names, const char *yaml_rel,
                              struct error *err)
{
    int n = (int)(names->data.mapping.pairs.top -
                  names->data.mapping.pairs.start);

    if (n < 1 || n > DATASET_DET_MAX_CLASSES)
        return error_set(err, -EINVAL, "%s: names has %d entries; expected "
                         "1 to %d class names", yaml_rel, n,
                         DATASET_DET_MAX_CLASSES);
    ds->class_names = calloc((size_t)n, sizeof(char *));
    if (ds->class_names == NULL)
        return -ENOMEM;
    ds->class_count = n;
    for (int i = 0; i < n; i++) {
        yaml_node_pair_t *p = &names->data.mapping.pairs.start[i];
        const char *key = scalar_of(yaml_document_get_node(doc, p->key));
        const char *value = scalar_of(yaml_document_get_node(doc, p->value));
        long id;

        if (parse_int(key, &id) != 0 || id < 0 || id >= n)
            return error_set(err, -EINVAL, "%s: names key '%.40s' is not "
                             "a class id in 0..%d; number the classes "
                             "0 to %d", yaml_rel, key ? key : "?", n - 1,
                             n - 1);
        if (value == NULL)
            return error_set(err, -EINVAL, "%s: names[%ld] is not a plain "
                             "name; write each class name as a string",
                             yaml_rel, id);
        if (ds->class_names[id] != NULL)
            return error_set(err, -EINVAL, "%s: class id %ld appears twice "
                             "in names; give each id once", yaml_rel, id);
        ds->class_names[id] = strdup(value);
        if (ds->class_names[id] == NULL)
            return -ENOMEM;
    }
    return 0;
}

static int set_names(struct dataset_det *ds, yaml_document_t *doc,
                     yaml_node_t *root, const char *yaml_rel,
                     struct error *err)
{
    yaml_node_t *names = map_get(doc, root, "names");
    const char *nc_text = scalar_of(map_get(doc, root, "nc"));
    long nc = -1;
    int rc;

    if (map_get(doc, root, "nc") != NULL &&
        (parse_int(nc_text, &nc) != 0 || nc < 1 ||
         nc > DATASET_DET_MAX_CLASSES))
        return error_set(err, -EINVAL, "%s: nc '%.40s' is not a class count "
                         "in 1..%d", yaml_rel, nc_text ? nc_text : "?",
                         DATASET_DET_MAX_CLASSES);
    if (names == NULL) {
        if (nc < 1)
            return error_set(err, -EINVAL, "%s: names is missing; list the "
                             "class names, e.g. names: [person, car]",
                             yaml_rel);
        ds->class_names = calloc((size_t)nc, sizeof(char *));
        if (ds->class_names == NULL)
            return -ENOMEM;
        ds->class_count = (int)nc;
        for (int i = 0; i < nc; i++)
            if (asprintf(&ds->class_names[i], "class%d", i) < 0) {
                ds->class_names[i] = NULL;
                return -ENOMEM;
            }
        return 0;
    }
    if (names->type == YAML_SEQUENCE_NODE)
        rc = set_names_from_list(ds, doc, names, yaml_rel, err);
    else if (names->type == YAML_MAPPING_NODE)
        rc = set_names_from_map(ds, doc, names, yaml_rel, err);
    else
        return error_set(err, -EINVAL, "%s: names must be a list or a map "
                         "of class names", yaml_rel);
    if (rc != 0)
        return rc;
    if (nc >= 1 && nc != ds->class_count)
        return error_set(err, -EINVAL, "%s: nc is %ld but names lists %d "
                         "classes; fix nc or remove it", yaml_rel, nc,
                         ds->class_count);
    return 0;
}

/* Reject absolute paths and resolve rel against base inside the data
 * set. On success *out is the joined path. */
static int resolve_entry(struct scan *sc, const char *base, const char *rel,
                         const char *key, char **out, struct error *err)
{
    const char *yaml_rel = rel_path(sc->ds, sc->ds->yaml_path);
    char *full;
    int rc;

    *out = NULL;
    if (rel[0] == '/')
        return error_set(err, -EINVAL, "%s: %s '%s' is an absolute path; "
                         "write it relative to the data set folder",
                         yaml_rel, key, rel);
    full = join_path(base, rel);
    if (full == NULL)
        return -ENOMEM;
    rc = check_inside(sc, full);
    if (rc == -EXDEV) {
        free(full);
        return error_set(err, -EXDEV, "%s: %s '%s' resolves outside the "
                         "data set folder; keep every path inside the "
                         "folder that contains data.yaml", yaml_rel, key, rel);
    }
    if (rc == -ENOENT) {
        free(full);
        return error_set(err, -ENOENT, "%s: %s '%s' not found in the data "
                         "set", yaml_rel, key, rel);
    }
    if (rc != 0) {
        free(full);
        return rc;
    }
    *out = full;
    return 0;
}

/* ------------------------------------------------------------------------
 * Collecting image paths
 */

static int walk_folder(struct scan *sc, struct path_list *list,
                       const char *full, int depth);

static int walk_entry(struct scan *sc, struct path_list *list, char *full,
                      int depth)
{
    const char *rel = rel_path(sc->ds, full);
    const char *ext = extension(full);
    struct stat st;
    int rc = 0;

    if (lstat(full, &st) != 0) {
        rc = add_problem(sc, DATASET_DET_WARNING, rel, 0, "unreadable",
                         "skipped", "cannot read file information: %s",
                         strerror(errno));
    } else if (S_ISLNK(st.st_mode)) {
        rc = add_problem(sc, DATASET_DET_WARNING, rel, 0, "symlink",
                         "not followed", "symbolic link");
    } else if (S_ISDIR(st.st_mode)) {
        rc = walk_folder(sc, list, full, depth + 1);
    } else if (!S_ISREG(st.st_mode)) {
        rc = 0; /* FIFOs and devices are never opened */
    } else if (is_decoded_ext(ext)) {
        rc = path_list_add(list, full);
        full = NULL;
    } else if (is_other_image_ext(ext)) {
        rc = add_problem(sc, DATASET_DET_WARNING, rel, 0,
                         "unsupported_format", "image skipped",
                         "%s images are not supported; convert to JPEG "
                         "or PNG", ext);
    }
    free(full);
    return rc;
}

static int walk_folder(struct scan *sc, struct path_list *list,
                       const char *full, int depth)
{
    struct dirent **entries;
    int n, rc = 0;

    if (depth > MAX_FOLDER_DEPTH)
        return add_problem(sc, DATASET_DET_WARNING, rel_path(sc->ds, full),
                           0, "too_deep", "folder skipped",
                           "folders nested deeper than %d levels",
                           MAX_FOLDER_DEPTH);
    n = scandir(full, &entries, filter_visible, compare_names);
    if (n < 0)
        return add_problem(sc, DATASET_DET_WARNING, rel_path(sc->ds, full),
                           0, "unreadable", "folder skipped",
                           "cannot list folder: %s", strerror(errno));
    for (int i = 0; i < n && rc == 0; i++) {
        char *child = join_path(full, entries[i]->d_name);

        rc = child ? walk_entry(sc, list, child, depth) : -ENOMEM;
    }
    free_entries(entries, n);
    return rc;
}

/* One line of an image list file. */
static int list_line(struct scan *sc, struct path_list *list,
                     const char *list_rel, const char *folder, char *line,
                     int line_no)
{
    struct stat st;
    char *full;
    int rc;

    while (strncmp(line, "./", 2) == 0)
        line += 2;
    if (line[0] == '/')
        return add_problem(sc, DATASET_DET_WARNING, list_rel, line_no,
                           "absolute_path", "line skipped",
                           "'%s' is an absolute path; list images relative "
                           "to the list file", line);
    full = join_path(folder, line);
    if (full == NULL)
        return -ENOMEM;
    if (lstat(full, &st) != 0) {
        free(full);
        return add_problem(sc, DATASET_DET_WARNING, list_rel, line_no,
                           "image_not_found", "line skipped",
                           "image '%s' not found", line);
    }
    if (S_ISLNK(st.st_mode)) {
        free(full);
        return add_problem(sc, DATASET_DET_WARNING, list_rel, line_no,
                           "symlink", "not followed",
                           "'%s' is a symbolic link", line);
    }
    rc = check_inside(sc, full);
    if (rc == -EXDEV || !S_ISREG(st.st_mode)) {
        free(full);
        if (rc == -EXDEV)
            return add_problem(sc, DATASET_DET_WARNING, list_rel, line_no,
                               "path_outside", "line skipped",
                               "'%s' resolves outside the data set folder",
                               line);
        return add_problem(sc, DATASET_DET_WARNING, list_rel, line_no,
                           "not_image", "line skipped",
                           "'%s' is not a regular file", line);
    }
    if (rc != 0) {
        free(full);
        return rc == -ENOMEM ? rc : 0;
    }
    if (!is_decoded_ext(extension(full))) {
        free(full);
        return add_problem(sc, DATASET_DET_WARNING, list_rel, line_no,
                           "unsupported_format", "line skipped",
                           "'%s' is not a .jpg, .jpeg or .png file", line);
    }
    return path_list_add(list, full);
}

static int read_list_file(struct scan *sc, struct path_list *list,
                          const char *full, struct error *err)
{
    const char *list_rel = rel_path(sc->ds, full);
    char *text, *folder;
    size_t len;
    int rc, line_no = 0;

    rc = fs_read_file(full, DATASET_DET_LABEL_MAX_BYTES, &text, &len, err);
    if (rc != 0)
        return rc;
    folder = strdup(full);
    if (folder == NULL) {
        free(text);
        return -ENOMEM;
    }
    *strrchr(folder, '/') = '\0';
    /* Count lines by hand, because strtok_r merges empty lines. */
    for (char *line = text; line != NULL && rc == 0;) {
        char *next = memchr(line, '\n', (size_t)(text + len - line));
        char *end;

        if (next != NULL)
            *next++ = '\0';
        line_no++;
        if (line_no == 1 && (unsigned char)line[0] == 0xef &&
            (unsigned char)line[1] == 0xbb && (unsigned char)line[2] == 0xbf)
            line += 3;
        end = line + strlen(line);
        while (end > line && isspace((unsigned char)end[-1]))
            *--end = '\0';
        while (isspace((unsigned char)*line))
            line++;
        if (*line != '\0')
            rc = list_line(sc, list, list_rel, folder, line, line_no);
        line = next;
        if (line != NULL && line >= text + len)
            line = NULL;
    }
    free(folder);
    free(text);
    return rc;
}

/* Add the images of one train/val/test entry (folder or list file). */
static int collect_entry(struct scan *sc, struct path_list *list,
                         const char *base, const char *entry,
                         const char *key, struct error *err)
{
    struct stat st;
    char *full;
    int rc = resolve_entry(sc, base, entry, key, &full, err);

    if (rc != 0)
        return rc;
    if (stat(full, &st) != 0) {
        rc = error_errno(err, errno, "%s '%s' cannot be read", key, entry);
    } else if (S_ISDIR(st.st_mode)) {
        rc = walk_folder(sc, list, full, 0);
    } else if (S_ISREG(st.st_mode) && strcasecmp(extension(full), "txt") ==
                                          0) {
        rc = read_list_file(sc, list, full, err);
    } else if (S_ISREG(st.st_mode) && is_decoded_ext(extension(full))) {
        rc = path_list_add(list, full);
        full = NULL;
    } else {
        rc = error_set(err, -EINVAL, "%s '%s' is neither a folder, an image "
                       "nor a .txt list of images", key, entry);
    }
    free(full);
    return rc;
}

static int collect_split(struct scan *sc, yaml_document_t *doc,
                         yaml_node_t *node, const char *base,
                         const char *key, struct path_list *list,
                         struct error *err)
{
    const char *one = scalar_of(node);

    if (one != NULL)
        return collect_entry(sc, list, base, one, key, err);
    if (node->type != YAML_SEQUENCE_NODE)
        return error_set(err, -EINVAL, "%s: %s must be a path or a list of "
                         "paths", rel_path(sc->ds, sc->ds->yaml_path), key);
    for (yaml_node_item_t *it = node->data.sequence.items.start;
         it < node->data.sequence.items.top; it++) {
        const char *entry = scalar_of(yaml_document_get_node(doc, *it));
        int rc;

        if (entry == NULL)
            return error_set(err, -EINVAL, "%s: every entry of %s must be a "
                             "path", rel_path(sc->ds, sc->ds->yaml_path),
                             key);
        rc = collect_entry(sc, list, base, entry, key, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Label files
 */

/* A validated row. */
struct row {
    int cls;
    int line;
    float v[4]; /* x y w h normalised */
};

struct row_list {
    struct row *items;
    size_t count, capacity;
};

static int row_add(struct row_list *rows, const struct row *r)
{
    if (rows->count == rows->capacity) {
        size_t capacity = rows->capacity ? 2 * rows->capacity : 16;
        struct row *items = realloc(rows->items, capacity * sizeof(*items));

        if (items == NULL)
            return -ENOMEM;
        rows->items = items;
        rows->capacity = capacity;
    }
    rows->items[rows->count++] = *r;
    return 0;
}

/* Parse a whole float token. Returns 0 or -1 (not a finite number). */
static int parse_float(const char *s, float *out)
{
    char *end;

    errno = 0;
    *out = strtof(s, &end);
    if (end == s || *end != '\0' || !isfinite(*out))
        return -1;
    return 0;
}

static bool out_of_range(float v)
{
    return v < -DATASET_DET_TOLERANCE || v > 1.0f + DATASET_DET_TOLERANCE;
}

static float clip01(float v)
{
    if (v < 0.0f)
        return 0.0f;
    return v > 1.0f ? 1.0f : v;
}

/* Validate the edges x1 y1 x2 y2 of one row and fill r. Returns 1 when
 * the row is kept, 0 when rejected (reported), or -ENOMEM. */
static int check_box(struct scan *sc, const char *file, int line,
                     float e[4], struct row *r)
{
    bool clipped = false;

    for (int k = 0; k < 4; k++) {
        if (out_of_range(e[k])) {
            sc->ds->rows_rejected++;
            return add_problem(sc, DATASET_DET_WARNING, file, line,
                               "coordinate_out_of_range", "row rejected",
                               "box edge %g is outside 0..1 by more than "
                               "%g", e[k], DATASET_DET_TOLERANCE);
        }
        if (e[k] < 0.0f || e[k] > 1.0f) {
            e[k] = clip01(e[k]);
            clipped = true;
        }
    }
    if (e[2] <= e[0] || e[3] <= e[1]) {
        sc->ds->rows_rejected++;
        return add_problem(sc, DATASET_DET_WARNING, file, line, "zero_size",
                           "row rejected", "box has zero width or height "
                           "after clipping to the image");
    }
    r->v[0] = (e[0] + e[2]) * 0.5f;
    r->v[1] = (e[1] + e[3]) * 0.5f;
    r->v[2] = e[2] - e[0];
    r->v[3] = e[3] - e[1];
    if (clipped) {
        int rc;

        sc->ds->rows_clipped++;
        rc = add_problem(sc, DATASET_DET_INFO, file, line, "clipped",
                         "box clipped to the image", "box edge outside 0..1 "
                         "within the tolerance of %g",
                         DATASET_DET_TOLERANCE);
        if (rc != 0)
            return rc;
    }
    return 1;
}

/* Validate one row of tokens. Returns 1 (kept, r filled), 0 (rejected) or
 * -ENOMEM. */
static int parse_row(struct scan *sc, const char *file, int line,
                     char **tokens, int count, struct row *r)
{
    float cls_value, e[4];
    float v[4];

    if (count != 5 && (count < 7 || count % 2 == 0)) {
        sc->ds->rows_rejected++;
        return add_problem(sc, DATASET_DET_WARNING, file, line,
                           "wrong_column_count", "row rejected",
                           "%d columns; expected 5 (class x y w h) or a "
                           "polygon (class and 3 or more x y pairs)",
                           count);
    }
    if (parse_float(tokens[0], &cls_value) != 0 ||
        cls_value != floorf(cls_value)) {
        sc->ds->rows_rejected++;
        return add_problem(sc, DATASET_DET_WARNING, file, line,
                           "class_not_integer", "row rejected",
                           "class id '%.40s' is not an integer", tokens[0]);
    }
    if (cls_value < 0.0f || cls_value >= (float)sc->ds->class_count) {
        sc->ds->rows_rejected++;
        return add_problem(sc, DATASET_DET_WARNING, file, line,
                           "class_out_of_range", "row rejected",
                           "class id %.0f is outside 0..%d", cls_value,
                           sc->ds->class_count - 1);
    }
    r->cls = (int)cls_value;
    r->line = line;
    for (int k = 1; k < count; k++) {
        float f;

        if (parse_float(tokens[k], &f) != 0) {
            sc->ds->rows_rejected++;
            return add_problem(sc, DATASET_DET_WARNING, file, line,
                               "not_a_number", "row rejected",
                               "column %d '%.40s' is not a finite number",
                               k + 1, tokens[k]);
        }
        if (count == 5) {
            v[k - 1] = f;
        } else if (k <= 2) {
            e[k - 1] = e[k + 1] = f;
        } else {
            int axis = (k - 1) % 2;

            e[axis] = fminf(e[axis], f);
            e[axis + 2] = fmaxf(e[axis + 2], f);
        }
    }
    if (count == 5) {
        if (v[2] < 0.0f || v[3] < 0.0f) {
            sc->ds->rows_rejected++;
            return add_problem(sc, DATASET_DET_WARNING, file, line,
                               "negative_size", "row rejected",
                               "box width %g or height %g is negative", v[2],
                               v[3]);
        }
        if (v[2] == 0.0f || v[3] == 0.0f) {
            sc->ds->rows_rejected++;
            return add_problem(sc, DATASET_DET_WARNING, file, line,
                               "zero_size", "row rejected",
                               "box width %g or height %g is zero", v[2],
                               v[3]);
        }
        e[0] = v[0] - v[2] * 0.5f;
        e[1] = v[1] - v[3] * 0.5f;
        e[2] = v[0] + v[2] * 0.5f;
        e[3] = v[1] + v[3] * 0.5f;
    } else {
        int rc;

        sc->ds->polygons++;
        rc = add_problem(sc, DATASET_DET_INFO, file, line,
                         "polygon_converted", "converted to its bounding box",
                         "polygon row of %d points in a detection data set",
                         (count - 1) / 2);
        if (rc != 0)
            return rc;
    }
    return check_box(sc, file, line, e, r);
}

static int compare_rows(const void *pa, const void *pb)
{
    const struct row *a = pa, *b = pb;

    if (a->cls != b->cls)
        return a->cls < b->cls ? -1 : 1;
    for (int k = 0; k < 4; k++)
        if (a->v[k] != b->v[k])
            return a->v[k] < b->v[k] ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line;
}

static int compare_lines(const void *pa, const void *pb)
{
    const struct row *a = pa, *b = pb;

    return a->line < b->line ? -1 : a->line > b->line;
}

/* Drop rows equal to an earlier row, keeping file order. */
static int drop_duplicates(struct scan *sc, const char *file,
                           struct row_list *rows)
{
    size_t kept = 0;

    if (rows->count < 2)
        return 0;
    qsort(rows->items, rows->count, sizeof(struct row), compare_rows);
    for (size_t i = 0; i < rows->count; i++) {
        struct row *r = &rows->items[i];

        if (kept > 0 && memcmp(&rows->items[kept - 1].v, &r->v,
                               sizeof(r->v)) == 0 &&
            rows->items[kept - 1].cls == r->cls) {
            int rc;

            sc->ds->duplicates++;
            rc = add_problem(sc, DATASET_DET_INFO, file, r->line,
                             "duplicate_row", "row dropped",
                             "same class and box as line %d",
                             rows->items[kept - 1].line);
            if (rc != 0)
                return rc;
            continue;
        }
        rows->items[kept++] = *r;
    }
    rows->count = kept;
    qsort(rows->items, rows->count, sizeof(struct row), compare_lines);
    return 0;
}

/* Split line into whitespace-separated tokens, in place. */
static int tokenize(char *line, char ***tokens, int *capacity)
{
    int count = 0;

    for (char *p = line; *p != '\0';) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        if (count == *capacity) {
            int cap = *capacity ? 2 * *capacity : 16;
            char **t = realloc(*tokens, (size_t)cap * sizeof(*t));

            if (t == NULL)
                return -ENOMEM;
            *tokens = t;
            *capacity = cap;
        }
        (*tokens)[count++] = p;
        while (*p != '\0' && !isspace((unsigned char)*p))
            p++;
        if (*p != '\0')
            *p++ = '\0';
    }
    return count;
}

/* Validate the label text of one image into img. */
static int parse_labels(struct scan *sc, const char *file, char *text,
                        size_t len, struct dataset_det_image *img)
{
    struct row_list rows = {0};
    char **tokens = NULL;
    int capacity = 0, line_no = 0, rc = 0;
    char *line = text;

    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        line += 3;
    while (line != NULL && line < text + len && rc >= 0) {
        char *next = memchr(line, '\n', (size_t)(text + len - line));
        struct row r;
        int count;

        const char *line_end = next != NULL ? next : text + len;

        if (next != NULL)
            *next++ = '\0';
        line_no++;
        if (strlen(line) != (size_t)(line_end - line)) {
            sc->ds->rows_rejected++;
            rc = add_problem(sc, DATASET_DET_WARNING, file, line_no,
                             "not_a_number", "row rejected",
                             "line contains a NUL byte");
            line = next;
            continue;
        }
        count = tokenize(line, &tokens, &capacity);
        if (count < 0) {
            rc = count;
            break;
        }
        line = next;
        if (count == 0)
            continue;
        rc = parse_row(sc, file, line_no, tokens, count, &r);
        if (rc == 1)
            rc = row_add(&rows, &r);
    }
    free(tokens);
    if (rc < 0) {
        free(rows.items);
        return rc;
    }
    rc = drop_duplicates(sc, file, &rows);
    if (rc == 0 && rows.count > 0) {
        img->xywhn = malloc(rows.count * 4 * sizeof(float));
        img->cls = malloc(rows.count * sizeof(int));
        if (img->xywhn == NULL || img->cls == NULL)
            rc = -ENOMEM;
        for (size_t i = 0; rc == 0 && i < rows.count; i++) {
            memcpy(img->xywhn + i * 4, rows.items[i].v, 4 * sizeof(float));
            img->cls[i] = rows.items[i].cls;
        }
        img->count = (int)rows.count;
    }
    free(rows.items);
    return rc;
}

/* Note label (taking it) as used by an image, for the orphan check. */
static int remember_label(struct scan *sc, char *label)
{
    if (sc->label_count == sc->label_capacity) {
        size_t capacity = sc->label_capacity ? 2 * sc->label_capacity : 256;
        char **items = realloc(sc->label_paths, capacity * sizeof(*items));

        if (items == NULL) {
            free(label);
            return -ENOMEM;
        }
        sc->label_paths = items;
        sc->label_capacity = capacity;
    }
    sc->label_paths[sc->label_count++] = label;
    return 0;
}

/* Read and validate the label file of img. Returns 1 when the image is
 * kept, 0 when rejected (reported), or -ENOMEM. */
static int load_labels(struct scan *sc, struct dataset_det_image *img)
{
    char *label = label_path_of(img->path);
    const char *rel;
    struct error err = {0};
    struct stat st;
    char *text;
    size_t len;
    int rc;

    if (label == NULL)
        return -ENOMEM;
    rel = rel_path(sc->ds, label);
    if (lstat(label, &st) != 0) {
        free(label);
        img->background = 1;
        return 1;
    }
    rc = remember_label(sc, label);
    if (rc != 0)
        return rc;
    if (S_ISLNK(st.st_mode)) {
        rc = add_problem(sc, DATASET_DET_WARNING, rel, 0, "symlink",
                         "image skipped", "label file is a symbolic link, "
                         "which is not followed");
        return rc < 0 ? rc : 0;
    }
    if (!S_ISREG(st.st_mode) || check_inside(sc, label) != 0) {
        rc = add_problem(sc, DATASET_DET_WARNING, rel, 0, "unreadable",
                         "image skipped", "label path is not a regular file "
                         "inside the data set");
        return rc < 0 ? rc : 0;
    }
    rc = fs_read_file(label, DATASET_DET_LABEL_MAX_BYTES, &text, &len, &err);
    if (rc == -ENOMEM)
        return rc;
    if (rc != 0) {
        rc = add_problem(sc, DATASET_DET_WARNING, rel, 0, "unreadable",
                         "image skipped", "%s", err.msg);
        return rc < 0 ? rc : 0;
    }
    rc = parse_labels(sc, rel, text, len, img);
    free(text);
    return rc < 0 ? rc : 1;
}

/* ------------------------------------------------------------------------
 * Decoding images
 */

struct decoded {
    int rc;
    struct image img;
    struct image_info info;
    int png_depth; /* bit depth of a PNG, else 0 */
    int png_color; /* PNG color type, else -1 */
    char msg[ERROR_MSG_MAX];
};

static void decode_one(const char *path, struct decoded *d)
{
    struct error err = {0};
    char *data;
    size_t len;

    d->png_depth = 0;
    d->png_color = -1;
    d->rc = fs_read_file(path, IMAGE_MAX_FILE_BYTES, &data, &len, &err);
    if (d->rc == 0) {
        d->rc = image_probe(data, len, path, &d->info, &err);
        if (d->rc == 0 && d->info.format == IMAGE_FORMAT_PNG && len >= 26) {
            d->png_depth = (unsigned char)data[24];
            d->png_color = (unsigned char)data[25];
        }
        if (d->rc == 0)
            d->rc = image_decode(data, len, path, &d->img, &err);
        free(data);
    }
    snprintf(d->msg, sizeof(d->msg), "%s", d->rc ? err.msg : "");
}

/* The message of an image error without its "'path': " prefix. */
static const char *strip_path_prefix(const char *msg, const char *path)
{
    size_t n = strlen(path);

    if (msg[0] == '\'' && strncmp(msg + 1, path, n) == 0 &&
        strncmp(msg + 1 + n, "': ", 3) == 0)
        return msg + n + 4;
    return msg;
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

/* Keep a compact copy of img (one channel when gray) within the budget. */
static void cache_image(struct scan *sc, struct dataset_det_image *out,
                        struct image *img, bool gray)
{
    size_t n = (size_t)img->width * (size_t)img->height;
    size_t bytes = n * (gray ? 1 : 3) + sizeof(struct image);
    struct image *copy;

    if (sc->ds->cache_bytes + bytes > sc->cache_limit)
        return;
    copy = calloc(1, sizeof(*copy));
    if (copy == NULL)
        return;
    *copy = *img;
    if (gray) {
        for (size_t i = 0; i < n; i++)
            copy->pixels[i] = img->pixels[i * 3];
        copy->channels = 1;
        uint8_t *small = realloc(copy->pixels, n);
        if (small != NULL)
            copy->pixels = small;
    }
    memset(img, 0, sizeof(*img));
    out->cached = copy;
    sc->ds->cache_bytes += bytes;
}

static int image_rule_of(int code, const char **rule)
{
    switch (code) {
    case -EINVAL:
        *rule = "not_image";
        break;
    case -ENOTSUP:
        *rule = "unsupported_format";
        break;
    case -EBADMSG:
        *rule = "corrupt_image";
        break;
    case -EFBIG:
        *rule = "image_too_large";
        break;
    case -ENOMEM:
        return -ENOMEM;
    default:
        *rule = "unreadable";
    }
    return 0;
}

/* Record the decode result of one image and add it to the split when it
 * decoded and its labels were read. */
static int record_image(struct scan *sc, struct dataset_det_split_set *set,
                        char *path, struct decoded *d)
{
    struct dataset_det_image *img = &set->images[set->count];
    const char *rel = rel_path(sc->ds, path);
    const char *rule;
    bool gray;
    int rc;

    if (d->rc != 0) {
        char *label = label_path_of(path);

        /* The label file of a rejected image is no orphan. */
        if (label == NULL || remember_label(sc, label) != 0 ||
            image_rule_of(d->rc, &rule) != 0)
            return -ENOMEM;
        sc->ds->images_rejected++;
        return add_problem(sc, DATASET_DET_WARNING, rel, 0, rule,
                           "image skipped", "%s",
                           strip_path_prefix(d->msg, path));
    }
    memset(img, 0, sizeof(*img));
    img->path = path;
    img->rel = strdup(rel);
    img->width = d->img.width;
    img->height = d->img.height;
    if (img->rel == NULL)
        return -ENOMEM;
    rc = load_labels(sc, img);
    if (rc <= 0) {
        free(img->rel);
        free(img->xywhn);
        free(img->cls);
        if (rc == 0)
            sc->ds->images_rejected++;
        return rc;
    }
    gray = is_gray(&d->img);
    if (d->info.orientation != 1)
        rc = add_problem(sc, DATASET_DET_INFO, rel, 0, "exif_orientation",
                         "rotated as tagged", "EXIF orientation %d",
                         d->info.orientation);
    if (rc >= 0 && d->png_depth == 16)
        rc = add_problem(sc, DATASET_DET_INFO, rel, 0, "png_16_bit",
                         "reduced to 8 bits", "16-bit PNG");
    if (rc >= 0 && (d->png_color == 4 || d->png_color == 6))
        rc = add_problem(sc, DATASET_DET_INFO, rel, 0, "alpha_channel",
                         "alpha dropped", "PNG with an alpha channel");
    if (rc >= 0 && gray)
        rc = add_problem(sc, DATASET_DET_INFO, rel, 0, "grayscale",
                         "used as RGB", "grayscale image");
    if (rc < 0)
        return rc;
    cache_image(sc, img, &d->img, gray);
    set->boxes += (size_t)img->count;
    set->background += (size_t)img->background;
    if (img->count > sc->ds->max_boxes)
        sc->ds->max_boxes = img->count;
    set->count++;
    return 0;
}

/* Decode the images of one split in chunks and record them in order. */
static int load_split(struct scan *sc, int split, struct path_list *paths)
{
    struct dataset_det_split_set *set = &sc->ds->splits[split];
    struct decoded *chunk;
    int rc = 0;

    snprintf(set->name, sizeof(set->name), "%s", split_names[split]);
    if (paths->count == 0)
        return 0;
    set->images = calloc(paths->count, sizeof(*set->images));
    chunk = calloc(DECODE_CHUNK, sizeof(*chunk));
    if (set->images == NULL || chunk == NULL) {
        free(chunk);
        return -ENOMEM;
    }
    for (size_t first = 0; first < paths->count && rc == 0;
         first += DECODE_CHUNK) {
        size_t n = paths->count - first;
        int count;

        if (n > DECODE_CHUNK)
            n = DECODE_CHUNK;
        count = (int)n;
#pragma omp parallel for num_threads(sc->threads) schedule(dynamic)
        for (int i = 0; i < count; i++)
            decode_one(paths->items[first + (size_t)i], &chunk[i]);
        for (size_t i = 0; i < n; i++) {
            char *path = paths->items[first + i];

            if (rc == 0) {
                size_t before = set->count;

                rc = record_image(sc, set, path, &chunk[i]);
                if (rc == 0 && set->count > before)
                    paths->items[first + i] = NULL; /* owned by set */
            }
            image_free(&chunk[i].img);
        }
    }
    free(chunk);
    return rc;
}

/* ------------------------------------------------------------------------
 * Labels without images
 */

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int find_orphans(struct scan *sc, const char *folder, int depth)
{
    struct dirent **entries;
    int n, rc = 0;

    if (depth > MAX_FOLDER_DEPTH)
        return 0;
    n = scandir(folder, &entries, filter_visible, compare_names);
    if (n < 0)
        return 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char *full = join_path(folder, entries[i]->d_name);
        struct stat st;

        if (full == NULL) {
            rc = -ENOMEM;
            break;
        }
        if (lstat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
            rc = find_orphans(sc, full, depth + 1);
        } else if (lstat(full, &st) == 0 && S_ISREG(st.st_mode) &&
                   strcmp(extension(full), "txt") == 0 &&
                   (sc->label_count == 0 ||
                    bsearch(&full, sc->label_paths, sc->label_count,
                            sizeof(char *), compare_strings) == NULL)) {
            sc->ds->orphan_labels++;
            rc = add_problem(sc, DATASET_DET_WARNING, rel_path(sc->ds, full),
                             0, "label_without_image", "ignored",
                             "label file without a matching image");
        }
        free(full);
    }
    free_entries(entries, n);
    return rc;
}

/* The labels folder of an images folder: the last "/images/" component
 * becomes "/labels/". NULL when there is none or out of memory. */
static char *labels_folder_of(const char *folder)
{
    char *out, *mark = NULL;

    if (asprintf(&out, "%s/", folder) < 0)
        return NULL;
    for (char *p = strstr(out, "/images/"); p != NULL;
         p = strstr(p + 1, "/images/"))
        mark = p;
    if (mark == NULL) {
        free(out);
        return NULL;
    }
    memcpy(mark, "/labels/", 8);
    out[strlen(out) - 1] = '\0';
    return out;
}

/* Look for label files that no image uses, in the labels folders that
 * match the folders holding images. */
static int report_orphans(struct scan *sc, char **folders, int count)
{
    int rc = 0;

    if (sc->label_count > 0) /* qsort and bsearch reject NULL */
        qsort(sc->label_paths, sc->label_count, sizeof(char *),
              compare_strings);
    for (int i = 0; i < count && rc == 0; i++) {
        bool seen = false;
        char *labels;
        struct stat st;

        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(folders[j], folders[i]) == 0;
        if (seen)
            continue;
        labels = labels_folder_of(folders[i]);
        if (labels == NULL)
            continue;
        if (lstat(labels, &st) == 0 && S_ISDIR(st.st_mode) &&
            check_inside(sc, labels) == 0)
            rc = find_orphans(sc, labels, 0);
        free(labels);
    }
    return rc;
}

/* ------------------------------------------------------------------------
 * Scan
 */

static int parse_yaml(yaml_document_t *doc, const char *text, size_t len,
                      const char *yaml_rel, struct error *err)
{
    yaml_parser_t parser;
    int ok;

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    ok = yaml_parser_load(&parser, doc);
    if (!ok)
        error_set(err, -EINVAL, "%s is not valid YAML: %s at line %zu; fix "
                  "the file", yaml_rel,
                  parser.problem ? parser.problem : "parse error",
                  parser.problem_mark.line + 1);
    yaml_parser_delete(&parser);
    if (!ok)
        return -EINVAL;
    if (yaml_document_get_root_node(doc) == NULL ||
        yaml_document_get_root_node(doc)->type != YAML_MAPPING_NODE) {
        yaml_document_delete(doc);
        return error_set(err, -EINVAL, "%s is not a YAML map; expected "
                         "keys path, train, val and names", yaml_rel);
    }
    return 0;
}

/* Collect the image paths of every split named in data.yaml. folders
 * receives the split folders (for the orphan check). */
static int collect_splits(struct scan *sc, yaml_document_t *doc,
                          struct path_list lists[DATASET_DET_SPLITS],
                          char **base_out, struct error *err)
{
    yaml_node_t *root = yaml_document_get_root_node(doc);
    const char *yaml_rel = rel_path(sc->ds, sc->ds->yaml_path);
    yaml_node_t *path_node = map_get(doc, root, "path");
    const char *path = scalar_of(path_node);
    char *base;
    int rc;

    if (path_node != NULL && path == NULL)
        return error_set(err, -EINVAL, "%s: path must be a folder name",
                         yaml_rel);
    if (path == NULL || path[0] == '\0')
        path = ".";
    rc = resolve_entry(sc, sc->ds->root, path, "path", &base, err);
    if (rc != 0)
        return rc;
    *base_out = base;
    for (int s = 0; s < DATASET_DET_SPLITS; s++) {
        yaml_node_t *node = map_get(doc, root, split_names[s]);
        const char *text = scalar_of(node);

        if (node == NULL || (text != NULL && text[0] == '\0') ||
            (node->type == YAML_SCALAR_NODE &&
             node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
             (strcmp(text, "null") == 0 || strcmp(text, "~") == 0))) {
            if (s == DATASET_DET_TEST)
                continue;
            return error_set(err, -EINVAL, "%s: %s is missing; name the "
                             "%s images folder, e.g. %s: images/%s",
                             yaml_rel, split_names[s], split_names[s],
                             split_names[s], split_names[s]);
        }
        rc = collect_split(sc, doc, node, base, split_names[s], &lists[s],
                           err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The folders of the split lists' first-level entries for the orphan
 * check: every distinct folder holding an image. */
static int image_folders(struct dataset_det *ds, char ***out, int *count)
{
    size_t total = 0, n = 0;
    char **folders;

    for (int s = 0; s < DATASET_DET_SPLITS; s++)
        total += ds->splits[s].count;
    folders = calloc(total + 1, sizeof(char *));
    if (folders == NULL)
        return -ENOMEM;
    for (int s = 0; s < DATASET_DET_SPLITS; s++)
        for (size_t i = 0; i < ds->splits[s].count; i++) {
            char *f = strdup(ds->splits[s].images[i].path);

            if (f == NULL) {
                for (size_t k = 0; k < n; k++)
                    free(folders[k]);
                free(folders);
                return -ENOMEM;
            }
            *strrchr(f, '/') = '\0';
            if (n > 0 && strcmp(folders[n - 1], f) == 0) {
                free(f);
                continue;
            }
            folders[n++] = f;
        }
    *out = folders;
    *count = (int)n;
    return 0;
}

static int finish_checks(struct scan *sc, struct error *err)
{
    struct dataset_det *ds = sc->ds;
    char **folders = NULL;
    int count = 0, rc;

    rc = image_folders(ds, &folders, &count);
    if (rc == 0)
        rc = report_orphans(sc, folders, count);
    for (int i = 0; i < count; i++)
        free(folders[i]);
    free(folders);
    if (rc == 0 && ds->splits[DATASET_DET_VAL].count == 0)
        rc = add_problem(sc, DATASET_DET_ERROR,
                         rel_path(ds, ds->yaml_path), 0, "empty_split",
                         "validation not possible", "val split has no "
                         "usable images");
    if (rc == 0)
        rc = add_cap_notes(sc);
    if (rc != 0)
        return rc == -ENOMEM ? error_set(err, rc, "out of memory scanning "
                                         "'%s'", ds->root)
                             : rc;
    if (ds->splits[DATASET_DET_TRAIN].count == 0)
        return error_set(err, -ENOENT, "data set '%s' has no usable training "
                         "images; check the train entry of %s and the "
                         "report", ds->root, rel_path(ds, ds->yaml_path));
    return 0;
}

static int scan_yaml(struct scan *sc, const char *text, size_t len,
                     struct error *err)
{
    struct dataset_det *ds = sc->ds;
    struct path_list lists[DATASET_DET_SPLITS] = {0};
    const char *yaml_rel = rel_path(ds, ds->yaml_path);
    yaml_document_t doc;
    char *base = NULL;
    int rc;

    rc = parse_yaml(&doc, text, len, yaml_rel, err);
    if (rc != 0)
        return rc;
    rc = set_names(ds, &doc, yaml_document_get_root_node(&doc), yaml_rel,
                   err);
    if (rc == 0)
        rc = collect_splits(sc, &doc, lists, &base, err);
    yaml_document_delete(&doc);
    for (int s = 0; s < DATASET_DET_SPLITS && rc == 0; s++)
        rc = load_split(sc, s, &lists[s]);
    for (int s = 0; s < DATASET_DET_SPLITS; s++)
        path_list_free(&lists[s]);
    free(base);
    if (rc == -ENOMEM)
        return error_set(err, rc, "out of memory scanning '%s'", ds->root);
    if (rc != 0)
        return rc;
    return finish_checks(sc, err);
}

int dataset_det_scan(const char *path, const struct dataset_det_options *opt,
                     struct dataset_det **out, struct error *err)
{
    struct scan sc = {0};
    struct dataset_det *ds;
    char *text = NULL;
    size_t len;
    int rc;

    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return error_set(err, -EINVAL, "no data set path given");
    ds = calloc(1, sizeof(*ds));
    if (ds == NULL)
        return error_set(err, -ENOMEM, "out of memory scanning '%s'", path);
    sc.ds = ds;
    sc.threads = opt && opt->threads > 1 ? opt->threads : 1;
    sc.cache_limit = opt ? opt->cache_bytes : 0;
    rc = dataset_det_find_yaml(path, &ds->yaml_path, err);
    if (rc == 0) {
        ds->root = strdup(ds->yaml_path);
        if (ds->root == NULL)
            rc = -ENOMEM;
    }
    if (rc == 0) {
        char *slash = strrchr(ds->root, '/');

        if (slash == NULL)
            snprintf(ds->root, strlen(ds->root) + 1, ".");
        else
            *slash = '\0';
        sc.root_real = realpath(ds->root[0] ? ds->root : "/", NULL);
        if (sc.root_real == NULL)
            rc = error_errno(err, errno, "cannot resolve data set folder "
                             "'%s'", ds->root);
    }
    if (rc == 0)
        rc = fs_read_file(ds->yaml_path, DATASET_DET_YAML_MAX_BYTES, &text,
                          &len, err);
    if (rc == 0)
        rc = scan_yaml(&sc, text, len, err);
    free(text);
    free(sc.root_real);
    for (size_t i = 0; i < sc.label_count; i++)
        free(sc.label_paths[i]);
    free(sc.label_paths);
    if (rc != 0) {
        if (rc == -ENOMEM && err && err->code != -ENOMEM)
            error_set(err, rc, "out of memory scanning '%s'", path);
        dataset_det_free(ds);
        return rc;
    }
    *out = ds;
    return 0;
}

void dataset_det_free(struct dataset_det *ds)
{
    if (ds == NULL)
        return;
    for (int s = 0; s < DATASET_DET_SPLITS; s++) {
        for (size_t i = 0; i < ds->splits[s].count; i++) {
            struct dataset_det_image *img = &ds->splits[s].images[i];

            free(img->path);
            free(img->rel);
            free(img->xywhn);
            free(img->cls);
            if (img->cached != NULL) {
                image_free(img->cached);
                free(img->cached);
            }
        }
        free(ds->splits[s].images);
    }
    for (int i = 0; i < ds->class_count; i++)
        free(ds->class_names ? ds->class_names[i] : NULL);
    free(ds->class_names);
    for (size_t i = 0; i < ds->problem_count; i++) {
        free(ds->problems[i].file);
        free(ds->problems[i].message);
    }
    free(ds->problems);
    free(ds->root);
    free(ds->yaml_path);
    free(ds);
}

/* ------------------------------------------------------------------------
 * Access
 */

static int check_index(const struct dataset_det *ds, int split, size_t i)
{
    if (ds == NULL || split < 0 || split >= DATASET_DET_SPLITS ||
        i >= ds->splits[split].count)
        return -EINVAL;
    return 0;
}

int dataset_det_labels(const struct dataset_det *ds, int split, size_t i,
                       const float **xywhn, const int **cls, int *n)
{
    const struct dataset_det_image *img;

    if (check_index(ds, split, i) != 0)
        return -EINVAL;
    img = &ds->splits[split].images[i];
    *xywhn = img->xywhn;
    *cls = img->cls;
    *n = img->count;
    return 0;
}

int dataset_det_image(const struct dataset_det *ds, int split, size_t i,
                      struct image *img, int *owned, struct error *err)
{
    const struct dataset_det_image *src;

    *owned = 0;
    if (check_index(ds, split, i) != 0)
        return error_set(err, -EINVAL, "image %zu of split %d does not "
                         "exist", i, split);
    src = &ds->splits[split].images[i];
    if (src->cached != NULL) {
        *img = *src->cached;
        return 0;
    }
    *owned = 1;
    return image_decode_file(src->path, img, err);
}

/* ------------------------------------------------------------------------
 * JSON and log
 */

cJSON *dataset_det_report_json(const struct dataset_det *ds)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *classes = cJSON_AddArrayToObject(root, "classes");
    cJSON *splits = cJSON_AddObjectToObject(root, "splits");
    cJSON *totals = cJSON_AddObjectToObject(root, "totals");
    cJSON *problems = cJSON_AddArrayToObject(root, "problems");
    size_t images = 0, boxes = 0, background = 0;
    bool ok = root && classes && splits && totals && problems;

    if (!ok)
        goto fail;
    cJSON_AddStringToObject(root, "task", "detect");
    for (int i = 0; i < ds->class_count; i++)
        cJSON_AddItemToArray(classes, cJSON_CreateString(ds->class_names[i]));
    for (int s = 0; s < DATASET_DET_SPLITS; s++) {
        const struct dataset_det_split_set *set = &ds->splits[s];
        cJSON *o = cJSON_AddObjectToObject(splits, split_names[s]);

        if (o == NULL)
            goto fail;
        cJSON_AddNumberToObject(o, "images", (double)set->count);
        cJSON_AddNumberToObject(o, "boxes", (double)set->boxes);
        cJSON_AddNumberToObject(o, "background", (double)set->background);
        images += set->count;
        boxes += set->boxes;
        background += set->background;
    }
    cJSON_AddNumberToObject(totals, "images", (double)images);
    cJSON_AddNumberToObject(totals, "boxes", (double)boxes);
    cJSON_AddNumberToObject(totals, "background", (double)background);
    cJSON_AddNumberToObject(totals, "rejected_rows",
                            (double)ds->rows_rejected);
    cJSON_AddNumberToObject(totals, "clipped_rows", (double)ds->rows_clipped);
    cJSON_AddNumberToObject(totals, "duplicates", (double)ds->duplicates);
    cJSON_AddNumberToObject(totals, "polygons", (double)ds->polygons);
    cJSON_AddNumberToObject(totals, "rejected_images",
                            (double)ds->images_rejected);
    cJSON_AddNumberToObject(totals, "orphan_labels",
                            (double)ds->orphan_labels);
    cJSON_AddNumberToObject(totals, "problems", (double)ds->problem_count);
    for (size_t i = 0; i < ds->problem_count; i++) {
        const struct dataset_det_problem *p = &ds->problems[i];
        cJSON *o = cJSON_CreateObject();

        if (o == NULL || !cJSON_AddItemToArray(problems, o))
            goto fail;
        cJSON_AddStringToObject(o, "level", dataset_det_level_name(p->level));
        cJSON_AddStringToObject(o, "file", p->file);
        cJSON_AddNumberToObject(o, "line", p->line);
        cJSON_AddStringToObject(o, "rule", p->rule);
        cJSON_AddStringToObject(o, "message", p->message);
        cJSON_AddStringToObject(o, "action", p->action);
    }
    return root;

fail:
    cJSON_Delete(root);
    return NULL;
}

void dataset_det_log_report(const struct dataset_det *ds, int max_lines)
{
    char line[1024];
    int shown = 0;

    log_info("data set '%s': %zu train, %zu val, %zu test images, %zu "
             "boxes in train; %zu report entries", ds->root,
             ds->splits[0].count, ds->splits[1].count, ds->splits[2].count,
             ds->splits[0].boxes, ds->problem_count);
    for (size_t i = 0; i < ds->problem_count && shown < max_lines; i++) {
        const struct dataset_det_problem *p = &ds->problems[i];

        dataset_det_problem_format(p, line, sizeof(line));
        if (p->level == DATASET_DET_INFO)
            log_info("data set '%s': %s", ds->root, line);
        else
            log_warn("data set '%s': %s", ds->root, line);
        shown++;
    }
    if ((size_t)shown < ds->problem_count)
        log_info("data set '%s': %zu more report entries not shown",
                 ds->root, ds->problem_count - (size_t)shown);
}
