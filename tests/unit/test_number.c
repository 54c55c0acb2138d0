/*
 * Unit tests of number.c: whole numbers read from JSON doubles, at and
 * beyond the edges of their range.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "number.h"

static void whole_numbers_accepted(void **state)
{
    static const double values[] = {0.0, 1.0, -7.0, 9007199254740992.0,
                                    -9007199254740992.0};
    int64_t out;

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        out = 12345;
        if (number_whole(values[i], -NUMBER_WHOLE_MAX, NUMBER_WHOLE_MAX,
                         &out) != 0)
            fail_msg("%.17g was rejected", values[i]);
        assert_true(out == (int64_t)values[i]);
    }
}

static void invalid_numbers_rejected(void **state)
{
    const double values[] = {0.5,      -1.25,     9007199254740994.0,
                             -9007199254740994.0, 1e300, -1e300,
                             INFINITY, -INFINITY, NAN};
    int64_t out = 12345;

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        if (number_whole(values[i], -NUMBER_WHOLE_MAX, NUMBER_WHOLE_MAX,
                         &out) != -1)
            fail_msg("%.17g was accepted", values[i]);
        assert_true(out == 12345);
    }
}

static void range_bounds_inclusive(void **state)
{
    int64_t out = 0;

    (void)state;
    assert_int_equal(number_whole(1.0, 1, 10, &out), 0);
    assert_true(out == 1);
    assert_int_equal(number_whole(10.0, 1, 10, &out), 0);
    assert_true(out == 10);
    assert_int_equal(number_whole(0.0, 1, 10, &out), -1);
    assert_int_equal(number_whole(11.0, 1, 10, &out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_numbers_accepted),
        cmocka_unit_test(invalid_numbers_rejected),
        cmocka_unit_test(range_bounds_inclusive),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
