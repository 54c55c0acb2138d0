/*
 * `train predict` on a tiny detection model that the first test trains
 * for one epoch with the real `train` program. For each image of a
 * folder, or for one image, it writes labels/NAME.txt, NAME.json and
 * NAME.png under project/name and prints one line. Every box lies inside
 * its image, also for an image that is not square; max_det caps the boxes
 * and conf drops the weaker ones. A missing source or model fails with a
 * message that names its path.
 *
 * A model this briefly trained scores few anchors above the default
 * conf=0.25, so the bounds checks run with conf=0: NMS keeps the
 * candidates whose score exceeds conf, and a sigmoid score is above 0,
 * so every image gets boxes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "detset.h"
#include "engine/image.h"
#include "fsutil.h"
#include "harness.h"
#include "trainrun.h"

#define SIZE 64
#define CLASSES 1
/* Slack for the rounding of the output files: 6 significant digits in
 * the text files, 5 decimals in JSON. */
#define EPS 1e-4

static char workdir[PATH_MAX];
static char model[PATH_MAX + 64];
static char images[PATH_MAX + 16];

/* The images to predict on: four squares like the training ones, and one
 * wide image that is letterboxed with padding above and below. */
static const struct {
    const char *name;
    int width;
    int height;
} sources[] = {
    {"pred00", SIZE, SIZE}, {"pred01", SIZE, SIZE}, {"pred02", SIZE, SIZE},
    {"pred03", SIZE, SIZE}, {"wide04", 96, 48},
};
#define NSOURCES ((int)(sizeof(sources) / sizeof(sources[0])))

/* Boxes per source in the folder run at conf=0. */
static int boxes_at_conf0[NSOURCES];

static int next_random(unsigned *state, int below)
{
    *state = *state * 1103515245u + 12345u;
    return (int)((*state >> 16) % (unsigned)below);
}

/* A white square on black, of side 20 to 36, placed from seed. */
static struct detset_box random_square(unsigned *seed, int width, int height)
{
    struct detset_box box = {0, 0, 0, 0, 0};
    int side = 20 + next_random(seed, 17);

    box.width = box.height = side;
    box.x = next_random(seed, width - side + 1);
    box.y = next_random(seed, height - side + 1);
    return box;
}

static void write_training_set(const char *root)
{
    static const char *const names[] = {"square"};
    struct error err = {0};
    char name[32];

    if (detset_write_yaml(root, names, CLASSES, &err) != 0)
        fail_msg("%s", err.msg);
    for (int s = 0; s < 2; s++) {
        unsigned seed = 7u;
        const char *split = s == 0 ? "train" : "val";
        int count = s == 0 ? 8 : 4;
        for (int i = 0; i < count; i++) {
            struct detset_box box = random_square(&seed, SIZE, SIZE);
            snprintf(name, sizeof(name), "%s%02d", split, i);
            if (detset_write_image(root, split, name, SIZE, &box, 1, 1,
                                   &err) != 0)
                fail_msg("%s", err.msg);
        }
    }
}

static void write_sources(void)
{
    struct error err = {0};
    char path[PATH_MAX + 64];
    unsigned seed = 99u;

    assert_int_equal(fs_mkdir_p(images, 0755, &err), 0);
    for (int i = 0; i < NSOURCES; i++) {
        int w = sources[i].width, h = sources[i].height;
        unsigned char *px = calloc((size_t)w * h, 3);
        struct detset_box box = random_square(&seed, w, h);

        assert_non_null(px);
        for (int y = box.y; y < box.y + box.height; y++)
            memset(px + ((size_t)y * w + box.x) * 3, 255,
                   (size_t)box.width * 3);
        snprintf(path, sizeof(path), "%s/%s.png", images, sources[i].name);
        if (image_write_png(path, px, w, h, 3, 8, &err) != 0)
            fail_msg("%s", err.msg);
        free(px);
    }
}

static int make_workdir(void **state)
{
    (void)state;
    harness_tmpdir(workdir, sizeof(workdir));
    snprintf(images, sizeof(images), "%s/images", workdir);
    snprintf(model, sizeof(model), "%s/runs/tiny/weights/best.ckpt",
             workdir);
    return 0;
}

static int remove_workdir(void **state)
{
    (void)state;
    if (getenv("KEEP") == NULL)
        harness_rmtree(workdir);
    return 0;
}

static void expect_exit(int status, int code, const char *log)
{
    if (!WIFEXITED(status))
        fail_msg("train ended by signal %d, expected exit status %d; see "
                 "%s (KEEP=1 keeps it)",
                 WIFSIGNALED(status) ? WTERMSIG(status) : -1, code, log);
    if (WEXITSTATUS(status) != code)
        fail_msg("train exited with status %d, expected %d; see %s "
                 "(KEEP=1 keeps it)",
                 WEXITSTATUS(status), code, log);
}

static void tiny_model_trains(void **state)
{
    char data[PATH_MAX + 16], data_arg[PATH_MAX + 24];
    char project[PATH_MAX + 16], log[PATH_MAX + 32];

    (void)state;
    snprintf(data, sizeof(data), "%s/square", workdir);
    write_training_set(data);
    write_sources();
    snprintf(data_arg, sizeof(data_arg), "data=%s", data);
    snprintf(project, sizeof(project), "project=%s/runs", workdir);
    snprintf(log, sizeof(log), "%s/tiny.log", workdir);
    const char *args[] = {data_arg,        "model=yolov8n.yaml",
                          "imgsz=64",      "epochs=1",
                          "batch=4",       "nbs=4",
                          "mosaic=0",      "workers=0",
                          "threads=2",     project,
                          "name=tiny",     "exist_ok=true",
                          NULL};
    expect_exit(trainrun_run(args, log, log), 0, log);
    if (access(model, R_OK) != 0)
        fail_msg("training wrote no %s", model);
}

/* Run train predict with source and extra arguments (NULL-terminated, may
 * be NULL) into project/NAME. Standard output goes to WORKDIR/NAME.out and
 * standard error to WORKDIR/NAME.log. Returns the wait status. */
static int run_predict(const char *name, const char *model_path,
                       const char *source, const char *const *extra)
{
    char model_arg[PATH_MAX + 80], source_arg[PATH_MAX + 80];
    char project[PATH_MAX + 16], name_arg[96];
    char out[PATH_MAX + 96], log[PATH_MAX + 96];
    const char *args[24];
    int n = 0;

    snprintf(model_arg, sizeof(model_arg), "model=%s", model_path);
    snprintf(source_arg, sizeof(source_arg), "source=%s", source);
    snprintf(project, sizeof(project), "project=%s/predict", workdir);
    snprintf(name_arg, sizeof(name_arg), "name=%s", name);
    snprintf(out, sizeof(out), "%s/%s.out", workdir, name);
    snprintf(log, sizeof(log), "%s/%s.log", workdir, name);
    args[n++] = "predict";
    args[n++] = model_arg;
    args[n++] = source_arg;
    args[n++] = "imgsz=64";
    args[n++] = "device=cpu";
    args[n++] = project;
    args[n++] = name_arg;
    args[n++] = "exist_ok=true";
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return trainrun_run(args, out, log);
}

static char *read_output(const char *run, const char *file)
{
    char path[PATH_MAX + 160];
    struct error err = {0};
    char *data = NULL;

    snprintf(path, sizeof(path), "%s/predict/%s/%s", workdir, run, file);
    if (fs_read_file(path, 16 << 20, &data, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    return data;
}

static int output_exists(const char *run, const char *file)
{
    char path[PATH_MAX + 160];

    snprintf(path, sizeof(path), "%s/predict/%s/%s", workdir, run, file);
    return access(path, F_OK) == 0;
}

/* Check labels/NAME.txt: "cls xc yc w h conf" per line, a box inside
 * the image in normalized units, conf at least min_conf. Returns the
 * number of boxes. */
static int check_labels(const char *run, const char *name, double min_conf)
{
    char file[128];
    int count = 0;

    snprintf(file, sizeof(file), "labels/%s.txt", name);
    char *text = read_output(run, file);
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        int cls, used = 0;
        double xc, yc, w, h, conf;
        int fields = sscanf(line, "%d %lf %lf %lf %lf %lf%n", &cls, &xc, &yc,
                            &w, &h, &conf, &used);
        if (fields != 6 || line[used] != '\0')
            fail_msg("%s: line %d is \"%s\", expected \"cls xc yc w h conf\"",
                     file, count + 1, line);
        assert_true(cls >= 0 && cls < CLASSES);
        assert_true(w >= 0.0);
        assert_true(h >= 0.0);
        assert_true(xc - w / 2 >= -EPS);
        assert_true(xc + w / 2 <= 1.0 + EPS);
        assert_true(yc - h / 2 >= -EPS);
        assert_true(yc + h / 2 <= 1.0 + EPS);
        assert_true(conf >= min_conf - EPS);
        assert_true(conf <= 1.0);
        count++;
    }
    free(text);
    return count;
}

static double number_field(const cJSON *object, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(object, key);

    if (!cJSON_IsNumber(v))
        fail_msg("JSON field \"%s\" is missing or not a number", key);
    return v->valuedouble;
}

/* Check NAME.json: an array of detections of confidence min_conf or
 * more whose boxes lie inside the width x height image. Returns the
 * number of detections. */
static int check_json(const char *run, const char *name, int width,
                      int height, double min_conf)
{
    char file[128];

    snprintf(file, sizeof(file), "%s.json", name);
    char *text = read_output(run, file);
    cJSON *root = cJSON_Parse(text);
    if (!cJSON_IsArray(root))
        fail_msg("%s is not a JSON array: %.80s", file, text);

    const cJSON *det;
    cJSON_ArrayForEach(det, root)
    {
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(det, "name");
        const cJSON *box = cJSON_GetObjectItemCaseSensitive(det, "box");
        double cls = number_field(det, "class");
        double conf = number_field(det, "confidence");

        assert_true(cls >= 0 && cls < CLASSES);
        assert_true(cJSON_IsString(label));
        assert_string_equal(label->valuestring, "square");
        assert_true(conf >= min_conf - EPS);
        assert_true(conf <= 1.0);
        assert_true(cJSON_IsObject(box));
        double x1 = number_field(box, "x1"), y1 = number_field(box, "y1");
        double x2 = number_field(box, "x2"), y2 = number_field(box, "y2");
        assert_true(x1 >= 0.0);
        assert_true(y1 >= 0.0);
        assert_true(x2 <= width);
        assert_true(y2 <= height);
        assert_true(x1 <= x2);
        assert_true(y1 <= y2);
    }
    int count = cJSON_GetArraySize(root);
    cJSON_Delete(root);
    free(text);
    return count;
}

static void check_image(const char *run, const char *name, int width,
                        int height)
{
    char path[PATH_MAX + 160];
    struct error err = {0};
    struct image img = {0};

    snprintf(path, sizeof(path), "%s/predict/%s/%s.png", workdir, run, name);
    if (image_decode_file(path, &img, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(img.width, width);
    assert_int_equal(img.height, height);
    image_free(&img);
}

/* Lines of WORKDIR/RUN.out that contain needle. */
static int count_output_lines(const char *run, const char *needle)
{
    char path[PATH_MAX + 96], line[4096];
    int count = 0;

    snprintf(path, sizeof(path), "%s/%s.out", workdir, run);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        count += strstr(line, needle) != NULL;
    fclose(f);
    return count;
}

/* Check the three files and the printed line of source i. Returns the
 * number of boxes. */
static int check_source_outputs(const char *run, int i, double min_conf)
{
    const char *name = sources[i].name;
    int w = sources[i].width, h = sources[i].height;
    char file[64];

    int labels = check_labels(run, name, min_conf);
    int detections = check_json(run, name, w, h, min_conf);
    assert_int_equal(labels, detections);
    check_image(run, name, w, h);
    snprintf(file, sizeof(file), "%s.png", name);
    assert_int_equal(count_output_lines(run, file), 1);
    return detections;
}

static void predict_folder_writes_outputs(void **state)
{
    char log[PATH_MAX + 32];

    (void)state;
    snprintf(log, sizeof(log), "%s/folder.log", workdir);
    const char *extra[] = {"conf=0", NULL};
    expect_exit(run_predict("folder", model, images, extra), 0, log);
    for (int i = 0; i < NSOURCES; i++) {
        boxes_at_conf0[i] = check_source_outputs("folder", i, 0.0);
        /* Without boxes the bounds checks would prove nothing. */
        if (boxes_at_conf0[i] == 0)
            fail_msg("no boxes at conf=0 for %s; see %s", sources[i].name,
                     log);
    }
}

static void predict_single_image_writes_one(void **state)
{
    char source[PATH_MAX + 32], log[PATH_MAX + 32];

    (void)state;
    snprintf(source, sizeof(source), "%s/wide04.png", images);
    snprintf(log, sizeof(log), "%s/single.log", workdir);
    const char *extra[] = {"conf=0", NULL};
    expect_exit(run_predict("single", model, source, extra), 0, log);
    assert_true(check_source_outputs("single", NSOURCES - 1, 0.0) > 0);
    assert_false(output_exists("single", "pred00.json"));
    assert_false(output_exists("single", "labels/pred00.txt"));
    assert_false(output_exists("single", "pred00.png"));
}

static void predict_max_det_caps_boxes(void **state)
{
    char log[PATH_MAX + 32];

    (void)state;
    snprintf(log, sizeof(log), "%s/capped.log", workdir);
    const char *extra[] = {"conf=0", "max_det=1", NULL};
    expect_exit(run_predict("capped", model, images, extra), 0, log);
    for (int i = 0; i < NSOURCES; i++)
        assert_int_equal(check_source_outputs("capped", i, 0.0), 1);
}

/* With the default conf=0.25 every box written scores 0.25 or more, and
 * the three files exist even for an image without boxes. The model's
 * scores after one epoch are far below 0.25, so fewer boxes remain than
 * at conf=0. */
static void predict_default_conf_drops_weak(void **state)
{
    char log[PATH_MAX + 32];
    int kept = 0, all = 0;

    (void)state;
    snprintf(log, sizeof(log), "%s/default.log", workdir);
    expect_exit(run_predict("default", model, images, NULL), 0, log);
    for (int i = 0; i < NSOURCES; i++) {
        int n = check_source_outputs("default", i, 0.25);
        assert_true(n <= boxes_at_conf0[i]);
        kept += n;
        all += boxes_at_conf0[i];
    }
    assert_true(kept < all);
}

/* Expect exit status 1 or 2 and a message that names path. */
static void expect_missing_path(const char *run, int status,
                                const char *path)
{
    char log[PATH_MAX + 32];

    snprintf(log, sizeof(log), "%s/%s.log", workdir, run);
    assert_true(WIFEXITED(status));
    assert_true(WEXITSTATUS(status) == 1 || WEXITSTATUS(status) == 2);
    if (!harness_file_contains(log, path))
        fail_msg("the message does not name %s; see %s", path, log);
}

static void predict_missing_source_fails(void **state)
{
    char source[PATH_MAX + 32];

    (void)state;
    snprintf(source, sizeof(source), "%s/no-such-image.png", workdir);
    int status = run_predict("no_source", model, source, NULL);
    expect_missing_path("no_source", status, source);
}

static void predict_missing_model_fails(void **state)
{
    char missing[PATH_MAX + 32];

    (void)state;
    snprintf(missing, sizeof(missing), "%s/no-such-model.ckpt", workdir);
    int status = run_predict("no_model", missing, images, NULL);
    expect_missing_path("no_model", status, missing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tiny_model_trains),
        cmocka_unit_test(predict_folder_writes_outputs),
        cmocka_unit_test(predict_single_image_writes_one),
        cmocka_unit_test(predict_max_det_caps_boxes),
        cmocka_unit_test(predict_default_conf_drops_weak),
        cmocka_unit_test(predict_missing_source_fails),
        cmocka_unit_test(predict_missing_model_fails),
    };
    return cmocka_run_group_tests_name("predict", tests, make_workdir,
                                       remove_workdir);
}
