/*
 * Image decoding for the data sets: JPEG (libjpeg-turbo) and PNG (libspng)
 * into 8-bit RGB, rows top to bottom, 3 bytes per pixel (HWC).
 *
 * The format comes from the magic bytes, never from the file name. The
 * pixel count is checked against IMAGE_MAX_PIXELS from the header, before
 * any pixel buffer is allocated, so a crafted header cannot make the
 * decoder allocate gigabytes.
 *
 * JPEG: a corrupt or truncated file returns an error instead of exiting,
 * because libjpeg's error handler is replaced by one that longjmps back.
 * libjpeg only warns about lost image data (data that end early, a bad
 * Huffman code) and fills the rest with gray, and those warnings are
 * treated as errors too, since a half-gray image is worse than no sample.
 * Harmless warnings (extra bytes before a marker, an unknown JFIF version)
 * are ignored, and so is a missing EOI marker after complete image data.
 * The EXIF orientation tag (1-8) in the APP1 marker is applied while the
 * rows are decoded. CMYK and YCCK files are converted to RGB, and
 * grayscale files are expanded to RGB.
 *
 * PNG: every color type and bit depth is accepted. Alpha is dropped, not
 * composited, because Ultralytics reads images with OpenCV's
 * cv2.imread(IMREAD_COLOR), which also drops it, so a model gets the
 * same pixels here as there. 16-bit samples keep their high byte
 * (v >> 8, what libspng 0.7.3 does for SPNG_FMT_RGB8); this differs from
 * exact rounding of v * 255 / 65535 by at most 1. Gamma chunks and the
 * PNG eXIf orientation are ignored.
 *
 * Errors follow common/error.h, and messages start with the file name:
 *   -EINVAL    not an image (neither JPEG nor PNG)
 *   -ENOTSUP   a format recognized but not decoded here (GIF, BMP, WebP,
 *              TIFF, HEIF/AVIF)
 *   -EBADMSG   a corrupt or truncated image
 *   -EFBIG     over IMAGE_MAX_PIXELS
 *   -ENOMEM, or the errno of a failed open or read
 */
#ifndef TRAINYARD_IMAGE_H
#define TRAINYARD_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Maximum width * height accepted by the decoders: 64 megapixels, which
 * admits a 50-megapixel camera photo and rejects decompression bombs. */
#define IMAGE_MAX_PIXELS 64000000u

/* Maximum size of an image file read by image_decode_file. A 64-megapixel
 * 16-bit RGBA PNG stored without compression is about 512 MB. */
#define IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)

enum image_format {
    IMAGE_FORMAT_UNKNOWN = 0,
    IMAGE_FORMAT_JPEG,
    IMAGE_FORMAT_PNG,
};

/* A decoded image. The decoders always produce channels == 3 (RGB). The
 * resize functions also accept channels == 1 (grayscale), which the data
 * set cache uses to store gray images in a third of the memory. */
struct image {
    int width;
    int height;
    int channels;
    uint8_t *pixels; /* height * width * channels bytes, row-major */
};

/* Header fields of an image file, read without decoding the pixels. */
struct image_info {
    enum image_format format;
    int width;       /* after the EXIF orientation is applied */
    int height;      /* after the EXIF orientation is applied */
    int orientation; /* EXIF orientation 1-8, or 1 for PNG and untagged */
};

/* Detect the format from the first bytes of a file. Eight bytes are
 * enough, so len may be shorter than the whole file. */
enum image_format image_detect_format(const void *data, size_t len);

/* "JPEG", "PNG" or "unknown". */
const char *image_format_name(enum image_format format);

/* Read the header of an image in memory: format, size and orientation.
 * name is used in error messages (NULL for "image"). */
int image_probe(const void *data, size_t len, const char *name,
                struct image_info *info, struct error *err);

/* Read the header of an image file, reading only as much of the file as
 * the header needs. */
int image_probe_file(const char *path, struct image_info *info,
                     struct error *err);

/* Decode an image in memory to RGB. On success img owns a new pixel
 * buffer that image_free releases; on failure img is zeroed. */
int image_decode(const void *data, size_t len, const char *name,
                 struct image *img, struct error *err);

/* Decode an image file of at most IMAGE_MAX_FILE_BYTES to RGB. */
int image_decode_file(const char *path, struct image *img,
                      struct error *err);

/* Release the pixel buffer and zero img. A zeroed image is accepted. */
void image_free(struct image *img);

/* Resize src (1 or 3 channels) to width x height with bilinear
 * interpolation and pixel centers aligned as in OpenCV's INTER_LINEAR
 * (no antialiasing when shrinking). dst gets the channels of src. */
int image_resize(const struct image *src, int width, int height,
                 struct image *dst, struct error *err);

/* Resize src (1 or 3 channels) to width x height like image_resize and
 * write it as floats in [0, 1], channel-major (CHW, 3 * height * width
 * values). A grayscale source is repeated into all 3 channels. */
int image_resize_chw_float(const struct image *src, int width, int height,
                           float *out, struct error *err);

/* Encode pixels as a PNG in memory. channels: 1 gray, 2 gray + alpha,
 * 3 RGB, 4 RGBA. bit_depth 8 takes uint8_t samples; bit_depth 16 takes
 * uint16_t samples in host byte order. *png is freed with free(). */
int image_encode_png(const void *pixels, int width, int height, int channels,
                     int bit_depth, void **png, size_t *len,
                     struct error *err);

/* Encode pixels as by image_encode_png and write them to path, replacing
 * any file there. The write is not atomic, so callers that need atomicity
 * write into a temporary folder and rename it. */
int image_write_png(const char *path, const void *pixels, int width,
                    int height, int channels, int bit_depth,
                    struct error *err);

#ifdef __cplusplus
}
#endif

#endif
