/*
 * trainyard backend: the control plane. It owns the SQLite database and
 * every file under the data folder, and serves gateways over a WebSocket
 * on loopback. Run `backend --help` for its options.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_cli.h"
#include "backend.h"
#include "demo.h"
#include "executor.h"
#include "clock.h"
#include "log.h"
#include "server.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: backend [OPTION]...\n"
            "       backend create-admin EMAIL [--data DIR] [--config FILE]\n"
            "       backend init-demo [--data DIR]\n"
            "Run the Trainyard backend: database, billing, training "
            "sessions.\n"
            "create-admin makes an admin account, reading its password "
            "from\n"
            "standard input or $TRAINYARD_ADMIN_PASSWORD, and exits.\n"
            "init-demo makes, on a data folder without accounts, an admin "
            "and a\n"
            "demo account and the Fashion-MNIST sample, and prints their "
            "sign-in\n"
            "details (kept in DIR/credentials.txt, mode 0600).\n"
            "\n"
            "  --config FILE       read settings from FILE (format below)\n"
            "  --data DIR          data folder: database, data sets, runs\n"
            "                      (default $TRAINYARD_DATA, else ./var)\n"
            "  --listen HOST:PORT  address for gateways (default "
            "127.0.0.1:8081;\n"
            "                      port 0 picks a free one)\n"
            "  --unix-socket PATH  also listen on a Unix socket\n"
            "  --port-file FILE    write the port listened on to FILE\n"
            "  --log-level L       debug, info, warn or error (default "
            "info)\n"
            "  --help              print this help and exit\n"
            "\n"
            "Options override the file. At first start the backend creates\n"
            "DIR/gateway.secret (mode 0600); a gateway must present it.\n"
            "\n");
    config_print_help(out);
}

/* Sessions whose trainer pipe the service loop watches (server_watch),
 * so that an event is stored and sent when it is written, not at the
 * next tick. Past the limit, pipes are read at each tick only. */
#define WATCHED_MAX 256
static int64_t watched[WATCHED_MAX];
static int nwatched;
/* The last sessions whose pipe could not be watched, which are not tried
 * again, so that a lack of descriptors does not log every tick. */
#define UNWATCHABLE_MAX 16
static int64_t unwatchable[UNWATCHABLE_MAX];
static unsigned nunwatchable;

static int contains(const int64_t *ids, int count, int64_t session_id)
{
    for (int i = 0; i < count; i++)
        if (ids[i] == session_id)
            return 1;
    return 0;
}

/* Watch the pipes of trainers that started or became readable again. */
static void watch_pipes(struct backend *be)
{
    struct sessions_pipe pipes[WATCHED_MAX];
    int n = sessions_pipes(be->sessions, pipes, WATCHED_MAX);

    for (int i = 0; i < n && nwatched < WATCHED_MAX; i++) {
        int64_t id = pipes[i].session_id;
        int tried = nunwatchable < UNWATCHABLE_MAX ? (int)nunwatchable
                                                   : UNWATCHABLE_MAX;

        if (contains(watched, nwatched, id) || contains(unwatchable, tried, id))
            continue;
        int rc = server_watch(pipes[i].fd, id);
        if (rc != 0) {
            log_warn("cannot watch the event pipe of session=%lld: %s; its "
                     "events are read every %d ms",
                     (long long)id, strerror(-rc), SERVER_TICK_MS);
            unwatchable[nunwatchable++ % UNWATCHABLE_MAX] = id;
            continue;
        }
        watched[nwatched++] = pipes[i].session_id;
        sessions_set_pipe_watched(be->sessions, pipes[i].session_id, 1);
    }
}

/* The service loop's tick: read trainers' events, reap exits, enforce
 * deadlines and launch queued sessions. */
static void on_tick(struct backend *be)
{
    sessions_poll(be->sessions, clock_monotonic_ms());
    watch_pipes(be);
}

static int on_input(struct backend *be, int64_t session_id)
{
    return sessions_read_pipe(be->sessions, session_id, clock_monotonic_ms());
}

static void on_unwatch(struct backend *be, int64_t session_id)
{
    sessions_set_pipe_watched(be->sessions, session_id, 0);
    for (int i = 0; i < nwatched; i++) {
        if (watched[i] == session_id) {
            watched[i] = watched[--nwatched];
            return;
        }
    }
}

/* Open the session supervisor with the local executor, which runs
 * trainers as child processes, and settle sessions left running by a
 * previous backend process. */
static int open_sessions(struct backend *be, struct error *err)
{
    int rc;

    executor_local_init(&be->executor, be->config.trainer_nice);
    rc = backend_open_sessions(be, err);
    if (rc != 0)
        return rc;
    be->on_tick = on_tick;
    be->on_input = on_input;
    be->on_unwatch = on_unwatch;
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    server_request_stop();
}

/* Apply command-line options over the configuration; returns 0, or 2
 * after printing a usage error. */
static int parse_options(int argc, char **argv, struct config *c,
                         const char **port_file, enum log_level *level)
{
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'},
        {"data", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"unix-socket", required_argument, NULL, 'u'},
        {"port-file", required_argument, NULL, 'p'},
        {"log-level", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct error err = {0};
    int opt;

    /* The file first, so that the other options override it. */
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 &&
            config_load(c, argv[i + 1], &err) != 0) {
            fprintf(stderr, "backend: %s\n", err.msg);
            return 2;
        }
    }
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            break;
        case 'd':
            snprintf(c->data_dir, sizeof(c->data_dir), "%s", optarg);
            break;
        case 'l':
            if (config_parse_address(optarg, c->listen_host,
                                     sizeof(c->listen_host),
                                     &c->listen_port) != 0) {
                fprintf(stderr,
                        "backend: invalid --listen '%s'; expected "
                        "HOST:PORT such as 127.0.0.1:8081\n",
                        optarg);
                return 2;
            }
            break;
        case 'u':
            snprintf(c->unix_socket, sizeof(c->unix_socket), "%s", optarg);
            break;
        case 'p':
            *port_file = optarg;
            break;
        case 'v':
            if (log_parse_level(optarg, level) != 0) {
                fprintf(stderr,
                        "backend: invalid --log-level '%s'; use debug, "
                        "info, warn or error\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            exit(0);
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
    return 0;
}

int main(int argc, char **argv)
{
    struct server_options sopt;
    enum log_level level = LOG_LEVEL_INFO;
    const char *port_file = NULL;
    struct backend be;
    struct error err = {0};
    int rc;

    /* Commands come before the daemon's options. */
    if (argc >= 2 && strcmp(argv[1], "create-admin") == 0)
        return admin_cli_create_admin(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "init-demo") == 0)
        return demo_init(argc - 1, argv + 1);

    memset(&be, 0, sizeof(be));
    config_defaults(&be.config);
    rc = parse_options(argc, argv, &be.config, &port_file, &level);
    if (rc != 0)
        return rc;
    be.data_dir = be.config.data_dir;
    sopt.host = be.config.listen_host;
    sopt.port = be.config.listen_port;
    sopt.unix_socket = be.config.unix_socket;
    sopt.port_file = port_file;

    log_init("backend", level, 2);
    log_capture_sqlite();
    log_capture_lws();
    be.started_ms = clock_monotonic_ms();
    log_info("starting version %s, data folder '%s'", BACKEND_VERSION,
             be.data_dir);

    /* Trainers inherit this environment. Several CPU trainers may share
     * the cores, and OpenMP threads that spin at each barrier while
     * another process runs on the core are slow there: on 2 busy cores
     * (load average about 8) the detector trained at under 8 images/s
     * with spinning threads and at 21 with passive ones, which sleep.
     * An operator's own setting is kept. */
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 0) != 0)
        log_warn("cannot set OMP_WAIT_POLICY for trainers: %s",
                 strerror(errno));

    rc = backend_open(&be, &err);
    if (rc != 0) {
        log_error("%s", err.msg);
        return 1;
    }
    rc = open_sessions(&be, &err);
    if (rc != 0) {
        log_error("%s", err.msg);
        backend_close(&be);
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    rc = server_run(&be, &sopt, &err);
    /* Trainers are stopped with a checkpoint before the database closes;
     * their sessions are marked resumable. */
    sessions_shutdown(be.sessions);
    backend_close(&be);
    if (rc != 0) {
        log_error("%s", err.msg);
        return 1;
    }
    log_info("stopped");
    return 0;
}
