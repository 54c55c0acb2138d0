/*
 * libFuzzer target for model_spec_load (backend/engine/model_yaml.c),
 * which reads an Ultralytics model YAML into a layer list. The first
 * input byte picks the scale ("", "n", "s" or "x") and the class count
 * override (0 keeps the file's nc, else 1 to 63). The rest is the YAML
 * file. model_spec_load takes a path, so the file is an anonymous
 * in-memory file (memfd_create) opened as /proc/self/fd/N; the target
 * creates no file on disk.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/net.h"

static int memfd = -1;
static char memfd_path[64];

/* Replace the in-memory file's contents with data. */
static int write_input(const uint8_t *data, size_t size)
{
    if (memfd < 0) {
        memfd = memfd_create("fuzz_model_yaml", 0);
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
    static const char *const scales[] = {"", "n", "s", "x"};
    static struct model_spec spec;
    struct error err = {0};

    if (size < 1 || size > 65536 || write_input(data + 1, size - 1) != 0)
        return 0;
    memset(&spec, 0, sizeof(spec));
    if (model_spec_load(memfd_path, scales[data[0] & 3], data[0] >> 2,
                        &spec, &err) == 0) {
        if (spec.nlayers < 1 || spec.nlayers > 64)
            abort();
        for (int i = 0; i < spec.nlayers; i++) {
            const struct layer_spec *l = &spec.layers[i];

            if (l->nfrom < 1 || l->nfrom > NET_FROM_MAX)
                abort();
            /* Layer 0 takes the input, later layers earlier layers. */
            for (int j = 0; j < l->nfrom; j++)
                if (l->from[j] < -1 || l->from[j] >= i ||
                    (l->from[j] == -1 && i != 0))
                    abort();
        }
    }
    if (memchr(err.msg, '\0', sizeof(err.msg)) == NULL)
        abort();
    return 0;
}
