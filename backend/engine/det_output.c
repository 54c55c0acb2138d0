/*
 * Prediction output files (see det_output.h for their formats).
 *
 * Text and JSON are built in memory and written with fs_write_atomic, so
 * a reader never sees half a file. Drawing works on an RGB copy of the
 * image. Every rectangle is clipped to the image before its loops run,
 * so boxes far outside the image (a diverged model) cost nothing and
 * write nothing out of bounds.
 */
#include "engine/det_output.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

#define OUTPUT_MODE 0644
/* The golden angle as a fraction of a turn, (3 - sqrt(5)) / 2. */
#define HUE_STEP 0.3819660112501051
#define GLYPH_W 3
#define GLYPH_H 5

int det_boxes_unletterbox(struct det_box *boxes, int n, float scale,
                          float pad_x, float pad_y, int width, int height,
                          struct error *err)
{
    if (!(scale > 0.0f) || width < 1 || height < 1 || n < 0)
        return error_set(err, -EINVAL,
                         "invalid letterbox mapping: scale %g, image %d x "
                         "%d, %d boxes; expected scale > 0 and a non-empty "
                         "image",
                         (double)scale, width, height, n);
    for (int i = 0; i < n; i++) {
        struct det_box *b = &boxes[i];

        b->x1 = fminf(fmaxf((b->x1 - pad_x) / scale, 0.0f), (float)width);
        b->y1 = fminf(fmaxf((b->y1 - pad_y) / scale, 0.0f), (float)height);
        b->x2 = fminf(fmaxf((b->x2 - pad_x) / scale, 0.0f), (float)width);
        b->y2 = fminf(fmaxf((b->y2 - pad_y) / scale, 0.0f), (float)height);
    }
    return 0;
}

void det_class_color(int cls, uint8_t rgb[3])
{
    /* HSV with saturation 0.85 and value 0.95, hue by the golden angle. */
    double hue = fmod((double)(cls < 0 ? -cls : cls) * HUE_STEP, 1.0) * 6.0;
    double s = 0.85, v = 0.95;
    int sector = (int)hue;
    double f = hue - sector;
    double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    double r, g, b;

    switch (sector) {
    case 0: r = v; g = t; b = p; break;
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = t; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = t; g = p; b = v; break;
    default: r = v; g = p; b = q; break;
    }
    rgb[0] = (uint8_t)lround(r * 255);
    rgb[1] = (uint8_t)lround(g * 255);
    rgb[2] = (uint8_t)lround(b * 255);
}

static int check_boxes(const struct det_box *boxes, int n, int nc,
                       struct error *err)
{
    if (n < 0 || (n > 0 && boxes == NULL))
        return error_set(err, -EINVAL, "invalid box count %d", n);
    for (int i = 0; i < n; i++) {
        if (boxes[i].cls < 0 || (nc > 0 && boxes[i].cls >= nc))
            return error_set(err, -EINVAL,
                             "box %d has class %d: expected 0 to %d; pass "
                             "the model's class names",
                             i, boxes[i].cls, nc - 1);
    }
    return 0;
}

/* ---- Text ---------------------------------------------------------------- */

int det_output_write_txt(const char *path, const struct det_box *boxes,
                         int n, int width, int height, struct error *err)
{
    int rc = check_boxes(boxes, n, 0, err);

    if (rc != 0)
        return rc;
    if (width < 1 || height < 1)
        return error_set(err, -EINVAL, "%s: invalid image size %d x %d",
                         path, width, height);

    /* Six %g numbers take at most 13 characters each with their
     * separator, so 96 bytes hold any line. */
    size_t cap = (size_t)n * 96 + 1, len = 0;
    char *text = malloc(cap);
    if (text == NULL)
        return error_set(err, -ENOMEM, "%s: out of memory", path);
    text[0] = '\0';
    for (int i = 0; i < n; i++) {
        const struct det_box *b = &boxes[i];
        double xc = ((double)b->x1 + b->x2) / 2 / width;
        double yc = ((double)b->y1 + b->y2) / 2 / height;
        double w = ((double)b->x2 - b->x1) / width;
        double h = ((double)b->y2 - b->y1) / height;

        len += (size_t)snprintf(text + len, cap - len, "%d %g %g %g %g %g\n",
                                b->cls, xc, yc, w, h, (double)b->conf);
    }
    rc = fs_write_atomic(path, text, len, OUTPUT_MODE, err);
    free(text);
    return rc;
}

/* ---- JSON ---------------------------------------------------------------- */

static double round5(float v)
{
    return round((double)v * 1e5) / 1e5;
}

/* The name of class cls: names[cls], or its number in buf. */
static const char *class_name(const char *const *names, int cls, char *buf,
                              size_t size)
{
    if (names != NULL && names[cls] != NULL)
        return names[cls];
    snprintf(buf, size, "%d", cls);
    return buf;
}

static cJSON *box_json(const struct det_box *b, const char *name)
{
    cJSON *item = cJSON_CreateObject();
    cJSON *box = cJSON_CreateObject();

    if (item == NULL || box == NULL) {
        cJSON_Delete(item);
        cJSON_Delete(box);
        return NULL;
    }
    cJSON_AddNumberToObject(item, "class", b->cls);
    cJSON_AddStringToObject(item, "name", name);
    cJSON_AddNumberToObject(item, "confidence", round5(b->conf));
    cJSON_AddNumberToObject(box, "x1", round5(b->x1));
    cJSON_AddNumberToObject(box, "y1", round5(b->y1));
    cJSON_AddNumberToObject(box, "x2", round5(b->x2));
    cJSON_AddNumberToObject(box, "y2", round5(b->y2));
    cJSON_AddItemToObject(item, "box", box);
    return item;
}

int det_output_write_json(const char *path, const struct det_box *boxes,
                          int n, const char *const *names, int nc,
                          struct error *err)
{
    int rc = check_boxes(boxes, n, names != NULL ? nc : 0, err);

    if (rc != 0)
        return rc;

    cJSON *array = cJSON_CreateArray();
    for (int i = 0; array != NULL && i < n; i++) {
        char buf[16];
        cJSON *item = box_json(&boxes[i], class_name(names, boxes[i].cls,
                                                     buf, sizeof(buf)));
        if (item == NULL || !cJSON_AddItemToArray(array, item)) {
            cJSON_Delete(item);
            cJSON_Delete(array);
            array = NULL;
        }
    }
    char *text = array != NULL ? cJSON_Print(array) : NULL;
    cJSON_Delete(array);
    if (text == NULL)
        return error_set(err, -ENOMEM, "%s: out of memory", path);

    /* cJSON_Print ends without a newline; a text file should have one. */
    size_t len = strlen(text);
    char *file = malloc(len + 2);
    if (file == NULL) {
        cJSON_free(text);
        return error_set(err, -ENOMEM, "%s: out of memory", path);
    }
    memcpy(file, text, len);
    file[len] = '\n';
    cJSON_free(text);
    rc = fs_write_atomic(path, file, len + 1, OUTPUT_MODE, err);
    free(file);
    return rc;
}

/* ---- Drawing ------------------------------------------------------------- */

/* An RGB canvas. */
struct canvas {
    uint8_t *rgb;
    int width, height;
};

/* Fill the rectangle of pixels x0 .. x1, y0 .. y1 (inclusive), clipped. */
static void fill_rect(struct canvas *c, long x0, long y0, long x1, long y1,
                      const uint8_t color[3])
{
    if (x0 < 0)
        x0 = 0;
    if (y0 < 0)
        y0 = 0;
    if (x1 > c->width - 1)
        x1 = c->width - 1;
    if (y1 > c->height - 1)
        y1 = c->height - 1;
    for (long y = y0; y <= y1; y++) {
        uint8_t *row = c->rgb + ((size_t)y * c->width) * 3;
        for (long x = x0; x <= x1; x++)
            memcpy(row + x * 3, color, 3);
    }
}

/* Glyphs of the label font, rows top to bottom, '#' for a set pixel. */
struct glyph {
    char ch;
    const char *rows[GLYPH_H];
};

static const struct glyph font[] = {
    {' ', {"...", "...", "...", "...", "..."}},
    {'0', {"###", "#.#", "#.#", "#.#", "###"}},
    {'1', {".#.", "##.", ".#.", ".#.", "###"}},
    {'2', {"###", "..#", "###", "#..", "###"}},
    {'3', {"###", "..#", "###", "..#", "###"}},
    {'4', {"#.#", "#.#", "###", "..#", "..#"}},
    {'5', {"###", "#..", "###", "..#", "###"}},
    {'6', {"###", "#..", "###", "#.#", "###"}},
    {'7', {"###", "..#", "..#", ".#.", ".#."}},
    {'8', {"###", "#.#", "###", "#.#", "###"}},
    {'9', {"###", "#.#", "###", "..#", "###"}},
    {'A', {".#.", "#.#", "###", "#.#", "#.#"}},
    {'B', {"##.", "#.#", "##.", "#.#", "##."}},
    {'C', {".##", "#..", "#..", "#..", ".##"}},
    {'D', {"##.", "#.#", "#.#", "#.#", "##."}},
    {'E', {"###", "#..", "##.", "#..", "###"}},
    {'F', {"###", "#..", "##.", "#..", "#.."}},
    {'G', {".##", "#..", "#.#", "#.#", ".##"}},
    {'H', {"#.#", "#.#", "###", "#.#", "#.#"}},
    {'I', {"###", ".#.", ".#.", ".#.", "###"}},
    {'J', {"..#", "..#", "..#", "#.#", ".#."}},
    {'K', {"#.#", "#.#", "##.", "#.#", "#.#"}},
    {'L', {"#..", "#..", "#..", "#..", "###"}},
    {'M', {"#.#", "###", "###", "#.#", "#.#"}},
    {'N', {"##.", "#.#", "#.#", "#.#", "#.#"}},
    {'O', {".#.", "#.#", "#.#", "#.#", ".#."}},
    {'P', {"##.", "#.#", "##.", "#..", "#.."}},
    {'Q', {".#.", "#.#", "#.#", "##.", ".##"}},
    {'R', {"##.", "#.#", "##.", "#.#", "#.#"}},
    {'S', {".##", "#..", ".#.", "..#", "##."}},
    {'T', {"###", ".#.", ".#.", ".#.", ".#."}},
    {'U', {"#.#", "#.#", "#.#", "#.#", "###"}},
    {'V', {"#.#", "#.#", "#.#", "#.#", ".#."}},
    {'W', {"#.#", "#.#", "###", "###", "#.#"}},
    {'X', {"#.#", "#.#", ".#.", "#.#", "#.#"}},
    {'Y', {"#.#", "#.#", ".#.", ".#.", ".#."}},
    {'Z', {"###", "..#", ".#.", "#..", "###"}},
    {'.', {"...", "...", "...", "...", ".#."}},
    {'-', {"...", "...", "###", "...", "..."}},
    {'_', {"...", "...", "...", "...", "###"}},
    {':', {"...", ".#.", "...", ".#.", "..."}},
    {'/', {"..#", "..#", ".#.", "#..", "#.."}},
    {'?', {"###", "..#", ".#.", "...", ".#."}},
};

static const struct glyph *glyph_of(char ch)
{
    size_t count = sizeof(font) / sizeof(font[0]);

    if (ch >= 'a' && ch <= 'z')
        ch = (char)(ch - 'a' + 'A');
    for (size_t i = 0; i < count; i++)
        if (font[i].ch == ch)
            return &font[i];
    return &font[count - 1];
}

/* Draw text with its top-left corner at (x, y), each font pixel a
 * scale x scale square. */
static void draw_text(struct canvas *c, long x, long y, const char *text,
                      int scale, const uint8_t color[3])
{
    for (const char *p = text; *p != '\0'; p++) {
        const struct glyph *g = glyph_of(*p);

        for (int row = 0; row < GLYPH_H; row++)
            for (int col = 0; col < GLYPH_W; col++)
                if (g->rows[row][col] == '#')
                    fill_rect(c, x + col * scale, y + row * scale,
                              x + (col + 1) * scale - 1,
                              y + (row + 1) * scale - 1, color);
        x += (GLYPH_W + 1) * scale;
    }
}

/* A float coordinate as a pixel index, kept far from long's limits. */
static long pixel_of(float v)
{
    return (long)fmaxf(fminf(v, 1e7f), -1e7f);
}

static void draw_box(struct canvas *c, const struct det_box *b,
                     const char *name, int scale)
{
    uint8_t color[3], ink[3];
    char label[96];

    if (isnan(b->x1) || isnan(b->y1) || isnan(b->x2) || isnan(b->y2))
        return;
    det_class_color(b->cls, color);

    /* Pixels x0 .. x1 and y0 .. y1 are those the box covers. */
    long x0 = pixel_of(floorf(b->x1)), y0 = pixel_of(floorf(b->y1));
    long x1 = pixel_of(ceilf(b->x2)) - 1, y1 = pixel_of(ceilf(b->y2)) - 1;
    if (x1 < x0)
        x1 = x0;
    if (y1 < y0)
        y1 = y0;
    fill_rect(c, x0, y0, x1, y0 + 1, color);
    fill_rect(c, x0, y1 - 1, x1, y1, color);
    fill_rect(c, x0, y0, x0 + 1, y1, color);
    fill_rect(c, x1 - 1, y0, x1, y1, color);

    /* The label bar: text with one font pixel of margin, above the box,
     * or inside it when there is no room above. */
    snprintf(label, sizeof(label), "%s %.2f", name, (double)b->conf);
    long text_w = (long)strlen(label) * (GLYPH_W + 1) * scale - scale;
    long bar_w = text_w + 2 * scale, bar_h = (GLYPH_H + 2) * scale;
    long bar_x = x0 < 0 ? 0 : x0;
    long bar_y = y0 - bar_h >= 0 ? y0 - bar_h : (y0 < 0 ? 0 : y0);
    fill_rect(c, bar_x, bar_y, bar_x + bar_w - 1, bar_y + bar_h - 1, color);

    /* Black text on light colors, white on dark (luma of BT.601). */
    int luma = (299 * color[0] + 587 * color[1] + 114 * color[2]) / 1000;
    memset(ink, luma > 150 ? 0 : 255, sizeof(ink));
    draw_text(c, bar_x + scale, bar_y + scale, label, scale, ink);
}

int det_output_write_image(const char *path, const struct image *img,
                           const struct det_box *boxes, int n,
                           const char *const *names, int nc,
                           struct error *err)
{
    int rc = check_boxes(boxes, n, names != NULL ? nc : 0, err);

    if (rc != 0)
        return rc;
    if (img == NULL || img->pixels == NULL || img->width < 1 ||
        img->height < 1 || (img->channels != 1 && img->channels != 3))
        return error_set(err, -EINVAL,
                         "%s: invalid image to draw on (expected 1 or 3 "
                         "channels and a non-empty size)",
                         path);

    size_t pixels = (size_t)img->width * img->height;
    struct canvas c = {malloc(pixels * 3), img->width, img->height};
    if (c.rgb == NULL)
        return error_set(err, -ENOMEM, "%s: out of memory for %d x %d "
                         "pixels", path, img->width, img->height);
    if (img->channels == 3) {
        memcpy(c.rgb, img->pixels, pixels * 3);
    } else {
        for (size_t i = 0; i < pixels; i++)
            memset(c.rgb + i * 3, img->pixels[i], 3);
    }

    int shorter = img->width < img->height ? img->width : img->height;
    int scale = 1 + shorter / 640;
    for (int i = n - 1; i >= 0; i--) {
        char buf[16];
        draw_box(&c, &boxes[i],
                 class_name(names, boxes[i].cls, buf, sizeof(buf)), scale);
    }
    rc = image_write_png(path, c.rgb, c.width, c.height, 3, 8, err);
    free(c.rgb);
    return rc;
}

/* ---- All three ----------------------------------------------------------- */

/* The file name of path without folders and its last extension. */
static void file_stem(const char *path, char *stem, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot != NULL && dot != base ? (size_t)(dot - base)
                                            : strlen(base);

    if (len >= size)
        len = size - 1;
    memcpy(stem, base, len);
    stem[len] = '\0';
}

int det_output_save(const char *dir, const char *image_path,
                    const struct image *img, const struct det_box *boxes,
                    int n, const char *const *names, int nc,
                    struct error *err)
{
    char stem[NAME_MAX + 1], labels[PATH_MAX], path[PATH_MAX];
    int rc;

    file_stem(image_path, stem, sizeof(stem));
    if (stem[0] == '\0')
        return error_set(err, -EINVAL,
                         "invalid image path '%s': expected a file name",
                         image_path);
    if (snprintf(labels, sizeof(labels), "%s/labels", dir) >=
        (int)sizeof(labels))
        return error_set(err, -ENAMETOOLONG, "output folder too long: %s",
                         dir);
    rc = fs_mkdir_p(labels, 0755, err);
    if (rc != 0)
        return rc;

    if (snprintf(path, sizeof(path), "%s/%s.txt", labels, stem) >=
        (int)sizeof(path))
        return error_set(err, -ENAMETOOLONG, "output path too long: %s/%s",
                         labels, stem);
    rc = det_output_write_txt(path, boxes, n, img->width, img->height, err);
    if (rc != 0)
        return rc;

    snprintf(path, sizeof(path), "%s/%s.json", dir, stem);
    rc = det_output_write_json(path, boxes, n, names, nc, err);
    if (rc != 0)
        return rc;

    snprintf(path, sizeof(path), "%s/%s.png", dir, stem);
    return det_output_write_image(path, img, boxes, n, names, nc, err);
}
