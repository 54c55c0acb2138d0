/*
 * libFuzzer target for zipsafe_extract (backend/daemon/zipsafe.c), which
 * extracts the zip archives that users upload. The input is the archive
 * file. It is written to an anonymous in-memory file (memfd_create) and
 * extracted, with limits of 1 MiB and 64 entries, into a new folder
 * BOX/parent/out. BOX is a folder under $TMPDIR (default /tmp), made
 * once per process and removed at exit.
 *
 * Besides the sanitizers, the target checks what a caller relies on:
 *
 *   - the result is 0, -EINVAL (the archive breaks a rule) or -EFBIG
 *     (over a limit), because ops_uploads.c reports every other code to
 *     the user as an internal failure; the only other code accepted is
 *     -ENOSPC, from a full disk;
 *   - nothing is written outside the folder: BOX contains only parent/
 *     and parent/ only out/;
 *   - after a success, the folder contains only regular files and folders,
 *     their bytes are within the limit, and every entry of the archive
 *     that is not hidden and not a folder is there as a regular file,
 *     under its name less the stripped top folder;
 *   - zipsafe_remove_tree removes the folder, whatever the result.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <cjson/cJSON.h>

#include "daemon/zipsafe.h"
#include "fuzz_files.h"

#define INPUT_MAX (1u << 20)
#define LIMIT_BYTES (1u << 20)
#define LIMIT_FILES 64

static const char *input_path;
static char box[4096], parent[4200], out[4300];

static void set_up(void)
{
    fuzz_temp_folder("fuzz_zip", box, sizeof(box));
    snprintf(parent, sizeof(parent), "%s/parent", box);
    snprintf(out, sizeof(out), "%s/out", parent);
    if (mkdir(parent, 0700) != 0)
        abort();
}

/* Abort when folder contains any entry but the one named only. */
static void check_only_entry(const char *folder, const char *only)
{
    DIR *dir = opendir(folder);
    struct dirent *entry;

    if (dir == NULL)
        abort();
    while ((entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;

        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            strcmp(name, only) == 0)
            continue;
        fprintf(stderr, "fuzz_zip: %s contains '%s', written outside the "
                        "extraction folder\n", folder, name);
        abort();
    }
    closedir(dir);
}

static uint64_t tree_bytes;

static int check_tree_entry(const char *path, const struct stat *st, int flag,
                            struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_F && S_ISREG(st->st_mode)) {
        tree_bytes += (uint64_t)st->st_size;
        return 0;
    }
    if (flag == FTW_D && S_ISDIR(st->st_mode))
        return 0;
    fprintf(stderr, "fuzz_zip: extracted '%s' is not a regular file or "
                    "folder (nftw flag %d)\n", path, flag);
    abort();
}

/* The top folder that zipsafe_extract strips: the first component of
 * every name that is not hidden, when the folder has a train/ entry. */
static size_t stripped_prefix(zip_t *za, zip_int64_t count)
{
    const char *first = NULL;
    size_t n = 0;
    int has_train = 0;

    for (zip_int64_t i = 0; i < count; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
        const char *slash;

        if (name == NULL || zipsafe_is_hidden(name))
            continue;
        slash = strchr(name, '/');
        if (slash == NULL)
            return 0;
        if (first == NULL) {
            first = name;
            n = (size_t)(slash - name) + 1;
        } else if (strncmp(name, first, n) != 0) {
            return 0;
        }
        if (strncmp(name + n, "train/", 6) == 0)
            has_train = 1;
    }
    return has_train ? n : 0;
}

/* Abort unless every file entry of the archive was extracted. */
static void check_files_present(void)
{
    int zip_error = 0;
    /* The same flags as zipsafe_extract: an archive with two end
     * records can list other entries without the consistency check. */
    zip_t *za = zip_open(input_path, ZIP_RDONLY | ZIP_CHECKCONS, &zip_error);
    zip_int64_t count;
    size_t skip;

    if (za == NULL) {
        fprintf(stderr, "fuzz_zip: extraction succeeded but zip_open "
                        "failed with %d\n", zip_error);
        abort();
    }
    count = zip_get_num_entries(za, 0);
    skip = stripped_prefix(za, count);
    for (zip_int64_t i = 0; i < count; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
        char path[8600];
        size_t len = strlen(name);
        struct stat st;

        if (zipsafe_is_hidden(name) || name[len - 1] == '/')
            continue;
        snprintf(path, sizeof(path), "%s/%s", out, name + skip);
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            fprintf(stderr, "fuzz_zip: entry '%s' is missing as %s\n", name,
                    path);
            abort();
        }
    }
    zip_discard(za);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zipsafe_limits limits = {LIMIT_BYTES, LIMIT_FILES};
    struct error err = {0};
    cJSON *report;
    int rc;

    if (box[0] == '\0')
        set_up();
    if (size > INPUT_MAX)
        return 0;
    input_path = fuzz_input_file("fuzz_zip", data, size, NULL, 0);
    if (input_path == NULL)
        return 0;

    report = cJSON_CreateArray();
    rc = zipsafe_extract(input_path, out, &limits, report, &err);
    if (rc != 0 && rc != -EINVAL && rc != -EFBIG && rc != -ENOSPC) {
        fprintf(stderr, "fuzz_zip: unexpected result %d (%s): %s\n", rc,
                strerror(-rc), err.msg);
        abort();
    }
    check_only_entry(box, "parent");
    check_only_entry(parent, "out");
    if (rc == 0) {
        tree_bytes = 0;
        if (nftw(out, check_tree_entry, 16, FTW_PHYS) != 0)
            abort();
        if (tree_bytes > LIMIT_BYTES) {
            fprintf(stderr, "fuzz_zip: %llu bytes extracted, over the "
                            "limit\n", (unsigned long long)tree_bytes);
            abort();
        }
        check_files_present();
    }
    if (zipsafe_remove_tree(out) != 0 || access(out, F_OK) == 0) {
        fprintf(stderr, "fuzz_zip: cannot remove %s\n", out);
        abort();
    }
    cJSON_Delete(report);
    return 0;
}
