/*
 * trainyard gateway: the HTTP edge. It serves the browser UI and the REST
 * API and forwards every request to the backend over one WebSocket. It
 * keeps no state that must survive a restart. Run `gateway --help`.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "live.h"
#include "log.h"
#include "secret.h"
#include "tls.h"
#include "upstream.h"

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT 8080
#define DEFAULT_BACKEND_PORT 8081

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: gateway [OPTION]...\n"
            "Run the Trainyard gateway: web UI, REST API and live "
            "progress.\n"
            "\n"
            "  --listen HOST:PORT   address for browsers (default %s:%d;\n"
            "                       port 0 picks a free one)\n"
            "  --backend HOST:PORT  the backend (default %s:%d)\n"
            "  --secret FILE        the backend's shared secret (default\n"
            "                       $TRAINYARD_DATA/gateway.secret, else\n"
            "                       var/gateway.secret)\n"
            "  --ui DIR             built UI files (default build/ui)\n"
            "  --access-log FILE    append one line per request to FILE\n"
            "  --secure-cookies     mark cookies Secure on plain HTTP too;\n"
            "                       set it behind a proxy that serves TLS\n"
            "  --tls-cert FILE      serve HTTPS and WSS on --listen with this\n"
            "                       PEM certificate (then its chain); needs\n"
            "                       --tls-key. Cookies get Secure\n"
            "  --tls-key FILE       the certificate's PEM private key, not\n"
            "                       encrypted\n"
            "  --redirect-http HOST:PORT  with TLS, also listen for plain\n"
            "                       HTTP there and redirect it to https://\n"
            "  --port-file FILE     write the port listened on to FILE\n"
            "  --live-connections N live progress WebSockets served at\n"
            "                       once (default %d)\n"
            "  --live-ping-s N      seconds between pings to each live\n"
            "                       WebSocket (default %d)\n"
            "  --log-level L        debug, info, warn or error (default "
            "info)\n"
            "  --help               print this help and exit\n",
            DEFAULT_HOST, DEFAULT_PORT, DEFAULT_HOST, DEFAULT_BACKEND_PORT,
            LIVE_CONNECTIONS_DEFAULT, LIVE_PING_INTERVAL_DEFAULT_S);
}

static int parse_address(const char *arg, char *host, size_t host_len,
                         int *port)
{
    const char *colon = strrchr(arg, ':');
    char *end;
    long p;

    if (colon == NULL || colon == arg || (size_t)(colon - arg) >= host_len)
        return -1;
    p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || colon[1] == '\0' || p < 0 || p > 65535)
        return -1;
    memcpy(host, arg, (size_t)(colon - arg));
    host[colon - arg] = '\0';
    *port = (int)p;
    return 0;
}

/* Parse a whole number in [min, max]; returns 0 or -1. */
static int parse_count(const char *arg, long min, long max, int *out)
{
    char *end;
    long v = strtol(arg, &end, 10);

    if (arg[0] == '\0' || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"listen", required_argument, NULL, 'l'},
        {"backend", required_argument, NULL, 'b'},
        {"secret", required_argument, NULL, 's'},
        {"ui", required_argument, NULL, 'u'},
        {"access-log", required_argument, NULL, 'a'},
        {"secure-cookies", no_argument, NULL, 'S'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"redirect-http", required_argument, NULL, 'R'},
        {"port-file", required_argument, NULL, 'p'},
        {"live-connections", required_argument, NULL, 'c'},
        {"live-ping-s", required_argument, NULL, 'P'},
        {"log-level", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char listen_host[256] = DEFAULT_HOST, backend_host[256] = DEFAULT_HOST;
    char redirect_host[256] = "";
    char secret_path[PATH_MAX], secret[SECRET_HEX_LEN + 1];
    struct http_options hopt = {.host = NULL,
                                .port = DEFAULT_PORT,
                                .ui_dir = "build/ui"};
    struct upstream_options uopt = {NULL, DEFAULT_BACKEND_PORT, NULL};
    struct live_options lopt = {LIVE_CONNECTIONS_DEFAULT,
                                LIVE_PING_INTERVAL_DEFAULT_S};
    enum log_level level = LOG_LEVEL_INFO;
    const char *data = getenv("TRAINYARD_DATA");
    struct error err = {0};
    int c;

    snprintf(secret_path, sizeof(secret_path), "%s/gateway.secret",
             data && data[0] ? data : "var");

    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (c) {
        case 'l':
        case 'b':
        case 'R': {
            char *host = listen_host;
            int *port = &hopt.port;
            if (c == 'b') {
                host = backend_host;
                port = &uopt.port;
            } else if (c == 'R') {
                host = redirect_host;
                port = &hopt.redirect_port;
            }
            if (parse_address(optarg, host, sizeof(listen_host), port) != 0) {
                fprintf(stderr,
                        "gateway: invalid address '%s'; expected HOST:PORT "
                        "such as 127.0.0.1:8080\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 's':
            snprintf(secret_path, sizeof(secret_path), "%s", optarg);
            break;
        case 'u':
            hopt.ui_dir = optarg;
            break;
        case 'a':
            hopt.access_log = optarg;
            break;
        case 'S':
            hopt.secure_cookies = 1;
            break;
        case 'C':
            hopt.tls_cert = optarg;
            break;
        case 'K':
            hopt.tls_key = optarg;
            break;
        case 'p':
            hopt.port_file = optarg;
            break;
        case 'c':
            if (parse_count(optarg, 1, 1024, &lopt.max_connections) != 0) {
                fprintf(stderr,
                        "gateway: invalid --live-connections '%s'; use a "
                        "whole number from 1 to 1024\n",
                        optarg);
                return 2;
            }
            break;
        case 'P':
            if (parse_count(optarg, 1, 3600, &lopt.ping_interval_s) != 0) {
                fprintf(stderr,
                        "gateway: invalid --live-ping-s '%s'; use a whole "
                        "number of seconds from 1 to 3600\n",
                        optarg);
                return 2;
            }
            break;
        case 'v':
            if (log_parse_level(optarg, &level) != 0) {
                fprintf(stderr,
                        "gateway: invalid --log-level '%s'; use debug, "
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
        fprintf(stderr, "gateway: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if ((hopt.tls_cert == NULL) != (hopt.tls_key == NULL)) {
        fprintf(stderr, "gateway: %s needs %s as well; pass both to serve "
                        "HTTPS, or neither for plain HTTP\n",
                hopt.tls_cert ? "--tls-cert" : "--tls-key",
                hopt.tls_cert ? "--tls-key" : "--tls-cert");
        return 2;
    }
    if (redirect_host[0] != '\0' && hopt.tls_cert == NULL) {
        fprintf(stderr, "gateway: --redirect-http needs --tls-cert and "
                        "--tls-key; without TLS there is nothing to redirect "
                        "to\n");
        return 2;
    }
    hopt.host = listen_host;
    hopt.redirect_host = redirect_host[0] != '\0' ? redirect_host : NULL;
    uopt.host = backend_host;
    live_configure(&lopt);

    log_init("gateway", level, 2);
    log_capture_lws();
    if (secret_load(secret_path, secret, &err) != 0) {
        log_error("%s; start the backend first, or pass --secret", err.msg);
        return 1;
    }
    uopt.secret = secret;
    /* Check the certificate and key before connecting to the backend, so
     * that a wrong file is the only error printed. */
    if (hopt.tls_cert != NULL &&
        tls_prepare(hopt.tls_cert, hopt.tls_key, &err) != 0) {
        log_error("%s", err.msg);
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    if (upstream_start(&uopt, &err) != 0) {
        log_error("%s", err.msg);
        return 1;
    }
    if (http_start(&hopt, &err) != 0) {
        log_error("%s", err.msg);
        upstream_stop();
        return 1;
    }

    while (!stop_requested)
        pause();

    log_info("stopping");
    http_stop();
    upstream_stop();
    log_info("stopped");
    return 0;
}
