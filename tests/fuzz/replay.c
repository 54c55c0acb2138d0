/*
 * Runs a fuzz target's seed corpus once, as a cmocka test program: one
 * test case per file of FUZZ_CORPUS, each passing the file's bytes to
 * LLVMFuzzerTestOneInput. `make test` links every target in tests/fuzz/
 * with this file and the sanitizer build, without libFuzzer. So each
 * target keeps compiling with gcc, and its seeds run under
 * AddressSanitizer and UndefinedBehaviorSanitizer on every test run.
 * The seeds include the inputs of past findings. A target reports a failed
 * check by aborting, which ends this program with a non-zero status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_CORPUS
#error "compile with -DFUZZ_CORPUS=\"folder of the seed inputs\""
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional in a target, as in libFuzzer. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static void run_input(void **state)
{
    const char *path = *state;
    FILE *f = fopen(path, "rb");
    uint8_t *data;
    long size;

    if (f == NULL)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    /* One byte more, so that an empty input still has a buffer. */
    data = malloc((size_t)size + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    assert_int_equal(LLVMFuzzerTestOneInput(data, (size_t)size), 0);
    free(data);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    DIR *dir = opendir(FUZZ_CORPUS);
    struct dirent *entry;
    char **paths = NULL;
    struct CMUnitTest *tests;
    size_t count = 0;
    int failed;

    if (dir == NULL) {
        fprintf(stderr, "replay: cannot open the corpus folder %s\n",
                FUZZ_CORPUS);
        return 1;
    }
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        paths = realloc(paths, (count + 1) * sizeof(*paths));
        if (paths == NULL ||
            asprintf(&paths[count], "%s/%s", FUZZ_CORPUS, entry->d_name) < 0)
            return 1;
        count++;
    }
    closedir(dir);
    if (count == 0) {
        fprintf(stderr, "replay: the corpus folder %s is empty\n",
                FUZZ_CORPUS);
        return 1;
    }
    qsort(paths, count, sizeof(*paths), by_name);

    /* Password hashes at libsodium's minimum cost, as scripts/fuzz.sh
     * runs the targets. */
    setenv("TRAINYARD_PWHASH", "fast", 0);
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);

    tests = calloc(count, sizeof(*tests));
    if (tests == NULL)
        return 1;
    for (size_t i = 0; i < count; i++) {
        tests[i].name = strrchr(paths[i], '/') + 1;
        tests[i].test_func = run_input;
        tests[i].initial_state = paths[i];
    }
    failed = _cmocka_run_group_tests(FUZZ_CORPUS, tests, count, NULL, NULL);
    for (size_t i = 0; i < count; i++)
        free(paths[i]);
    free(paths);
    free(tests);
    return failed == 0 ? 0 : 1;
}
