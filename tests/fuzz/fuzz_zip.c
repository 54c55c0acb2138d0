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
 *   - the result is 0, -EINVAL (the archive breaks a rule), -EFBIG (over
 *     a limit) or -ENOSPC (a full disk). ops_uploads.c reports every
 *     other code to the user as an internal failure;
 *   - nothing is written outside the folder: BOX contains only parent/
 *     and parent/ only out/;
 *   - after a success, the folder contains only regular files and folders,
 *     their bytes are within the limit, and every entry of the archive
 *     that is not hidden and not a folder is there as a regular file,
 *     under its name or its name less a stripped top folder;
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

/* 1 when the entry name was extracted as a regular file, under its
 * name or, when zipsafe_extract stripped a top folder, under the rest of
 * its name after the first '/'. */
static int extracted(const char *name, char *path, size_t len)
{
    const char *slash = strchr(name, '/');
    struct stat st;

    snprintf(path, len, "%s/%s", out, name);
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
        return 1;
    if (slash == NULL)
        return 0;
    snprintf(path, len, "%s/%s", out, slash + 1);
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Abort unless every file entry of the archive was extracted. */
static void check_files_present(void)
{
    int zip_error = 0;
    /* The same flags as zipsafe_extract: an archive with two end
     * records can list other entries without the consistency check. */
    zip_t *za = zip_open(input_path, ZIP_RDONLY | ZIP_CHECKCONS, &zip_error);
    zip_int64_t count;

    if (za == NULL) {
        fprintf(stderr, "fuzz_zip: extraction succeeded but zip_open "
                        "failed with %d\n", zip_error);
        abort();
    }
    count = zip_get_num_entries(za, 0);
    for (zip_int64_t i = 0; i < count; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
        char path[8600];
        size_t len = strlen(name);

        if (zipsafe_is_hidden(name) || name[len - 1] == '/')
            continue;
        if (!extracted(name, path, sizeof(path))) {
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
