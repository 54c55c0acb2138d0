#include "secret.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"

int secret_load(const char *path, char out[SECRET_HEX_LEN + 1],
                struct error *err)
{
    struct stat st;
    char *data = NULL;
    size_t len = 0;
    int rc;

    if (stat(path, &st) != 0)
        return error_errno(err, errno, "cannot read the shared secret '%s'",
                           path);
    if ((st.st_mode & 077) != 0)
        return error_set(err, -EPERM,
                         "shared secret '%s' has mode %03o; it must be "
                         "readable by its owner only: run chmod 600 '%s'",
                         path, (unsigned)(st.st_mode & 0777), path);

    rc = fs_read_file(path, 4096, &data, &len, err);
    if (rc != 0)
        return rc;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    if (len != SECRET_HEX_LEN || strspn(data, "0123456789abcdef") < len) {
        free(data);
        return error_set(err, -EINVAL,
                         "shared secret '%s' is not %d hex digits; delete it "
                         "and restart the backend to create a new one",
                         path, SECRET_HEX_LEN);
    }
    memcpy(out, data, SECRET_HEX_LEN);
    out[SECRET_HEX_LEN] = '\0';
    free(data);
    return 0;
}

int secret_load_or_create(const char *path, char out[SECRET_HEX_LEN + 1],
                          struct error *err)
{
    unsigned char raw[SECRET_HEX_LEN / 2];
    char text[SECRET_HEX_LEN + 2];
    struct stat st;
    int rc;

    if (stat(path, &st) == 0)
        return secret_load(path, out, err);
    if (errno != ENOENT)
        return error_errno(err, errno, "cannot read the shared secret '%s'",
                           path);

    if (sodium_init() < 0)
        return error_set(err, -EIO, "libsodium failed to initialize");
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(text, sizeof(text), raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    text[SECRET_HEX_LEN] = '\n';

    rc = fs_write_atomic(path, text, SECRET_HEX_LEN + 1, 0600, err);
    if (rc == 0) {
        memcpy(out, text, SECRET_HEX_LEN);
        out[SECRET_HEX_LEN] = '\0';
    }
    sodium_memzero(text, sizeof(text));
    return rc;
}

int secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la != lb)
        return 0;
    return sodium_memcmp(a, b, la) == 0;
}
