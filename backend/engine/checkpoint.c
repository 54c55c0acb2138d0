/*
 * Checkpoint files (format in checkpoint.h). The header is JSON through
 * cJSON; doubles that must survive exactly (learning rates, loss sums) are
 * printed with 17 significant digits, which round-trips an IEEE double.
 *
 * Tensors may live in GPU memory, so each array travels between the
 * network and the file through host memory (net_array_to_host and
 * net_array_from_host). The file contains the same bytes whatever the
 * device.
 */
#include "engine/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "fsutil.h"

#define CKPT_MAGIC "TYCKPT\r\n"
#define CKPT_MAX_SIZE ((size_t)4 << 30)
#define CKPT_HEADER_MAX (16u << 20)

/* ---- Writing ------------------------------------------------------------ */

static cJSON *spec_to_json(const struct model_spec *spec)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *layers = cJSON_AddArrayToObject(o, "layers");

    cJSON_AddStringToObject(o, "task", spec->task);
    cJSON_AddNumberToObject(o, "in_c", spec->in_c);
    cJSON_AddNumberToObject(o, "classes", spec->classes);
    for (int i = 0; i < spec->nlayers; i++) {
        const struct layer_spec *l = &spec->layers[i];
        cJSON *row = cJSON_CreateArray();
        cJSON *from = cJSON_CreateIntArray(l->from, l->nfrom);
        cJSON_AddItemToArray(row, from);
        int values[] = {l->repeats, (int)l->kind, l->c2, l->k, l->s,
                        l->shortcut, l->factor};
        for (size_t j = 0; j < sizeof(values) / sizeof(values[0]); j++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber(values[j]));
        cJSON_AddItemToArray(layers, row);
    }
    return o;
}

static void add_exact(cJSON *o, const char *name, double v)
{
    char text[40];

    snprintf(text, sizeof(text), "%.17g", v);
    cJSON_AddItemToObject(o, name, cJSON_CreateRaw(text));
}

static char *header_text(const struct net *net, const struct model_spec *spec,
                         const struct train_args *args,
                         const struct train_state *st,
                         const struct optimizer *opt, int imgsz,
                         const char *class_names)
{
    static char argtext[16384];
    cJSON *h = cJSON_CreateObject();
    cJSON *s = cJSON_AddObjectToObject(h, "state");
    cJSON *o = cJSON_AddObjectToObject(h, "optimizer");
    cJSON *tensors = cJSON_AddArrayToObject(h, "tensors");
    char *out;

    cJSON_AddNumberToObject(s, "epoch", st->epoch);
    cJSON_AddNumberToObject(s, "batch", st->batch);
    add_exact(s, "iteration", (double)st->iteration);
    add_exact(s, "last_opt_step", (double)st->last_opt_step);
    add_exact(s, "best_fitness", st->best_fitness);
    cJSON_AddNumberToObject(s, "best_epoch", st->best_epoch);
    add_exact(s, "train_seconds", st->train_seconds);
    add_exact(s, "epoch_seconds", st->epoch_seconds);
    add_exact(s, "loss_sum", st->loss_sum);
    add_exact(s, "loss_count", (double)st->loss_count);
    add_exact(s, "loss_box_sum", st->loss_part_sum[0]);
    add_exact(s, "loss_cls_sum", st->loss_part_sum[1]);
    add_exact(s, "loss_dfl_sum", st->loss_part_sum[2]);
    cJSON_AddBoolToObject(s, "finished", st->finished);
    cJSON_AddNumberToObject(s, "train_images", st->train_images);

    cJSON_AddNumberToObject(o, "kind", opt->kind);
    add_exact(o, "lr0", opt->lr0);
    add_exact(o, "momentum", opt->momentum);
    add_exact(o, "weight_decay", opt->weight_decay);
    add_exact(o, "warmup_bias_lr", opt->warmup_bias_lr);
    add_exact(o, "warmup_iters", (double)opt->warmup_iters);
    add_exact(o, "steps", (double)opt->steps);
    add_exact(o, "ema_updates", (double)opt->ema_updates);
    cJSON_AddNumberToObject(o, "nominal_accumulate", opt->nominal_accumulate);

    args_format(args, argtext, sizeof(argtext));
    cJSON_AddStringToObject(h, "args", argtext);
    cJSON_AddItemToObject(h, "model", spec_to_json(spec));
    cJSON_AddNumberToObject(h, "imgsz", imgsz);
    cJSON_AddStringToObject(h, "names", class_names ? class_names : "");

    for (int i = 0; i < net->nparams; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", net->params[i].name);
        cJSON_AddNumberToObject(t, "n", (double)net->params[i].n);
        cJSON_AddStringToObject(t, "kind", "param");
        cJSON_AddItemToArray(tensors, t);
    }
    for (int i = 0; i < net->nbuffers; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", net->buffers[i].name);
        cJSON_AddNumberToObject(t, "n", (double)net->buffers[i].n);
        cJSON_AddStringToObject(t, "kind", "buffer");
        cJSON_AddItemToArray(tensors, t);
    }
    out = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    return out;
}

struct writer {
    int fd;
    uLong crc;
    int failed; /* errno of the first failed write */
};

static void put(struct writer *w, const void *data, size_t len)
{
    const unsigned char *p = data;

    if (w->failed)
        return;
    w->crc = crc32(w->crc, p, (uInt)len);
    while (len > 0) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            w->failed = n < 0 ? errno : EIO;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void put_u32(struct writer *w, uint32_t v)
{
    unsigned char b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff,
                          (v >> 24) & 0xff};
    put(w, b, 4);
}

/* Floats in the largest parameter or buffer of net. */
static size_t largest_tensor(const struct net *net)
{
    size_t n = 1;

    for (int i = 0; i < net->nparams; i++)
        n = net->params[i].n > n ? net->params[i].n : n;
    for (int i = 0; i < net->nbuffers; i++)
        n = net->buffers[i].n > n ? net->buffers[i].n : n;
    return n;
}

/* Write every tensor array in file order, each copied to host through
 * staging. Returns 0, or the failure of a device copy with err filled;
 * write failures are left in w. */
static int put_tensors(struct writer *w, const struct net *net, float *staging,
                       struct error *err)
{
    for (int i = 0; i < net->nparams; i++) {
        const struct param *p = &net->params[i];
        const float *arrays[] = {p->data, p->ema, p->grad, p->state_a,
                                 p->state_b};
        for (int a = 0; a < 5; a++) {
            int rc = net_array_to_host(net, staging, arrays[a], p->n, err);
            if (rc != 0)
                return rc;
            put(w, staging, p->n * sizeof(float));
        }
    }
    for (int i = 0; i < net->nbuffers; i++) {
        const struct buffer *b = &net->buffers[i];
        const float *arrays[] = {b->data, b->ema};
        for (int a = 0; a < 2; a++) {
            int rc = net_array_to_host(net, staging, arrays[a], b->n, err);
            if (rc != 0)
                return rc;
            put(w, staging, b->n * sizeof(float));
        }
    }
    return 0;
}

int ckpt_write(const char *path, const struct net *net,
               const struct model_spec *spec, const struct train_args *args,
               const struct train_state *state, const struct optimizer *opt,
               int imgsz, const char *class_names, struct error *err)
{
    char tmp[4200];
    struct writer w = {-1, 0, 0};
    struct error copy_err = {0};
    char *header;
    float *staging;
    int rc = 0;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    header = header_text(net, spec, args, state, opt, imgsz, class_names);
    staging = malloc(largest_tensor(net) * sizeof(float));
    if (header == NULL || staging == NULL) {
        free(header);
        free(staging);
        return error_set(err, -ENOMEM, "out of memory writing '%s'", path);
    }

    w.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w.fd < 0) {
        free(header);
        free(staging);
        return error_errno(err, errno, "cannot create checkpoint '%s'", tmp);
    }
    w.crc = crc32(0, NULL, 0);
    put(&w, CKPT_MAGIC, 8);
    put_u32(&w, CKPT_VERSION);
    put_u32(&w, (uint32_t)strlen(header));
    put(&w, header, strlen(header));
    free(header);
    rc = put_tensors(&w, net, staging, &copy_err);
    free(staging);
    if (rc != 0) {
        close(w.fd);
        unlink(tmp);
        return error_set(err, rc,
                         "cannot write checkpoint '%s' (the previous one is "
                         "kept): %s",
                         path, copy_err.msg);
    }
    put_u32(&w, (uint32_t)w.crc);

    if (!w.failed && fsync(w.fd) != 0)
        w.failed = errno;
    if (close(w.fd) != 0 && !w.failed)
        w.failed = errno;
    if (w.failed) {
        unlink(tmp);
        return error_errno(err, w.failed,
                           "cannot write checkpoint '%s' (the previous one "
                           "is kept)",
                           path);
    }
    if (rename(tmp, path) != 0) {
        rc = error_errno(err, errno, "cannot rename '%s' to '%s'", tmp, path);
        unlink(tmp);
        return rc;
    }
    return fs_sync_parent(path, err);
}

/* ---- Reading ------------------------------------------------------------ */

static uint32_t get_u32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
}

static double num(const cJSON *o, const char *name, int *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (!cJSON_IsNumber(v)) {
        *bad = 1;
        return 0;
    }
    return v->valuedouble;
}

/* An optional number: 0 when absent, bad when present but not a number. */
static double num_or_zero(const cJSON *o, const char *name, int *bad)
{
    if (cJSON_GetObjectItemCaseSensitive(o, name) == NULL)
        return 0;
    return num(o, name, bad);
}

static int spec_from_json(const cJSON *o, struct model_spec *spec)
{
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(o, "layers");
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(o, "task");
    int bad = 0, i = 0;
    const cJSON *row;

    memset(spec, 0, sizeof(*spec));
    if (!cJSON_IsString(task) || !cJSON_IsArray(layers))
        return -1;
    snprintf(spec->task, sizeof(spec->task), "%s", task->valuestring);
    spec->in_c = (int)num(o, "in_c", &bad);
    spec->classes = (int)num(o, "classes", &bad);
    cJSON_ArrayForEach(row, layers)
    {
        struct layer_spec *l = &spec->layers[i];
        const cJSON *from = cJSON_GetArrayItem(row, 0);
        if (i >= 64 || cJSON_GetArraySize(row) != 8 || !cJSON_IsArray(from) ||
            cJSON_GetArraySize(from) < 1 ||
            cJSON_GetArraySize(from) > NET_FROM_MAX)
            return -1;
        l->nfrom = cJSON_GetArraySize(from);
        for (int j = 0; j < l->nfrom; j++)
            l->from[j] = cJSON_GetArrayItem(from, j)->valueint;
        int *fields[] = {&l->repeats, NULL, &l->c2, &l->k, &l->s,
                         &l->shortcut, &l->factor};
        for (int j = 0; j < 7; j++) {
            const cJSON *v = cJSON_GetArrayItem(row, j + 1);
            if (!cJSON_IsNumber(v))
                return -1;
            if (fields[j] != NULL)
                *fields[j] = v->valueint;
            else
                l->kind = (enum layer_kind)v->valueint;
        }
        if (l->kind < LAYER_CONV || l->kind > LAYER_DETECT)
            return -1;
        for (int j = 0; j < l->nfrom; j++)
            if (l->from[j] < -1 || l->from[j] >= i)
                return -1;
        i++;
    }
    spec->nlayers = i;
    return bad || i == 0 ? -1 : 0;
}

static int parse_args_text(const char *text, struct train_args *args)
{
    char line[1024];
    const char *p = text;

    args_defaults(args);
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len >= sizeof(line))
            return -1;
        memcpy(line, p, len);
        line[len] = '\0';
        if (len > 0 && args_set(args, line, NULL) != 0)
            return -1;
        p += len + (nl ? 1 : 0);
    }
    return 0;
}

static int parse_header(struct checkpoint *ck, const char *text, size_t len)
{
    cJSON *h = cJSON_ParseWithLength(text, len);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(h, "state");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(h, "optimizer");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(h, "args");
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(h, "names");
    int bad = 0;

    if (!cJSON_IsObject(s) || !cJSON_IsObject(o) || !cJSON_IsString(args) ||
        spec_from_json(cJSON_GetObjectItemCaseSensitive(h, "model"),
                       &ck->spec) != 0 ||
        parse_args_text(args->valuestring, &ck->args) != 0) {
        cJSON_Delete(h);
        return -1;
    }
    ck->state.epoch = (int)num(s, "epoch", &bad);
    ck->state.batch = (int)num(s, "batch", &bad);
    ck->state.iteration = (int64_t)num(s, "iteration", &bad);
    ck->state.last_opt_step = (int64_t)num(s, "last_opt_step", &bad);
    ck->state.best_fitness = num(s, "best_fitness", &bad);
    ck->state.best_epoch = (int)num(s, "best_epoch", &bad);
    ck->state.train_seconds = num(s, "train_seconds", &bad);
    ck->state.epoch_seconds = num(s, "epoch_seconds", &bad);
    ck->state.loss_sum = num(s, "loss_sum", &bad);
    ck->state.loss_count = (int64_t)num(s, "loss_count", &bad);
    ck->state.loss_part_sum[0] = num_or_zero(s, "loss_box_sum", &bad);
    ck->state.loss_part_sum[1] = num_or_zero(s, "loss_cls_sum", &bad);
    ck->state.loss_part_sum[2] = num_or_zero(s, "loss_dfl_sum", &bad);
    ck->state.finished =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "finished"));
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(s, "train_images");
    ck->state.train_images =
        cJSON_IsNumber(images) ? (int)images->valuedouble : 0;

    ck->opt.kind = (enum optimizer_kind)(int)num(o, "kind", &bad);
    ck->opt.lr0 = num(o, "lr0", &bad);
    ck->opt.momentum = num(o, "momentum", &bad);
    ck->opt.weight_decay = num(o, "weight_decay", &bad);
    ck->opt.warmup_bias_lr = num(o, "warmup_bias_lr", &bad);
    ck->opt.warmup_iters = (int64_t)num(o, "warmup_iters", &bad);
    ck->opt.steps = (int64_t)num(o, "steps", &bad);
    ck->opt.ema_updates = (int64_t)num(o, "ema_updates", &bad);
    ck->opt.nominal_accumulate = (int)num(o, "nominal_accumulate", &bad);
    ck->opt.accumulate = ck->opt.nominal_accumulate;
    ck->imgsz = (int)num(h, "imgsz", &bad);
    if (cJSON_IsString(names))
        snprintf(ck->class_names, sizeof(ck->class_names), "%s",
                 names->valuestring);
    cJSON_Delete(h);
    return bad ? -1 : 0;
}

int ckpt_open(const char *path, struct checkpoint *ck, struct error *err)
{
    char *data = NULL;
    size_t size = 0;
    uint32_t header_len;
    int rc;

    memset(ck, 0, sizeof(*ck));
    rc = fs_read_file(path, CKPT_MAX_SIZE, &data, &size, err);
    if (rc != 0)
        return rc;
    ck->data = (unsigned char *)data;
    ck->size = size;

    if (size < 20 || memcmp(data, CKPT_MAGIC, 8) != 0) {
        ckpt_close(ck);
        return error_set(err, -EINVAL,
                         "'%s' is not a Trainyard checkpoint (bad magic)",
                         path);
    }
    if (get_u32(ck->data + 8) != CKPT_VERSION) {
        uint32_t v = get_u32(ck->data + 8);
        ckpt_close(ck);
        return error_set(err, -EINVAL,
                         "checkpoint '%s' has format version %u; this "
                         "program reads version %d",
                         path, v, CKPT_VERSION);
    }
    uint32_t stored = get_u32(ck->data + size - 4);
    uint32_t actual = (uint32_t)crc32(crc32(0, NULL, 0), ck->data,
                                      (uInt)(size - 4));
    if (stored != actual) {
        ckpt_close(ck);
        return error_set(err, -EINVAL,
                         "checkpoint '%s' is truncated or corrupt (checksum "
                         "mismatch); use an earlier checkpoint",
                         path);
    }
    header_len = get_u32(ck->data + 12);
    if (header_len > CKPT_HEADER_MAX || 16 + (size_t)header_len + 4 > size ||
        parse_header(ck, data + 16, header_len) != 0) {
        ckpt_close(ck);
        return error_set(err, -EINVAL,
                         "checkpoint '%s' has an invalid header", path);
    }
    ck->tensors_at = 16 + header_len;
    return 0;
}

int ckpt_load_tensors(struct checkpoint *ck, struct net *net,
                      struct error *err)
{
    size_t need = 0, at = ck->tensors_at;

    for (int i = 0; i < net->nparams; i++)
        need += 5 * net->params[i].n * sizeof(float);
    for (int i = 0; i < net->nbuffers; i++)
        need += 2 * net->buffers[i].n * sizeof(float);
    if (at + need + 4 != ck->size)
        return error_set(err, -EINVAL,
                         "checkpoint tensors do not match the model (%zu "
                         "bytes expected, %zu found)",
                         need, ck->size - at - 4);

    /* The arrays are copied from the file bytes in place: the host side
     * of a copy needs no alignment. */
    for (int i = 0; i < net->nparams; i++) {
        struct param *p = &net->params[i];
        float *arrays[] = {p->data, p->ema, p->grad, p->state_a, p->state_b};
        for (int a = 0; a < 5; a++) {
            int rc =
                net_array_from_host(net, arrays[a], ck->data + at, p->n, err);
            if (rc != 0)
                return rc;
            at += p->n * sizeof(float);
        }
    }
    for (int i = 0; i < net->nbuffers; i++) {
        struct buffer *b = &net->buffers[i];
        float *arrays[] = {b->data, b->ema};
        for (int a = 0; a < 2; a++) {
            int rc =
                net_array_from_host(net, arrays[a], ck->data + at, b->n, err);
            if (rc != 0)
                return rc;
            at += b->n * sizeof(float);
        }
    }
    return 0;
}

void ckpt_close(struct checkpoint *ck)
{
    free(ck->data);
    ck->data = NULL;
    ck->size = 0;
}
