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

#include "engine/net.h"
#include "fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const scales[] = {"", "n", "s", "x"};
    static struct model_spec spec;
    struct error err = {0};
    const char *path;

    if (size < 1 || size > 65536)
        return 0;
    path = fuzz_input_file("fuzz_model_yaml", data + 1, size - 1, NULL, 0);
    if (path == NULL)
        return 0;
    memset(&spec, 0, sizeof(spec));
    if (model_spec_load(path, scales[data[0] & 3], data[0] >> 2,
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
