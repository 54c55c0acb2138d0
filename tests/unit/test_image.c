/*
 * Tests of engine/image: format detection, JPEG and PNG decoding of every
 * color type, EXIF orientation, corrupt and truncated files, the pixel
 * limit, bilinear resizing and the PNG writer.
 *
 * Fixtures are made at test time: PNGs through image_write_png (or libspng
 * directly for palette and 1-bit images), JPEGs through libjpeg with an
 * APP1 Exif marker written by hand, and broken files by cutting or
 * overwriting the bytes of good ones.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jpeglib.h>
#include <spng.h>
#include <zlib.h>

#include "engine/image.h"

static char tmp_dir[256];

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup_dir(void **state)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    (void)state;
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/test_image.XXXXXX", base);
    return mkdtemp(tmp_dir) == NULL ? -1 : 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    return nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *tmp_path(const char *name)
{
    static char path[512];

    snprintf(path, sizeof(path), "%s/%s", tmp_dir, name);
    return path;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* ------------------------------------------------------------------------
 * Fixture builders
 */

/* Encode a JPEG in memory. color is JCS_RGB (3 components), JCS_GRAYSCALE
 * (1) or JCS_CMYK (4); app1 is written as an APP1 marker when not NULL.
 * The caller frees the buffer. */
static unsigned char *make_jpeg_mode(const uint8_t *pixels, int width,
                                     int height, J_COLOR_SPACE color,
                                     const uint8_t *app1, size_t app1_len,
                                     int progressive, unsigned long *len)
{
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    unsigned char *out = NULL;
    int components = 3;

    if (color == JCS_GRAYSCALE)
        components = 1;
    if (color == JCS_CMYK)
        components = 4;

    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &out, len);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = components;
    cinfo.in_color_space = color;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 95, TRUE);
    if (progressive)
        jpeg_simple_progression(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    if (app1 != NULL)
        jpeg_write_marker(&cinfo, JPEG_APP0 + 1, app1,
                          (unsigned)app1_len);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline *
                                               (size_t)width *
                                               (size_t)components);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return out;
}

static unsigned char *make_jpeg(const uint8_t *pixels, int width,
                                int height, J_COLOR_SPACE color,
                                const uint8_t *app1, size_t app1_len,
                                unsigned long *len)
{
    return make_jpeg_mode(pixels, width, height, color, app1, app1_len, 0,
                          len);
}

/* Write an Exif APP1 payload whose IFD0 contains one orientation tag and
 * return its length (32 bytes). */
static size_t make_exif(int orientation, int big_endian, uint8_t *out)
{
    static const uint8_t little[] = {
        'E', 'x', 'i', 'f', 0, 0,          /* Exif identifier */
        'I', 'I', 42, 0, 8, 0, 0, 0,       /* TIFF header, IFD0 at 8 */
        1, 0,                              /* one entry */
        0x12, 0x01, 3, 0, 1, 0, 0, 0,      /* tag 0x0112, SHORT, count 1 */
        0, 0, 0, 0,                        /* value, patched below */
        0, 0, 0, 0};                       /* no next IFD */
    static const uint8_t big[] = {
        'E', 'x', 'i', 'f', 0, 0,
        'M', 'M', 0, 42, 0, 0, 0, 8,
        0, 1,
        0x01, 0x12, 0, 3, 0, 0, 0, 1,
        0, 0, 0, 0,
        0, 0, 0, 0};

    memcpy(out, big_endian ? big : little, sizeof(little));
    out[big_endian ? 25 : 24] = (uint8_t)orientation;
    return sizeof(little);
}

static const uint8_t red[3] = {255, 0, 0};
static const uint8_t green[3] = {0, 255, 0};
static const uint8_t blue[3] = {0, 0, 255};
static const uint8_t white[3] = {255, 255, 255};

/* A 64x32 RGB image with four flat quadrants: red top left, green top
 * right, blue bottom left, white bottom right. */
static uint8_t *make_quadrants(void)
{
    uint8_t *pixels = malloc(64 * 32 * 3);

    assert_non_null(pixels);
    for (int y = 0; y < 32; y++) {
        for (int x = 0; x < 64; x++) {
            const uint8_t *c = y < 16 ? (x < 32 ? red : green)
                                      : (x < 32 ? blue : white);
            memcpy(pixels + ((size_t)y * 64 + (size_t)x) * 3, c, 3);
        }
    }
    return pixels;
}

static void assert_color_near(const struct image *img, int x, int y,
                              const uint8_t *expected, int tolerance)
{
    const uint8_t *p = img->pixels + ((size_t)y * (size_t)img->width +
                                      (size_t)x) * 3;

    for (int c = 0; c < 3; c++) {
        int diff = abs((int)p[c] - (int)expected[c]);

        if (diff > tolerance)
            fail_msg("pixel (%d,%d) channel %d is %d, expected %d +- %d",
                     x, y, c, p[c], expected[c], tolerance);
    }
}

static void assert_pixel(const struct image *img, int x, int y, int r,
                         int g, int b)
{
    const uint8_t *p = img->pixels + ((size_t)y * (size_t)img->width +
                                      (size_t)x) * 3;

    assert_int_equal(p[0], r);
    assert_int_equal(p[1], g);
    assert_int_equal(p[2], b);
}

/* Encode a PNG through libspng directly, for the color types that
 * image_encode_png does not write (palette, 1-bit gray). */
static void *make_png_raw(const void *data, size_t len, int width,
                          int height, int color_type, int bit_depth,
                          const struct spng_plte *plte, size_t *png_len)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ihdr = {0};
    void *png;
    int rc;

    ihdr.width = (uint32_t)width;
    ihdr.height = (uint32_t)height;
    ihdr.bit_depth = (uint8_t)bit_depth;
    ihdr.color_type = (uint8_t)color_type;
    spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    assert_int_equal(spng_set_ihdr(ctx, &ihdr), 0);
    if (plte != NULL)
        assert_int_equal(spng_set_plte(ctx, (struct spng_plte *)plte), 0);
    assert_int_equal(spng_encode_image(ctx, data, len, SPNG_FMT_PNG,
                                       SPNG_ENCODE_FINALIZE), 0);
    png = spng_get_png_buffer(ctx, png_len, &rc);
    assert_int_equal(rc, 0);
    spng_ctx_free(ctx);
    return png;
}

static void put_u32_be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The PNG signature and an IHDR chunk for an 8-bit RGB image, with a
 * valid CRC and no image data: 33 bytes. */
static size_t make_png_header(uint32_t width, uint32_t height, uint8_t *out)
{
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n',
                                         0x1a, '\n'};

    memcpy(out, signature, 8);
    put_u32_be(out + 8, 13);
    memcpy(out + 12, "IHDR", 4);
    put_u32_be(out + 16, width);
    put_u32_be(out + 20, height);
    out[24] = 8; /* bit depth */
    out[25] = 2; /* RGB */
    out[26] = 0;
    out[27] = 0;
    out[28] = 0;
    put_u32_be(out + 29, (uint32_t)crc32(0, out + 12, 17));
    return 33;
}

/* ------------------------------------------------------------------------
 * Format detection and not-an-image files
 */

static void detect_format_by_magic(void **state)
{
    static const uint8_t jpeg[] = {0xff, 0xd8, 0xff, 0xe0};
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
                                  '\n'};

    (void)state;
    assert_int_equal(image_detect_format(jpeg, sizeof(jpeg)),
                     IMAGE_FORMAT_JPEG);
    assert_int_equal(image_detect_format(png, sizeof(png)),
                     IMAGE_FORMAT_PNG);
    assert_int_equal(image_detect_format(png, 7), IMAGE_FORMAT_UNKNOWN);
    assert_int_equal(image_detect_format("hello", 5), IMAGE_FORMAT_UNKNOWN);
    assert_int_equal(image_detect_format(NULL, 0), IMAGE_FORMAT_UNKNOWN);
    assert_string_equal(image_format_name(IMAGE_FORMAT_PNG), "PNG");
}

static void text_named_jpg_is_not_image(void **state)
{
    const char *path = tmp_path("notes.jpg");
    struct image_info info;
    struct image img;
    struct error err = {0};

    (void)state;
    write_bytes(path, "hello, world\n", 13);

    assert_int_equal(image_decode_file(path, &img, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "notes.jpg"));
    assert_non_null(strstr(err.msg, "not an image"));
    assert_non_null(strstr(err.msg, "68 65 6c 6c"));
    assert_null(img.pixels);

    assert_int_equal(image_probe_file(path, &info, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not an image"));
}

static void empty_and_unsupported_files(void **state)
{
    static const char gif[] = "GIF89a\x01\x00\x01\x00";
    struct image img;
    struct error err = {0};

    (void)state;
    assert_int_equal(image_decode("", 0, "empty.png", &img, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "'empty.png': empty file"));

    assert_int_equal(image_decode(gif, sizeof(gif) - 1, "a.gif", &img, &err),
                     -ENOTSUP);
    assert_non_null(strstr(err.msg, "GIF image"));
    assert_non_null(strstr(err.msg, "convert it to PNG or JPEG"));

    assert_int_equal(image_decode("ab", 2, NULL, &img, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "'image': not an image"));
}

static void missing_file_names_path(void **state)
{
    const char *path = tmp_path("does-not-exist.png");
    struct image img;
    struct image_info info;
    struct error err = {0};

    (void)state;
    assert_int_equal(image_decode_file(path, &img, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "does-not-exist.png"));
    assert_int_equal(image_probe_file(path, &info, &err), -ENOENT);
}

/* ------------------------------------------------------------------------
 * PNG decoding
 */

static void png_rgb_round_trip(void **state)
{
    const char *path = tmp_path("rgb.png");
    uint8_t pixels[3 * 2 * 3];
    struct image img;
    struct image_info info;
    struct error err = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(pixels); i++)
        pixels[i] = (uint8_t)(i * 13);
    assert_int_equal(image_write_png(path, pixels, 3, 2, 3, 8, &err), 0);

    assert_int_equal(image_probe_file(path, &info, &err), 0);
    assert_int_equal(info.format, IMAGE_FORMAT_PNG);
    assert_int_equal(info.width, 3);
    assert_int_equal(info.height, 2);
    assert_int_equal(info.orientation, 1);

    assert_int_equal(image_decode_file(path, &img, &err), 0);
    assert_int_equal(img.width, 3);
    assert_int_equal(img.height, 2);
    assert_int_equal(img.channels, 3);
    assert_memory_equal(img.pixels, pixels, sizeof(pixels));
    image_free(&img);
    assert_null(img.pixels);
}

static void png_gray_repeats_channels(void **state)
{
    const char *path = tmp_path("gray.png");
    const uint8_t gray[4] = {0, 17, 200, 255};
    struct image img;
    struct error err = {0};

    (void)state;
    assert_int_equal(image_write_png(path, gray, 2, 2, 1, 8, &err), 0);
    assert_int_equal(image_decode_file(path, &img, &err), 0);
    assert_int_equal(img.channels, 3);
    assert_pixel(&img, 0, 0, 0, 0, 0);
    assert_pixel(&img, 1, 0, 17, 17, 17);
    assert_pixel(&img, 0, 1, 200, 200, 200);
    assert_pixel(&img, 1, 1, 255, 255, 255);
    image_free(&img);
}

static void png_alpha_is_dropped(void **state)
{
    const uint8_t gray_alpha[4] = {100, 0, 30, 255};
    const uint8_t rgba[8] = {10, 20, 30, 0, 40, 50, 60, 128};
    struct image img;
    struct error err = {0};
    void *png;
    size_t len;

    (void)state;
    assert_int_equal(image_encode_png(gray_alpha, 2, 1, 2, 8, &png, &len,
                                      &err), 0);
    assert_int_equal(image_decode(png, len, "ga.png", &img, &err), 0);
    free(png);
    assert_pixel(&img, 0, 0, 100, 100, 100);
    assert_pixel(&img, 1, 0, 30, 30, 30);
    image_free(&img);

    assert_int_equal(image_encode_png(rgba, 2, 1, 4, 8, &png, &len, &err),
                     0);
    assert_int_equal(image_decode(png, len, "rgba.png", &img, &err), 0);
    free(png);
    assert_int_equal(img.channels, 3);
    assert_pixel(&img, 0, 0, 10, 20, 30); /* alpha 0 keeps its color */
    assert_pixel(&img, 1, 0, 40, 50, 60);
    image_free(&img);
}

static void png_16bit_keeps_high_byte(void **state)
{
    const char *path = tmp_path("rgb16.png");
    const uint16_t rgb16[6] = {0x3412, 0xffff, 0x0000, 0x80ff, 0x00ff,
                               0x0100};
    const uint16_t gray16[2] = {0xfe01, 0x0001};
    struct image img;
    struct error err = {0};
    void *png;
    size_t len;

    (void)state;
    assert_int_equal(image_write_png(path, rgb16, 2, 1, 3, 16, &err), 0);
    assert_int_equal(image_decode_file(path, &img, &err), 0);
    assert_pixel(&img, 0, 0, 0x34, 0xff, 0x00);
    assert_pixel(&img, 1, 0, 0x80, 0x00, 0x01);
    image_free(&img);

    assert_int_equal(image_encode_png(gray16, 2, 1, 1, 16, &png, &len, &err),
                     0);
    assert_int_equal(image_decode(png, len, "g16.png", &img, &err), 0);
    free(png);
    assert_pixel(&img, 0, 0, 0xfe, 0xfe, 0xfe);
    assert_pixel(&img, 1, 0, 0, 0, 0);
    image_free(&img);
}

static void png_palette_and_1bit(void **state)
{
    struct spng_plte plte = {0};
    const uint8_t indexes[3] = {1, 0, 1};
    const uint8_t bits = 0xa0; /* 1, 0, 1 in the top bits of a row */
    struct image img;
    struct error err = {0};
    void *png;
    size_t len;

    (void)state;
    plte.n_entries = 2;
    plte.entries[0] = (struct spng_plte_entry){10, 20, 30, 255};
    plte.entries[1] = (struct spng_plte_entry){200, 210, 220, 255};
    png = make_png_raw(indexes, sizeof(indexes), 3, 1,
                       SPNG_COLOR_TYPE_INDEXED, 8, &plte, &len);
    assert_int_equal(image_decode(png, len, "palette.png", &img, &err), 0);
    free(png);
    assert_pixel(&img, 0, 0, 200, 210, 220);
    assert_pixel(&img, 1, 0, 10, 20, 30);
    assert_pixel(&img, 2, 0, 200, 210, 220);
    image_free(&img);

    png = make_png_raw(&bits, 1, 3, 1, SPNG_COLOR_TYPE_GRAYSCALE, 1, NULL,
                       &len);
    assert_int_equal(image_decode(png, len, "1bit.png", &img, &err), 0);
    free(png);
    assert_pixel(&img, 0, 0, 255, 255, 255);
    assert_pixel(&img, 1, 0, 0, 0, 0);
    assert_pixel(&img, 2, 0, 255, 255, 255);
    image_free(&img);
}

static void png_truncated_and_bad_crc(void **state)
{
    uint8_t pixels[32 * 32 * 3];
    struct image_info info;
    struct image img;
    struct error err = {0};
    uint8_t *png;
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(pixels); i++)
        pixels[i] = (uint8_t)(i * 7 + i / 97);
    assert_int_equal(image_encode_png(pixels, 32, 32, 3, 8, (void **)&png,
                                      &len, &err), 0);

    /* Cut inside the image data: the header still reads. */
    assert_int_equal(image_probe(png, len / 2, "cut.png", &info, &err), 0);
    assert_int_equal(image_decode(png, len / 2, "cut.png", &img, &err),
                     -EBADMSG);
    assert_non_null(strstr(err.msg, "'cut.png'"));
    assert_null(img.pixels);

    /* Cut inside IHDR: even the header fails. */
    assert_int_equal(image_probe(png, 20, "short.png", &info, &err),
                     -EBADMSG);

    /* A flipped bit in IHDR breaks its CRC. */
    png[18] ^= 0x01;
    assert_int_equal(image_probe(png, len, "crc.png", &info, &err),
                     -EBADMSG);
    assert_non_null(strstr(err.msg, "corrupt PNG"));
    free(png);
}

/* ------------------------------------------------------------------------
 * JPEG decoding
 */

static void jpeg_rgb_and_gray(void **state)
{
    uint8_t rgb[16 * 16 * 3];
    uint8_t gray[16 * 16];
    struct image img;
    struct error err = {0};
    unsigned char *jpeg;
    unsigned long len;

    (void)state;
    for (int i = 0; i < 16 * 16; i++) {
        rgb[i * 3] = 200;
        rgb[i * 3 + 1] = 100;
        rgb[i * 3 + 2] = 50;
        gray[i] = 90;
    }

    jpeg = make_jpeg(rgb, 16, 16, JCS_RGB, NULL, 0, &len);
    assert_int_equal(image_decode(jpeg, len, "rgb.jpg", &img, &err), 0);
    free(jpeg);
    assert_int_equal(img.width, 16);
    assert_int_equal(img.height, 16);
    assert_int_equal(img.channels, 3);
    assert_color_near(&img, 5, 5, (const uint8_t[]){200, 100, 50}, 4);
    image_free(&img);

    jpeg = make_jpeg(gray, 16, 16, JCS_GRAYSCALE, NULL, 0, &len);
    assert_int_equal(image_decode(jpeg, len, "gray.jpg", &img, &err), 0);
    free(jpeg);
    assert_int_equal(img.channels, 3);
    for (size_t i = 0; i < 16 * 16; i++) {
        assert_int_equal(img.pixels[i * 3], img.pixels[i * 3 + 1]);
        assert_int_equal(img.pixels[i * 3], img.pixels[i * 3 + 2]);
    }
    assert_color_near(&img, 3, 7, (const uint8_t[]){90, 90, 90}, 2);
    image_free(&img);
}

static void jpeg_adobe_cmyk_to_rgb(void **state)
{
    /* Adobe stores inverted inks: 255 is no ink. No cyan, full magenta,
     * no yellow and no black is magenta. */
    uint8_t cmyk[16 * 16 * 4];
    struct image img;
    struct error err = {0};
    unsigned char *jpeg;
    unsigned long len;

    (void)state;
    for (int i = 0; i < 16 * 16; i++) {
        cmyk[i * 4] = 255;
        cmyk[i * 4 + 1] = 0;
        cmyk[i * 4 + 2] = 255;
        cmyk[i * 4 + 3] = 255;
    }
    jpeg = make_jpeg(cmyk, 16, 16, JCS_CMYK, NULL, 0, &len);
    assert_int_equal(image_decode(jpeg, len, "cmyk.jpg", &img, &err), 0);
    free(jpeg);
    assert_color_near(&img, 8, 8, (const uint8_t[]){255, 0, 255}, 6);
    image_free(&img);
}

/* Colors expected at the top left, top right, bottom left and bottom right
 * of the decoded image, for EXIF orientations 1-8 of make_quadrants(). */
static const uint8_t *const oriented[9][4] = {
    [1] = {red, green, blue, white},
    [2] = {green, red, white, blue},
    [3] = {white, blue, green, red},
    [4] = {blue, white, red, green},
    [5] = {red, blue, green, white},
    [6] = {blue, red, white, green},
    [7] = {white, green, blue, red},
    [8] = {green, white, red, blue},
};

static void check_orientation(const uint8_t *pixels, int orientation,
                              int big_endian)
{
    uint8_t exif[64];
    size_t exif_len = make_exif(orientation, big_endian, exif);
    const char *path = tmp_path("oriented.jpg");
    int rotated = orientation >= 5;
    int w = rotated ? 32 : 64;
    int h = rotated ? 64 : 32;
    struct image_info info;
    struct image img;
    struct error err = {0};
    unsigned char *jpeg;
    unsigned long len;

    jpeg = make_jpeg(pixels, 64, 32, JCS_RGB, exif, exif_len, &len);
    write_bytes(path, jpeg, len);
    free(jpeg);

    assert_int_equal(image_probe_file(path, &info, &err), 0);
    assert_int_equal(info.format, IMAGE_FORMAT_JPEG);
    assert_int_equal(info.orientation, orientation);
    assert_int_equal(info.width, w);
    assert_int_equal(info.height, h);

    assert_int_equal(image_decode_file(path, &img, &err), 0);
    assert_int_equal(img.width, w);
    assert_int_equal(img.height, h);
    assert_color_near(&img, w / 4, h / 4, oriented[orientation][0], 40);
    assert_color_near(&img, w * 3 / 4, h / 4, oriented[orientation][1], 40);
    assert_color_near(&img, w / 4, h * 3 / 4, oriented[orientation][2], 40);
    assert_color_near(&img, w * 3 / 4, h * 3 / 4, oriented[orientation][3],
                      40);
    image_free(&img);
}

static void jpeg_exif_orientations(void **state)
{
    uint8_t *pixels = make_quadrants();

    (void)state;
    for (int orientation = 1; orientation <= 8; orientation++) {
        check_orientation(pixels, orientation, 0);
        check_orientation(pixels, orientation, 1);
    }
    free(pixels);
}

static void jpeg_invalid_exif_ignored(void **state)
{
    uint8_t *pixels = make_quadrants();
    uint8_t exif[64];
    size_t exif_len;
    struct image_info info;
    struct error err = {0};
    unsigned char *jpeg;
    unsigned long len;

    (void)state;
    /* Orientation 9 does not exist. */
    exif_len = make_exif(9, 0, exif);
    jpeg = make_jpeg(pixels, 64, 32, JCS_RGB, exif, exif_len, &len);
    assert_int_equal(image_probe(jpeg, len, "o9.jpg", &info, &err), 0);
    free(jpeg);
    assert_int_equal(info.orientation, 1);
    assert_int_equal(info.width, 64);

    /* An IFD0 offset past the end of the payload. */
    exif_len = make_exif(6, 0, exif);
    exif[10] = 0xf0;
    jpeg = make_jpeg(pixels, 64, 32, JCS_RGB, exif, exif_len, &len);
    assert_int_equal(image_probe(jpeg, len, "far.jpg", &info, &err), 0);
    free(jpeg);
    assert_int_equal(info.orientation, 1);

    /* An entry count that runs past the end of the payload. */
    exif_len = make_exif(6, 0, exif);
    exif[14] = 0xff;
    exif[15] = 0xff;
    jpeg = make_jpeg(pixels, 64, 32, JCS_RGB, exif, exif_len, &len);
    assert_int_equal(image_probe(jpeg, len, "count.jpg", &info, &err), 0);
    free(jpeg);
    assert_int_equal(info.orientation, 6);

    /* A payload cut after the TIFF header. */
    jpeg = make_jpeg(pixels, 64, 32, JCS_RGB, exif, 15, &len);
    assert_int_equal(image_probe(jpeg, len, "cut.jpg", &info, &err), 0);
    free(jpeg);
    assert_int_equal(info.orientation, 1);
    free(pixels);
}

static void jpeg_truncated_is_error(void **state)
{
    uint8_t *pixels = make_quadrants();
    const char *path = tmp_path("truncated.jpg");
    struct image_info info;
    struct image img;
    struct error err = {0};
    unsigned char *jpeg;
    unsigned long len;
    unsigned long sos = 0;

    (void)state;
    jpeg = make_jpeg(pixels, 64, 32, JCS_RGB, NULL, 0, &len);
    free(pixels);
    for (unsigned long i = 2; i + 1 < len; i++) {
        if (jpeg[i] == 0xff && jpeg[i + 1] == 0xda) {
            sos = i;
            break;
        }
    }
    assert_true(sos > 0);

    /* Cut inside the image data: the header reads, the pixels do not. */
    write_bytes(path, jpeg, sos + (len - sos) / 2);
    assert_int_equal(image_probe_file(path, &info, &err), 0);
    assert_int_equal(image_decode_file(path, &img, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "truncated.jpg"));
    assert_non_null(strstr(err.msg, "corrupt, truncated or unsupported"));
    assert_null(img.pixels);

    /* Cut inside the header. */
    write_bytes(path, jpeg, 40);
    assert_int_equal(image_probe_file(path, &info, &err), -EBADMSG);
    assert_int_equal(image_decode_file(path, &img, &err), -EBADMSG);

    /* A file that lacks only the EOI marker has all its image data. */
    assert_int_equal(image_decode(jpeg, len - 2, "no-eoi.jpg", &img, &err),
                     0);
    assert_color_near(&img, 16, 8, red, 40);
    image_free(&img);
    free(jpeg);
}

static void jpeg_progressive_cut_is_error(void **state)
{
    uint8_t *pixels = make_quadrants();
    struct image img;
    struct error err = {0};
    unsigned char *jpeg;
    unsigned long len;
    unsigned long last_sos = 0;

    (void)state;
    jpeg = make_jpeg_mode(pixels, 64, 32, JCS_RGB, NULL, 0, 1, &len);
    free(pixels);
    assert_int_equal(image_decode(jpeg, len, "full.jpg", &img, &err), 0);
    assert_color_near(&img, 48, 24, white, 40);
    image_free(&img);

    /* Cut just before the last scan: the scans before it are complete,
     * so only the end of the file shows that data are missing. */
    for (unsigned long i = 2; i + 1 < len; i++) {
        if (jpeg[i] == 0xff && jpeg[i + 1] == 0xda)
            last_sos = i;
    }
    assert_true(last_sos > 0);
    assert_int_equal(image_decode(jpeg, last_sos, "cut.jpg", &img, &err),
                     -EBADMSG);
    assert_non_null(strstr(err.msg, "Premature end of JPEG file"));
    assert_null(img.pixels);
    free(jpeg);
}

static void jpeg_corrupt_header_is_error(void **state)
{
    uint8_t *pixels = make_quadrants();
    struct image_info info;
    struct image img;
    struct error err = {0};
    unsigned char *jpeg;
    unsigned long len;

    (void)state;
    jpeg = make_jpeg(pixels, 64, 32, JCS_RGB, NULL, 0, &len);
    free(pixels);

    /* Zero everything after SOI: no marker is ever found. */
    memset(jpeg + 3, 0, len - 3);
    assert_int_equal(image_probe(jpeg, len, "zero.jpg", &info, &err),
                     -EBADMSG);
    assert_int_equal(image_decode(jpeg, len, "zero.jpg", &img, &err),
                     -EBADMSG);
    assert_non_null(strstr(err.msg, "'zero.jpg': corrupt, truncated"));
    free(jpeg);
}

/* ------------------------------------------------------------------------
 * Pixel limit
 */

static void png_over_pixel_limit(void **state)
{
    uint8_t png[64];
    size_t len = make_png_header(10000, 10000, png);
    struct image_info info;
    struct image img;
    struct error err = {0};

    (void)state;
    assert_int_equal(image_probe(png, len, "huge.png", &info, &err), -EFBIG);
    assert_non_null(strstr(err.msg, "10000x10000"));
    assert_non_null(strstr(err.msg, "100000000 pixels"));
    assert_non_null(strstr(err.msg, "64000000"));
    assert_int_equal(image_decode(png, len, "huge.png", &img, &err), -EFBIG);
    assert_null(img.pixels);

    len = make_png_header(8000, 8000, png); /* exactly the limit */
    assert_int_equal(image_probe(png, len, "edge.png", &info, &err), 0);
    assert_int_equal(info.width, 8000);
}

static void jpeg_over_pixel_limit(void **state)
{
    uint8_t gray[16 * 16] = {0};
    struct image img;
    struct error err = {0};
    unsigned char *jpeg;
    unsigned long len;
    unsigned long sof = 0;

    (void)state;
    jpeg = make_jpeg(gray, 16, 16, JCS_GRAYSCALE, NULL, 0, &len);
    for (unsigned long i = 2; i + 9 < len; i++) {
        if (jpeg[i] == 0xff && jpeg[i + 1] == 0xc0) {
            sof = i;
            break;
        }
    }
    assert_true(sof > 0);

    /* SOF0: marker, length (2), precision (1), height (2), width (2). */
    jpeg[sof + 5] = 10000 >> 8;
    jpeg[sof + 6] = 10000 & 0xff;
    jpeg[sof + 7] = 9000 >> 8;
    jpeg[sof + 8] = 9000 & 0xff;
    assert_int_equal(image_decode(jpeg, len, "huge.jpg", &img, &err),
                     -EFBIG);
    assert_non_null(strstr(err.msg, "9000x10000"));
    assert_non_null(strstr(err.msg, "IMAGE_MAX_PIXELS"));
    assert_null(img.pixels);
    free(jpeg);
}

/* ------------------------------------------------------------------------
 * Resizing and writing
 */

static void resize_upscale_interpolates(void **state)
{
    uint8_t gray[2] = {0, 200};
    struct image src = {2, 1, 1, gray};
    struct image dst;
    struct error err = {0};

    (void)state;
    /* Output centers at source x -0.25, 0.25, 0.75, 1.25; the outer two
     * clamp to the edges. */
    assert_int_equal(image_resize(&src, 4, 1, &dst, &err), 0);
    assert_int_equal(dst.channels, 1);
    assert_int_equal(dst.pixels[0], 0);
    assert_int_equal(dst.pixels[1], 50);
    assert_int_equal(dst.pixels[2], 150);
    assert_int_equal(dst.pixels[3], 200);
    image_free(&dst);
}

static void resize_halves_by_averaging(void **state)
{
    uint8_t rgb[4 * 4 * 3];
    struct image src = {4, 4, 3, rgb};
    struct image dst;
    struct error err = {0};

    (void)state;
    for (int i = 0; i < 16; i++) {
        rgb[i * 3] = (uint8_t)(i * 10);
        rgb[i * 3 + 1] = 7;
        rgb[i * 3 + 2] = (uint8_t)(255 - i);
    }
    /* Each output pixel sits at the center of a 2x2 block. */
    assert_int_equal(image_resize(&src, 2, 2, &dst, &err), 0);
    assert_pixel(&dst, 0, 0, 25, 7, 253);  /* red (0+10+40+50)/4 */
    assert_pixel(&dst, 1, 1, 125, 7, 243); /* blue 242.5 rounds up */
    image_free(&dst);

    assert_int_equal(image_resize(&src, 4, 4, &dst, &err), 0);
    assert_memory_equal(dst.pixels, rgb, sizeof(rgb));
    image_free(&dst);
}

static void resize_chw_float_repeats_gray(void **state)
{
    uint8_t gray[4] = {0, 51, 102, 255};
    uint8_t rgb[3] = {255, 0, 51};
    struct image src = {2, 2, 1, gray};
    float out[3 * 4];
    struct error err = {0};

    (void)state;
    assert_int_equal(image_resize_chw_float(&src, 2, 2, out, &err), 0);
    for (int c = 0; c < 3; c++) {
        assert_float_equal(out[c * 4 + 0], 0.0f, 1e-6);
        assert_float_equal(out[c * 4 + 1], 0.2f, 1e-6);
        assert_float_equal(out[c * 4 + 2], 0.4f, 1e-6);
        assert_float_equal(out[c * 4 + 3], 1.0f, 1e-6);
    }

    src = (struct image){1, 1, 3, rgb};
    assert_int_equal(image_resize_chw_float(&src, 2, 2, out, &err), 0);
    for (int i = 0; i < 4; i++) {
        assert_float_equal(out[i], 1.0f, 1e-6);
        assert_float_equal(out[4 + i], 0.0f, 1e-6);
        assert_float_equal(out[8 + i], 0.2f, 1e-6);
    }
}

static void resize_rejects_bad_arguments(void **state)
{
    uint8_t gray[1] = {0};
    struct image src = {1, 1, 1, gray};
    struct image bad = {1, 1, 2, gray};
    struct image dst;
    float out[3];
    struct error err = {0};

    (void)state;
    assert_int_equal(image_resize(&src, 0, 5, &dst, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "0x5"));
    assert_int_equal(image_resize(&bad, 1, 1, &dst, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "2 channels"));
    assert_int_equal(image_resize_chw_float(&src, 100000, 100000, out, &err),
                     -EINVAL);
}

static void png_writer_rejects_bad_arguments(void **state)
{
    uint8_t pixels[4] = {0};
    struct error err = {0};
    void *png;
    size_t len;

    (void)state;
    assert_int_equal(image_encode_png(pixels, 1, 1, 5, 8, &png, &len, &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "5 channels"));
    assert_int_equal(image_encode_png(pixels, 1, 1, 1, 4, &png, &len, &err),
                     -EINVAL);
    assert_int_equal(image_write_png(tmp_path("no/such/folder.png"), pixels,
                                     1, 1, 1, 8, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "folder.png"));
}

static void non_ascii_file_name(void **state)
{
    const char *path = tmp_path("caf\xc3\xa9-\xe6\x97\xa5\xe6\x9c\xac.png");
    const uint8_t gray[1] = {42};
    struct image img;
    struct error err = {0};

    (void)state;
    assert_int_equal(image_write_png(path, gray, 1, 1, 1, 8, &err), 0);
    assert_int_equal(image_decode_file(path, &img, &err), 0);
    assert_pixel(&img, 0, 0, 42, 42, 42);
    image_free(&img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(detect_format_by_magic),
        cmocka_unit_test(text_named_jpg_is_not_image),
        cmocka_unit_test(empty_and_unsupported_files),
        cmocka_unit_test(missing_file_names_path),
        cmocka_unit_test(png_rgb_round_trip),
        cmocka_unit_test(png_gray_repeats_channels),
        cmocka_unit_test(png_alpha_is_dropped),
        cmocka_unit_test(png_16bit_keeps_high_byte),
        cmocka_unit_test(png_palette_and_1bit),
        cmocka_unit_test(png_truncated_and_bad_crc),
        cmocka_unit_test(jpeg_rgb_and_gray),
        cmocka_unit_test(jpeg_adobe_cmyk_to_rgb),
        cmocka_unit_test(jpeg_exif_orientations),
        cmocka_unit_test(jpeg_invalid_exif_ignored),
        cmocka_unit_test(jpeg_truncated_is_error),
        cmocka_unit_test(jpeg_progressive_cut_is_error),
        cmocka_unit_test(jpeg_corrupt_header_is_error),
        cmocka_unit_test(png_over_pixel_limit),
        cmocka_unit_test(jpeg_over_pixel_limit),
        cmocka_unit_test(resize_upscale_interpolates),
        cmocka_unit_test(resize_halves_by_averaging),
        cmocka_unit_test(resize_chw_float_repeats_gray),
        cmocka_unit_test(resize_rejects_bad_arguments),
        cmocka_unit_test(png_writer_rejects_bad_arguments),
        cmocka_unit_test(non_ascii_file_name),
    };

    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
