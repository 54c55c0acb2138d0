/*
 * Reading Ultralytics model YAML files into a struct model_spec. The file
 * has `nc`, optional `ch` (input channels, default 3), `scales` (name ->
 * [depth, width, max_channels]) and the `backbone` and `head` lists whose
 * rows are [from, repeats, module, args]. Scaling follows Ultralytics:
 * output channels become ceil(min(c, max_channels) * width / 8) * 8, and a
 * repeat count n > 1 becomes max(round(n * depth), 1).
 *
 * A model name such as "yolov8n-cls.yaml" that names no file is read as
 * the file "yolov8-cls.yaml" at scale "n", as Ultralytics does. Model
 * files are looked up as given, then in $TRAINYARD_MODELS, then in
 * backend/engine/models/ beside the program's source tree.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "engine/net.h"

struct scale {
    double depth, width;
    int max_channels;
};

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

static int seq_len(const yaml_node_t *n)
{
    if (n == NULL || n->type != YAML_SEQUENCE_NODE)
        return -1;
    return (int)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static yaml_node_t *seq_get(yaml_document_t *doc, yaml_node_t *n, int i)
{
    if (i < 0 || i >= seq_len(n))
        return NULL;
    return yaml_document_get_node(doc, n->data.sequence.items.start[i]);
}

static const char *scalar(const yaml_node_t *n)
{
    if (n == NULL || n->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)n->data.scalar.value;
}

static int scalar_int(const yaml_node_t *n, int *out)
{
    const char *s = scalar(n);
    char *end;
    long v;

    if (s == NULL)
        return -1;
    v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < INT_MIN || v > INT_MAX)
        return -1;
    *out = (int)v;
    return 0;
}

static int scalar_double(const yaml_node_t *n, double *out)
{
    const char *s = scalar(n);
    char *end;

    if (s == NULL)
        return -1;
    *out = strtod(s, &end);
    return (*s == '\0' || *end != '\0') ? -1 : 0;
}

/* Round x up to a multiple of d. A result that does not fit an int (a
 * huge or NaN width from the YAML) gives -1, which read_row rejects. */
static int make_divisible(double x, int d)
{
    double v = ceil(x / d) * d;

    if (!(v >= INT_MIN && v <= INT_MAX))
        return -1;
    return (int)v;
}

static int scale_channels(int c, const struct scale *sc)
{
    int capped = c < sc->max_channels ? c : sc->max_channels;

    return make_divisible(capped * sc->width, 8);
}

/* Read the `scales` entry name (or the first one when name is empty). */
static int read_scale(yaml_document_t *doc, yaml_node_t *root,
                      const char *name, struct scale *out, struct error *err)
{
    yaml_node_t *scales = map_get(doc, root, "scales");
    yaml_node_t *row = NULL;
    const char *chosen = name;

    out->depth = 1.0;
    out->width = 1.0;
    out->max_channels = INT_MAX;
    if (scales == NULL || scales->type != YAML_MAPPING_NODE) {
        if (name[0] != '\0')
            return error_set(err, -EINVAL,
                             "scale '%s' requested, but the model file has "
                             "no scales",
                             name);
        return 0;
    }
    if (name[0] != '\0') {
        row = map_get(doc, scales, name);
    } else if (scales->data.mapping.pairs.top >
               scales->data.mapping.pairs.start) {
        yaml_node_pair_t *p = scales->data.mapping.pairs.start;
        chosen = scalar(yaml_document_get_node(doc, p->key));
        row = yaml_document_get_node(doc, p->value);
    }
    if (row == NULL)
        return error_set(err, -EINVAL,
                         "scale '%s' is not in the model file's scales",
                         name);

    int max_channels;
    if (seq_len(row) != 3 ||
        scalar_double(seq_get(doc, row, 0), &out->depth) != 0 ||
        scalar_double(seq_get(doc, row, 1), &out->width) != 0 ||
        scalar_int(seq_get(doc, row, 2), &max_channels) != 0)
        return error_set(err, -EINVAL,
                         "scale '%s' must be [depth, width, max_channels]",
                         chosen ? chosen : "?");
    out->max_channels = max_channels;
    return 0;
}

/* Read an optional integer argument; "nc" stands for the class count and
 * "None" leaves the default. */
static int arg_int(yaml_document_t *doc, yaml_node_t *args, int i, int def,
                   int classes, int *out)
{
    yaml_node_t *n = seq_get(doc, args, i);
    const char *s = scalar(n);

    *out = def;
    if (n == NULL || (s != NULL && strcmp(s, "None") == 0))
        return 0;
    if (s != NULL && strcmp(s, "nc") == 0) {
        *out = classes;
        return 0;
    }
    return scalar_int(n, out);
}

static int arg_bool(yaml_document_t *doc, yaml_node_t *args, int i, int def,
                    int *out)
{
    const char *s = scalar(seq_get(doc, args, i));

    *out = def;
    if (s == NULL)
        return 0;
    if (strcmp(s, "True") == 0 || strcmp(s, "true") == 0) {
        *out = 1;
        return 0;
    }
    if (strcmp(s, "False") == 0 || strcmp(s, "false") == 0) {
        *out = 0;
        return 0;
    }
    return -1;
}

static int read_from(yaml_document_t *doc, yaml_node_t *n, int index,
                     struct layer_spec *ls)
{
    int v;

    ls->nfrom = 0;
    if (n != NULL && n->type == YAML_SEQUENCE_NODE) {
        int count = seq_len(n);
        if (count < 1 || count > NET_FROM_MAX)
            return -1;
        for (int i = 0; i < count; i++) {
            if (scalar_int(seq_get(doc, n, i), &v) != 0)
                return -1;
            ls->from[ls->nfrom++] = v < 0 ? index + v : v;
        }
    } else {
        if (scalar_int(n, &v) != 0)
            return -1;
        ls->from[ls->nfrom++] = v < 0 ? index + v : v;
    }
    /* -1 from layer 0 is the input image; anything else must be earlier. */
    for (int i = 0; i < ls->nfrom; i++) {
        if (ls->from[i] < -1 || ls->from[i] >= index)
            return -1;
        if (ls->from[i] == -1 && index != 0)
            return -1;
    }
    return 0;
}

static int read_row(yaml_document_t *doc, yaml_node_t *row, int index,
                    const struct scale *sc, struct model_spec *spec,
                    struct error *err)
{
    struct layer_spec *ls = &spec->layers[index];
    yaml_node_t *args = seq_get(doc, row, 3);
    const char *module = scalar(seq_get(doc, row, 2));
    int repeats, c2 = 0, bad = 0;

    memset(ls, 0, sizeof(*ls));
    if (seq_len(row) != 4 || module == NULL)
        return error_set(err, -EINVAL,
                         "layer %d: expected [from, repeats, module, args]",
                         index);
    if (read_from(doc, seq_get(doc, row, 0), index, ls) != 0)
        return error_set(err, -EINVAL,
                         "layer %d: invalid 'from'; it must name earlier "
                         "layers (or -1 for the input in layer 0)",
                         index);
    if (scalar_int(seq_get(doc, row, 1), &repeats) != 0 || repeats < 1)
        return error_set(err, -EINVAL,
                         "layer %d: repeats must be a whole number >= 1",
                         index);
    if (repeats > 1) {
        double scaled = fmax(round(repeats * sc->depth), 1);

        if (!(scaled <= INT_MAX))
            return error_set(err, -EINVAL,
                             "layer %d: repeats %d times depth %g is too "
                             "large",
                             index, repeats, sc->depth);
        repeats = (int)scaled;
    }
    ls->repeats = repeats;
    if (args != NULL && args->type != YAML_SEQUENCE_NODE)
        return error_set(err, -EINVAL, "layer %d: args must be a list",
                         index);

    if (strcmp(module, "Conv") == 0) {
        ls->kind = LAYER_CONV;
        bad |= arg_int(doc, args, 0, 0, spec->classes, &c2);
        bad |= arg_int(doc, args, 1, 1, spec->classes, &ls->k);
        bad |= arg_int(doc, args, 2, 1, spec->classes, &ls->s);
        ls->c2 = scale_channels(c2, sc);
    } else if (strcmp(module, "C2f") == 0) {
        ls->kind = LAYER_C2F;
        bad |= arg_int(doc, args, 0, 0, spec->classes, &c2);
        bad |= arg_bool(doc, args, 1, 0, &ls->shortcut);
        ls->c2 = scale_channels(c2, sc);
    } else if (strcmp(module, "SPPF") == 0) {
        ls->kind = LAYER_SPPF;
        bad |= arg_int(doc, args, 0, 0, spec->classes, &c2);
        bad |= arg_int(doc, args, 1, 5, spec->classes, &ls->k);
        ls->c2 = scale_channels(c2, sc);
    } else if (strcmp(module, "Classify") == 0) {
        ls->kind = LAYER_CLASSIFY;
        bad |= arg_int(doc, args, 0, spec->classes, spec->classes, &ls->c2);
        snprintf(spec->task, sizeof(spec->task), "classify");
    } else if (strcmp(module, "Detect") == 0) {
        ls->kind = LAYER_DETECT;
        bad |= arg_int(doc, args, 0, spec->classes, spec->classes, &ls->c2);
        /* The file's nc is replaced by the data set's class count, as
         * Ultralytics does when nc differs. */
        ls->c2 = spec->classes;
        snprintf(spec->task, sizeof(spec->task), "detect");
    } else if (strcmp(module, "nn.Upsample") == 0 ||
               strcmp(module, "Upsample") == 0) {
        ls->kind = LAYER_UPSAMPLE;
        bad |= arg_int(doc, args, 1, 2, spec->classes, &ls->factor);
    } else if (strcmp(module, "Concat") == 0) {
        ls->kind = LAYER_CONCAT;
    } else {
        return error_set(err, -ENOTSUP,
                         "layer %d: module '%s' is not supported; supported "
                         "are Conv, C2f, SPPF, Classify, Detect, "
                         "nn.Upsample and Concat",
                         index, module);
    }
    if (bad)
        return error_set(err, -EINVAL, "layer %d (%s): invalid args", index,
                         module);
    if (ls->kind == LAYER_DETECT && ls->nfrom > DET_LEVELS_MAX)
        return error_set(err, -EINVAL,
                         "layer %d (Detect): at most %d input levels", index,
                         DET_LEVELS_MAX);
    if (ls->kind != LAYER_CONCAT && ls->kind != LAYER_DETECT &&
        ls->nfrom != 1)
        return error_set(err, -EINVAL,
                         "layer %d (%s): takes exactly one input", index,
                         module);
    if (ls->kind != LAYER_UPSAMPLE && ls->kind != LAYER_CONCAT &&
        ls->c2 < 1)
        return error_set(err, -EINVAL,
                         "layer %d (%s): output channels must be >= 1",
                         index, module);
    if (ls->kind == LAYER_CONV && (ls->k < 1 || ls->s < 1))
        return error_set(err, -EINVAL,
                         "layer %d (Conv): kernel and stride must be >= 1",
                         index);
    if (ls->kind == LAYER_UPSAMPLE && ls->factor < 1)
        return error_set(err, -EINVAL,
                         "layer %d (Upsample): factor must be >= 1", index);
    return 0;
}

/* Find the model file and the scale its name implies. */
static int resolve_path(const char *name, char *path, size_t len,
                        char *scale_out)
{
    const char *env = getenv("TRAINYARD_MODELS");
    char exe[PATH_MAX], base[PATH_MAX];
    const char *dirs[3];
    int ndirs = 0;
    ssize_t n;

    scale_out[0] = '\0';
    if (access(name, R_OK) == 0) {
        snprintf(path, len, "%s", name);
        return 0;
    }
    if (env != NULL && env[0] != '\0')
        dirs[ndirs++] = env;
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            strncat(exe, "/../../backend/engine/models",
                    sizeof(exe) - strlen(exe) - 1);
            dirs[ndirs++] = exe;
        }
    }
    dirs[ndirs++] = "backend/engine/models";

    /* "yolov8n-cls.yaml" -> "yolov8-cls.yaml" at scale n. */
    snprintf(base, sizeof(base), "%s", name);
    const char *file = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    const char *digit = strpbrk(file, "0123456789");
    while (digit != NULL && digit[1] >= '0' && digit[1] <= '9')
        digit++;
    if (digit != NULL && strchr("nsmlx", digit[1]) != NULL &&
        (digit[2] == '-' || digit[2] == '.')) {
        size_t cut = (size_t)(digit + 1 - name);
        scale_out[0] = digit[1];
        scale_out[1] = '\0';
        snprintf(base, sizeof(base), "%.*s%s", (int)cut, name, digit + 2);
    }

    if (scale_out[0] != '\0' && access(base, R_OK) == 0) {
        snprintf(path, len, "%s", base);
        return 0;
    }
    for (int i = 0; i < ndirs; i++) {
        snprintf(path, len, "%s/%s", dirs[i], name);
        if (access(path, R_OK) == 0) {
            scale_out[0] = '\0';
            return 0;
        }
        snprintf(path, len, "%s/%s", dirs[i], base);
        if (scale_out[0] != '\0' && access(path, R_OK) == 0)
            return 0;
    }
    scale_out[0] = '\0';
    return -ENOENT;
}

static int load_document(yaml_document_t *doc, const char *path,
                         struct error *err)
{
    yaml_parser_t parser;
    FILE *f = fopen(path, "rb");
    int ok;

    if (f == NULL)
        return error_errno(err, errno, "cannot open model file '%s'", path);
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    ok = yaml_parser_load(&parser, doc);
    if (!ok) {
        error_set(err, -EINVAL, "model file '%s' is not valid YAML: %s at "
                                "line %zu",
                  path, parser.problem ? parser.problem : "parse error",
                  parser.problem_mark.line + 1);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    if (!ok)
        return -EINVAL;
    if (yaml_document_get_root_node(doc) == NULL) {
        yaml_document_delete(doc);
        return error_set(err, -EINVAL, "model file '%s' is empty", path);
    }
    return 0;
}

int model_spec_load(const char *name, const char *scale, int classes,
                    struct model_spec *spec, struct error *err)
{
    char path[PATH_MAX + 64], implied[4];
    yaml_document_t doc;
    yaml_node_t *root, *lists[2];
    struct scale sc;
    int rc, index = 0;

    memset(spec, 0, sizeof(*spec));
    if (resolve_path(name, path, sizeof(path), implied) != 0)
        return error_set(err, -ENOENT,
                         "model '%s' not found; give a YAML path or a name "
                         "such as yolov8n-cls.yaml",
                         name);
    rc = load_document(&doc, path, err);
    if (rc != 0)
        return rc;
    root = yaml_document_get_root_node(&doc);

    spec->in_c = 3;
    spec->classes = 80;
    snprintf(spec->task, sizeof(spec->task), "detect");
    if (map_get(&doc, root, "nc") != NULL &&
        scalar_int(map_get(&doc, root, "nc"), &spec->classes) != 0)
        rc = error_set(err, -EINVAL, "%s: nc must be a whole number", path);
    if (rc == 0 && map_get(&doc, root, "ch") != NULL &&
        (scalar_int(map_get(&doc, root, "ch"), &spec->in_c) != 0 ||
         spec->in_c < 1 || spec->in_c > 4))
        rc = error_set(err, -EINVAL, "%s: ch must be 1 to 4", path);
    if (classes > 0)
        spec->classes = classes;
    if (rc == 0)
        rc = read_scale(&doc, root, scale && scale[0] ? scale : implied, &sc,
                        err);

    lists[0] = map_get(&doc, root, "backbone");
    lists[1] = map_get(&doc, root, "head");
    if (rc == 0 && seq_len(lists[0]) < 1)
        rc = error_set(err, -EINVAL, "%s: 'backbone' must be a non-empty "
                                     "list",
                       path);
    for (int part = 0; part < 2 && rc == 0; part++) {
        int count = seq_len(lists[part]);
        for (int i = 0; i < count && rc == 0; i++) {
            if (index >= (int)(sizeof(spec->layers) /
                               sizeof(spec->layers[0]))) {
                rc = error_set(err, -E2BIG, "%s: more than %zu layers", path,
                               sizeof(spec->layers) /
                                   sizeof(spec->layers[0]));
                break;
            }
            rc = read_row(&doc, seq_get(&doc, lists[part], i), index, &sc,
                          spec, err);
            index++;
        }
    }
    spec->nlayers = index;
    yaml_document_delete(&doc);
    for (int i = 0; rc == 0 && i < index - 1; i++)
        if (spec->layers[i].kind == LAYER_CLASSIFY ||
            spec->layers[i].kind == LAYER_DETECT)
            rc = error_set(err, -EINVAL,
                           "%s: layer %d: Classify and Detect must be the "
                           "last layer",
                           path, i);
    if (rc == 0 && spec->layers[index - 1].kind != LAYER_CLASSIFY &&
        spec->layers[index - 1].kind != LAYER_DETECT)
        rc = error_set(err, -ENOTSUP,
                       "%s: the last layer must be Classify or Detect", path);
    return rc;
}
