/*
 * trainyard backend: the control plane. It owns the SQLite database and
 * every file under the data folder, and serves gateways over a WebSocket
 * on loopback. Run `backend --help` for its options.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "clock.h"
#include "fsutil.h"
#include "log.h"
#include "server.h"

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT 8081

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: backend [OPTION]...\n"
            "Run the Trainyard backend: database, billing, training "
            "sessions.\n"
            "\n"
            "  --data DIR        data folder: database, data sets, "
            "checkpoints\n"
            "                    (default $TRAINYARD_DATA, else ./var)\n"
            "  --listen HOST:PORT  address for gateways (default %s:%d;\n"
            "                    port 0 picks a free one)\n"
            "  --port-file FILE  write the port listened on to FILE\n"
            "  --log-level L     debug, info, warn or error (default "
            "info)\n"
            "  --help            print this help and exit\n"
            "\n"
            "At first start the backend creates DIR/gateway.secret (mode "
            "0600);\n"
            "a gateway must present it to connect.\n",
            DEFAULT_HOST, DEFAULT_PORT);
}

/* Split "HOST:PORT" into host (static buffer) and port. */
static int parse_listen(const char *arg, const char **host, int *port)
{
    static char buf[256];
    const char *colon = strrchr(arg, ':');
    char *end;
    long p;

    if (colon == NULL || colon == arg ||
        (size_t)(colon - arg) >= sizeof(buf))
        return -1;
    p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || colon[1] == '\0' || p < 0 || p > 65535)
        return -1;
    memcpy(buf, arg, (size_t)(colon - arg));
    buf[colon - arg] = '\0';
    *host = buf;
    *port = (int)p;
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    server_request_stop();
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"data", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"port-file", required_argument, NULL, 'p'},
        {"log-level", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct server_options sopt = {DEFAULT_HOST, DEFAULT_PORT, NULL};
    enum log_level level = LOG_LEVEL_INFO;
    struct backend be;
    struct error err = {0};
    char path[PATH_MAX];
    int c, rc;

    memset(&be, 0, sizeof(be));
    be.data_dir = getenv("TRAINYARD_DATA");
    if (be.data_dir == NULL || be.data_dir[0] == '\0')
        be.data_dir = "var";

    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (c) {
        case 'd':
            be.data_dir = optarg;
            break;
        case 'l':
            if (parse_listen(optarg, &sopt.host, &sopt.port) != 0) {
                fprintf(stderr,
                        "backend: invalid --listen '%s'; expected "
                        "HOST:PORT such as 127.0.0.1:8081\n",
                        optarg);
                return 2;
            }
            break;
        case 'p':
            sopt.port_file = optarg;
            break;
        case 'v':
            if (log_parse_level(optarg, &level) != 0) {
                fprintf(stderr,
                        "backend: invalid --log-level '%s'; use debug, "
                        "info, warn or error\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "backend: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    log_init("backend", level, 2);
    log_capture_sqlite();
    log_capture_lws();
    be.started_ms = clock_monotonic_ms();
    log_info("starting version %s, data folder '%s'", BACKEND_VERSION,
             be.data_dir);

    rc = fs_mkdir_p(be.data_dir, 0700, &err);
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/gateway.secret", be.data_dir);
        rc = secret_load_or_create(path, be.secret, &err);
    }
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/trainyard.db", be.data_dir);
        rc = store_open(&be.store, path, schema_sql, &err);
    }
    if (rc != 0) {
        log_error("%s", err.msg);
        return 1;
    }
    log_info("database '%s' at schema version %d", path,
             be.store.schema_version);

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    rc = server_run(&be, &sopt, &err);
    store_close(&be.store);
    if (rc != 0) {
        log_error("%s", err.msg);
        return 1;
    }
    log_info("stopped");
    return 0;
}
