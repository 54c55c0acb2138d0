/* Test helpers for running the real programs; see harness.h. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void harness_tmpdir(char *out, size_t len)
{
    const char *base = getenv("TMPDIR");

    snprintf(out, len, "%s/trainyard-test-XXXXXX",
             base && base[0] ? base : "/tmp");
    if (mkdtemp(out) == NULL) {
        perror("mkdtemp");
        abort();
    }
}

void harness_rmtree(const char *path)
{
    pid_t pid = fork();

    if (pid == 0) {
        execlp("rm", "rm", "-rf", "--", path, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

void harness_program(const char *name, char *out, size_t len)
{
    const char *dir = getenv("TRAINYARD_BIN");

    snprintf(out, len, "%s/%s", dir && dir[0] ? dir : "build/asan/bin",
             name);
}

pid_t harness_spawn(char *const argv[], const char *log_path)
{
    pid_t pid = fork();

    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int harness_wait_port(const char *path, pid_t pid, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;

    while (now_ms() < deadline) {
        FILE *f = fopen(path, "r");
        int port = 0;
        if (f != NULL) {
            int n = fscanf(f, "%d", &port);
            fclose(f);
            if (n == 1 && port > 0)
                return port;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        usleep(20 * 1000);
    }
    return -1;
}

int harness_stop(pid_t pid, int sig, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    int status;

    kill(pid, sig);
    while (now_ms() < deadline) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0)
            return -1;
        usleep(10 * 1000);
    }
    kill(pid, SIGKILL);
    if (waitpid(pid, &status, 0) == pid)
        return status;
    return -1;
}

static int send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int harness_http(int port, const char *method, const char *target,
                 const char *extra_headers, const char *body,
                 struct http_reply *reply)
{
    struct sockaddr_in addr;
    struct timeval tv = {30, 0};
    size_t body_len = body ? strlen(body) : 0;
    char head[4096];
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int fd;

    memset(reply, 0, sizeof(*reply));
    fd = socket(AF_INET, SOCK_STREAM, 0);
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

    snprintf(head, sizeof(head),
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
             "Content-Length: %zu\r\n%s\r\n",
             method, target, port, body_len,
             extra_headers ? extra_headers : "");
    if (send_all(fd, head, strlen(head)) != 0 ||
        send_all(fd, body ? body : "", body_len) != 0) {
        close(fd);
        return -1;
    }

    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 16384;
            buf = realloc(buf, cap + 1);
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (buf == NULL)
        return -1;
    buf[len] = '\0';

    char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL || sscanf(buf, "HTTP/1.%*d %d", &reply->status) != 1) {
        free(buf);
        return -1;
    }
    size_t hlen = (size_t)(end - buf) + 2;
    if (hlen >= sizeof(reply->headers))
        hlen = sizeof(reply->headers) - 1;
    memcpy(reply->headers, buf, hlen);
    reply->headers[hlen] = '\0';
    reply->body_len = len - (size_t)(end + 4 - buf);
    reply->body = malloc(reply->body_len + 1);
    memcpy(reply->body, end + 4, reply->body_len);
    reply->body[reply->body_len] = '\0';
    free(buf);
    return 0;
}

void harness_http_free(struct http_reply *reply)
{
    free(reply->body);
    reply->body = NULL;
}

int harness_header(const struct http_reply *reply, const char *name,
                   char *out, size_t len)
{
    size_t nlen = strlen(name);

    for (const char *line = strstr(reply->headers, "\r\n"); line != NULL;
         line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t vlen = e ? (size_t)(e - v) : strlen(v);
            if (vlen >= len)
                vlen = len - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return 0;
        }
    }
    return -1;
}

int harness_file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    int found = 0;

    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}
