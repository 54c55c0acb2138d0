/*
 * Opening the backend's shared state (backend.h): the data folder, the
 * gateway secret in it, the database with its instance types, and the
 * training session supervisor. The daemon's main() starts through these
 * functions, and so does a program that runs a backend in its own
 * process, so both take the same start-up steps.
 */
#include "backend.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fsutil.h"
#include "instances.h"
#include "log.h"
#include "server.h"

int backend_open(struct backend *be, struct error *err)
{
    char path[PATH_MAX];
    int rc;

    rc = fs_mkdir_p(be->data_dir, 0700, err);
    if (rc != 0)
        return rc;
    snprintf(path, sizeof(path), "%s/gateway.secret", be->data_dir);
    rc = secret_load_or_create(path, be->secret, err);
    if (rc != 0)
        return rc;
    snprintf(path, sizeof(path), "%s/trainyard.db", be->data_dir);
    rc = store_open(&be->store, path, schema_sql, err);
    if (rc != 0)
        return rc;
    log_info("database '%s' at schema version %d", path,
             be->store.schema_version);
    rc = instances_sync(&be->store, &be->config, err);
    if (rc != 0)
        store_close(&be->store);
    return rc;
}

/* Send each stored progress event to every gateway, which fans it out to
 * the model's viewers. Runs inside the sessions module's commit, so it
 * only queues. */
static int broadcast_event(void *user, const struct sessions_event *ev)
{
    cJSON *msg = cJSON_CreateObject();
    cJSON *payload = cJSON_Parse(ev->payload);
    char *text;

    (void)user;
    cJSON_AddStringToObject(msg, "type", "event");
    cJSON_AddNumberToObject(msg, "model", (double)ev->model_id);
    cJSON_AddNumberToObject(msg, "session", (double)ev->session_id);
    cJSON_AddNumberToObject(msg, "seq", (double)ev->seq);
    cJSON_AddStringToObject(msg, "kind", ev->kind);
    cJSON_AddNumberToObject(msg, "created_at", (double)ev->created_at);
    cJSON_AddItemToObject(msg, "payload",
                          payload ? payload : cJSON_CreateObject());
    text = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    if (text != NULL)
        server_broadcast(text, strlen(text));
    free(text);
    return 0;
}

int backend_open_sessions(struct backend *be, struct error *err)
{
    struct sessions_config cfg;
    int rc;

    sessions_config_defaults(&cfg);
    cfg.data_dir = be->data_dir;
    cfg.train_program = be->config.train_program;
    cfg.stop_timeout_ms = (int64_t)be->config.stop_timeout_s * 1000;
    cfg.heartbeat_timeout_ms = (int64_t)be->config.heartbeat_timeout_s * 1000;
    rc = sessions_open(&be->sessions, &be->store, &be->executor, &cfg,
                       err);
    if (rc != 0)
        return rc;
    sessions_set_event_hook(be->sessions, broadcast_event, be);
    rc = sessions_reconcile(be->sessions, err);
    if (rc > 0)
        log_info("reconciled %d sessions left running by the previous "
                 "backend; they can be resumed",
                 rc);
    return rc < 0 ? rc : 0;
}

void backend_close(struct backend *be)
{
    if (be->sessions != NULL)
        sessions_close(be->sessions);
    be->sessions = NULL;
    store_close(&be->store);
}
