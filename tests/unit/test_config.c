/* Tests of the backend configuration file and its value parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "fsutil.h"
#include "harness.h"

static int load_text(struct config *c, const char *text, struct error *err)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    int rc;

    harness_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/c.yaml", dir);
    assert_int_equal(fs_write_atomic(path, text, strlen(text), 0644, err),
                     0);
    config_defaults(c);
    rc = config_load(c, path, err);
    harness_rmtree(dir);
    return rc;
}

static void dollars_parse_exactly(void **state)
{
    static const struct {
        const char *text;
        int64_t micro;
    } good[] = {
        {"0", 0},           {"2", 2000000},       {"0.5", 500000},
        {".25", 250000},    {"1.234567", 1234567}, {"10.", 10000000},
        {"999999999999", 999999999999000000LL},
    };
    static const char *const bad[] = {
        "", ".", "-1", "+1", "1.2345678", "1,5", "1e3", "abc", " 1",
        "1000000000000",
    };
    int64_t v;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(config_parse_dollars(good[i].text, &v), 0);
        assert_int_equal(v, good[i].micro);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (config_parse_dollars(bad[i], &v) == 0)
            fail_msg("'%s' parsed as %lld but is invalid", bad[i],
                     (long long)v);
}

static void defaults_offer_one_cpu_type(void **state)
{
    struct config c;

    (void)state;
    config_defaults(&c);
    assert_int_equal(c.ntypes, 1);
    assert_string_equal(c.types[0].device, "cpu");
    assert_int_equal(c.types[0].price_per_hour, 500000);
    assert_int_equal(c.listen_port, 8081);
    assert_int_equal(c.heartbeat_timeout_s, 120);
    assert_int_equal(c.trainer_nice, 10);
}

static void file_sets_every_key(void **state)
{
    struct config c;
    struct error err = {0};

    (void)state;
    assert_int_equal(load_text(&c,
                               "listen: 127.0.0.1:9000\n"
                               "unix_socket: /run/ty.sock\n"
                               "data: /srv/ty\n"
                               "train: /opt/ty/train\n"
                               "heartbeat_timeout_s: 30\n"
                               "stop_timeout_s: 5\n"
                               "trainer_nice: 0\n"
                               "payment_provider: operator\n"
                               "instance_types:\n"
                               "  - name: cpu\n"
                               "    device: cpu\n"
                               "    price_per_hour: \"0.10\"\n"
                               "    capacity: 4\n"
                               "  - name: h200\n"
                               "    device: \"0\"\n"
                               "    price_per_hour: 3.5\n"
                               "    capacity: 8\n",
                               &err),
                     0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 9000);
    assert_string_equal(c.unix_socket, "/run/ty.sock");
    assert_string_equal(c.data_dir, "/srv/ty");
    assert_string_equal(c.train_program, "/opt/ty/train");
    assert_int_equal(c.heartbeat_timeout_s, 30);
    assert_int_equal(c.stop_timeout_s, 5);
    assert_int_equal(c.trainer_nice, 0);
    assert_string_equal(c.payment_provider, "operator");
    assert_int_equal(c.ntypes, 2);
    assert_int_equal(c.types[0].capacity, 4);
    assert_int_equal(c.types[0].price_per_hour, 100000);
    assert_int_equal(c.types[1].price_per_hour, 3500000);
    /* One training per GPU, whatever the file says. */
    assert_int_equal(c.types[1].capacity, 1);
}

static void invalid_files_name_the_key(void **state)
{
    static const struct {
        const char *yaml, *message;
    } cases[] = {
        {"colour: red\n", "unknown key 'colour'"},
        {"listen: nowhere\n", "invalid listen 'nowhere'"},
        {"heartbeat_timeout_s: 0\n", "invalid heartbeat_timeout_s '0'"},
        {"trainer_nice: 20\n", "invalid trainer_nice '20'"},
        {"trainer_nice: -5\n", "invalid trainer_nice '-5'"},
        {"payment_provider: paypal\n", "invalid payment_provider 'paypal'"},
        {"instance_types: cpu\n", "instance_types must be a list"},
        {"instance_types:\n  - name: a\n    device: cpu\n",
         "needs name, device and price_per_hour"},
        {"instance_types:\n  - name: a\n    device: gpu\n"
         "    price_per_hour: 1\n",
         "must be cpu or a CUDA device number"},
        {"instance_types:\n  - name: a\n    device: cpu\n"
         "    price_per_hour: -1\n",
         "invalid instance_types[0].price_per_hour '-1'"},
        {"instance_types:\n  - {name: a, device: cpu, price_per_hour: 1}\n"
         "  - {name: a, device: cpu, price_per_hour: 2}\n",
         "listed twice"},
        {"listen: [\n", "not valid YAML"},
        {"- a\n- b\n", "must be a mapping"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config c;
        struct error err = {0};
        if (load_text(&c, cases[i].yaml, &err) == 0)
            fail_msg("case %zu loaded but should fail", i);
        if (strstr(err.msg, cases[i].message) == NULL)
            fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg,
                     cases[i].message);
    }
}

static void missing_file_named(void **state)
{
    struct config c;
    struct error err = {0};

    (void)state;
    config_defaults(&c);
    assert_int_equal(config_load(&c, "/nonexistent/ty.yaml", &err), -ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent/ty.yaml"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dollars_parse_exactly),
        cmocka_unit_test(defaults_offer_one_cpu_type),
        cmocka_unit_test(file_sets_every_key),
        cmocka_unit_test(invalid_files_name_the_key),
        cmocka_unit_test(missing_file_named),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
