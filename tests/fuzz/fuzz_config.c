/*
 * libFuzzer target for config_load (backend/daemon/config.c), which reads
 * the backend's YAML configuration file. The input is the whole file.
 * config_load takes a path, so the input is written to an anonymous
 * in-memory file (memfd_create) that is opened as /proc/self/fd/N; the
 * target creates no file on disk.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon/config.h"

static int memfd = -1;
static char memfd_path[64];

/* Replace the in-memory file's contents with data. */
static int write_input(const uint8_t *data, size_t size)
{
    if (memfd < 0) {
        memfd = memfd_create("fuzz_config", 0);
        if (memfd < 0)
            abort();
        snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
    }
    if (ftruncate(memfd, 0) != 0)
        return -1;
    for (size_t done = 0; done < size;) {
        ssize_t n = pwrite(memfd, data + done, size - done, (off_t)done);
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config c;
    struct error err = {0};

    if (size > 65536 || write_input(data, size) != 0)
        return 0;
    config_defaults(&c);
    if (config_load(&c, memfd_path, &err) == 0) {
        if (c.ntypes < 0 || c.ntypes > CONFIG_INSTANCE_TYPES_MAX)
            abort();
        for (int i = 0; i < c.ntypes; i++)
            if (memchr(c.types[i].name, '\0', sizeof(c.types[i].name)) ==
                NULL)
                abort();
    }
    if (memchr(err.msg, '\0', sizeof(err.msg)) == NULL)
        abort();
    return 0;
}
