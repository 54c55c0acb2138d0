/*
 * Box overlap measures of kernels/detect.h. The formulas and the eps of
 * 1e-7 follow Ultralytics' bbox_iou (v8.x), so that CIoU values, and the
 * losses and assignments built on them, match it to float rounding.
 */
#include <math.h>

#include "detect.h"

#define DET_EPS 1e-7f

float det_iou(const float *a, const float *b)
{
    float iw = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
    float ih = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    float inter = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
    float area_a = (a[2] - a[0]) * (a[3] - a[1]);
    float area_b = (b[2] - b[0]) * (b[3] - b[1]);
    float uni = area_a + area_b - inter;

    return uni > 0 ? inter / uni : 0.0f;
}

float det_ciou(const float *a, const float *b)
{
    float w1 = a[2] - a[0], h1 = a[3] - a[1] + DET_EPS;
    float w2 = b[2] - b[0], h2 = b[3] - b[1] + DET_EPS;
    float iw = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
    float ih = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    float inter = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
    float uni = w1 * h1 + w2 * h2 - inter + DET_EPS;
    float iou = inter / uni;

    /* Squared diagonal of the smallest enclosing box, and squared
     * distance between the centres. */
    float cw = fmaxf(a[2], b[2]) - fminf(a[0], b[0]);
    float ch = fmaxf(a[3], b[3]) - fminf(a[1], b[1]);
    float c2 = cw * cw + ch * ch + DET_EPS;
    float dx = b[0] + b[2] - a[0] - a[2];
    float dy = b[1] + b[3] - a[1] - a[3];
    float rho2 = (dx * dx + dy * dy) / 4.0f;

    /* Aspect-ratio consistency term and its trade-off weight. */
    float d = atanf(w2 / h2) - atanf(w1 / h1);
    float v = 4.0f / (float)(M_PI * M_PI) * d * d;
    float alpha = v / (v - iou + (1.0f + DET_EPS));

    return iou - (rho2 / c2 + v * alpha);
}
