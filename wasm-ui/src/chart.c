/*
 * Line charts drawn with the canvas primitives of dom.js. The y range
 * is 0 to 1 for fractions. Otherwise it spans the smallest to the largest
 * value of all series, widened when they are all equal, so a flat line
 * stays visible. The x axis runs from epoch 1 to the larger of the axes'
 * epochs and the longest series' count.
 */
#include <stdio.h>

#include "chart.h"
#include "dom.h"

#define MARGIN_LEFT 48.0
#define MARGIN_TOP 24.0
#define MARGIN_RIGHT 12.0
#define MARGIN_BOTTOM 20.0

void chart_draw(const char *canvas_id, double width, double height,
                const struct chart_series *series, size_t series_count,
                const struct chart_axes *axes)
{
    double lo = 0, hi = 0, plot_w, plot_h, legend_x = MARGIN_LEFT;
    size_t longest = 0, axis_epochs;
    int have = 0;
    char label[32];

    canvas_clear(canvas_id);
    for (size_t s = 0; s < series_count; s++) {
        if (series[s].count > longest)
            longest = series[s].count;
        for (size_t i = 0; i < series[s].count; i++) {
            double v = series[s].values[i];

            if (!have || v < lo)
                lo = v;
            if (!have || v > hi)
                hi = v;
            have = 1;
        }
    }
    plot_w = width - MARGIN_LEFT - MARGIN_RIGHT;
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM;
    canvas_line(canvas_id, MARGIN_LEFT, MARGIN_TOP, MARGIN_LEFT,
                MARGIN_TOP + plot_h, "#8a93a6", 1);
    canvas_line(canvas_id, MARGIN_LEFT, MARGIN_TOP + plot_h,
                MARGIN_LEFT + plot_w, MARGIN_TOP + plot_h, "#8a93a6", 1);
    for (size_t s = 0; s < series_count; s++) {
        canvas_line(canvas_id, legend_x, 10, legend_x + 16, 10,
                    series[s].color, 3);
        canvas_text(canvas_id, legend_x + 20, 14, series[s].label,
                    "#1d2330");
        legend_x += 110;
    }
    if (!have) {
        canvas_text(canvas_id, MARGIN_LEFT + 8, MARGIN_TOP + plot_h / 2,
                    "No epochs yet", "#5b6475");
        return;
    }
    if (axes->fractions) {
        lo = 0;
        hi = 1;
    } else if (hi - lo < 1e-9) {
        lo -= 0.5;
        hi += 0.5;
    }
    axis_epochs = axes->epochs > longest ? axes->epochs : longest;
    snprintf(label, sizeof(label), "%.3g", hi);
    canvas_text(canvas_id, 2, MARGIN_TOP + 10, label, "#5b6475");
    snprintf(label, sizeof(label), "%.3g", lo);
    canvas_text(canvas_id, 2, MARGIN_TOP + plot_h, label, "#5b6475");
    snprintf(label, sizeof(label), "epoch %zu", axis_epochs);
    canvas_text(canvas_id, MARGIN_LEFT + plot_w - 56, height - 4, label,
                "#5b6475");
    for (size_t s = 0; s < series_count; s++) {
        const struct chart_series *c = &series[s];
        double step =
            axis_epochs > 1 ? plot_w / (double)(axis_epochs - 1) : 0;

        for (size_t i = 0; i < c->count; i++) {
            double x = MARGIN_LEFT + step * (double)i;
            double y = MARGIN_TOP + plot_h * (hi - c->values[i]) / (hi - lo);
            double px, py;

            if (c->count == 1) {
                /* One epoch: a short mark, since a line needs two. */
                canvas_line(canvas_id, x, y, x + 6, y, c->color, 3);
                continue;
            }
            if (i == 0)
                continue;
            px = MARGIN_LEFT + step * (double)(i - 1);
            py = MARGIN_TOP + plot_h * (hi - c->values[i - 1]) / (hi - lo);
            canvas_line(canvas_id, px, py, x, y, c->color, 2);
        }
    }
}
