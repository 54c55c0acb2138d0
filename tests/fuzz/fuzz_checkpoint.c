/*
 * libFuzzer target for ckpt_open and ckpt_load_tensors
 * (backend/engine/checkpoint.c), which read a training checkpoint. The
 * input is a checkpoint file without its last 4 bytes. The target
 * appends the CRC-32 of the input, so that mutated inputs get past the
 * checksum and reach the header and tensor parsers. When the header
 * opens and its model is small (at most 16 layers, 64 channels, 2
 * repeats and 64 classes), a network is built from it for 32 x 32
 * images and the tensors are loaded into it. ckpt_open takes a path, so
 * the file is an anonymous in-memory file (memfd_create) opened as
 * /proc/self/fd/N; the target creates no file on disk.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "engine/checkpoint.h"
#include "fuzz_files.h"
#include "kernels.h"

#define INPUT_MAX (1u << 20)

static struct kctx ctx;
static int ctx_ready;

/* Write data and its CRC-32 to the input file; returns its path, or
 * NULL when the write fails. */
static const char *write_input(const uint8_t *data, size_t size)
{
    uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), data, (uInt)size);
    uint8_t tail[4] = {crc & 0xff, (crc >> 8) & 0xff, (crc >> 16) & 0xff,
                       crc >> 24};

    if (!ctx_ready) {
        cpu_kctx_init(&ctx, 1);
        ctx_ready = 1;
    }
    return fuzz_input_file("fuzz_checkpoint", data, size, tail, 4);
}

/* 1 when building spec costs little memory and time. */
static int spec_is_small(const struct model_spec *spec)
{
    if (spec->nlayers < 1 || spec->nlayers > 16 || spec->in_c < 1 ||
        spec->in_c > 4 || spec->classes < 1 || spec->classes > 64)
        return 0;
    for (int i = 0; i < spec->nlayers; i++) {
        const struct layer_spec *l = &spec->layers[i];

        if (l->c2 > 64 || l->repeats > 2 || l->k > 7 || l->factor > 4)
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct checkpoint ck;
    struct error err = {0};
    const char *path;

    if (size > INPUT_MAX)
        return 0;
    path = write_input(data, size);
    if (path == NULL)
        return 0;
    if (ckpt_open(path, &ck, &err) != 0)
        return 0;
    if (memchr(ck.class_names, '\0', sizeof(ck.class_names)) == NULL)
        abort();
    if (spec_is_small(&ck.spec)) {
        struct net net;

        memset(&net, 0, sizeof(net));
        if (net_build(&net, &ck.spec, 32, 32, 1, 0, &ctx, &err) == 0)
            ckpt_load_tensors(&ck, &net, &err);
        net_free(&net);
    }
    ckpt_close(&ck);
    return 0;
}
