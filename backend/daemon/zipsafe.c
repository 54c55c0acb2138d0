/*
 * Safe zip extraction (see zipsafe.h). Extraction runs in two passes.
 * The first pass reads only the central directory. It rejects the
 * archive when it has more entries than the limit, or when any entry
 * has an unsafe name (zipsafe_check_name) or is encrypted. It also
 * rejects symbolic links and other non-regular files, which it finds by
 * the Unix mode in the external attributes of archives made on Unix.
 * The second pass writes the files.
 *
 * Writing never follows a link: each folder is made with mkdirat and
 * opened with O_NOFOLLOW | O_DIRECTORY relative to its parent, and each
 * file is created with O_CREAT | O_EXCL | O_NOFOLLOW, so a duplicate
 * entry name is rejected too. The size limit counts the bytes actually
 * written, not the sizes the headers claim, so an archive that lies
 * about its sizes stops at the limit.
 */
#include "zipsafe.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "log.h"

#define COPY_BUFFER 65536
/* Maximum length of an entry name, in bytes. */
#define NAME_MAX_BYTES 1024
/* Maximum length of one component of a name: Linux's NAME_MAX, the
 * longest file or folder name that ext4, XFS and tmpfs accept. */
#define COMPONENT_MAX_BYTES 255

void zipsafe_limits_load(struct zipsafe_limits *limits)
{
    const char *text = getenv(ZIPSAFE_TEST_LIMITS_ENV);
    char copy[256], *item, *save = NULL;

    limits->max_uncompressed = ZIPSAFE_MAX_UNCOMPRESSED_DEFAULT;
    limits->max_files = ZIPSAFE_MAX_FILES_DEFAULT;
    if (text == NULL || text[0] == '\0')
        return;
    snprintf(copy, sizeof(copy), "%s", text);
    for (item = strtok_r(copy, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '='), *end;
        unsigned long long value;

        if (eq == NULL) {
            log_warn("%s: ignored '%s'; write key=value",
                     ZIPSAFE_TEST_LIMITS_ENV, item);
            continue;
        }
        *eq = '\0';
        errno = 0;
        value = strtoull(eq + 1, &end, 10);
        /* strtoull accepts "-1" as a huge value, so require a digit. */
        if (eq[1] < '0' || eq[1] > '9' || errno != 0 || *end != '\0' ||
            value == 0) {
            log_warn("%s: ignored %s='%s'; use a whole number > 0",
                     ZIPSAFE_TEST_LIMITS_ENV, item, eq + 1);
        } else if (strcmp(item, "max_uncompressed") == 0) {
            limits->max_uncompressed = value;
        } else if (strcmp(item, "max_files") == 0) {
            limits->max_files = value;
        } else {
            log_warn("%s: ignored unknown key '%s'; use max_uncompressed "
                     "or max_files",
                     ZIPSAFE_TEST_LIMITS_ENV, item);
        }
    }
    log_warn("upload limits lowered for tests by %s: max_uncompressed=%llu "
             "max_files=%llu",
             ZIPSAFE_TEST_LIMITS_ENV,
             (unsigned long long)limits->max_uncompressed,
             (unsigned long long)limits->max_files);
}

int zipsafe_check_name(const char *name, struct error *err)
{
    size_t len = strlen(name);
    const char *component = name;

    if (len == 0)
        return error_set(err, -EINVAL, "archive entry has an empty name");
    if (len > NAME_MAX_BYTES)
        return error_set(err, -EINVAL,
                         "archive entry '%.80s...' has a name longer than "
                         "%d bytes",
                         name, NAME_MAX_BYTES);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c < 0x20 || c == 0x7f)
            return error_set(err, -EINVAL,
                             "archive entry '%.200s' has a control "
                             "character (byte 0x%02x at %zu)",
                             name, c, i);
        if (c == '\\')
            return error_set(err, -EINVAL,
                             "archive entry '%.200s' has a backslash; zip "
                             "paths use '/'",
                             name);
    }
    if (name[0] == '/')
        return error_set(err, -EINVAL,
                         "archive entry '%.200s' is an absolute path", name);
    if (len >= 2 && name[1] == ':')
        return error_set(err, -EINVAL,
                         "archive entry '%.200s' starts with a drive letter",
                         name);

    /* Walk the components; a trailing '/' marks a folder entry. */
    while (*component != '\0') {
        const char *slash = strchr(component, '/');
        size_t n = slash ? (size_t)(slash - component) : strlen(component);

        if (n == 0)
            return error_set(err, -EINVAL,
                             "archive entry '%.200s' has an empty path "
                             "component ('//')",
                             name);
        if (n > COMPONENT_MAX_BYTES)
            return error_set(err, -EINVAL,
                             "archive entry '%.200s' has a file or folder "
                             "name of %zu bytes; the limit is %d",
                             name, n, COMPONENT_MAX_BYTES);
        if ((n == 1 && component[0] == '.') ||
            (n == 2 && component[0] == '.' && component[1] == '.'))
            return error_set(err, -EINVAL,
                             "archive entry '%.200s' has a '%.*s' path "
                             "component",
                             name, (int)n, component);
        if (slash == NULL)
            break;
        component = slash + 1;
    }
    return 0;
}

int zipsafe_is_hidden(const char *name)
{
    const char *component = name;

    while (*component != '\0') {
        const char *slash = strchr(component, '/');
        size_t n = slash ? (size_t)(slash - component) : strlen(component);

        if (n > 0 && component[0] == '.')
            return 1;
        if (n == 8 && memcmp(component, "__MACOSX", 8) == 0)
            return 1;
        if (slash == NULL)
            break;
        component = slash + 1;
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path) == 0 ? 0 : -errno;
    return unlink(path) == 0 ? 0 : -errno;
}

int zipsafe_remove_tree(const char *path)
{
    struct stat st;

    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    return nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS);
}

static void report_add(cJSON *report, const char *path, const char *problem,
                       const char *action)
{
    cJSON *entry = cJSON_CreateObject();

    cJSON_AddStringToObject(entry, "path", path);
    cJSON_AddStringToObject(entry, "problem", problem);
    cJSON_AddStringToObject(entry, "action", action);
    cJSON_AddItemToArray(report, entry);
}

/* Reject entries that are encrypted, links or other non-regular files. */
static int check_entry_kind(zip_t *za, zip_uint64_t index, const char *name,
                            struct error *err)
{
    zip_uint8_t opsys = 0;
    zip_uint32_t attributes = 0;
    zip_stat_t st;

    zip_stat_init(&st);
    if (zip_stat_index(za, index, 0, &st) != 0)
        return error_set(err, -EINVAL,
                         "archive entry '%.200s' cannot be read: %s", name,
                         zip_strerror(za));
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) &&
        st.encryption_method != ZIP_EM_NONE)
        return error_set(err, -EINVAL,
                         "archive entry '%.200s' is encrypted; upload an "
                         "archive without a password",
                         name);
    if (zip_file_get_external_attributes(za, index, 0, &opsys,
                                         &attributes) != 0)
        return error_set(err, -EINVAL,
                         "archive entry '%.200s' has unreadable attributes",
                         name);
    if (opsys == ZIP_OPSYS_UNIX) {
        mode_t mode = (mode_t)(attributes >> 16);

        if (S_ISLNK(mode))
            return error_set(err, -EINVAL,
                             "archive entry '%.200s' is a symbolic link; "
                             "links are not accepted",
                             name);
        /* Mode 0 means the archiver stored no type. */
        if ((mode & S_IFMT) != 0 && !S_ISREG(mode) && !S_ISDIR(mode))
            return error_set(err, -EINVAL,
                             "archive entry '%.200s' is not a regular file "
                             "or folder (mode %06o)",
                             name, (unsigned)mode);
    }
    return 0;
}

/* Open (creating when missing) the folder chain of relative path under
 * root_fd, up to its last '/'. Returns the folder's descriptor, or a
 * negative errno. Never follows a symbolic link. */
static int open_parent(int root_fd, const char *path, const char **base)
{
    char component[NAME_MAX_BYTES + 1];
    const char *start = path;
    int fd = dup(root_fd);

    if (fd < 0)
        return -errno;
    for (;;) {
        const char *slash = strchr(start, '/');
        size_t n;
        int next;

        if (slash == NULL)
            break;
        n = (size_t)(slash - start);
        memcpy(component, start, n);
        component[n] = '\0';
        if (mkdirat(fd, component, 0700) != 0 && errno != EEXIST) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        next = openat(fd, component,
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        if (next < 0)
            return -errno;
        fd = next;
        start = slash + 1;
    }
    *base = start;
    return fd;
}

/* Copy one regular entry to path under root_fd; *written counts bytes. */
static int write_entry(zip_t *za, zip_uint64_t index, int root_fd,
                       const char *name, const char *path,
                       const struct zipsafe_limits *limits,
                       uint64_t *written, struct error *err)
{
    char buffer[COPY_BUFFER];
    const char *base = NULL;
    zip_file_t *zf;
    zip_int64_t n;
    int dir_fd, fd, rc = 0;

    dir_fd = open_parent(root_fd, path, &base);
    if (dir_fd == -ENOTDIR || dir_fd == -ELOOP)
        return error_set(err, -EINVAL,
                         "archive entry '%.200s' lies under a file of an "
                         "earlier entry",
                         name);
    if (dir_fd < 0)
        return error_errno(err, -dir_fd,
                           "cannot create the folder of archive entry "
                           "'%.200s'",
                           name);
    if (*base == '\0') { /* a folder entry: open_parent made it */
        close(dir_fd);
        return 0;
    }
    fd = openat(dir_fd, base,
                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    close(dir_fd);
    if (fd < 0) {
        if (errno == EEXIST)
            return error_set(err, -EINVAL,
                             "archive entry '%.200s' appears twice", name);
        return error_errno(err, errno, "cannot create archive entry "
                                       "'%.200s'", name);
    }
    zf = zip_fopen_index(za, index, 0);
    if (zf == NULL) {
        close(fd);
        return error_set(err, -EINVAL,
                         "archive entry '%.200s' cannot be opened: %s", name,
                         zip_strerror(za));
    }
    while ((n = zip_fread(zf, buffer, sizeof(buffer))) > 0) {
        if (*written + (uint64_t)n > limits->max_uncompressed) {
            rc = error_set(err, -EFBIG,
                           "archive entry '%.200s' takes the extracted size "
                           "past the limit of %llu bytes",
                           name,
                           (unsigned long long)limits->max_uncompressed);
            break;
        }
        if (write(fd, buffer, (size_t)n) != n) {
            rc = error_errno(err, errno, "cannot write archive entry "
                                         "'%.200s'", name);
            break;
        }
        *written += (uint64_t)n;
    }
    if (rc == 0 && n < 0)
        rc = error_set(err, -EINVAL,
                       "archive entry '%.200s' is damaged: %s", name,
                       zip_file_strerror(zf));
    zip_fclose(zf);
    if (close(fd) != 0 && rc == 0)
        rc = error_errno(err, errno, "cannot write archive entry '%.200s'",
                         name);
    return rc;
}

/* The top folder that every non-hidden entry shares, when it contains
 * train/; copied into top with its '/', else top is "". */
static void find_top_folder(zip_t *za, zip_int64_t count, char *top,
                            size_t len)
{
    int has_train = 0;

    top[0] = '\0';
    for (zip_int64_t i = 0; i < count; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
        const char *slash;

        if (name == NULL || zipsafe_is_hidden(name))
            continue;
        slash = strchr(name, '/');
        if (slash == NULL) {
            top[0] = '\0';
            return;
        }
        if (top[0] == '\0') {
            if ((size_t)(slash - name) + 2 > len)
                return;
            memcpy(top, name, (size_t)(slash - name) + 1);
            top[slash - name + 1] = '\0';
        } else if (strncmp(name, top, strlen(top)) != 0) {
            top[0] = '\0';
            return;
        }
        if (strncmp(name + strlen(top), "train/", 6) == 0)
            has_train = 1;
    }
    if (!has_train)
        top[0] = '\0';
}

/* The first pass: names, kinds and the entry count. */
static int check_archive(zip_t *za, zip_int64_t count,
                         const struct zipsafe_limits *limits,
                         struct error *err)
{
    if ((uint64_t)count > limits->max_files)
        return error_set(err, -EFBIG,
                         "the archive has %lld entries; the limit is %llu",
                         (long long)count,
                         (unsigned long long)limits->max_files);
    for (zip_int64_t i = 0; i < count; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
        int rc;

        if (name == NULL)
            return error_set(err, -EINVAL,
                             "archive entry %lld has no readable name: %s",
                             (long long)i, zip_strerror(za));
        rc = zipsafe_check_name(name, err);
        if (rc == 0)
            rc = check_entry_kind(za, (zip_uint64_t)i, name, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int zipsafe_extract(const char *zip_path, const char *dest,
                    const struct zipsafe_limits *limits, cJSON *report,
                    struct error *err)
{
    char top[NAME_MAX_BYTES + 2];
    uint64_t written = 0;
    zip_int64_t count;
    int zip_error = 0, root_fd, rc;
    zip_t *za;

    za = zip_open(zip_path, ZIP_RDONLY | ZIP_CHECKCONS, &zip_error);
    if (za == NULL && zip_error == ZIP_ER_EXISTS)
        return error_set(err, -EINVAL,
                         "the archive has two entries with the same name; "
                         "remove the duplicate");
    if (za == NULL) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zip_error);
        rc = error_set(err, -EINVAL, "the upload is not a valid zip "
                                     "archive: %s",
                       zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return rc;
    }
    count = zip_get_num_entries(za, 0);
    rc = check_archive(za, count, limits, err);
    if (rc != 0) {
        zip_discard(za);
        return rc;
    }
    find_top_folder(za, count, top, sizeof(top));

    if (mkdir(dest, 0700) != 0) {
        rc = error_errno(err, errno, "cannot create folder %s", dest);
        zip_discard(za);
        return rc;
    }
    root_fd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root_fd < 0) {
        rc = error_errno(err, errno, "cannot open folder %s", dest);
        zip_discard(za);
        return rc;
    }
    for (zip_int64_t i = 0; i < count && rc == 0; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
        const char *path = name + strlen(top);

        if (zipsafe_is_hidden(name)) {
            report_add(report, name, "hidden entry (such as __MACOSX/ or "
                                     ".DS_Store)",
                       "skipped");
            continue;
        }
        if (*path == '\0') /* the top folder's own entry */
            continue;
        rc = write_entry(za, (zip_uint64_t)i, root_fd, name, path, limits,
                         &written, err);
    }
    close(root_fd);
    zip_discard(za);
    return rc;
}
