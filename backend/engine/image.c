/*
 * Image decoding, resizing and PNG writing; the contract is in image.h.
 *
 * The file has four parts: format detection and error helpers, the JPEG
 * decoder with its EXIF orientation parser, the PNG decoder and encoder,
 * and bilinear resizing.
 *
 * libjpeg reports errors through a callback that must not return, so
 * each JPEG is decoded by a helper called under setjmp. The state that
 * must survive a longjmp, the libjpeg context and the buffers to free,
 * lives in a heap block rather than in local variables. The EXIF
 * orientation is applied while rows are decoded: each source row is
 * written straight to its place in the rotated image, so no second
 * full-size buffer is needed.
 */
#include "image.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <spng.h>
#include <zlib.h>

#include "fsutil.h"

/* ------------------------------------------------------------------------
 * Format detection and errors
 */

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
                                     '\n'};

enum image_format image_detect_format(const void *data, size_t len)
{
    const uint8_t *b = data;

    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return IMAGE_FORMAT_JPEG;
    if (len >= sizeof(png_magic) &&
        memcmp(b, png_magic, sizeof(png_magic)) == 0)
        return IMAGE_FORMAT_PNG;
    return IMAGE_FORMAT_UNKNOWN;
}

const char *image_format_name(enum image_format format)
{
    switch (format) {
    case IMAGE_FORMAT_JPEG:
        return "JPEG";
    case IMAGE_FORMAT_PNG:
        return "PNG";
    default:
        return "unknown";
    }
}

/* Name image formats that are recognized but not decoded here, so that
 * the error can tell the user to convert the file. NULL when unknown. */
static const char *unsupported_format_name(const uint8_t *b, size_t len)
{
    if (len >= 6 && (memcmp(b, "GIF87a", 6) == 0 ||
                     memcmp(b, "GIF89a", 6) == 0))
        return "GIF";
    if (len >= 2 && b[0] == 'B' && b[1] == 'M')
        return "BMP";
    if (len >= 12 && memcmp(b, "RIFF", 4) == 0 &&
        memcmp(b + 8, "WEBP", 4) == 0)
        return "WebP";
    if (len >= 4 && (memcmp(b, "II*\0", 4) == 0 ||
                     memcmp(b, "MM\0*", 4) == 0))
        return "TIFF";
    if (len >= 12 && memcmp(b + 4, "ftyp", 4) == 0)
        return "HEIF/AVIF";
    return NULL;
}

/* Fill err with "'name': <message>" and return code. */
__attribute__((format(printf, 4, 5)))
static int fail(struct error *err, int code, const char *name,
                const char *fmt, ...)
{
    char message[ERROR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return error_set(err, code, "'%s': %s", name ? name : "image", message);
}

static int fail_not_image(struct error *err, const char *name,
                          const uint8_t *b, size_t len)
{
    const char *other = unsupported_format_name(b, len);

    if (len == 0)
        return fail(err, -EINVAL, name, "empty file, not an image");
    if (other != NULL)
        return fail(err, -ENOTSUP, name,
                    "%s image, which Trainyard cannot decode; convert it "
                    "to PNG or JPEG", other);
    if (len < 4)
        return fail(err, -EINVAL, name,
                    "not an image: only %zu bytes, too short for a JPEG or "
                    "PNG header", len);
    return fail(err, -EINVAL, name,
                "not an image: starts with bytes %02x %02x %02x %02x, "
                "which match neither JPEG nor PNG", b[0], b[1], b[2], b[3]);
}

static int check_pixel_limit(struct error *err, const char *name,
                             uint64_t width, uint64_t height)
{
    uint64_t pixels = width * height;

    if (width == 0 || height == 0)
        return fail(err, -EBADMSG, name, "invalid image size %llux%llu",
                    (unsigned long long)width, (unsigned long long)height);
    if (pixels > IMAGE_MAX_PIXELS)
        return fail(err, -EFBIG, name,
                    "image is %llux%llu = %llu pixels, more than the limit "
                    "of %u (IMAGE_MAX_PIXELS); downscale it",
                    (unsigned long long)width, (unsigned long long)height,
                    (unsigned long long)pixels, IMAGE_MAX_PIXELS);
    return 0;
}

void image_free(struct image *img)
{
    if (img == NULL)
        return;
    free(img->pixels);
    memset(img, 0, sizeof(*img));
}

/* ------------------------------------------------------------------------
 * EXIF orientation
 */

static unsigned read_u16(const uint8_t *p, bool little_endian)
{
    if (little_endian)
        return (unsigned)p[0] | (unsigned)p[1] << 8;
    return (unsigned)p[0] << 8 | (unsigned)p[1];
}

static uint32_t read_u32(const uint8_t *p, bool little_endian)
{
    if (little_endian)
        return (uint32_t)read_u16(p, true) |
               (uint32_t)read_u16(p + 2, true) << 16;
    return (uint32_t)read_u16(p, false) << 16 | read_u16(p + 2, false);
}

/* Return the orientation tag (0x0112) of IFD0 in the payload of an APP1
 * marker, or 0 when the payload is not Exif or has no valid tag. The
 * payload is "Exif\0\0" and a TIFF header: byte order "II" or "MM", the
 * number 42, and the offset of IFD0, whose 12-byte entries hold tag,
 * type, count and value. Every offset is checked against len. */
static int exif_orientation(const uint8_t *data, size_t len)
{
    const uint8_t *tiff = data + 6;
    size_t tiff_len;
    bool little_endian;
    uint32_t ifd;
    unsigned count;

    if (len < 6 + 8 || memcmp(data, "Exif\0\0", 6) != 0)
        return 0;
    tiff_len = len - 6;

    if (memcmp(tiff, "II", 2) == 0)
        little_endian = true;
    else if (memcmp(tiff, "MM", 2) == 0)
        little_endian = false;
    else
        return 0;
    if (read_u16(tiff + 2, little_endian) != 42)
        return 0;

    ifd = read_u32(tiff + 4, little_endian);
    if (ifd > tiff_len - 2)
        return 0;
    count = read_u16(tiff + ifd, little_endian);

    for (unsigned i = 0; i < count; i++) {
        size_t entry = (size_t)ifd + 2 + 12 * (size_t)i;
        unsigned type, value;

        if (entry + 12 > tiff_len)
            break;
        if (read_u16(tiff + entry, little_endian) != 0x0112)
            continue;
        type = read_u16(tiff + entry + 2, little_endian);
        if (type != 3 || read_u32(tiff + entry + 4, little_endian) < 1)
            return 0; /* the tag must be one SHORT */
        value = read_u16(tiff + entry + 8, little_endian);
        return value >= 1 && value <= 8 ? (int)value : 0;
    }
    return 0;
}

/* Placement of one source row in the oriented image: pixel x of source
 * row y lands at output pixel index start + x * step. */
struct row_placement {
    ptrdiff_t start;
    ptrdiff_t step;
};

/* For a source of width w and height h. Orientations 5-8 swap the axes,
 * so the output is h pixels wide. The cases follow the EXIF 2.3 table:
 * 2 mirrors left-right, 3 rotates 180 degrees, 4 mirrors top-bottom,
 * 5 transposes, 6 rotates 90 degrees clockwise, 7 transverses and 8
 * rotates 90 degrees counter-clockwise. */
static struct row_placement place_row(int orientation, ptrdiff_t w,
                                      ptrdiff_t h, ptrdiff_t y)
{
    switch (orientation) {
    case 2:
        return (struct row_placement){y * w + w - 1, -1};
    case 3:
        return (struct row_placement){(h - 1 - y) * w + w - 1, -1};
    case 4:
        return (struct row_placement){(h - 1 - y) * w, 1};
    case 5:
        return (struct row_placement){y, h};
    case 6:
        return (struct row_placement){h - 1 - y, h};
    case 7:
        return (struct row_placement){(w - 1) * h + h - 1 - y, -h};
    case 8:
        return (struct row_placement){(w - 1) * h + y, -h};
    default:
        return (struct row_placement){y * w, 1};
    }
}

/* ------------------------------------------------------------------------
 * JPEG
 */

/* libjpeg error manager. mgr must stay the first member because libjpeg
 * passes a pointer to it to the callbacks. */
struct jpeg_failure {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char text[JMSG_LENGTH_MAX];
};

/* Decoder state that must survive a longjmp, kept on the heap. */
struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_failure failure;
    const void *data; /* source in memory, or */
    size_t len;
    FILE *file;       /* source file, for probing */
    uint8_t *pixels;
    uint8_t *row;
};

static void jpeg_on_error(j_common_ptr cinfo)
{
    struct jpeg_failure *failure = (struct jpeg_failure *)cinfo->err;

    failure->mgr.format_message(cinfo, failure->text);
    longjmp(failure->jump, 1);
}

/* Warnings that mean image data were lost and replaced by gray. */
static bool jpeg_warning_loses_data(int code)
{
    switch (code) {
    case JWRN_ARITH_BAD_CODE:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_JPEG_EOF:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
        return true;
    default:
        return false;
    }
}

/* Level -1 is a warning and higher levels are trace messages. Nothing is
 * printed: harmless warnings are dropped and the others fail the decode
 * like an error.
 *
 * The end of the file (JWRN_JPEG_EOF) is an exception in sequential
 * JPEGs. The Huffman decoder reads ahead, so a file that lacks only its
 * EOI marker hits the end after its last bits are in the buffer. libjpeg
 * then appends an EOI, and if any MCU still needed data it warns with
 * JWRN_HIT_MARKER, which is fatal. A progressive file cut between scans
 * gives no such warning, so there the end of the file itself is fatal. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    int code = cinfo->err->msg_code;

    if (level != -1)
        return;
    if (code == JWRN_JPEG_EOF &&
        !((j_decompress_ptr)cinfo)->progressive_mode)
        return;
    if (jpeg_warning_loses_data(code))
        jpeg_on_error(cinfo);
}

static int jpeg_find_orientation(j_decompress_ptr cinfo)
{
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        int orientation;

        if (m->marker != JPEG_APP0 + 1)
            continue;
        orientation = exif_orientation(m->data, m->data_length);
        if (orientation != 0)
            return orientation;
    }
    return 1;
}

static uint8_t multiply_255(unsigned a, unsigned b)
{
    return (uint8_t)((a * b + 127) / 255);
}

/* Convert one CMYK sample to RGB. Adobe files store the inks inverted
 * (255 is no ink), which is what saw_Adobe_marker signals. */
static void cmyk_to_rgb(const uint8_t *cmyk, bool inverted, uint8_t *rgb)
{
    unsigned c = cmyk[0], m = cmyk[1], y = cmyk[2], k = cmyk[3];

    if (!inverted) {
        c = 255 - c;
        m = 255 - m;
        y = 255 - y;
        k = 255 - k;
    }
    rgb[0] = multiply_255(c, k);
    rgb[1] = multiply_255(m, k);
    rgb[2] = multiply_255(y, k);
}

static void jpeg_store_row(struct jpeg_job *job, int orientation,
                           ptrdiff_t y)
{
    j_decompress_ptr cinfo = &job->cinfo;
    ptrdiff_t w = cinfo->output_width;
    struct row_placement place =
        place_row(orientation, w, cinfo->output_height, y);
    bool cmyk = cinfo->out_color_space == JCS_CMYK;

    for (ptrdiff_t x = 0; x < w; x++) {
        uint8_t *dst = job->pixels + (place.start + x * place.step) * 3;

        if (cmyk) {
            cmyk_to_rgb(job->row + x * 4, cinfo->saw_Adobe_marker, dst);
        } else {
            memcpy(dst, job->row + x * 3, 3);
        }
    }
}

/* Read the header and, when img is not NULL, the pixels. libjpeg errors
 * longjmp out of this function to jpeg_run. */
static int jpeg_steps(struct jpeg_job *job, const char *name,
                      struct image_info *info, struct image *img,
                      struct error *err)
{
    j_decompress_ptr cinfo = &job->cinfo;
    int orientation;
    int rc;

    jpeg_create_decompress(cinfo);
    if (job->file != NULL)
        jpeg_stdio_src(cinfo, job->file);
    else
        jpeg_mem_src(cinfo, job->data, job->len);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(cinfo, TRUE);

    rc = check_pixel_limit(err, name, cinfo->image_width,
                           cinfo->image_height);
    if (rc != 0)
        return rc;
    orientation = jpeg_find_orientation(cinfo);
    info->format = IMAGE_FORMAT_JPEG;
    info->orientation = orientation;
    info->width = (int)(orientation >= 5 ? cinfo->image_height
                                         : cinfo->image_width);
    info->height = (int)(orientation >= 5 ? cinfo->image_width
                                          : cinfo->image_height);
    if (img == NULL)
        return 0;

    if (cinfo->jpeg_color_space == JCS_CMYK ||
        cinfo->jpeg_color_space == JCS_YCCK)
        cinfo->out_color_space = JCS_CMYK;
    else
        cinfo->out_color_space = JCS_RGB;
    jpeg_start_decompress(cinfo);

    job->pixels = malloc((size_t)info->width * (size_t)info->height * 3);
    job->row = malloc((size_t)cinfo->output_width *
                      (size_t)cinfo->output_components);
    if (job->pixels == NULL || job->row == NULL)
        return fail(err, -ENOMEM, name, "out of memory decoding %dx%d",
                    info->width, info->height);

    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW rows[1] = {job->row};
        ptrdiff_t y = cinfo->output_scanline;

        jpeg_read_scanlines(cinfo, rows, 1);
        jpeg_store_row(job, orientation, y);
    }
    /* No jpeg_finish_decompress: it reads on to the EOI marker, and a
     * file whose image data are complete but lacks EOI is usable. */

    img->width = info->width;
    img->height = info->height;
    img->channels = 3;
    img->pixels = job->pixels;
    job->pixels = NULL;
    return 0;
}

static int jpeg_run(struct jpeg_job *job, const char *name,
                    struct image_info *info, struct image *img,
                    struct error *err)
{
    int rc;

    job->cinfo.err = jpeg_std_error(&job->failure.mgr);
    job->failure.mgr.error_exit = jpeg_on_error;
    job->failure.mgr.emit_message = jpeg_on_message;

    if (setjmp(job->failure.jump) == 0) {
        rc = jpeg_steps(job, name, info, img, err);
    } else if (job->failure.mgr.msg_code == JERR_OUT_OF_MEMORY) {
        rc = fail(err, -ENOMEM, name, "out of memory in libjpeg: %s",
                  job->failure.text);
    } else {
        rc = fail(err, -EBADMSG, name,
                  "corrupt, truncated or unsupported JPEG: %s",
                  job->failure.text);
    }

    jpeg_destroy_decompress(&job->cinfo);
    free(job->pixels);
    free(job->row);
    return rc;
}

static int jpeg_decode(const void *data, size_t len, FILE *file,
                       const char *name, struct image_info *info,
                       struct image *img, struct error *err)
{
    struct jpeg_job *job = calloc(1, sizeof(*job));
    int rc;

    if (job == NULL)
        return fail(err, -ENOMEM, name, "out of memory");
    job->data = data;
    job->len = len;
    job->file = file;
    rc = jpeg_run(job, name, info, img, err);
    free(job);
    return rc;
}

/* ------------------------------------------------------------------------
 * PNG
 */

static int png_fail(struct error *err, const char *name, int spng_code)
{
    if (spng_code == SPNG_EMEM)
        return fail(err, -ENOMEM, name, "out of memory in libspng");
    if (spng_code == SPNG_IO_EOF)
        return fail(err, -EBADMSG, name, "truncated PNG: the file ends "
                    "early");
    if (spng_code == SPNG_IO_ERROR)
        return fail(err, -EIO, name, "read error in PNG");
    return fail(err, -EBADMSG, name, "corrupt PNG: %s",
                spng_strerror(spng_code));
}

/* Read the IHDR of an open context and check the pixel limit. */
static int png_header(spng_ctx *ctx, const char *name,
                      struct image_info *info, struct error *err)
{
    struct spng_ihdr ihdr;
    int rc = spng_get_ihdr(ctx, &ihdr);

    if (rc != 0)
        return png_fail(err, name, rc);
    rc = check_pixel_limit(err, name, ihdr.width, ihdr.height);
    if (rc != 0)
        return rc;
    info->format = IMAGE_FORMAT_PNG;
    info->width = (int)ihdr.width;
    info->height = (int)ihdr.height;
    info->orientation = 1;
    return 0;
}

/* Verify the CRC of the IHDR chunk in the first 33 bytes of a PNG.
 * libspng returns IHDR before it checks the CRC, which it does only when
 * it reads on, so probing needs this to catch a damaged header. */
static int png_check_ihdr_crc(const uint8_t *b, size_t len, const char *name,
                              struct error *err)
{
    uint32_t stored;

    if (len < 33 || memcmp(b + 12, "IHDR", 4) != 0)
        return 0; /* libspng reports the missing or misplaced IHDR */
    stored = (uint32_t)b[29] << 24 | (uint32_t)b[30] << 16 |
             (uint32_t)b[31] << 8 | b[32];
    if (stored != (uint32_t)crc32(0, b + 12, 17))
        return fail(err, -EBADMSG, name,
                    "corrupt PNG: the IHDR chunk fails its CRC check");
    return 0;
}

static int png_decode(const void *data, size_t len, const char *name,
                      struct image *img, struct error *err)
{
    spng_ctx *ctx = spng_ctx_new(0);
    struct image_info info;
    size_t size = 0;
    uint8_t *pixels = NULL;
    int rc;

    if (ctx == NULL)
        return fail(err, -ENOMEM, name, "out of memory in libspng");
    spng_set_png_buffer(ctx, data, len);

    rc = png_header(ctx, name, &info, err);
    if (rc != 0)
        goto out;

    rc = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &size);
    if (rc != 0) {
        rc = png_fail(err, name, rc);
        goto out;
    }
    pixels = malloc(size);
    if (pixels == NULL) {
        rc = fail(err, -ENOMEM, name, "out of memory decoding %dx%d",
                  info.width, info.height);
        goto out;
    }
    rc = spng_decode_image(ctx, pixels, size, SPNG_FMT_RGB8, 0);
    if (rc != 0) {
        rc = png_fail(err, name, rc);
        goto out;
    }

    img->width = info.width;
    img->height = info.height;
    img->channels = 3;
    img->pixels = pixels;
    pixels = NULL;
out:
    free(pixels);
    spng_ctx_free(ctx);
    return rc;
}

int image_encode_png(const void *pixels, int width, int height, int channels,
                     int bit_depth, void **png, size_t *len,
                     struct error *err)
{
    static const uint8_t color_types[] = {
        0, SPNG_COLOR_TYPE_GRAYSCALE, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA,
        SPNG_COLOR_TYPE_TRUECOLOR, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA};
    struct spng_ihdr ihdr = {0};
    spng_ctx *ctx;
    size_t size;
    int rc;

    if (width <= 0 || height <= 0 || channels < 1 || channels > 4 ||
        (bit_depth != 8 && bit_depth != 16))
        return error_set(err, -EINVAL,
                         "invalid PNG parameters %dx%d, %d channels, "
                         "%d bits; expected a positive size, 1-4 channels "
                         "and 8 or 16 bits", width, height, channels,
                         bit_depth);
    size = (size_t)width * (size_t)height * (size_t)channels *
           (size_t)(bit_depth / 8);

    ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    if (ctx == NULL)
        return error_set(err, -ENOMEM, "out of memory in libspng");
    ihdr.width = (uint32_t)width;
    ihdr.height = (uint32_t)height;
    ihdr.bit_depth = (uint8_t)bit_depth;
    ihdr.color_type = color_types[channels];
    spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    rc = spng_set_ihdr(ctx, &ihdr);
    /* SPNG_FMT_PNG takes 16-bit samples in host byte order (spng.h). */
    if (rc == 0)
        rc = spng_encode_image(ctx, pixels, size, SPNG_FMT_PNG,
                               SPNG_ENCODE_FINALIZE);
    if (rc == 0)
        *png = spng_get_png_buffer(ctx, len, &rc);
    spng_ctx_free(ctx);
    if (rc != 0)
        return error_set(err, rc == SPNG_EMEM ? -ENOMEM : -EIO,
                         "cannot encode %dx%d PNG: %s", width, height,
                         spng_strerror(rc));
    return 0;
}

static int write_whole_file(const char *path, const void *data, size_t len,
                            struct error *err)
{
    FILE *f = fopen(path, "wb");
    int rc = 0;

    if (f == NULL)
        return error_errno(err, errno, "cannot create '%s'", path);
    if (fwrite(data, 1, len, f) != len)
        rc = error_errno(err, errno, "cannot write '%s'", path);
    if (fclose(f) != 0 && rc == 0)
        rc = error_errno(err, errno, "cannot write '%s'", path);
    return rc;
}

int image_write_png(const char *path, const void *pixels, int width,
                    int height, int channels, int bit_depth,
                    struct error *err)
{
    void *png = NULL;
    size_t len = 0;
    int rc;

    rc = image_encode_png(pixels, width, height, channels, bit_depth, &png,
                          &len, err);
    if (rc != 0)
        return rc;
    rc = write_whole_file(path, png, len, err);
    free(png);
    return rc;
}

/* ------------------------------------------------------------------------
 * Probing and decoding entry points
 */

int image_probe(const void *data, size_t len, const char *name,
                struct image_info *info, struct error *err)
{
    spng_ctx *ctx;
    int rc;

    memset(info, 0, sizeof(*info));
    switch (image_detect_format(data, len)) {
    case IMAGE_FORMAT_JPEG:
        return jpeg_decode(data, len, NULL, name, info, NULL, err);
    case IMAGE_FORMAT_PNG:
        rc = png_check_ihdr_crc(data, len, name, err);
        if (rc != 0)
            return rc;
        ctx = spng_ctx_new(0);
        if (ctx == NULL)
            return fail(err, -ENOMEM, name, "out of memory in libspng");
        spng_set_png_buffer(ctx, data, len);
        rc = png_header(ctx, name, info, err);
        spng_ctx_free(ctx);
        return rc;
    default:
        return fail_not_image(err, name, data, len);
    }
}

int image_probe_file(const char *path, struct image_info *info,
                     struct error *err)
{
    uint8_t magic[33]; /* enough for the PNG signature and IHDR */
    size_t got;
    spng_ctx *ctx;
    FILE *f;
    int rc;

    memset(info, 0, sizeof(*info));
    f = fopen(path, "rb");
    if (f == NULL)
        return error_errno(err, errno, "cannot open '%s'", path);
    got = fread(magic, 1, sizeof(magic), f);
    if (ferror(f)) {
        rc = error_errno(err, errno, "cannot read '%s'", path);
        fclose(f);
        return rc;
    }
    rewind(f);

    switch (image_detect_format(magic, got)) {
    case IMAGE_FORMAT_JPEG:
        rc = jpeg_decode(NULL, 0, f, path, info, NULL, err);
        break;
    case IMAGE_FORMAT_PNG:
        rc = png_check_ihdr_crc(magic, got, path, err);
        if (rc != 0)
            break;
        ctx = spng_ctx_new(0);
        if (ctx == NULL) {
            rc = fail(err, -ENOMEM, path, "out of memory in libspng");
            break;
        }
        spng_set_png_file(ctx, f);
        rc = png_header(ctx, path, info, err);
        spng_ctx_free(ctx);
        break;
    default:
        rc = fail_not_image(err, path, magic, got);
        break;
    }
    fclose(f);
    return rc;
}

int image_decode(const void *data, size_t len, const char *name,
                 struct image *img, struct error *err)
{
    struct image_info info;

    memset(img, 0, sizeof(*img));
    switch (image_detect_format(data, len)) {
    case IMAGE_FORMAT_JPEG:
        return jpeg_decode(data, len, NULL, name, &info, img, err);
    case IMAGE_FORMAT_PNG:
        return png_decode(data, len, name, img, err);
    default:
        return fail_not_image(err, name, data, len);
    }
}

int image_decode_file(const char *path, struct image *img,
                      struct error *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc;

    memset(img, 0, sizeof(*img));
    rc = fs_read_file(path, IMAGE_MAX_FILE_BYTES, &data, &len, err);
    if (rc != 0)
        return rc;
    rc = image_decode(data, len, path, img, err);
    free(data);
    return rc;
}

/* ------------------------------------------------------------------------
 * Bilinear resizing
 */

/* The two source pixels that one output pixel blends along one axis, and
 * the weight of the second. */
struct axis_tap {
    int first;
    int second;
    float weight;
};

/* Output pixel i has its center at source coordinate
 * (i + 0.5) * src / dst - 0.5, clamped to the edge pixels, as in OpenCV's
 * INTER_LINEAR. */
static struct axis_tap *make_taps(int src, int dst)
{
    struct axis_tap *taps = malloc(sizeof(*taps) * (size_t)dst);
    double scale = (double)src / dst;

    if (taps == NULL)
        return NULL;
    for (int i = 0; i < dst; i++) {
        double pos = (i + 0.5) * scale - 0.5;
        int first;

        if (pos < 0)
            pos = 0;
        if (pos > src - 1)
            pos = src - 1;
        first = (int)pos;
        taps[i].first = first;
        taps[i].second = first + 1 < src ? first + 1 : first;
        taps[i].weight = (float)(pos - first);
    }
    return taps;
}

static int check_resize(const struct image *src, int width, int height,
                        struct error *err)
{
    if (src->pixels == NULL || src->width <= 0 || src->height <= 0 ||
        (src->channels != 1 && src->channels != 3))
        return error_set(err, -EINVAL,
                         "cannot resize a %dx%d image with %d channels; "
                         "expected a decoded image with 1 or 3 channels",
                         src->width, src->height, src->channels);
    if (width <= 0 || height <= 0 ||
        (uint64_t)width * (uint64_t)height > IMAGE_MAX_PIXELS)
        return error_set(err, -EINVAL,
                         "invalid resize target %dx%d; expected a positive "
                         "size of at most %u pixels", width, height,
                         IMAGE_MAX_PIXELS);
    return 0;
}

/* Blend channel c of the source at the taps of one output pixel. */
static inline float sample_bilinear(const struct image *src,
                                    const struct axis_tap *tx,
                                    const struct axis_tap *ty, int c)
{
    const uint8_t *p = src->pixels;
    size_t stride = (size_t)src->width * (size_t)src->channels;
    size_t ch = (size_t)src->channels;
    const uint8_t *row0 = p + (size_t)ty->first * stride;
    const uint8_t *row1 = p + (size_t)ty->second * stride;
    float top = row0[tx->first * ch + c] +
                tx->weight * (row0[tx->second * ch + c] -
                              row0[tx->first * ch + c]);
    float bottom = row1[tx->first * ch + c] +
                   tx->weight * (row1[tx->second * ch + c] -
                                 row1[tx->first * ch + c]);

    return top + ty->weight * (bottom - top);
}

int image_resize(const struct image *src, int width, int height,
                 struct image *dst, struct error *err)
{
    struct axis_tap *tx, *ty;
    size_t ch;
    int rc;

    memset(dst, 0, sizeof(*dst));
    rc = check_resize(src, width, height, err);
    if (rc != 0)
        return rc;
    ch = (size_t)src->channels;

    dst->pixels = malloc((size_t)width * (size_t)height * ch);
    tx = make_taps(src->width, width);
    ty = make_taps(src->height, height);
    if (dst->pixels == NULL || tx == NULL || ty == NULL) {
        free(dst->pixels);
        dst->pixels = NULL;
        free(tx);
        free(ty);
        return error_set(err, -ENOMEM, "out of memory resizing to %dx%d",
                         width, height);
    }
    dst->width = width;
    dst->height = height;
    dst->channels = src->channels;

    for (int y = 0; y < height; y++) {
        uint8_t *out = dst->pixels + (size_t)y * (size_t)width * ch;

        for (int x = 0; x < width; x++) {
            for (size_t c = 0; c < ch; c++) {
                float v = sample_bilinear(src, &tx[x], &ty[y], (int)c);

                out[(size_t)x * ch + c] = (uint8_t)(v + 0.5f);
            }
        }
    }
    free(tx);
    free(ty);
    return 0;
}

int image_resize_chw_float(const struct image *src, int width, int height,
                           float *out, struct error *err)
{
    size_t plane = (size_t)width * (size_t)height;
    struct axis_tap *tx, *ty;
    int rc;

    rc = check_resize(src, width, height, err);
    if (rc != 0)
        return rc;
    tx = make_taps(src->width, width);
    ty = make_taps(src->height, height);
    if (tx == NULL || ty == NULL) {
        free(tx);
        free(ty);
        return error_set(err, -ENOMEM, "out of memory resizing to %dx%d",
                         width, height);
    }

    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            size_t at = (size_t)y * (size_t)width + (size_t)x;

            for (int c = 0; c < src->channels; c++) {
                float v = sample_bilinear(src, &tx[x], &ty[y], c) *
                          (1.0f / 255.0f);

                out[(size_t)c * plane + at] = v;
                if (src->channels == 1) {
                    out[plane + at] = v;
                    out[2 * plane + at] = v;
                }
            }
        }
    }
    free(tx);
    free(ty);
    return 0;
}
