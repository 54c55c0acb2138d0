/* Whole numbers carried in JSON (see number.h). */
#include "number.h"

int number_whole(double d, int64_t min, int64_t max, int64_t *out)
{
    /* Written so that a NaN fails the range test. */
    if (!(d >= (double)min && d <= (double)max))
        return -1;
    if (d != (double)(int64_t)d)
        return -1;
    *out = (int64_t)d;
    return 0;
}
