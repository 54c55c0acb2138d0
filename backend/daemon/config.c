/*
 * Reading the backend configuration (format in config.h) with libyaml's
 * document API. Every value is checked here, so that the rest of the
 * backend can trust it: an invalid value fails the start with a message
 * that names the key, the value and what is accepted.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

void config_defaults(struct config *c)
{
    const char *data = getenv("TRAINYARD_DATA");
    const char *train = getenv("TRAINYARD_TRAIN");

    memset(c, 0, sizeof(*c));
    snprintf(c->listen_host, sizeof(c->listen_host), "127.0.0.1");
    c->listen_port = 8081;
    snprintf(c->data_dir, sizeof(c->data_dir), "%s",
             data && data[0] ? data : "var");
    snprintf(c->train_program, sizeof(c->train_program), "%s",
             train && train[0] ? train : "build/bin/train");
    c->heartbeat_timeout_s = 120;
    c->stop_timeout_s = 30;
    c->trainer_nice = 10;
    snprintf(c->payment_provider, sizeof(c->payment_provider), "test");
    c->ntypes = 1;
    snprintf(c->types[0].name, sizeof(c->types[0].name), "cpu");
    snprintf(c->types[0].device, sizeof(c->types[0].device), "cpu");
    c->types[0].price_per_hour = 500000;
    c->types[0].capacity = 1;
}

int config_parse_dollars(const char *text, int64_t *micro)
{
    int64_t whole = 0, frac = 0;
    int digits = 0, frac_digits = 0;
    const char *p = text;

    /* At most 12 whole digits, so that whole * 10^6 fits in int64. */
    for (; isdigit((unsigned char)*p); p++, digits++) {
        if (digits == 12)
            return -1;
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; isdigit((unsigned char)*p); p++, frac_digits++) {
            if (frac_digits == 6)
                return -1;
            frac = frac * 10 + (*p - '0');
        }
    }
    if (*p != '\0' || (digits == 0 && frac_digits == 0))
        return -1;
    for (int i = frac_digits; i < 6; i++)
        frac *= 10;
    *micro = whole * 1000000 + frac;
    return 0;
}

int config_parse_address(const char *text, char *host, size_t host_len,
                         int *port)
{
    const char *colon = strrchr(text, ':');
    char *end;
    long p;

    if (colon == NULL || colon == text || (size_t)(colon - text) >= host_len)
        return -1;
    p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || colon[1] == '\0' || p < 0 || p > 65535)
        return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    *port = (int)p;
    return 0;
}

static const char *scalar(yaml_node_t *n)
{
    if (n == NULL || n->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)n->data.scalar.value;
}

static int parse_int(const char *key, const char *text, int min, int max,
                     int *out, struct error *err)
{
    char *end;
    long v;

    v = text ? strtol(text, &end, 10) : 0;
    if (text == NULL || *text == '\0' || *end != '\0' || v < min || v > max)
        return error_set(err, -EINVAL,
                         "config: invalid %s '%s': expected a whole number "
                         "from %d to %d",
                         key, text ? text : "(not a value)", min, max);
    *out = (int)v;
    return 0;
}

static int copy_text(const char *key, const char *text, char *out,
                     size_t len, struct error *err)
{
    if (text == NULL)
        return error_set(err, -EINVAL, "config: %s must be a text value",
                         key);
    if (strlen(text) >= len)
        return error_set(err, -EINVAL,
                         "config: %s is longer than %zu characters", key,
                         len - 1);
    memcpy(out, text, strlen(text) + 1);
    return 0;
}

static int read_instance_type(yaml_document_t *doc, yaml_node_t *map,
                              struct config_instance_type *t, int index,
                              struct error *err)
{
    char key[64];

    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return error_set(err, -EINVAL,
                         "config: instance_types[%d] must be a mapping with "
                         "name, device, price_per_hour and capacity",
                         index);
    memset(t, 0, sizeof(*t));
    t->capacity = 1;
    t->price_per_hour = -1;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        const char *v = scalar(yaml_document_get_node(doc, p->value));
        int rc = 0;
        snprintf(key, sizeof(key), "instance_types[%d].%s", index,
                 k ? k : "?");
        if (k == NULL) {
            rc = error_set(err, -EINVAL, "config: %s: invalid key", key);
        } else if (strcmp(k, "name") == 0) {
            rc = copy_text(key, v, t->name, sizeof(t->name), err);
        } else if (strcmp(k, "device") == 0) {
            rc = copy_text(key, v, t->device, sizeof(t->device), err);
        } else if (strcmp(k, "price_per_hour") == 0) {
            if (v == NULL || config_parse_dollars(v, &t->price_per_hour))
                rc = error_set(err, -EINVAL,
                               "config: invalid %s '%s': expected dollars "
                               "such as \"2.50\", at most 6 decimals",
                               key, v ? v : "(not a value)");
        } else if (strcmp(k, "capacity") == 0) {
            rc = parse_int(key, v, 1, 1024, &t->capacity, err);
        } else {
            rc = error_set(err, -EINVAL,
                           "config: unknown key '%s'; use name, device, "
                           "price_per_hour or capacity",
                           key);
        }
        if (rc != 0)
            return rc;
    }
    if (t->name[0] == '\0' || t->device[0] == '\0' || t->price_per_hour < 0)
        return error_set(err, -EINVAL,
                         "config: instance_types[%d] needs name, device and "
                         "price_per_hour",
                         index);
    if (strcmp(t->device, "cpu") != 0) {
        char *end;
        long dev = strtol(t->device, &end, 10);
        if (*end != '\0' || dev < 0 || dev > 63)
            return error_set(err, -EINVAL,
                             "config: instance type '%s': device '%s' must "
                             "be cpu or a CUDA device number",
                             t->name, t->device);
        t->capacity = 1; /* one training per GPU */
    }
    return 0;
}

static int read_types(yaml_document_t *doc, yaml_node_t *seq,
                      struct config *c, struct error *err)
{
    int n;

    if (seq == NULL || seq->type != YAML_SEQUENCE_NODE)
        return error_set(err, -EINVAL,
                         "config: instance_types must be a list");
    n = (int)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n < 1 || n > CONFIG_INSTANCE_TYPES_MAX)
        return error_set(err, -EINVAL,
                         "config: instance_types must have 1 to %d entries",
                         CONFIG_INSTANCE_TYPES_MAX);
    for (int i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(
            doc, seq->data.sequence.items.start[i]);
        int rc = read_instance_type(doc, item, &c->types[i], i, err);
        if (rc != 0)
            return rc;
        for (int j = 0; j < i; j++)
            if (strcmp(c->types[j].name, c->types[i].name) == 0)
                return error_set(err, -EINVAL,
                                 "config: instance type '%s' is listed "
                                 "twice",
                                 c->types[i].name);
    }
    c->ntypes = n;
    return 0;
}

static int read_key(yaml_document_t *doc, struct config *c, const char *k,
                    yaml_node_t *node, struct error *err)
{
    const char *v = scalar(node);

    if (strcmp(k, "listen") == 0) {
        if (v == NULL || config_parse_address(v, c->listen_host,
                                              sizeof(c->listen_host),
                                              &c->listen_port) != 0)
            return error_set(err, -EINVAL,
                             "config: invalid listen '%s': expected "
                             "HOST:PORT such as 127.0.0.1:8081",
                             v ? v : "(not a value)");
        return 0;
    }
    if (strcmp(k, "unix_socket") == 0)
        return copy_text(k, v, c->unix_socket, sizeof(c->unix_socket), err);
    if (strcmp(k, "data") == 0)
        return copy_text(k, v, c->data_dir, sizeof(c->data_dir), err);
    if (strcmp(k, "train") == 0)
        return copy_text(k, v, c->train_program, sizeof(c->train_program),
                         err);
    if (strcmp(k, "heartbeat_timeout_s") == 0)
        return parse_int(k, v, 1, 86400, &c->heartbeat_timeout_s, err);
    if (strcmp(k, "stop_timeout_s") == 0)
        return parse_int(k, v, 1, 3600, &c->stop_timeout_s, err);
    if (strcmp(k, "trainer_nice") == 0)
        return parse_int(k, v, 0, 19, &c->trainer_nice, err);
    if (strcmp(k, "payment_provider") == 0) {
        if (v == NULL || (strcmp(v, "test") != 0 && strcmp(v, "operator")))
            return error_set(err, -EINVAL,
                             "config: invalid payment_provider '%s': use "
                             "test or operator",
                             v ? v : "(not a value)");
        return copy_text(k, v, c->payment_provider,
                         sizeof(c->payment_provider), err);
    }
    if (strcmp(k, "instance_types") == 0)
        return read_types(doc, node, c, err);
    return error_set(err, -EINVAL,
                     "config: unknown key '%s'; see backend --help", k);
}

int config_load(struct config *c, const char *path, struct error *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    FILE *f = fopen(path, "rb");
    int rc = 0;

    if (f == NULL)
        return error_errno(err, errno, "cannot open config file '%s'", path);
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = error_set(err, -EINVAL,
                       "config file '%s' is not valid YAML: %s at line %zu",
                       path, parser.problem ? parser.problem : "parse error",
                       parser.problem_mark.line + 1);
        yaml_parser_delete(&parser);
        fclose(f);
        return rc;
    }
    yaml_parser_delete(&parser);
    fclose(f);

    root = yaml_document_get_root_node(&doc);
    if (root != NULL && root->type != YAML_MAPPING_NODE)
        rc = error_set(err, -EINVAL,
                       "config file '%s' must be a mapping of keys", path);
    for (yaml_node_pair_t *p = root ? root->data.mapping.pairs.start : NULL;
         rc == 0 && p != NULL && p < root->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(&doc, p->key));
        if (k == NULL) {
            rc = error_set(err, -EINVAL, "config: keys must be text");
            break;
        }
        rc = read_key(&doc, c, k, yaml_document_get_node(&doc, p->value),
                      err);
    }
    yaml_document_delete(&doc);
    return rc;
}

void config_print_help(FILE *out)
{
    fprintf(out,
            "Configuration file (YAML; every key optional, defaults "
            "shown):\n"
            "  listen: 127.0.0.1:8081     address for gateways\n"
            "  unix_socket: \"\"            also listen on this Unix "
            "socket\n"
            "  data: var                  data folder ($TRAINYARD_DATA)\n"
            "  train: build/bin/train     the training program "
            "($TRAINYARD_TRAIN)\n"
            "  heartbeat_timeout_s: 120   stop a trainer silent this "
            "long\n"
            "  stop_timeout_s: 30         SIGKILL a stopping trainer after "
            "this\n"
            "  trainer_nice: 10           nice value of trainers, 0 to 19, "
            "so that\n"
            "                             the servers stay responsive\n"
            "  payment_provider: test     test (test cards) or operator\n"
            "  instance_types:            default: one CPU type, $0.50/h\n"
            "    - name: cpu\n"
            "      device: cpu            cpu, or a CUDA device number\n"
            "      price_per_hour: \"0.50\" USD, up to 6 decimals\n"
            "      capacity: 1            trainings at once (GPU: 1)\n");
}
