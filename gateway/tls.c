/*
 * TLS for the gateway; see tls.h. The gateway serves TLS from civetweb
 * itself and calls OpenSSL 3 directly only to check and load the
 * certificate and key. The compatibility libraries are loaded here
 * because civetweb 1.15 finds OpenSSL by dlopen("libssl.so") and
 * dlopen("libcrypto.so"), which then return these already loaded
 * libraries (gateway/tls_compat.c explains why that works).
 */
#include "tls.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static char tls_cert_path[PATH_MAX];
static char tls_key_path[PATH_MAX];
/* Written by the main thread while civetweb's workers may read it. */
static _Atomic int tls_https_port;

/* Failed handshakes reported by civetweb since the last log line, and
 * when that line was written. */
static struct {
    pthread_mutex_t lock;
    int64_t last_ms;
    long suppressed;
} handshake_log = {PTHREAD_MUTEX_INITIALIZER, 0, 0};

/* Copy OpenSSL's oldest queued error into out and clear the queue. */
static const char *openssl_reason(char *out, size_t len)
{
    unsigned long code = ERR_peek_error();

    if (code == 0)
        snprintf(out, len, "no reason given");
    else
        ERR_error_string_n(code, out, len);
    ERR_clear_error();
    return out;
}

/* Passphrase callback that supplies none, so that an encrypted key fails
 * to load with an error where OpenSSL would prompt on the terminal. The
 * gateway has no way to ask for a passphrase when it starts. */
static int no_passphrase(char *buf, int size, int rwflag, void *user)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)user;
    return 0;
}

static int check_readable(const char *path, const char *what,
                          const char *flag, struct error *err)
{
    FILE *f = fopen(path, "r");

    if (f == NULL && errno == ENOENT)
        return error_set(err, -ENOENT,
                         "TLS %s file '%s' not found; pass an existing PEM "
                         "file with %s",
                         what, path, flag);
    if (f == NULL)
        return error_errno(err, errno, "cannot read TLS %s file '%s'", what,
                           path);
    fclose(f);
    return 0;
}

/* Read the first private key in path. Returns it, or NULL with OpenSSL's
 * error queued when the file has no unencrypted PEM private key. */
static EVP_PKEY *read_private_key(const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    EVP_PKEY *key;

    if (bio == NULL)
        return NULL;
    key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    return key;
}

/* Load the certificate chain and key into ctx and check that they match.
 * Returns 0 or -EINVAL with a message that names the file. */
static int load_cert_and_key(SSL_CTX *ctx, const char *cert,
                             const char *key, struct error *err)
{
    char reason[256];
    EVP_PKEY *pkey;
    int rc = 0;

    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        return error_set(err, -EINVAL,
                         "TLS certificate file '%s' is not a valid PEM "
                         "certificate: %s; pass a PEM certificate, followed "
                         "by its intermediate certificates if any, with "
                         "--tls-cert",
                         cert, openssl_reason(reason, sizeof(reason)));
    pkey = read_private_key(key);
    if (pkey == NULL)
        return error_set(err, -EINVAL,
                         "TLS key file '%s' is not a valid PEM private key: "
                         "%s; pass the certificate's key, without a "
                         "passphrase, with --tls-key",
                         key, openssl_reason(reason, sizeof(reason)));
    if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), pkey) != 1)
        rc = error_set(err, -EINVAL,
                       "TLS key file '%s' does not match the certificate in "
                       "'%s'; pass the key that belongs to this certificate",
                       key, cert);
    else if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1)
        rc = error_set(err, -EINVAL, "cannot use the TLS key in '%s': %s",
                       key, openssl_reason(reason, sizeof(reason)));
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return rc;
}

/* Warn about a certificate that browsers reject for its dates, which the
 * gateway still serves so that an operator can replace it. */
static void warn_certificate_dates(SSL_CTX *ctx, const char *cert)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);

    if (x == NULL)
        return;
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        log_warn("TLS certificate '%s' has expired; clients will reject it",
                 cert);
    else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        log_warn("TLS certificate '%s' is not valid yet; clients will "
                 "reject it",
                 cert);
}

/* dlopen() both compatibility libraries from TLS_COMPAT_DIR. The handles
 * stay open for the life of the process. */
static int load_compat_libraries(struct error *err)
{
    static const char *const names[] = {TLS_COMPAT_CRYPTO, TLS_COMPAT_SSL};
    char exe[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *slash;

    if (n <= 0)
        return error_errno(err, errno,
                           "cannot find the gateway program's folder through "
                           "/proc/self/exe");
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash == NULL)
        return error_set(err, -EIO, "unexpected program path '%s'", exe);
    *slash = '\0';

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s/%s", exe, TLS_COMPAT_DIR,
                 names[i]);
        /* dlerror's message starts with the path. */
        if (dlopen(path, RTLD_NOW | RTLD_LOCAL) == NULL)
            return error_set(err, -ENOENT,
                             "cannot load a TLS compatibility library: %s; "
                             "build it with make, which puts it in "
                             "lib/trainyard/ beside the gateway's bin folder",
                             dlerror());
    }
    return 0;
}

int tls_prepare(const char *cert_file, const char *key_file,
                struct error *err)
{
    SSL_CTX *ctx;
    int rc;

    if (strlen(cert_file) >= sizeof(tls_cert_path) ||
        strlen(key_file) >= sizeof(tls_key_path))
        return error_set(err, -ENAMETOOLONG,
                         "TLS certificate or key path is longer than %d "
                         "bytes",
                         PATH_MAX - 1);
    rc = check_readable(cert_file, "certificate", "--tls-cert", err);
    if (rc == 0)
        rc = check_readable(key_file, "key", "--tls-key", err);
    if (rc != 0)
        return rc;

    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return error_set(err, -ENOMEM, "cannot create an OpenSSL context");
    rc = load_cert_and_key(ctx, cert_file, key_file, err);
    if (rc == 0)
        warn_certificate_dates(ctx, cert_file);
    SSL_CTX_free(ctx);
    if (rc != 0)
        return rc;

    snprintf(tls_cert_path, sizeof(tls_cert_path), "%s", cert_file);
    snprintf(tls_key_path, sizeof(tls_key_path), "%s", key_file);
    return load_compat_libraries(err);
}

int tls_init_ssl(void *ssl_ctx, void *user_data)
{
    SSL_CTX *ctx = ssl_ctx;
    struct error err = {0};

    (void)user_data;
    /* civetweb has already applied ssl_protocol_version. Setting the
     * minimum here as well keeps it if that option changes meaning. */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        log_error("cannot set TLS 1.2 as the minimum TLS version");
        return -1;
    }
    if (load_cert_and_key(ctx, tls_cert_path, tls_key_path, &err) != 0) {
        log_error("%s", err.msg);
        return -1;
    }
    return 1;
}

int tls_log_civetweb_message(const char *message)
{
    static const char prefix[] = "sslize error";
    int64_t now = clock_monotonic_ms();
    long suppressed = -1;

    if (strncmp(message, prefix, sizeof(prefix) - 1) != 0)
        return 0;
    pthread_mutex_lock(&handshake_log.lock);
    if (handshake_log.last_ms == 0 ||
        now - handshake_log.last_ms >= TLS_HANDSHAKE_LOG_INTERVAL_MS) {
        suppressed = handshake_log.suppressed;
        handshake_log.suppressed = 0;
        handshake_log.last_ms = now;
    } else {
        handshake_log.suppressed++;
    }
    pthread_mutex_unlock(&handshake_log.lock);

    if (suppressed > 0)
        log_warn("TLS handshake failed (%s), and %ld more since the last "
                 "such line",
                 message, suppressed);
    else if (suppressed == 0)
        log_warn("TLS handshake failed (%s)", message);
    return 1;
}

void tls_set_https_port(int port)
{
    tls_https_port = port;
}

/* 1 for the characters that a host name, an IPv4 address or a bracketed
 * IPv6 address may contain. */
static int is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':' ||
           c == '[' || c == ']';
}

/* Copy the host of a Host header value, without its port, into out.
 * Returns 0, or -1 when the value is empty, too long or has a character
 * that no host name has. */
static int host_without_port(const char *value, char *out, size_t len)
{
    size_t n = strlen(value);
    const char *end;

    if (n == 0 || n >= len)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!is_host_char(value[i]))
            return -1;
    if (value[0] == '[') {
        end = strchr(value, ']');
        if (end == NULL)
            return -1;
        end++;
    } else {
        end = strchr(value, ':');
        if (end == NULL)
            end = value + n;
    }
    if (end == value)
        return -1;
    memcpy(out, value, (size_t)(end - value));
    out[end - value] = '\0';
    return 0;
}

/* Append text to out at *pos, percent-encoding every byte outside the
 * unreserved and sub-delimiter characters of RFC 3986, '/', ':' and '@'.
 * keep_percent leaves '%' as it is, for text that civetweb did not
 * decode. Returns -1 when out is full. */
static int append_encoded(char *out, size_t len, size_t *pos, const char *text,
                          int keep_percent)
{
    static const char safe[] = "-._~!$&'()*+,;=/:@";
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr(safe, *p) != NULL ||
                    (keep_percent && *p == '%');
        if (*pos + (plain ? 1 : 3) >= len)
            return -1;
        if (plain) {
            out[(*pos)++] = (char)*p;
        } else {
            out[(*pos)++] = '%';
            out[(*pos)++] = hex[*p >> 4];
            out[(*pos)++] = hex[*p & 15];
        }
    }
    out[*pos] = '\0';
    return 0;
}

/* Write https://HOST:PORT/PATH?QUERY of the request into out. Returns 0,
 * or -1 when it does not fit. */
static int build_location(const struct mg_request_info *ri, const char *host,
                          char *out, size_t len)
{
    int n = snprintf(out, len, "https://%s:%d", host, tls_https_port);
    size_t pos;

    if (n < 0 || (size_t)n >= len)
        return -1;
    pos = (size_t)n;
    if (append_encoded(out, len, &pos, ri->local_uri ? ri->local_uri : "/",
                       0) != 0)
        return -1;
    if (ri->query_string == NULL)
        return 0;
    if (pos + 1 >= len)
        return -1;
    out[pos++] = '?';
    out[pos] = '\0';
    /* '?' is also plain in a query (RFC 3986, section 3.4). */
    for (const char *q = ri->query_string; *q; q++) {
        char one[2] = {*q, '\0'};
        if (*q == '?') {
            if (pos + 1 >= len)
                return -1;
            out[pos++] = '?';
            out[pos] = '\0';
        } else if (append_encoded(out, len, &pos, one, 1) != 0) {
            return -1;
        }
    }
    return 0;
}

int tls_redirect_request(struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *host_header = mg_get_header(conn, "Host");
    char host[256], location[2048];

    if (ri->is_ssl)
        return 0;
    if (host_header == NULL ||
        host_without_port(host_header, host, sizeof(host)) != 0) {
        static const char body[] =
            "missing or invalid Host header; use https:// instead\n";
        mg_printf(conn,
                  "HTTP/1.1 400 Bad Request\r\n"
                  "Content-Type: text/plain\r\n"
                  "Content-Length: %zu\r\n"
                  "Connection: close\r\n\r\n%s",
                  sizeof(body) - 1, body);
        log_info("plain HTTP request from %s has a missing or invalid Host "
                 "header",
                 ri->remote_addr);
        return 400;
    }
    if (build_location(ri, host, location, sizeof(location)) != 0) {
        mg_printf(conn, "HTTP/1.1 414 URI Too Long\r\n"
                        "Content-Length: 0\r\n"
                        "Connection: close\r\n\r\n");
        return 414;
    }
    mg_printf(conn,
              "HTTP/1.1 308 Permanent Redirect\r\n"
              "Location: %s\r\n"
              "Content-Length: 0\r\n"
              "Connection: close\r\n\r\n",
              location);
    return 308;
}
