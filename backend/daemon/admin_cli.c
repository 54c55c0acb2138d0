/*
 * The create-admin command (see admin_cli.h). The password comes from
 * TRAINYARD_ADMIN_PASSWORD when that is set, else from standard input:
 * one line from a pipe, or typed twice without echo at a terminal. It
 * is never taken from the command line, where other users could read it
 * in the process list, and never printed or logged. The account is
 * created with the same argon2id hashing and validation as the
 * accounts.create op.
 */
#include "admin_cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "auth_store.h"
#include "backend.h"
#include "fsutil.h"
#include "log.h"

/* Room for the longest password, a CR, an LF and the NUL. */
#define PASSWORD_BUFFER (AUTH_PASSWORD_MAX + 3)

static void usage(FILE *out)
{
    fprintf(out, "Usage: backend create-admin [OPTION]... EMAIL\n"
                 "Create an admin account with the password read from\n"
                 "TRAINYARD_ADMIN_PASSWORD, or else from standard input (one\n"
                 "line; typed twice when standard input is a terminal).\n"
                 "\n"
                 "  --config FILE  read the data folder from FILE\n"
                 "  --data DIR     data folder holding trainyard.db (default\n"
                 "                 $TRAINYARD_DATA, else ./var)\n"
                 "  --help         print this help and exit\n");
}

/* Read one line into buf without its line end; returns 0, or -1 with a
 * message printed. */
static int read_line(FILE *in, char *buf, size_t len)
{
    size_t n;

    if (fgets(buf, (int)len, in) == NULL) {
        fprintf(stderr, "backend: no password on standard input; pipe one "
                        "line to this command or set "
                        "TRAINYARD_ADMIN_PASSWORD\n");
        return -1;
    }
    n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    else if (n == len - 1) {
        fprintf(stderr,
                "backend: the password is longer than %d "
                "characters; choose a shorter one\n",
                AUTH_PASSWORD_MAX);
        return -1;
    }
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return 0;
}

/* Prompt on standard error and read a line from the terminal with echo
 * off. */
static int read_hidden(const char *prompt, char *buf, size_t len)
{
    struct termios saved, quiet;
    int rc, have_termios = tcgetattr(STDIN_FILENO, &saved) == 0;

    fputs(prompt, stderr);
    fflush(stderr);
    if (have_termios) {
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    rc = read_line(stdin, buf, len);
    if (have_termios)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    fputc('\n', stderr);
    return rc;
}

static int read_password(char *buf, size_t len)
{
    const char *env = getenv("TRAINYARD_ADMIN_PASSWORD");
    char again[PASSWORD_BUFFER];
    int rc;

    if (env != NULL && env[0] != '\0') {
        if (strlen(env) >= len) {
            fprintf(stderr,
                    "backend: TRAINYARD_ADMIN_PASSWORD is longer "
                    "than %d characters; choose a shorter one\n",
                    AUTH_PASSWORD_MAX);
            return -1;
        }
        snprintf(buf, len, "%s", env);
        return 0;
    }
    if (!isatty(STDIN_FILENO))
        return read_line(stdin, buf, len);

    if (read_hidden("Password: ", buf, len) != 0)
        return -1;
    rc = read_hidden("Password again: ", again, sizeof(again));
    if (rc == 0 && strcmp(buf, again) != 0) {
        fprintf(stderr, "backend: the two passwords differ; run the "
                        "command again\n");
        rc = -1;
    }
    sodium_memzero(again, sizeof(again));
    return rc;
}

/* Parse the options into c and *email; returns 0, or 2 after a usage
 * message (and 3 for --help, which exits 0). */
static int parse_options(int argc, char **argv, struct config *c,
                         const char **email)
{
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'},
        {"data", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct error err = {0};
    int opt;

    /* The file first, so that --data overrides it. */
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 &&
            config_load(c, argv[i + 1], &err) != 0) {
            fprintf(stderr, "backend: %s\n", err.msg);
            return 2;
        }
    }
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            break;
        case 'd':
            snprintf(c->data_dir, sizeof(c->data_dir), "%s", optarg);
            break;
        case 'h':
            usage(stdout);
            return 3;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind == argc) {
        fprintf(stderr, "backend: create-admin needs an EMAIL\n");
        usage(stderr);
        return 2;
    }
    if (optind + 1 < argc) {
        fprintf(stderr,
                "backend: create-admin takes one EMAIL; "
                "unexpected argument '%s'\n",
                argv[optind + 1]);
        usage(stderr);
        return 2;
    }
    *email = argv[optind];
    return 0;
}

/* Open the database, hash the password and insert the account. */
static int create_admin(const char *data_dir, const char *email,
                        const char *password)
{
    struct auth_account account;
    struct store st;
    struct error err = {0};
    char path[PATH_MAX], hash[AUTH_HASH_MAX] = "";
    int rc;

    rc = auth_email_check(email, &err);
    if (rc == 0)
        rc = auth_password_check(password, &err);
    if (rc == 0)
        rc = fs_mkdir_p(data_dir, 0700, &err);
    if (rc != 0) {
        fprintf(stderr, "backend: %s\n", err.msg);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/trainyard.db", data_dir);
    rc = store_open(&st, path, schema_sql, &err);
    if (rc != 0) {
        fprintf(stderr, "backend: %s\n", err.msg);
        return 1;
    }
    /* The insert rejects a taken email too; checking first saves the
     * hash. */
    rc = auth_account_find_email(&st, email, &account, &err);
    if (rc == 0)
        rc = error_set(&err, -EEXIST,
                       "an account with email '%s' already exists (id "
                       "%lld); choose another address",
                       email, (long long)account.id);
    else if (rc == -ENOENT)
        rc = auth_password_hash(password, hash, &err);
    if (rc == 0)
        rc = auth_account_create(&st, email, hash, "admin", "free", &account,
                                 &err);
    sodium_memzero(hash, sizeof(hash));
    store_close(&st);
    if (rc != 0) {
        fprintf(stderr, "backend: %s\n", err.msg);
        return 1;
    }
    printf("created admin account %lld in '%s'\n", (long long)account.id, path);
    return 0;
}

int admin_cli_create_admin(int argc, char **argv)
{
    char password[PASSWORD_BUFFER];
    struct config config;
    const char *email = NULL;
    int rc;

    config_defaults(&config);
    rc = parse_options(argc, argv, &config, &email);
    if (rc != 0)
        return rc == 3 ? 0 : rc;

    log_init("backend", LOG_LEVEL_WARN, 2);
    log_capture_sqlite();
    if (sodium_init() < 0) {
        fprintf(stderr, "backend: libsodium failed to initialize\n");
        return 1;
    }
    if (read_password(password, sizeof(password)) != 0)
        return 1;
    rc = create_admin(config.data_dir, email, password);
    sodium_memzero(password, sizeof(password));
    return rc;
}
