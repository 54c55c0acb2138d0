/*
 * libFuzzer target for image_probe and image_decode
 * (backend/engine/image.c), which read JPEG and PNG files from memory.
 * The input is the image file. Each input is probed, then decoded unless
 * the probe reports more than 4 megapixels, which keeps each run fast and
 * within the RSS limit. When both succeed, the decoded size must equal
 * the probed one, and the pixel buffer is read in full so that
 * AddressSanitizer checks its length.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/image.h"

#define DECODE_MAX_PIXELS (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct image_info info;
    struct image img;
    struct error err = {0};
    int probed;

    memset(&info, 0, sizeof(info));
    probed = image_probe(data, size, "fuzz", &info, &err) == 0;
    if (probed && (info.width < 1 || info.height < 1 ||
                   info.orientation < 1 || info.orientation > 8))
        abort();
    if (probed &&
        (uint64_t)info.width * (uint64_t)info.height > DECODE_MAX_PIXELS)
        return 0;

    if (image_decode(data, size, "fuzz", &img, &err) != 0) {
        if (img.pixels != NULL || img.width != 0 || img.height != 0)
            abort();
        return 0;
    }
    if (img.channels != 3 || img.width < 1 || img.height < 1)
        abort();
    if (probed && (img.width != info.width || img.height != info.height))
        abort();
    size_t n = (size_t)img.width * (size_t)img.height * 3;
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += img.pixels[i];
    /* Keep the loop from being optimized away. */
    if (sum == 0xffffffffu)
        abort();
    image_free(&img);
    return 0;
}
