/* Tests of `train devices`, which make run reads to offer a GPU instance
 * type for each CUDA device that can train. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "fsutil.h"
#include "harness.h"

/* Every line on standard output names a usable device ("0 cuda:0"), and
 * on a machine without one, standard error gives the reason. The command
 * succeeds in both cases, so that make run can always call it. */
static void devices_lists_or_explains(void **state)
{
    char train[512], dir[256], out[320], log[320];
    char *text = NULL, *why = NULL;
    size_t len = 0, why_len = 0;
    struct error err = {0};
    regex_t line;

    (void)state;
    harness_program("train", train, sizeof(train));
    harness_tmpdir(dir, sizeof(dir));
    snprintf(out, sizeof(out), "%s/out.txt", dir);
    snprintf(log, sizeof(log), "%s/err.txt", dir);
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "'%s' devices >'%s' 2>'%s'", train, out, log);
    int status = system(cmd);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    if (fs_read_file(out, 1 << 16, &text, &len, &err) != 0)
        fail_msg("%s", err.msg);
    if (fs_read_file(log, 1 << 16, &why, &why_len, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(regcomp(&line, "^[0-9]+ cuda:[0-9]+$", REG_EXTENDED), 0);
    int lines = 0;
    for (char *p = strtok(text, "\n"); p != NULL; p = strtok(NULL, "\n")) {
        if (regexec(&line, p, 0, NULL, 0) != 0)
            fail_msg("unexpected line '%s'", p);
        lines++;
    }
    if (lines == 0)
        assert_non_null(strstr(why, "no CUDA device can train"));
    regfree(&line);
    free(text);
    free(why);
    harness_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(devices_lists_or_explains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
