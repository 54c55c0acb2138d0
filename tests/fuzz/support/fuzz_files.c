/*
 * Files and folders of the fuzz targets (see fuzz_files.h). The folders
 * to remove at exit are kept in a small fixed table, because a target
 * makes one or two of them once per process.
 */
#include "fuzz_files.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEMP_FOLDERS_MAX 4

static int input_fd = -1;
static char input_path[64];
static char temp_folders[TEMP_FOLDERS_MAX][4096];
static int temp_folder_count;

static int write_all(int fd, const uint8_t *data, size_t size, off_t at)
{
    for (size_t done = 0; done < size;) {
        ssize_t n = pwrite(fd, data + done, size - done, at + (off_t)done);
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

const char *fuzz_input_file(const char *name, const uint8_t *data,
                            size_t size, const uint8_t *tail,
                            size_t tail_len)
{
    if (input_fd < 0) {
        input_fd = memfd_create(name, 0);
        if (input_fd < 0) {
            perror("fuzz: memfd_create");
            abort();
        }
        snprintf(input_path, sizeof(input_path), "/proc/self/fd/%d",
                 input_fd);
    }
    if (ftruncate(input_fd, 0) != 0 || write_all(input_fd, data, size, 0) ||
        write_all(input_fd, tail, tail_len, (off_t)size))
        return NULL;
    return input_path;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void fuzz_remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_temp_folders(void)
{
    for (int i = 0; i < temp_folder_count; i++)
        fuzz_remove_tree(temp_folders[i]);
}

void fuzz_temp_folder(const char *prefix, char *out, size_t len)
{
    const char *tmp = getenv("TMPDIR");
    char *slot;

    if (temp_folder_count == TEMP_FOLDERS_MAX) {
        fprintf(stderr, "fuzz: more than %d temporary folders\n",
                TEMP_FOLDERS_MAX);
        abort();
    }
    slot = temp_folders[temp_folder_count];
    snprintf(slot, sizeof(temp_folders[0]), "%s/%s.XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", prefix);
    if (mkdtemp(slot) == NULL) {
        perror("fuzz: mkdtemp under $TMPDIR");
        abort();
    }
    if (strlen(slot) >= len) {
        fprintf(stderr, "fuzz: the folder path %s is too long\n", slot);
        abort();
    }
    memcpy(out, slot, strlen(slot) + 1);
    if (temp_folder_count++ == 0)
        atexit(remove_temp_folders);
}
