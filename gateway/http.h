/* The gateway's HTTP side: civetweb, static UI files and the REST API. */
#ifndef TRAINYARD_HTTP_H
#define TRAINYARD_HTTP_H

#include "error.h"

struct http_options {
    const char *host;      /* address to listen on */
    int port;              /* 0 picks a free port */
    const char *ui_dir;    /* built UI files, served at / */
    const char *port_file; /* where to write the chosen port, or NULL */
    const char *access_log; /* access log file, or NULL for none */
};

int http_start(const struct http_options *opt, struct error *err);
void http_stop(void);

#endif
