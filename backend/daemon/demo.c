/*
 * `backend init-demo`: first-start setup for `make run`. On a data folder
 * that has no accounts yet it creates
 *
 *   - an admin account, admin@trainyard.local,
 *   - a demo account, demo@trainyard.local, on the Pro plan with a $25.00
 *     operator credit,
 *   - the Fashion-MNIST sample data set (Debian's dataset-fashion-mnist
 *     written in the classification layout under DATA/datasets/) for
 *     every account,
 *   - the Fashion-MNIST detection scenes (fmnist_det.h: 2,000 train and
 *     500 val scenes, seed 0) as a second sample, task detect,
 *
 * with random passwords, and writes the sign-in details to
 * DATA/credentials.txt (mode 0600) and standard output. On a folder that
 * has accounts it only adds the detection scenes when they are missing,
 * and prints the saved file again, so the passwords are shown at every
 * start without being stored anywhere else.
 */
#include "demo.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth_store.h"
#include "clock.h"
#include "config.h"
#include "embedded.h"
#include "engine/fmnist.h"
#include "engine/fmnist_det.h"
#include "fsutil.h"
#include "ledger.h"
#include "log.h"
#include "payments.h"
#include "store.h"

#define ADMIN_EMAIL "admin@trainyard.local"
#define DEMO_EMAIL "demo@trainyard.local"
#define DEMO_CREDIT (25 * MICRO_PER_DOLLAR)
#define SAMPLE_FOLDER "datasets/fashion-mnist"
#define DETECT_SAMPLE_FOLDER "datasets/fashion-mnist-detect"

/* 16 random characters from an alphabet without look-alikes. */
static void random_password(char out[17])
{
    static const char alphabet[] = "abcdefghjkmnpqrstuvwxyz23456789";

    for (int i = 0; i < 16; i++)
        out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    out[16] = '\0';
}

static int count_accounts(struct store *st, int64_t *count, struct error *err)
{
    sqlite3_stmt *stmt;

    if (sqlite3_prepare_v2(st->db, "SELECT COUNT(*) FROM accounts", -1,
                           &stmt, NULL) != SQLITE_OK)
        return error_set(err, -EIO, "cannot count accounts: %s",
                         sqlite3_errmsg(st->db));
    *count = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0)
                                              : 0;
    sqlite3_finalize(stmt);
    return 0;
}

static int create_account(struct store *st, const char *email,
                          const char *role, const char *plan,
                          const char *password, struct auth_account *out,
                          struct error *err)
{
    char hash[AUTH_HASH_MAX];
    int rc = auth_password_hash(password, hash, err);

    if (rc != 0)
        return rc;
    return auth_account_create(st, email, hash, role, plan, out, err);
}

/* Write Fashion-MNIST in the classification layout unless it is there.
 * The importer writes a partial folder and renames it at the end, so an
 * interrupted run leaves nothing half written. */
static int import_sample(const char *data_dir, struct error *err)
{
    char path[PATH_MAX];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/%s", data_dir, SAMPLE_FOLDER);
    if (stat(path, &sb) == 0)
        return 0;
    fprintf(stderr, "Writing the Fashion-MNIST sample data set to %s ...\n",
            path);
    return fmnist_import(path, NULL, err);
}

/* Generate the Fashion-MNIST detection scenes unless they are there;
 * the generator also writes a partial folder and renames it. */
static int generate_detect_sample(const char *data_dir, struct error *err)
{
    char path[PATH_MAX];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/%s", data_dir, DETECT_SAMPLE_FOLDER);
    if (stat(path, &sb) == 0)
        return 0;
    fprintf(stderr, "Writing the Fashion-MNIST detection scenes to %s ...\n",
            path);
    return fmnist_det_generate(path, NULL, err);
}

static int insert_sample(struct store *st, const char *name,
                         const char *task, const char *folder, int images,
                         struct error *err)
{
    sqlite3_stmt *stmt;
    int rc = 0;

    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO datasets(account_id, name, task, "
                           "path, images, created_at) VALUES (NULL, ?4, "
                           "?5, ?1, ?2, ?3)",
                           -1, &stmt, NULL) != SQLITE_OK)
        return error_set(err, -EIO, "cannot register the sample '%s': %s",
                         name, sqlite3_errmsg(st->db));
    sqlite3_bind_text(stmt, 1, folder, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, images);
    sqlite3_bind_int64(stmt, 3, clock_realtime_ms());
    sqlite3_bind_text(stmt, 4, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, task, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        rc = error_set(err, -EIO, "cannot register the sample '%s': %s",
                       name, sqlite3_errmsg(st->db));
    sqlite3_finalize(stmt);
    return rc;
}

static int register_sample(struct store *st, struct error *err)
{
    int rc = insert_sample(st, "Fashion-MNIST", "classify", SAMPLE_FOLDER,
                           FMNIST_TRAIN_COUNT + FMNIST_TEST_COUNT, err);

    if (rc == 0)
        rc = insert_sample(st, "Fashion-MNIST scenes", "detect",
                           DETECT_SAMPLE_FOLDER,
                           FMNIST_DET_DEFAULT_TRAIN + FMNIST_DET_DEFAULT_VAL,
                           err);
    return rc;
}

/* On a data folder set up before the detection sample existed, add it:
 * generate the scenes and register them unless a row names them. */
static int ensure_detect_sample(struct store *st, const char *data_dir,
                                struct error *err)
{
    sqlite3_stmt *stmt;
    int64_t rows = 0;
    int rc;

    if (sqlite3_prepare_v2(st->db,
                           "SELECT COUNT(*) FROM datasets WHERE path = ?1 "
                           "AND account_id IS NULL",
                           -1, &stmt, NULL) != SQLITE_OK)
        return error_set(err, -EIO, "cannot look up the samples: %s",
                         sqlite3_errmsg(st->db));
    sqlite3_bind_text(stmt, 1, DETECT_SAMPLE_FOLDER, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        rows = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    if (rows > 0)
        return 0;
    rc = generate_detect_sample(data_dir, err);
    if (rc == 0)
        rc = insert_sample(st, "Fashion-MNIST scenes", "detect",
                           DETECT_SAMPLE_FOLDER,
                           FMNIST_DET_DEFAULT_TRAIN + FMNIST_DET_DEFAULT_VAL,
                           err);
    return rc;
}

static int create_everything(struct store *st, const char *data_dir,
                             const char *credentials, struct error *err)
{
    char admin_password[17], demo_password[17], text[1024];
    struct auth_account admin, demo;
    int rc;

    /* The slow, failure-prone step first, before any account exists. */
    rc = import_sample(data_dir, err);
    if (rc == 0)
        rc = generate_detect_sample(data_dir, err);
    if (rc != 0)
        return rc;

    random_password(admin_password);
    random_password(demo_password);
    rc = create_account(st, ADMIN_EMAIL, "admin", "free", admin_password,
                        &admin, err);
    if (rc == 0)
        rc = create_account(st, DEMO_EMAIL, "user", "pro", demo_password,
                            &demo, err);
    if (rc == 0)
        rc = payments_credit(st, admin.id, demo.id, DEMO_CREDIT,
                             "starting balance of the demo account",
                             "demo:starting-balance", err);
    if (rc == 0)
        rc = register_sample(st, err);
    if (rc != 0)
        return rc;

    snprintf(text, sizeof(text),
             "Demo account:  %s  password %s  (Pro plan, $25.00 balance)\n"
             "Admin account: %s  password %s\n",
             DEMO_EMAIL, demo_password, ADMIN_EMAIL, admin_password);
    sodium_memzero(admin_password, sizeof(admin_password));
    sodium_memzero(demo_password, sizeof(demo_password));
    return fs_write_atomic(credentials, text, strlen(text), 0600, err);
}

int demo_init(int argc, char **argv)
{
    static const struct option options[] = {
        {"data", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    struct config cfg;
    struct store st;
    struct error err = {0};
    char path[PATH_MAX], credentials[PATH_MAX];
    char *text = NULL;
    int64_t accounts = 0;
    int c, rc;

    config_defaults(&cfg);
    optind = 1;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (c != 'd') {
            fprintf(stderr, "usage: backend init-demo [--data DIR]\n");
            return 2;
        }
        snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", optarg);
    }
    log_init("backend", LOG_LEVEL_WARN, 2);
    if (sodium_init() < 0) {
        fprintf(stderr, "backend init-demo: libsodium failed to start\n");
        return 1;
    }

    rc = fs_mkdir_p(cfg.data_dir, 0700, &err);
    snprintf(path, sizeof(path), "%s/trainyard.db", cfg.data_dir);
    snprintf(credentials, sizeof(credentials), "%s/credentials.txt",
             cfg.data_dir);
    if (rc == 0)
        rc = store_open(&st, path, schema_sql, &err);
    if (rc == 0) {
        rc = count_accounts(&st, &accounts, &err);
        if (rc == 0 && accounts == 0)
            rc = create_everything(&st, cfg.data_dir, credentials, &err);
        else if (rc == 0)
            rc = ensure_detect_sample(&st, cfg.data_dir, &err);
        store_close(&st);
    }
    if (rc == 0 && fs_read_file(credentials, 4096, &text, NULL, &err) == 0) {
        fputs(text, stdout);
        free(text);
    } else if (rc == 0) {
        printf("Accounts exist already and %s is missing; sign in with the "
               "accounts you made, or delete %s to start over.\n",
               credentials, cfg.data_dir);
    }
    if (rc != 0) {
        fprintf(stderr, "backend init-demo: %s\n", err.msg);
        return 1;
    }
    return 0;
}
