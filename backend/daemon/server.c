/*
 * The WebSocket server of the backend. One lws service loop on the main
 * thread handles every gateway connection; each received message is
 * passed whole to proto_handle and its reply queued on the same
 * connection. Only WebSocket connections with the trainyard.v1
 * subprotocol are served; plain HTTP requests get 404.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "proto.h"
#include "wsqueue.h"

struct gateway_conn {
    struct proto_conn proto;
    struct ws_queue out;
    struct ws_inbuf in;
    struct lws *wsi;
    struct gateway_conn *next; /* in the list of open connections */
};

/* Open connections, for broadcasts. */
static struct gateway_conn *connections;

/* A gateway that stops reading gets no more than this queued; past it the
 * connection is closed and the gateway reconnects and replays. */
#define BROADCAST_QUEUE_MAX (64u << 20)

static void unlink_conn(struct gateway_conn *c)
{
    for (struct gateway_conn **p = &connections; *p != NULL;
         p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            return;
        }
    }
}

void server_broadcast(const char *text, size_t len)
{
    for (struct gateway_conn *c = connections; c != NULL; c = c->next) {
        if (!c->proto.authenticated)
            continue;
        if (c->out.bytes + len > BROADCAST_QUEUE_MAX) {
            log_warn("gateway connection is not reading (%zu bytes queued); "
                     "closing it",
                     c->out.bytes);
            c->proto.close_after_reply = 1;
            lws_callback_on_writable(c->wsi);
            continue;
        }
        if (ws_queue_push(&c->out, text, len) == 0)
            lws_callback_on_writable(c->wsi);
    }
}

static struct backend *server_backend;
static struct lws_context *server_context;
static struct lws_vhost *server_vhost;
static volatile sig_atomic_t server_stopping;
static lws_sorted_usec_list_t tick_sul;

static void tick(lws_sorted_usec_list_t *sul)
{
    if (server_backend->on_tick != NULL)
        server_backend->on_tick(server_backend);
    lws_sul_schedule(server_context, 0, sul, tick,
                     (lws_usec_t)SERVER_TICK_MS * 1000);
}

static void handle_message(struct lws *wsi, struct gateway_conn *c)
{
    char *reply = NULL;

    proto_handle(server_backend, &c->proto, c->in.data, c->in.len, &reply);
    ws_inbuf_reset(&c->in);
    if (reply != NULL) {
        if (ws_queue_push(&c->out, reply, strlen(reply)) != 0)
            c->proto.close_after_reply = 1;
        free(reply);
    }
    lws_callback_on_writable(wsi);
}

static int callback_gateway(struct lws *wsi, enum lws_callback_reasons reason,
                            void *user, void *in, size_t len)
{
    struct gateway_conn *c = user;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(c, 0, sizeof(*c));
        c->wsi = wsi;
        c->next = connections;
        connections = c;
        return 0;

    case LWS_CALLBACK_RECEIVE:
        if (lws_frame_is_binary(wsi)) {
            log_warn("gateway sent a binary frame; closing the connection");
            lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                             NULL, 0);
            return -1;
        }
        if (ws_inbuf_append(&c->in, in, len, PROTO_MESSAGE_MAX) != 0) {
            log_warn("gateway message over %d bytes; closing the "
                     "connection",
                     PROTO_MESSAGE_MAX);
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL,
                             0);
            return -1;
        }
        if (lws_is_final_fragment(wsi) &&
            lws_remaining_packet_payload(wsi) == 0)
            handle_message(wsi, c);
        return 0;

    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (ws_queue_write_one(&c->out, wsi) != 0)
            return -1;
        if (c->out.head != NULL) {
            lws_callback_on_writable(wsi);
        } else if (c->proto.close_after_reply) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, NULL,
                             0);
            return -1;
        }
        return 0;

    case LWS_CALLBACK_CLOSED:
        unlink_conn(c);
        if (c->proto.authenticated)
            log_info("gateway disconnected");
        ws_queue_clear(&c->out);
        ws_inbuf_free(&c->in);
        return 0;

    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* A watched pipe (server_watch). Its key is the wsi's opaque user data;
 * lws owns the duplicate descriptor and closes it with the wsi. */
static int callback_pipe(struct lws *wsi, enum lws_callback_reasons reason,
                         void *user, void *in, size_t len)
{
    int64_t key = (int64_t)(intptr_t)lws_get_opaque_user_data(wsi);

    (void)user;
    (void)in;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return 1; /* not a subprotocol that a gateway may request */
    case LWS_CALLBACK_RAW_RX_FILE:
        if (server_backend->on_input == NULL ||
            server_backend->on_input(server_backend, key) == 0)
            return -1;
        return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (server_backend->on_unwatch != NULL)
            server_backend->on_unwatch(server_backend, key);
        return 0;
    default:
        return 0;
    }
}

#define PIPE_PROTOCOL "trainyard-pipe"

static const struct lws_protocols protocols[] = {
    {PROTO_SUBPROTOCOL, callback_gateway, sizeof(struct gateway_conn), 4096,
     0, NULL, 0},
    {PIPE_PROTOCOL, callback_pipe, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int server_watch(int fd, int64_t key)
{
    lws_adopt_desc_t desc;
    int copy;

    if (server_vhost == NULL)
        return -EINVAL;
    copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return -errno;
    memset(&desc, 0, sizeof(desc));
    desc.vh = server_vhost;
    desc.type = LWS_ADOPT_RAW_FILE_DESC;
    desc.fd.filefd = copy;
    desc.vh_prot_name = PIPE_PROTOCOL;
    desc.opaque = (void *)(intptr_t)key;
    /* On failure lws has closed the copy. It gives no reason, and lack of
     * memory or of room in its descriptor table are the likely ones, so
     * the failure is reported as -ENOMEM. */
    return lws_adopt_descriptor_vhost_via_info(&desc) != NULL ? 0 : -ENOMEM;
}

static int write_port_file(const char *path, int port, struct error *err)
{
    char text[16];
    int n = snprintf(text, sizeof(text), "%d\n", port);

    return fs_write_atomic(path, text, (size_t)n, 0644, err);
}

int server_run(struct backend *be, const struct server_options *opt,
               struct error *err)
{
    struct lws_context_creation_info info;
    struct lws_vhost *vhost;
    int port, rc = 0;

    memset(&info, 0, sizeof(info));
    info.port = opt->port;
    info.iface = opt->host;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_DISABLE_IPV6;
    info.pt_serv_buf_size = 64 * 1024;

    server_backend = be;
    server_stopping = 0;
    server_context = lws_create_context(&info);
    if (server_context == NULL)
        return error_set(err, -EIO, "cannot start the WebSocket server");

    vhost = lws_create_vhost(server_context, &info);
    if (vhost == NULL) {
        lws_context_destroy(server_context);
        server_context = NULL;
        return error_set(err, -EADDRINUSE,
                         "cannot listen on %s:%d; is another backend "
                         "running? Choose a free port with --listen",
                         opt->host, opt->port);
    }
    server_vhost = vhost;
    port = lws_get_vhost_listen_port(vhost);
    log_info("listening on %s:%d", opt->host, port);

    if (opt->unix_socket != NULL && opt->unix_socket[0] != '\0') {
        struct lws_context_creation_info uinfo = info;
        uinfo.options |= LWS_SERVER_OPTION_UNIX_SOCK;
        uinfo.iface = opt->unix_socket;
        uinfo.port = 0;
        uinfo.vhost_name = "unix";
        unlink(opt->unix_socket); /* a socket file left by a crash */
        if (lws_create_vhost(server_context, &uinfo) == NULL) {
            lws_context_destroy(server_context);
            server_context = NULL;
            return error_set(err, -EADDRINUSE,
                             "cannot listen on Unix socket '%s'; check that "
                             "its folder exists and is writable",
                             opt->unix_socket);
        }
        chmod(opt->unix_socket, 0600);
        log_info("listening on Unix socket %s", opt->unix_socket);
    }
    lws_sul_schedule(server_context, 0, &tick_sul, tick,
                     (lws_usec_t)SERVER_TICK_MS * 1000);
    if (opt->port_file != NULL)
        rc = write_port_file(opt->port_file, port, err);

    while (rc == 0 && !server_stopping)
        if (lws_service(server_context, 0) < 0)
            break;

    log_info("stopping");
    connections = NULL;
    lws_context_destroy(server_context);
    server_context = NULL;
    server_vhost = NULL;
    return rc;
}

void server_request_stop(void)
{
    server_stopping = 1;
    if (server_context != NULL)
        lws_cancel_service(server_context);
}
