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

struct chart_axes {
    /* The x axis runs from epoch 1 to this, or to the longest series'
     * count when that is larger, so a run's chart fills from the left. */
    size_t epochs;
    /* 1: the y axis runs from 0 to 1, for fractions such as mAP; 0: it
     * spans the values. */
    int fractions;
};

/* Draw the series on the canvas, replacing what it showed. */
void chart_draw(const char *canvas_id, double width, double height,
                const struct chart_series *series, size_t series_count,
                const struct chart_axes *axes);

#endif
