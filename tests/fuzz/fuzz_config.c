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

#include "daemon/config.h"
#include "fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config c;
    struct error err = {0};
    const char *path;

    if (size > 65536)
        return 0;
    path = fuzz_input_file("fuzz_config", data, size, NULL, 0);
    if (path == NULL)
        return 0;
    config_defaults(&c);
    if (config_load(&c, path, &err) == 0) {
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
