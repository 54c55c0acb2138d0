/*
 * Accounts, web sessions and API keys in SQLite (see auth_store.h).
 *
 * Every statement binds its values, and none is built from user text.
 * Each change is one statement, so it needs no explicit transaction. The
 * exception is API key creation: it counts the account's keys and inserts
 * the new one inside one BEGIN IMMEDIATE, so that two requests cannot
 * both pass the limit. Secrets are hashed before they reach a statement, and
 * the plain token, key and password buffers are wiped after use.
 */
#include "auth_store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

#define ACCOUNT_COLUMNS "id, email, role, plan, created_at"
#define APIKEY_COLUMNS                                                         \
    "id, account_id, name, prefix, created_at, last_used_at, revoked_at"

static int db_error(struct store *st, struct error *err, const char *action)
{
    return error_set(err, -EIO, "database error while %s: %s", action,
                     sqlite3_errmsg(st->db));
}

static int prepare(struct store *st, const char *sql, sqlite3_stmt **stmt,
                   const char *action, struct error *err)
{
    if (sqlite3_prepare_v2(st->db, sql, -1, stmt, NULL) != SQLITE_OK)
        return db_error(st, err, action);
    return 0;
}

/* Run a statement that returns no rows, then finalize it. Returns the
 * number of rows it changed, or a negative error. */
static int run_change(struct store *st, sqlite3_stmt *stmt, const char *action,
                      struct error *err)
{
    int rc = sqlite3_step(stmt);

    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return db_error(st, err, action);
    return sqlite3_changes(st->db);
}

static void copy_text(char *out, size_t len, sqlite3_stmt *stmt, int col)
{
    const unsigned char *text = sqlite3_column_text(stmt, col);

    snprintf(out, len, "%s", text ? (const char *)text : "");
}

/* Hex SHA-256 of a token or key, the form in which the tables store it. */
static void hash_secret(const char *secret, char out[65])
{
    unsigned char digest[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(digest, (const unsigned char *)secret, strlen(secret));
    sodium_bin2hex(out, 65, digest, sizeof(digest));
}

static void random_hex(char out[AUTH_TOKEN_HEX_LEN + 1])
{
    unsigned char raw[AUTH_TOKEN_HEX_LEN / 2];

    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(out, AUTH_TOKEN_HEX_LEN + 1, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
}

/* ---- passwords -------------------------------------------------------- */

struct pwhash_limits {
    unsigned long long ops;
    size_t mem;
};

static struct pwhash_limits limits;
static char dummy_hash[AUTH_HASH_MAX];
static pthread_once_t pwhash_once = PTHREAD_ONCE_INIT;

/* Choose the limits once. The fixed hash used for missing accounts is
 * made with the same limits, so that both paths cost the same. */
static void pwhash_init(void)
{
    const char *mode = getenv("TRAINYARD_PWHASH");
    unsigned char raw[16];
    char text[33];

    if (sodium_init() < 0)
        log_error("libsodium failed to initialize");
    limits.ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    limits.mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    if (mode != NULL && strcmp(mode, "fast") == 0) {
        limits.ops = crypto_pwhash_OPSLIMIT_MIN;
        limits.mem = crypto_pwhash_MEMLIMIT_MIN;
        log_warn("TRAINYARD_PWHASH=fast: password hashes use libsodium's "
                 "minimum cost; this setting is for tests only, unset it "
                 "in production");
    } else if (mode != NULL && mode[0] != '\0') {
        log_warn("TRAINYARD_PWHASH='%.32s' is not 'fast'; using the normal "
                 "password hash cost",
                 mode);
    }

    /* A random password, so that no input matches the fixed hash. */
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(text, sizeof(text), raw, sizeof(raw));
    if (crypto_pwhash_str_alg(dummy_hash, text, strlen(text), limits.ops,
                              limits.mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
        log_error("cannot compute the fixed password hash: out of memory");
    sodium_memzero(text, sizeof(text));
}

int auth_password_hash(const char *password, char out[AUTH_HASH_MAX],
                       struct error *err)
{
    pthread_once(&pwhash_once, pwhash_init);
    if (crypto_pwhash_str_alg(out, password, strlen(password), limits.ops,
                              limits.mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
        return error_set(err, -ENOMEM,
                         "cannot hash the password: argon2id needs %zu "
                         "bytes of memory; free some memory and retry",
                         limits.mem);
    return 0;
}

int auth_password_verify(const char *hash, const char *password)
{
    size_t len = strlen(password);

    pthread_once(&pwhash_once, pwhash_init);
    if (hash == NULL || hash[0] == '\0') {
        /* Spend the same time as a real check, then fail. */
        if (crypto_pwhash_str_verify(dummy_hash, password, len) == 0)
            log_error("a password matched the fixed hash");
        return 0;
    }
    return crypto_pwhash_str_verify(hash, password, len) == 0;
}

int auth_password_needs_rehash(const char *hash)
{
    pthread_once(&pwhash_once, pwhash_init);
    return crypto_pwhash_str_needs_rehash(hash, limits.ops, limits.mem) != 0;
}

int auth_password_check(const char *password, struct error *err)
{
    size_t len = strlen(password);

    if (len < AUTH_PASSWORD_MIN)
        return error_set(err, -EINVAL,
                         "password has %zu characters; use at least %d", len,
                         AUTH_PASSWORD_MIN);
    if (len > AUTH_PASSWORD_MAX)
        return error_set(err, -EINVAL,
                         "password has %zu characters; use at most %d", len,
                         AUTH_PASSWORD_MAX);
    return 0;
}

/* ---- accounts --------------------------------------------------------- */

int auth_email_check(const char *email, struct error *err)
{
    size_t len = strlen(email);
    const char *at;

    if (len == 0)
        return error_set(err, -EINVAL,
                         "email is empty; enter an address such as "
                         "name@example.com");
    if (len > AUTH_EMAIL_MAX)
        return error_set(err, -EINVAL,
                         "email has %zu characters; the maximum is %d", len,
                         AUTH_EMAIL_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)email[i];
        if (c <= ' ' || c == 0x7f)
            return error_set(err, -EINVAL,
                             "email '%s' contains a space or control "
                             "character; remove it",
                             email);
    }
    at = strchr(email, '@');
    if (at == NULL || at == email || at[1] == '\0' ||
        strchr(at + 1, '@') != NULL)
        return error_set(err, -EINVAL,
                         "email '%s' is invalid; enter one address such as "
                         "name@example.com",
                         email);
    return 0;
}

static int check_choice(const char *field, const char *value, const char *first,
                        const char *second, struct error *err)
{
    if (strcmp(value, first) == 0 || strcmp(value, second) == 0)
        return 0;
    return error_set(err, -EINVAL, "%s '%.32s' is invalid; use '%s' or '%s'",
                     field, value, first, second);
}

static void read_account(sqlite3_stmt *stmt, struct auth_account *out)
{
    memset(out, 0, sizeof(*out));
    out->id = sqlite3_column_int64(stmt, 0);
    copy_text(out->email, sizeof(out->email), stmt, 1);
    copy_text(out->role, sizeof(out->role), stmt, 2);
    copy_text(out->plan, sizeof(out->plan), stmt, 3);
    out->created_at = sqlite3_column_int64(stmt, 4);
}

int auth_account_create(struct store *st, const char *email,
                        const char *password_hash, const char *role,
                        const char *plan, struct auth_account *out,
                        struct error *err)
{
    sqlite3_stmt *stmt;
    int64_t now = clock_realtime_ms();
    int rc;

    rc = auth_email_check(email, err);
    if (rc == 0)
        rc = check_choice("role", role, "user", "admin", err);
    if (rc == 0)
        rc = check_choice("plan", plan, "free", "pro", err);
    if (rc != 0)
        return rc;

    rc = prepare(st,
                 "INSERT INTO accounts (email, password_hash, role, plan, "
                 "created_at) VALUES (?, ?, ?, ?, ?)",
                 &stmt, "creating an account", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_text(stmt, 1, email, -1, SQLITE_TRANSIENT);
    if (password_hash != NULL)
        sqlite3_bind_text(stmt, 2, password_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 3, role, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, plan, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, now);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc == SQLITE_CONSTRAINT)
        return error_set(err, -EEXIST,
                         "an account with email '%s' already exists; "
                         "choose another address",
                         email);
    if (rc != SQLITE_DONE)
        return db_error(st, err, "creating an account");

    memset(out, 0, sizeof(*out));
    out->id = sqlite3_last_insert_rowid(st->db);
    snprintf(out->email, sizeof(out->email), "%s", email);
    snprintf(out->role, sizeof(out->role), "%s", role);
    snprintf(out->plan, sizeof(out->plan), "%s", plan);
    out->created_at = now;
    return 0;
}

int auth_account_get(struct store *st, int64_t id, struct auth_account *out,
                     struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    rc = prepare(st,
                 "SELECT " ACCOUNT_COLUMNS ", password_hash FROM accounts "
                 "WHERE id = ?",
                 &stmt, "reading an account", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        read_account(stmt, out);
        copy_text(out->password_hash, sizeof(out->password_hash), stmt, 5);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = error_set(err, -ENOENT, "account %lld not found", (long long)id);
    } else {
        rc = db_error(st, err, "reading an account");
    }
    sqlite3_finalize(stmt);
    return rc;
}

int auth_account_find_email(struct store *st, const char *email,
                            struct auth_account *out, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    rc = prepare(st,
                 "SELECT " ACCOUNT_COLUMNS ", password_hash FROM accounts "
                 "WHERE email = ?",
                 &stmt, "finding an account", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_text(stmt, 1, email, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        read_account(stmt, out);
        copy_text(out->password_hash, sizeof(out->password_hash), stmt, 5);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = error_set(err, -ENOENT, "no account has this email");
    } else {
        rc = db_error(st, err, "finding an account");
    }
    sqlite3_finalize(stmt);
    return rc;
}

int auth_account_require_admin(struct store *st, int64_t admin_id,
                               const char *action, struct error *err)
{
    struct auth_account admin;
    int rc = auth_account_get(st, admin_id, &admin, err);

    if (rc != 0)
        return rc;
    if (strcmp(admin.role, "admin") != 0) {
        log_warn("admin action rejected account=%lld action=\"%s\"",
                 (long long)admin_id, action);
        return error_set(err, -EPERM,
                         "account %lld is not an admin; only an admin can "
                         "%s",
                         (long long)admin_id, action);
    }
    return 0;
}

int auth_account_set_plan(struct store *st, int64_t id, const char *plan,
                          struct auth_account *out, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    rc = check_choice("plan", plan, "free", "pro", err);
    if (rc == 0)
        rc = prepare(st, "UPDATE accounts SET plan = ? WHERE id = ?", &stmt,
                     "changing a plan", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_text(stmt, 1, plan, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, id);
    rc = run_change(st, stmt, "changing a plan", err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return error_set(err, -ENOENT, "account %lld not found", (long long)id);
    return auth_account_get(st, id, out, err);
}

int auth_account_set_password_hash(struct store *st, int64_t id,
                                   const char *password_hash, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    rc = prepare(st, "UPDATE accounts SET password_hash = ? WHERE id = ?",
                 &stmt, "storing a password hash", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_text(stmt, 1, password_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 2, id);
    rc = run_change(st, stmt, "storing a password hash", err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return error_set(err, -ENOENT, "account %lld not found", (long long)id);
    return 0;
}

int auth_accounts_each(struct store *st, auth_account_fn fn, void *ctx,
                       struct error *err)
{
    struct auth_account account;
    sqlite3_stmt *stmt;
    int rc;

    rc = prepare(st, "SELECT " ACCOUNT_COLUMNS " FROM accounts ORDER BY id",
                 &stmt, "listing accounts", err);
    if (rc != 0)
        return rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        read_account(stmt, &account);
        if (fn(&account, ctx) != 0)
            break;
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(st, err, "listing accounts");
    return 0;
}

/* ---- web sessions ----------------------------------------------------- */

static int purge_sessions(struct store *st, int64_t now, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    rc = prepare(st,
                 "DELETE FROM web_sessions WHERE expires_at <= ? OR "
                 "last_seen_at <= ?",
                 &stmt, "deleting expired sessions", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, now);
    sqlite3_bind_int64(stmt, 2, now - AUTH_SESSION_IDLE_MS);
    rc = run_change(st, stmt, "deleting expired sessions", err);
    if (rc > 0)
        log_info("deleted %d expired sessions", rc);
    return rc < 0 ? rc : 0;
}

int auth_session_create(struct store *st, int64_t account_id, int64_t now,
                        struct auth_session *out, struct error *err)
{
    char token_hash[65];
    sqlite3_stmt *stmt;
    int rc;

    /* Expired rows are deleted here, where rows are added, so that they
     * do not pile up. */
    rc = purge_sessions(st, now, err);
    if (rc != 0)
        return rc;

    memset(out, 0, sizeof(*out));
    random_hex(out->token);
    random_hex(out->csrf);
    out->account_id = account_id;
    out->created_at = now;
    out->last_seen_at = now;
    out->expires_at = now + AUTH_SESSION_MAX_MS;
    hash_secret(out->token, token_hash);

    rc = prepare(st,
                 "INSERT INTO web_sessions (token_hash, account_id, csrf, "
                 "created_at, expires_at, last_seen_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)",
                 &stmt, "creating a session", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_text(stmt, 1, token_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, account_id);
    sqlite3_bind_text(stmt, 3, out->csrf, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, out->created_at);
    sqlite3_bind_int64(stmt, 5, out->expires_at);
    sqlite3_bind_int64(stmt, 6, out->last_seen_at);
    rc = run_change(st, stmt, "creating a session", err);
    if (rc < 0) {
        sodium_memzero(out->token, sizeof(out->token));
        return rc;
    }
    return 0;
}

static int delete_session_hash(struct store *st, const char *token_hash,
                               struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    rc = prepare(st, "DELETE FROM web_sessions WHERE token_hash = ?", &stmt,
                 "ending a session", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_text(stmt, 1, token_hash, -1, SQLITE_TRANSIENT);
    rc = run_change(st, stmt, "ending a session", err);
    return rc < 0 ? rc : 0;
}

static int touch_session(struct store *st, const char *token_hash, int64_t now,
                         struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    rc = prepare(st,
                 "UPDATE web_sessions SET last_seen_at = ? "
                 "WHERE token_hash = ?",
                 &stmt, "updating a session", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, now);
    sqlite3_bind_text(stmt, 2, token_hash, -1, SQLITE_TRANSIENT);
    rc = run_change(st, stmt, "updating a session", err);
    return rc < 0 ? rc : 0;
}

int auth_session_lookup(struct store *st, const char *token, int64_t now,
                        struct auth_session *out, struct error *err)
{
    char token_hash[65];
    sqlite3_stmt *stmt;
    int rc;

    hash_secret(token, token_hash);
    rc = prepare(st,
                 "SELECT account_id, csrf, created_at, expires_at, "
                 "last_seen_at FROM web_sessions WHERE token_hash = ?",
                 &stmt, "reading a session", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_text(stmt, 1, token_hash, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(stmt);
        return error_set(err, -ENOENT,
                         "the session was not found; sign in again");
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(stmt);
        return db_error(st, err, "reading a session");
    }
    memset(out, 0, sizeof(*out));
    out->account_id = sqlite3_column_int64(stmt, 0);
    copy_text(out->csrf, sizeof(out->csrf), stmt, 1);
    out->created_at = sqlite3_column_int64(stmt, 2);
    out->expires_at = sqlite3_column_int64(stmt, 3);
    out->last_seen_at = sqlite3_column_int64(stmt, 4);
    sqlite3_finalize(stmt);

    if (now >= out->expires_at ||
        now - out->last_seen_at >= AUTH_SESSION_IDLE_MS) {
        int idle = now < out->expires_at;
        rc = delete_session_hash(st, token_hash, err);
        if (rc != 0)
            return rc;
        log_info("session expired account=%lld reason=%s",
                 (long long)out->account_id, idle ? "idle" : "age");
        return error_set(err, -EKEYEXPIRED,
                         idle ? "the session expired after 7 days without "
                                "use; sign in again"
                              : "the session expired 30 days after "
                                "sign-in; sign in again");
    }
    if (now - out->last_seen_at >= AUTH_TOUCH_INTERVAL_MS) {
        rc = touch_session(st, token_hash, now, err);
        if (rc != 0)
            return rc;
        out->last_seen_at = now;
    }
    return 0;
}

int auth_session_delete(struct store *st, const char *token, struct error *err)
{
    char token_hash[65];

    hash_secret(token, token_hash);
    return delete_session_hash(st, token_hash, err);
}

/* ---- API keys --------------------------------------------------------- */

static void read_apikey(sqlite3_stmt *stmt, struct auth_apikey *out)
{
    memset(out, 0, sizeof(*out));
    out->id = sqlite3_column_int64(stmt, 0);
    out->account_id = sqlite3_column_int64(stmt, 1);
    copy_text(out->name, sizeof(out->name), stmt, 2);
    copy_text(out->prefix, sizeof(out->prefix), stmt, 3);
    out->created_at = sqlite3_column_int64(stmt, 4);
    out->last_used_at = sqlite3_column_int64(stmt, 5);
    out->revoked_at = sqlite3_column_int64(stmt, 6);
}

static int check_key_name(const char *name, struct error *err)
{
    size_t len = strlen(name);

    if (len == 0)
        return error_set(err, -EINVAL,
                         "name is empty; name the key after the script "
                         "that uses it");
    if (len > AUTH_APIKEY_NAME_MAX)
        return error_set(err, -EINVAL,
                         "name has %zu characters; the maximum is %d", len,
                         AUTH_APIKEY_NAME_MAX);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < ' ' || name[i] == 0x7f)
            return error_set(err, -EINVAL,
                             "name contains a control character; remove "
                             "it");
    return 0;
}

static int count_active_keys(struct store *st, int64_t account_id, int *count,
                             struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    rc = prepare(st,
                 "SELECT count(*) FROM api_keys WHERE account_id = ? AND "
                 "revoked_at IS NULL",
                 &stmt, "counting API keys", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, account_id);
    rc = sqlite3_step(stmt);
    *count = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW ? 0 : db_error(st, err, "counting API keys");
}

static int insert_apikey(struct store *st, const struct auth_apikey *key,
                         struct error *err)
{
    char key_hash[65];
    sqlite3_stmt *stmt;
    int rc;

    hash_secret(key->key, key_hash);
    rc = prepare(st,
                 "INSERT INTO api_keys (account_id, name, prefix, key_hash, "
                 "created_at) VALUES (?, ?, ?, ?, ?)",
                 &stmt, "creating an API key", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, key->account_id);
    sqlite3_bind_text(stmt, 2, key->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, key->prefix, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, key_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, key->created_at);
    rc = run_change(st, stmt, "creating an API key", err);
    return rc < 0 ? rc : 0;
}

int auth_apikey_create(struct store *st, int64_t account_id, const char *name,
                       int64_t now, struct auth_apikey *out, struct error *err)
{
    unsigned char raw[32];
    int count = 0, rc;

    rc = check_key_name(name, err);
    if (rc != 0)
        return rc;

    memset(out, 0, sizeof(*out));
    out->account_id = account_id;
    out->created_at = now;
    snprintf(out->name, sizeof(out->name), "%s", name);
    randombytes_buf(raw, sizeof(raw));
    memcpy(out->key, AUTH_APIKEY_PREFIX, strlen(AUTH_APIKEY_PREFIX));
    sodium_bin2base64(out->key + strlen(AUTH_APIKEY_PREFIX),
                      sizeof(out->key) - strlen(AUTH_APIKEY_PREFIX), raw,
                      sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
    memcpy(out->prefix, out->key, AUTH_APIKEY_SHOWN_LEN);
    out->prefix[AUTH_APIKEY_SHOWN_LEN] = '\0';

    rc = store_begin(st, err);
    if (rc != 0)
        goto fail;
    rc = count_active_keys(st, account_id, &count, err);
    if (rc == 0 && count >= AUTH_APIKEYS_MAX)
        rc = error_set(err, -ENOSPC,
                       "account has %d API keys, the maximum; revoke one "
                       "it no longer needs",
                       count);
    if (rc == 0)
        rc = insert_apikey(st, out, err);
    if (rc == 0)
        rc = store_commit(st, err);
    if (rc != 0) {
        store_rollback(st);
        goto fail;
    }
    out->id = sqlite3_last_insert_rowid(st->db);
    log_info("API key created account=%lld key=%lld", (long long)account_id,
             (long long)out->id);
    return 0;

fail:
    sodium_memzero(out->key, sizeof(out->key));
    return rc;
}

int auth_apikey_lookup(struct store *st, const char *key, int64_t now,
                       int64_t *account_id, struct error *err)
{
    char key_hash[65];
    sqlite3_stmt *stmt;
    int64_t id, last_used;
    int rc;

    hash_secret(key, key_hash);
    rc = prepare(st,
                 "SELECT id, account_id, coalesce(last_used_at, 0) "
                 "FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
                 &stmt, "reading an API key", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_text(stmt, 1, key_hash, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(stmt);
        return error_set(err, -ENOENT,
                         "the API key is invalid or revoked; create a new "
                         "one");
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(stmt);
        return db_error(st, err, "reading an API key");
    }
    id = sqlite3_column_int64(stmt, 0);
    *account_id = sqlite3_column_int64(stmt, 1);
    last_used = sqlite3_column_int64(stmt, 2);
    sqlite3_finalize(stmt);

    if (now - last_used < AUTH_TOUCH_INTERVAL_MS)
        return 0;
    rc = prepare(st, "UPDATE api_keys SET last_used_at = ? WHERE id = ?", &stmt,
                 "updating an API key", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, now);
    sqlite3_bind_int64(stmt, 2, id);
    rc = run_change(st, stmt, "updating an API key", err);
    return rc < 0 ? rc : 0;
}

static int get_apikey(struct store *st, int64_t account_id, int64_t id,
                      struct auth_apikey *out, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    rc = prepare(st,
                 "SELECT " APIKEY_COLUMNS " FROM api_keys "
                 "WHERE id = ? AND account_id = ?",
                 &stmt, "reading an API key", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_int64(stmt, 2, account_id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        read_apikey(stmt, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        /* Another account's key reads as missing too, so that ids reveal
         * nothing about other accounts. */
        rc = error_set(err, -ENOENT, "API key %lld not found", (long long)id);
    } else {
        rc = db_error(st, err, "reading an API key");
    }
    sqlite3_finalize(stmt);
    return rc;
}

int auth_apikey_revoke(struct store *st, int64_t account_id, int64_t id,
                       int64_t now, struct auth_apikey *out, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    rc = prepare(st,
                 "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND "
                 "account_id = ? AND revoked_at IS NULL",
                 &stmt, "revoking an API key", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, now);
    sqlite3_bind_int64(stmt, 2, id);
    sqlite3_bind_int64(stmt, 3, account_id);
    rc = run_change(st, stmt, "revoking an API key", err);
    if (rc < 0)
        return rc;
    if (rc > 0)
        log_info("API key revoked account=%lld key=%lld", (long long)account_id,
                 (long long)id);
    return get_apikey(st, account_id, id, out, err);
}

int auth_apikeys_each(struct store *st, int64_t account_id, auth_apikey_fn fn,
                      void *ctx, struct error *err)
{
    struct auth_apikey key;
    sqlite3_stmt *stmt;
    int rc;

    rc = prepare(st,
                 "SELECT " APIKEY_COLUMNS " FROM api_keys "
                 "WHERE account_id = ? ORDER BY id",
                 &stmt, "listing API keys", err);
    if (rc != 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, account_id);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        read_apikey(stmt, &key);
        if (fn(&key, ctx) != 0)
            break;
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(st, err, "listing API keys");
    return 0;
}
