/*
 * libFuzzer target for proto_handle (backend/daemon/proto.c), which
 * handles the messages a gateway sends to the backend. The input is a
 * list of messages, one per line, sent in order on one connection. When
 * the first byte is '+', the target first sends a hello with the right
 * shared secret, so that the messages reach the ops. Any other first byte
 * is part of the first message. Sending stops when a reply sets
 * close_after_reply.
 *
 * Each input gets a new in-memory SQLite database (":memory:", migrated
 * from the embedded schema) holding an admin (account 1), a user
 * (account 2), the default instance type and a data set (id 1). No state
 * carries over between inputs, so every crash reproduces from its input
 * alone. be->sessions stays NULL, because the training supervisor starts
 * trainer processes. A message that names one of the four ops that use
 * it (training.start, training.stop, training.resume, progress.after) is
 * not sent. Password hashes use libsodium's minimum cost when
 * TRAINYARD_PWHASH=fast is set, as scripts/fuzz.sh does. The data folder
 * (be->data_dir), where upload ops write, is a folder under $TMPDIR
 * (default /tmp) made once per process, emptied before each input and
 * removed at exit.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "daemon/auth_store.h"
#include "daemon/instances.h"
#include "daemon/proto.h"
#include "embedded.h"
#include "fuzz_files.h"
#include "log.h"

#define SECRET "00112233445566778899aabbccddeeff" \
               "00112233445566778899aabbccddeeff"

/* Ops that need be->sessions, which this target leaves NULL. */
static const char *const skipped_ops[] = {
    "training.start", "training.stop", "training.resume", "progress.after",
};

static int names_skipped_op(const char *msg, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(msg, len);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(root, "op");
    int skip = 0;

    if (cJSON_IsString(op))
        for (size_t i = 0; i < sizeof(skipped_ops) / sizeof(*skipped_ops);
             i++)
            if (strcmp(op->valuestring, skipped_ops[i]) == 0)
                skip = 1;
    cJSON_Delete(root);
    return skip;
}

static char data_dir[4096];

/* Empty data_dir. */
static void clear_data_dir(void)
{
    fuzz_remove_tree(data_dir);
    if (mkdir(data_dir, 0700) != 0)
        abort();
}

static void open_backend(struct backend *be)
{
    struct error err = {0};

    memset(be, 0, sizeof(*be));
    strcpy(be->secret, SECRET);
    config_defaults(&be->config);
    clear_data_dir();
    be->data_dir = data_dir;
    if (store_open(&be->store, ":memory:", schema_sql, &err) != 0)
        abort();
    struct auth_account made;
    if (auth_account_create(&be->store, "admin@example.com", NULL, "admin",
                            "pro", &made, &err) != 0 || made.id != 1)
        abort();
    if (auth_account_create(&be->store, "user@example.com", NULL, "user",
                            "free", &made, &err) != 0 || made.id != 2)
        abort();
    /* The default instance type, and one data set for models.create. */
    if (instances_sync(&be->store, &be->config, &err) != 0)
        abort();
    if (store_exec(&be->store,
                   "INSERT INTO datasets (account_id, name, task, path, "
                   "images, created_at) VALUES (NULL, 'sample', "
                   "'classify', 'datasets/sample', 12, 0);",
                   &err) != 0)
        abort();
}

/* Send one message; returns 1 when the connection must close. */
static int send_message(struct backend *be, struct proto_conn *conn,
                        const char *msg, size_t len)
{
    char *reply = NULL;

    if (names_skipped_op(msg, len))
        return 0;
    proto_handle(be, conn, msg, len, &reply);
    if (reply == NULL)
        abort(); /* every message gets a reply */
    free(reply);
    return conn->close_after_reply;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char hello[] =
        "{\"type\":\"hello\",\"version\":1,\"secret\":\"" SECRET "\"}";
    static int ready;
    static struct backend be;
    struct proto_conn conn = {0};
    const char *p = (const char *)data, *end = p + size;

    if (size > 65536)
        return 0;
    if (!ready) {
        /* Errors only: ops log every rejected request at warning. */
        log_init("fuzz", LOG_LEVEL_ERROR, 2);
        fuzz_temp_folder("fuzz_proto", data_dir, sizeof(data_dir));
        ready = 1;
    }
    open_backend(&be);
    if (size > 0 && p[0] == '+') {
        p++;
        if (send_message(&be, &conn, hello, strlen(hello)) ||
            !conn.authenticated)
            abort();
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);

        if (send_message(&be, &conn, p, len))
            break;
        p += len + 1;
    }
    store_close(&be.store);
    return 0;
}
