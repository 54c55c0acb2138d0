/* The TLS test client; see tlsclient.h. */
#include "tlsclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* The GUID that RFC 6455 appends to Sec-WebSocket-Key. */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static char trusted_ca[4096];

/* ---- certificates ----------------------------------------------------- */

static int add_ip_alt_name(X509 *x)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name,
                              "IP:127.0.0.1");
    if (ext == NULL)
        return -1;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

static int write_pem(const char *path, mode_t mode, X509 *x, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    int ok;

    if (f == NULL)
        return -1;
    fchmod(fileno(f), mode);
    if (x != NULL)
        ok = PEM_write_X509(f, x);
    else
        ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    return fclose(f) == 0 && ok == 1 ? 0 : -1;
}

int tls_write_self_signed(const char *cert_path, const char *key_path)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name;
    uint32_t serial;
    int rc = -1;

    if (key == NULL || x == NULL ||
        RAND_bytes((unsigned char *)&serial, sizeof(serial)) != 1)
        goto done;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(serial >> 1));
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
    X509_set_pubkey(x, key);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)"127.0.0.1", -1, -1, 0);
    X509_set_issuer_name(x, name);
    if (add_ip_alt_name(x) != 0 || X509_sign(x, key, EVP_sha256()) == 0)
        goto done;
    if (write_pem(key_path, 0600, NULL, key) == 0 &&
        write_pem(cert_path, 0644, x, NULL) == 0)
        rc = 0;
done:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* ---- connections ------------------------------------------------------ */

void tlsclient_trust(const char *ca_file)
{
    snprintf(trusted_ca, sizeof(trusted_ca), "%s", ca_file);
}

static void copy_reason(char *out, size_t len, const char *fallback)
{
    unsigned long code = ERR_get_error();

    if (out == NULL || len == 0)
        return;
    if (code != 0)
        ERR_error_string_n(code, out, len);
    else
        snprintf(out, len, "%s", fallback);
    ERR_clear_error();
}

static int connect_loopback(int port)
{
    struct sockaddr_in addr;
    struct timeval tv = {10, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int tlsclient_connect(struct tlsclient *c, int port, int max_version,
                      char *reason, size_t reason_len)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        goto fail;
    if (max_version != 0) {
        /* Security level 0 lets this client offer versions that OpenSSL
         * 3 disables by default, so that the server is what rejects
         * them. */
        SSL_CTX_set_security_level(c->ctx, 0);
        SSL_CTX_set_min_proto_version(c->ctx, 0);
        SSL_CTX_set_max_proto_version(c->ctx, max_version);
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(c->ctx, trusted_ca, NULL) != 1)
        goto fail;
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL ||
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), "127.0.0.1") !=
            1)
        goto fail;
    c->fd = connect_loopback(port);
    if (c->fd < 0) {
        copy_reason(reason, reason_len, "cannot connect");
        tlsclient_close(c);
        return -1;
    }
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1)
        goto fail;
    return 0;
fail:
    copy_reason(reason, reason_len, "handshake failed");
    tlsclient_close(c);
    return -1;
}

void tlsclient_close(struct tlsclient *c)
{
    if (c->ssl != NULL && SSL_is_init_finished(c->ssl))
        SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static int write_all(struct tlsclient *c, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    return SSL_write(c->ssl, data, (int)len) == (int)len ? 0 : -1;
}

/* Read exactly len bytes. Returns 0, or -1 at the end of the stream, on
 * an error or after the read timeout. */
static int read_exact(struct tlsclient *c, void *out, size_t len)
{
    unsigned char *p = out;

    while (len > 0) {
        int n = SSL_read(c->ssl, p, (int)len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- HTTPS ------------------------------------------------------------ */

/* Split buf (len bytes, NUL-terminated) into reply. Returns 0 or -1. */
static int parse_reply(const char *buf, size_t len, struct http_reply *reply)
{
    const char *end = strstr(buf, "\r\n\r\n");
    size_t hlen;

    if (end == NULL || sscanf(buf, "HTTP/1.%*d %d", &reply->status) != 1)
        return -1;
    hlen = (size_t)(end - buf) + 2;
    if (hlen >= sizeof(reply->headers))
        hlen = sizeof(reply->headers) - 1;
    memcpy(reply->headers, buf, hlen);
    reply->headers[hlen] = '\0';
    reply->body_len = len - (size_t)(end + 4 - buf);
    reply->body = malloc(reply->body_len + 1);
    if (reply->body == NULL)
        return -1;
    memcpy(reply->body, end + 4, reply->body_len);
    reply->body[reply->body_len] = '\0';
    return 0;
}

int tls_http(int port, const char *method, const char *target,
             const char *extra_headers, const char *body,
             struct http_reply *reply)
{
    struct tlsclient c;
    size_t body_len = body ? strlen(body) : 0;
    char head[4096];
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;

    memset(reply, 0, sizeof(*reply));
    if (tlsclient_connect(&c, port, 0, NULL, 0) != 0)
        return -1;
    snprintf(head, sizeof(head),
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
             "Content-Length: %zu\r\n%s\r\n",
             method, target, port, body_len,
             extra_headers ? extra_headers : "");
    if (write_all(&c, head, strlen(head)) != 0 ||
        write_all(&c, body ? body : "", body_len) != 0) {
        tlsclient_close(&c);
        return -1;
    }
    /* The response ends where the server closes the connection. */
    for (;;) {
        if (cap - len < 4096) {
            char *bigger = realloc(buf, (cap ? cap * 2 : 16384) + 1);
            if (bigger == NULL)
                break;
            buf = bigger;
            cap = cap ? cap * 2 : 16384;
        }
        int n = SSL_read(c.ssl, buf + len, (int)(cap - len));
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    ERR_clear_error();
    tlsclient_close(&c);
    if (buf == NULL)
        return -1;
    buf[len] = '\0';
    rc = parse_reply(buf, len, reply);
    free(buf);
    return rc;
}

/* ---- WebSocket -------------------------------------------------------- */

/* Write base64 (RFC 4648, with padding) of len bytes into out. */
static void base64(const unsigned char *data, int len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, data, len);
}

int tlsclient_ws_upgrade(struct tlsclient *c, int port, const char *path,
                         const char *extra_headers)
{
    unsigned char nonce[16], digest[SHA_DIGEST_LENGTH];
    char key[32], expected[64], joined[128], head[4096], got[128];
    struct http_reply reply;
    size_t len = 0;
    int status;

    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return -1;
    base64(nonce, sizeof(nonce), key);
    snprintf(joined, sizeof(joined), "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)joined, strlen(joined), digest);
    base64(digest, sizeof(digest), expected);

    snprintf(head, sizeof(head),
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
             "Sec-WebSocket-Version: 13\r\n%s\r\n",
             path, port, key, extra_headers ? extra_headers : "");
    if (write_all(c, head, strlen(head)) != 0)
        return -1;

    /* Read the response head one byte at a time, so that no frame byte
     * after it is consumed. */
    while (len < sizeof(head) - 1) {
        if (read_exact(c, head + len, 1) != 0)
            return -1;
        len++;
        head[len] = '\0';
        if (len >= 4 && memcmp(head + len - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    memset(&reply, 0, sizeof(reply));
    if (parse_reply(head, len, &reply) != 0)
        return -1;
    status = reply.status;
    if (status == 101 &&
        (harness_header(&reply, "Sec-WebSocket-Accept", got, sizeof(got)) !=
             0 ||
         strcmp(got, expected) != 0))
        status = -1;
    harness_http_free(&reply);
    return status;
}

int tlsclient_ws_send_text(struct tlsclient *c, const char *text)
{
    size_t len = strlen(text), head_len = 2;
    unsigned char head[8], mask[4];
    unsigned char *frame;
    int rc;

    if (len > 65535 || RAND_bytes(mask, sizeof(mask)) != 1)
        return -1;
    head[0] = 0x80 | 0x1; /* FIN, text */
    if (len < 126) {
        head[1] = 0x80 | (unsigned char)len;
    } else {
        head[1] = 0x80 | 126;
        head[2] = (unsigned char)(len >> 8);
        head[3] = (unsigned char)len;
        head_len = 4;
    }
    frame = malloc(head_len + 4 + len);
    if (frame == NULL)
        return -1;
    memcpy(frame, head, head_len);
    memcpy(frame + head_len, mask, 4);
    for (size_t i = 0; i < len; i++)
        frame[head_len + 4 + i] = (unsigned char)text[i] ^ mask[i % 4];
    rc = write_all(c, frame, head_len + 4 + len);
    free(frame);
    return rc;
}

char *tlsclient_ws_read_text(struct tlsclient *c)
{
    for (;;) {
        unsigned char head[2], ext[8];
        uint64_t len;
        char *data;

        if (read_exact(c, head, 2) != 0)
            return NULL;
        len = head[1] & 0x7f;
        /* Frames from a server are never masked (RFC 6455, 5.1). */
        if ((head[1] & 0x80) != 0)
            return NULL;
        if (len == 126) {
            if (read_exact(c, ext, 2) != 0)
                return NULL;
            len = ((uint64_t)ext[0] << 8) | ext[1];
        } else if (len == 127) {
            if (read_exact(c, ext, 8) != 0)
                return NULL;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | ext[i];
        }
        if (len > 1 << 20)
            return NULL;
        data = malloc((size_t)len + 1);
        if (data == NULL || read_exact(c, data, (size_t)len) != 0) {
            free(data);
            return NULL;
        }
        data[len] = '\0';
        int opcode = head[0] & 0x0f, fin = (head[0] & 0x80) != 0;
        if (opcode == 0x1 && fin)
            return data;
        free(data);
        if (opcode != 0x9 && opcode != 0xa)
            return NULL;
    }
}
