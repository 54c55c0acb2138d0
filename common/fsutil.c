#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

int fs_mkdir_p(const char *path, mode_t mode, struct error *err)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf))
        return error_set(err, -ENAMETOOLONG, "invalid folder path '%s'",
                         path);
    memcpy(buf, path, len + 1);

    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return error_errno(err, errno, "cannot create folder '%s'", buf);
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return error_errno(err, errno, "cannot create folder '%s'", buf);
    return 0;
}

int fs_read_file(const char *path, size_t max_len, char **data, size_t *len,
                 struct error *err)
{
    struct stat st;
    char *buf;
    size_t got = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_errno(err, errno, "cannot open '%s'", path);
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return error_errno(err, e, "cannot stat '%s'", path);
    }
    if ((size_t)st.st_size > max_len) {
        close(fd);
        return error_set(err, -EFBIG,
                         "'%s' is %lld bytes, more than the limit of %zu",
                         path, (long long)st.st_size, max_len);
    }

    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return error_set(err, -ENOMEM, "out of memory reading '%s'", path);
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return error_errno(err, e, "cannot read '%s'", path);
        }
        if (n == 0)
            break; /* the file shrank while we read it */
        got += (size_t)n;
    }
    close(fd);

    buf[got] = '\0';
    *data = buf;
    if (len != NULL)
        *len = got;
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fs_sync_parent(const char *path, struct error *err)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int fd;

    if (slash == NULL) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir))
            return error_set(err, -ENAMETOOLONG, "path too long: '%s'", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return error_errno(err, errno, "cannot open folder '%s'", dir);
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return error_errno(err, e, "cannot fsync folder '%s'", dir);
    }
    close(fd);
    return 0;
}

int fs_write_atomic(const char *path, const void *data, size_t len,
                    mode_t mode, struct error *err)
{
    char tmp[PATH_MAX];
    int fd, rc;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >=
        (int)sizeof(tmp))
        return error_set(err, -ENAMETOOLONG, "path too long: '%s'", path);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return error_errno(err, errno, "cannot create '%s'", tmp);

    rc = write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc != 0) {
        unlink(tmp);
        return error_errno(err, -rc, "cannot write '%s'", tmp);
    }

    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return error_errno(err, e, "cannot rename '%s' to '%s'", tmp, path);
    }
    return fs_sync_parent(path, err);
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : errno;
}

int fs_remove_tree(const char *path)
{
    int rc = nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS);

    return rc == -1 ? errno : rc;
}

void fs_remove_stale_partials(const char *parent, const char *base,
                              const char *who)
{
    char prefix[NAME_MAX + 16];
    size_t prefix_len;
    struct dirent *entry;
    DIR *dir = opendir(parent);

    if (dir == NULL)
        return;
    prefix_len = (size_t)snprintf(prefix, sizeof(prefix), "%s.partial-",
                                  base);
    while ((entry = readdir(dir)) != NULL) {
        char path[PATH_MAX];
        char *end;
        long pid;
        int rc;

        if (strncmp(entry->d_name, prefix, prefix_len) != 0)
            continue;
        pid = strtol(entry->d_name + prefix_len, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* that writer may still run */
        if (snprintf(path, sizeof(path), "%s/%s", parent, entry->d_name) >=
            (int)sizeof(path))
            continue;
        log_warn("%s: removing '%s' left by an interrupted run (pid %ld)",
                 who, path, pid);
        rc = fs_remove_tree(path);
        if (rc != 0)
            log_warn("%s: cannot remove '%s': %s", who, path, strerror(rc));
    }
    closedir(dir);
}
