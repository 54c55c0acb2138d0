/*
 * Line charts on a <canvas>: one or more series over epochs, with the
 * value range on the left and a legend on top. The drawing is in canvas
 * pixels (the element's width and height attributes), and CSS scales the
 * element to the page.
 */
#ifndef TRAINYARD_UI_CHART_H
#define TRAINYARD_UI_CHART_H

#include <stddef.h>

struct chart_series {
    const char *label;
    const char *color;
    const double *values;   /* values[i] belongs to epoch i + 1 */
    size_t count;
};

/* Draw the series on the canvas, replacing what it showed. */
void chart_draw(const char *canvas_id, double width, double height,
                const struct chart_series *series, size_t series_count);

#endif
