/*
 * Pretrained weights (see pretrained.h). The checkpoint is opened and
 * verified by ckpt_open; its header lists every tensor by name, size and
 * kind in file order, and the tensor section stores, per parameter, five
 * arrays (weights, EMA, gradient, two optimizer states) and, per buffer,
 * two (values, EMA). The EMA array is the one copied, into both the
 * weights and the EMA of the new network, because the EMA weights are the
 * ones a run validates and saves as its best, as Ultralytics loads a
 * checkpoint's "ema" entry before its "model".
 */
#include "engine/pretrained.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"
#include "log.h"

/* Skipped tensors logged by name; the rest are only counted. */
#define SKIPPED_LOG_MAX 5

/* One tensor of the checkpoint: where its EMA array starts. */
struct source_tensor {
    const char *name;
    size_t n;
    int is_param;
    const unsigned char *ema;
};

struct source {
    cJSON *header;
    struct source_tensor *tensors;
    int count;
};

/* Index the checkpoint's tensors from its header. Returns 0, or -EINVAL
 * when the list does not describe the tensor section exactly. */
static int source_index(const struct checkpoint *ck, struct source *src)
{
    const cJSON *list, *t;
    size_t at = ck->tensors_at, end = ck->size - 4;
    int i = 0;

    memset(src, 0, sizeof(*src));
    src->header = cJSON_ParseWithLength((const char *)ck->data + 16,
                                        ck->tensors_at - 16);
    list = cJSON_GetObjectItemCaseSensitive(src->header, "tensors");
    if (!cJSON_IsArray(list))
        return -EINVAL;
    src->tensors = calloc((size_t)cJSON_GetArraySize(list) + 1,
                          sizeof(*src->tensors));
    if (src->tensors == NULL)
        return -ENOMEM;

    cJSON_ArrayForEach(t, list)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(t, "n");
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(t, "kind");
        struct source_tensor *s = &src->tensors[i];

        if (!cJSON_IsString(name) || !cJSON_IsNumber(n) ||
            !cJSON_IsString(kind) || n->valuedouble < 1 ||
            n->valuedouble > (double)(end - at) / sizeof(float))
            return -EINVAL;
        s->name = name->valuestring;
        s->n = (size_t)n->valuedouble;
        s->is_param = strcmp(kind->valuestring, "param") == 0;
        if (!s->is_param && strcmp(kind->valuestring, "buffer") != 0)
            return -EINVAL;

        /* The EMA is the second array of either kind. */
        size_t arrays = s->is_param ? 5 : 2;
        size_t bytes = s->n * sizeof(float);
        if (arrays * bytes > end - at)
            return -EINVAL;
        s->ema = ck->data + at + bytes;
        at += arrays * bytes;
        i++;
    }
    src->count = i;
    return at == end ? 0 : -EINVAL;
}

static void source_free(struct source *src)
{
    cJSON_Delete(src->header);
    free(src->tensors);
}

static const struct source_tensor *source_find(const struct source *src,
                                               const char *name, size_t n,
                                               int is_param)
{
    for (int i = 0; i < src->count; i++) {
        const struct source_tensor *s = &src->tensors[i];
        if (s->n == n && s->is_param == is_param &&
            strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

/* Copy the matching tensor, if any, into data and ema; 1 when copied. */
static int copy_one(struct net *net, const struct source *src,
                    const char *name, size_t n, int is_param, float *data,
                    float *ema, struct error *err)
{
    const struct source_tensor *s = source_find(src, name, n, is_param);
    int rc;

    if (s == NULL)
        return 0;
    rc = net_array_from_host(net, data, s->ema, n, err);
    if (rc == 0)
        rc = net_array_from_host(net, ema, s->ema, n, err);
    return rc != 0 ? rc : 1;
}

/* Count a tensor without a match, and log the first few by name. */
static void note_skipped(struct pretrained_result *out, const char *kind,
                         const char *name, size_t n)
{
    out->skipped++;
    if (out->skipped <= SKIPPED_LOG_MAX)
        log_info("pretrained: skipped %s %s (%zu values): no tensor of "
                 "that name and size",
                 kind, name, n);
}

static int copy_matching(struct net *net, const struct source *src,
                         struct pretrained_result *out, struct error *err)
{
    int rc;

    for (int i = 0; i < net->nparams; i++) {
        struct param *p = &net->params[i];
        rc = copy_one(net, src, p->name, p->n, 1, p->data, p->ema, err);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            out->copied++;
        } else {
            note_skipped(out, "parameter", p->name, p->n);
        }
    }
    for (int i = 0; i < net->nbuffers; i++) {
        struct buffer *b = &net->buffers[i];
        rc = copy_one(net, src, b->name, b->n, 0, b->data, b->ema, err);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            out->copied++;
        } else {
            note_skipped(out, "buffer", b->name, b->n);
        }
    }
    return 0;
}

int pretrained_load(const char *path, struct net *net, const char *task,
                    struct pretrained_result *out, struct error *err)
{
    struct checkpoint ck;
    struct source src;
    struct error open_err = {0};
    int rc;

    memset(out, 0, sizeof(*out));
    rc = ckpt_open(path, &ck, &open_err);
    if (rc != 0)
        return error_set(err, rc, "invalid pretrained=%s: %s", path,
                         open_err.msg);
    if (strcmp(ck.spec.task, task) != 0) {
        rc = error_set(err, -EINVAL,
                       "invalid pretrained=%s: it is a %s checkpoint but "
                       "the model is for %s; pick a checkpoint of a %s "
                       "model",
                       path, ck.spec.task, task, task);
        ckpt_close(&ck);
        return rc;
    }

    rc = source_index(&ck, &src);
    if (rc == -ENOMEM)
        rc = error_set(err, rc, "out of memory reading '%s'", path);
    else if (rc != 0)
        rc = error_set(err, rc,
                       "invalid pretrained=%s: its tensor list does not "
                       "match its tensor data",
                       path);
    if (rc == 0)
        rc = copy_matching(net, &src, out, err);
    source_free(&src);
    ckpt_close(&ck);
    if (rc != 0)
        return rc;

    if (out->copied == 0)
        return error_set(err, -EINVAL,
                         "invalid pretrained=%s: none of its tensors "
                         "matches the model by name and size; use a "
                         "checkpoint of the same architecture",
                         path);
    log_info("pretrained weights from %s: %d tensors copied, %d skipped",
             path, out->copied, out->skipped);
    return 0;
}
