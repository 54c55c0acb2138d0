/*
 * Accounts in SQLite. Every check that guards a change (is the caller an
 * admin, does the account exist) runs inside the same BEGIN IMMEDIATE
 * transaction as the change, so a role revoked in between cannot slip
 * through. Values are validated here, before the schema's CHECKs, so that
 * errors name the value and what to use instead.
 */
#include "accounts.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"

static int db_error(struct store *st, struct error *err,
                    const char *operation)
{
    return error_set(err, -EIO, "database error while %s: %s", operation,
                     sqlite3_errmsg(st->db));
}

static int validate_email(const char *email, struct error *err)
{
    const char *at;
    size_t len;

    if (email == NULL || email[0] == '\0')
        return error_set(err, -EINVAL,
                         "email is missing; enter an address such as "
                         "name@example.com");
    len = strlen(email);
    if (len > ACCOUNT_EMAIL_MAX)
        return error_set(err, -EINVAL,
                         "email of %zu characters is too long; the maximum "
                         "is %d",
                         len, ACCOUNT_EMAIL_MAX);
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

static int validate_choice(const char *what, const char *value,
                           const char *first, const char *second,
                           struct error *err)
{
    if (value != NULL &&
        (strcmp(value, first) == 0 || strcmp(value, second) == 0))
        return 0;
    return error_set(err, -EINVAL, "%s '%s' is invalid; use '%s' or '%s'", what,
                     value ? value : "(null)", first, second);
}

int accounts_create(struct store *st, const char *email,
                    const char *password_hash, const char *role,
                    const char *plan, int64_t *id, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (role == NULL)
        role = "user";
    if (plan == NULL)
        plan = "free";
    rc = validate_email(email, err);
    if (rc == 0)
        rc = validate_choice("role", role, "user", "admin", err);
    if (rc == 0)
        rc = validate_choice("plan", plan, "free", "pro", err);
    if (rc != 0)
        return rc;
    if (password_hash != NULL &&
        (password_hash[0] == '\0' || strlen(password_hash) > ACCOUNT_HASH_MAX))
        return error_set(err, -EINVAL,
                         "password hash of %zu bytes is invalid; pass 1 to "
                         "%d bytes, or NULL for an account without sign-in",
                         strlen(password_hash), ACCOUNT_HASH_MAX);

    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO accounts (email, password_hash, role,"
                           " plan, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "creating an account");
    sqlite3_bind_text(stmt, 1, email, -1, SQLITE_STATIC);
    if (password_hash != NULL)
        sqlite3_bind_text(stmt, 2, password_hash, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, 2);
    sqlite3_bind_text(stmt, 3, role, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, plan, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, clock_realtime_ms());

    rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) {
        int64_t new_id = sqlite3_last_insert_rowid(st->db);

        log_info("account created account=%lld role=%s plan=%s",
                 (long long)new_id, role, plan);
        if (id != NULL)
            *id = new_id;
        rc = 0;
    } else if (sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_UNIQUE) {
        rc = error_set(err, -EEXIST,
                       "an account with email '%s' exists already; sign in "
                       "or use another email",
                       email);
    } else {
        rc = db_error(st, err, "creating an account");
    }
    sqlite3_finalize(stmt);
    return rc;
}

static void copy_text(char *out, size_t len, const unsigned char *text)
{
    snprintf(out, len, "%s", text ? (const char *)text : "");
}

/* Read one account selected by a statement with one bound parameter. */
static int read_account(struct store *st, sqlite3_stmt *stmt,
                        struct account *out, struct error *err)
{
    int rc = sqlite3_step(stmt);

    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        out->id = sqlite3_column_int64(stmt, 0);
        copy_text(out->email, sizeof(out->email), sqlite3_column_text(stmt, 1));
        copy_text(out->password_hash, sizeof(out->password_hash),
                  sqlite3_column_text(stmt, 2));
        copy_text(out->role, sizeof(out->role), sqlite3_column_text(stmt, 3));
        copy_text(out->plan, sizeof(out->plan), sqlite3_column_text(stmt, 4));
        out->created_at = sqlite3_column_int64(stmt, 5);
        return 0;
    }
    if (rc == SQLITE_DONE)
        return -ENOENT;
    return db_error(st, err, "reading an account");
}

#define ACCOUNT_COLUMNS "id, email, password_hash, role, plan, created_at"

int accounts_get(struct store *st, int64_t id, struct account *out,
                 struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(
            st->db, "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE id = ?1",
            -1, &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "reading an account");
    sqlite3_bind_int64(stmt, 1, id);
    rc = read_account(st, stmt, out, err);
    sqlite3_finalize(stmt);
    if (rc == -ENOENT)
        return error_set(err, -ENOENT,
                         "account %lld not found; pass the id of an existing "
                         "account",
                         (long long)id);
    return rc;
}

int accounts_find_email(struct store *st, const char *email,
                        struct account *out, struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (email == NULL)
        return error_set(err, -EINVAL, "email is missing (NULL)");
    if (sqlite3_prepare_v2(
            st->db, "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE email = ?1",
            -1, &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "reading an account");
    sqlite3_bind_text(stmt, 1, email, -1, SQLITE_STATIC);
    rc = read_account(st, stmt, out, err);
    sqlite3_finalize(stmt);
    if (rc == -ENOENT)
        return error_set(err, -ENOENT,
                         "no account has email '%s'; check the address or "
                         "create an account",
                         email);
    return rc;
}

int accounts_require_admin(struct store *st, int64_t admin_id,
                           const char *action, struct error *err)
{
    struct account admin;
    int rc = accounts_get(st, admin_id, &admin, err);

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

static int update_plan(struct store *st, int64_t account_id, const char *plan,
                       struct error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(st->db,
                           "UPDATE accounts SET plan = ?1 WHERE id = ?2", -1,
                           &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "changing a plan");
    sqlite3_bind_text(stmt, 1, plan, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, account_id);
    rc = sqlite3_step(stmt) == SQLITE_DONE
             ? 0
             : db_error(st, err, "changing a plan");
    sqlite3_finalize(stmt);
    return rc;
}

int accounts_set_plan(struct store *st, int64_t admin_id, int64_t account_id,
                      const char *plan, struct error *err)
{
    struct account target;
    int rc;

    rc = validate_choice("plan", plan, "free", "pro", err);
    if (rc != 0)
        return rc;
    rc = store_begin(st, err);
    if (rc != 0)
        return rc;

    rc = accounts_require_admin(st, admin_id, "change plans", err);
    if (rc == 0)
        rc = accounts_get(st, account_id, &target, err);
    if (rc == 0 && strcmp(target.plan, plan) != 0)
        rc = update_plan(st, account_id, plan, err);
    if (rc == 0)
        rc = store_commit(st, err);
    if (rc != 0) {
        store_rollback(st);
        return rc;
    }

    log_info("account plan set account=%lld plan=%s previous=%s admin=%lld",
             (long long)account_id, plan, target.plan, (long long)admin_id);
    return 0;
}

int accounts_can_train(struct store *st, int64_t account_id, char *msg,
                       size_t msg_len)
{
    struct account account;
    struct error err = {0};
    int rc = accounts_get(st, account_id, &account, &err);

    if (rc != 0) {
        snprintf(msg, msg_len, "%s", err.msg);
        return rc;
    }
    if (strcmp(account.plan, "pro") != 0) {
        snprintf(msg, msg_len, "%s", ACCOUNT_NEEDS_PRO_MESSAGE);
        return 0;
    }
    snprintf(msg, msg_len, "%s", "");
    return 1;
}
