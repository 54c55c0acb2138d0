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
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "engine/checkpoint.h"
#include "kernels.h"

#define INPUT_MAX (1u << 20)

static int memfd = -1;
static char memfd_path[64];
static struct kctx ctx;

/* Replace the in-memory file's contents with data and its CRC-32. */
static int write_input(const uint8_t *data, size_t size)
{
    uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), data, (uInt)size);
    uint8_t tail[4] = {crc & 0xff, (crc >> 8) & 0xff, (crc >> 16) & 0xff,
                       crc >> 24};

    if (memfd < 0) {
        memfd = memfd_create("fuzz_checkpoint", 0);
        if (memfd < 0)
            abort();
        snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
        cpu_kctx_init(&ctx, 1);
    }
    if (ftruncate(memfd, 0) != 0)
        return -1;
    for (size_t done = 0; done < size;) {
        ssize_t n = pwrite(memfd, data + done, size - done, (off_t)done);
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    if (pwrite(memfd, tail, 4, (off_t)size) != 4)
        return -1;
    return 0;
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

    if (size > INPUT_MAX || write_input(data, size) != 0)
        return 0;
    if (ckpt_open(memfd_path, &ck, &err) != 0)
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
