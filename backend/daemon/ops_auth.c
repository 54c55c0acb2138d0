/*
 * Handlers of the auth.*, accounts.* and apikeys.* ops. Each one reads
 * and checks its arguments, calls auth_store and turns the result into
 * JSON; store errors become protocol error codes in one place
 * (fail_from_store).
 *
 * There is no public sign-up: accounts come from `backend create-admin`
 * and from admins through accounts.create. Sign-in returns the same
 * error for an unknown email and for a wrong password, and it verifies a
 * password hash in both cases, so neither the message nor the time shows
 * which one it was.
 *
 * NOTE: argon2id runs on the backend's single service thread, so each
 * sign-in or account creation holds up every other request for the time
 * of one hash (a failed sign-in took about 0.05 s with libsodium's
 * interactive limits on the 2-core development machine). The gateway's
 * per-address sign-in limit bounds how often that happens.
 */
#include "ops_auth.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "auth_store.h"
#include "clock.h"
#include "log.h"

#define SIGNIN_FAILED_MESSAGE "invalid email or password"

/* Record a failure of auth_store as the matching protocol error. */
static cJSON *fail_from_store(struct op_call *call, int rc,
                              const struct error *err)
{
    const char *code;

    switch (rc) {
    case -ENOENT:
        code = "not_found";
        break;
    case -EEXIST:
        code = "conflict";
        break;
    case -EINVAL:
        code = "invalid_request";
        break;
    case -ENOSPC:
        code = "limit_exceeded";
        break;
    case -EKEYEXPIRED:
        code = "session_expired";
        break;
    default:
        code = "internal";
        break;
    }
    return op_error(call, code, "%s", err->msg);
}

/* Read a string argument that must be present. Returns 0, or -1 after
 * op_error. */
static int required_string(struct op_call *call, const char *name,
                           const char **out)
{
    int rc = op_arg_string(call, name, out);

    if (rc > 0) {
        op_error(call, "invalid_request", "field '%s' is missing", name);
        return -1;
    }
    return rc;
}

static int required_int64(struct op_call *call, const char *name, int64_t *out)
{
    int rc = op_arg_int64(call, name, out);

    if (rc > 0) {
        op_error(call, "invalid_request", "field '%s' is missing", name);
        return -1;
    }
    return rc;
}

static cJSON *account_json(const struct auth_account *account)
{
    cJSON *obj = cJSON_CreateObject();

    cJSON_AddNumberToObject(obj, "id", (double)account->id);
    cJSON_AddStringToObject(obj, "email", account->email);
    cJSON_AddStringToObject(obj, "role", account->role);
    cJSON_AddStringToObject(obj, "plan", account->plan);
    cJSON_AddNumberToObject(obj, "created_at", (double)account->created_at);
    return obj;
}

static void add_time_or_null(cJSON *obj, const char *name, int64_t ms)
{
    if (ms > 0)
        cJSON_AddNumberToObject(obj, name, (double)ms);
    else
        cJSON_AddNullToObject(obj, name);
}

static cJSON *apikey_json(const struct auth_apikey *key)
{
    cJSON *obj = cJSON_CreateObject();

    cJSON_AddNumberToObject(obj, "id", (double)key->id);
    cJSON_AddStringToObject(obj, "name", key->name);
    cJSON_AddStringToObject(obj, "prefix", key->prefix);
    cJSON_AddNumberToObject(obj, "created_at", (double)key->created_at);
    add_time_or_null(obj, "last_used_at", key->last_used_at);
    add_time_or_null(obj, "revoked_at", key->revoked_at);
    return obj;
}

/* Load the envelope's account into *out. Returns 0, or -1 after
 * op_error(unauthorized). */
static int require_account(struct op_call *call, struct auth_account *out)
{
    struct error err = {0};
    int rc;

    if (call->account_id <= 0) {
        op_error(call, "unauthorized",
                 "this op needs a signed-in account; sign in first");
        return -1;
    }
    rc = auth_account_get(&call->be->store, call->account_id, out, &err);
    if (rc == -ENOENT) {
        op_error(call, "unauthorized",
                 "account %lld no longer exists; sign in again",
                 (long long)call->account_id);
        return -1;
    }
    if (rc != 0) {
        fail_from_store(call, rc, &err);
        return -1;
    }
    return 0;
}

/* Load the account as require_account does and check that it is an
 * admin. action names the rejected action in the message. */
static int require_admin(struct op_call *call, struct auth_account *out,
                         const char *action)
{
    if (require_account(call, out) != 0)
        return -1;
    if (strcmp(out->role, "admin") != 0) {
        log_warn("admin op rejected account=%lld action='%s'",
                 (long long)out->id, action);
        op_error(call, "forbidden", "only an admin may %s", action);
        return -1;
    }
    return 0;
}

/* ---- auth.* ----------------------------------------------------------- */

/* Replace a hash made with other limits (such as an older default) by one
 * made with the current limits, now that the password is known. A failure
 * only leaves the old hash in place. */
static void upgrade_hash(struct op_call *call, int64_t account_id,
                         const char *password)
{
    char hash[AUTH_HASH_MAX];
    struct error err = {0};

    if (auth_password_hash(password, hash, &err) != 0 ||
        auth_account_set_password_hash(&call->be->store, account_id, hash,
                                       &err) != 0)
        log_warn("cannot upgrade the password hash of account=%lld: %s",
                 (long long)account_id, err.msg);
    sodium_memzero(hash, sizeof(hash));
}

static cJSON *op_signin(struct op_call *call)
{
    struct auth_account account;
    struct auth_session session;
    const char *email, *password;
    struct error err = {0};
    cJSON *result;
    int rc, match;

    if (required_string(call, "email", &email) != 0 ||
        required_string(call, "password", &password) != 0)
        return NULL;

    rc = auth_account_find_email(&call->be->store, email, &account, &err);
    if (rc != 0 && rc != -ENOENT)
        return fail_from_store(call, rc, &err);
    /* An unknown email is checked against a fixed hash, which costs the
     * same time as a real check and never matches. */
    match =
        auth_password_verify(rc == 0 ? account.password_hash : NULL, password);
    if (!match) {
        if (rc == 0)
            log_info("sign-in rejected account=%lld: wrong password",
                     (long long)account.id);
        else
            log_info("sign-in rejected: no account has this email");
        return op_error(call, "unauthorized", SIGNIN_FAILED_MESSAGE);
    }
    if (auth_password_needs_rehash(account.password_hash))
        upgrade_hash(call, account.id, password);
    sodium_memzero(account.password_hash, sizeof(account.password_hash));

    rc = auth_session_create(&call->be->store, account.id, clock_realtime_ms(),
                             &session, &err);
    if (rc != 0)
        return fail_from_store(call, rc, &err);
    log_info("signed in account=%lld", (long long)account.id);

    result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "token", session.token);
    cJSON_AddStringToObject(result, "csrf", session.csrf);
    cJSON_AddNumberToObject(result, "expires_at", (double)session.expires_at);
    cJSON_AddItemToObject(result, "account", account_json(&account));
    sodium_memzero(session.token, sizeof(session.token));
    return result;
}

static cJSON *op_session(struct op_call *call)
{
    struct auth_account account;
    struct auth_session session;
    const char *token;
    struct error err = {0};
    cJSON *result;
    int rc;

    if (required_string(call, "token", &token) != 0)
        return NULL;
    rc = auth_session_lookup(&call->be->store, token, clock_realtime_ms(),
                             &session, &err);
    if (rc == -ENOENT)
        return op_error(call, "unauthorized", "%s", err.msg);
    if (rc != 0)
        return fail_from_store(call, rc, &err);
    rc = auth_account_get(&call->be->store, session.account_id, &account, &err);
    if (rc == -ENOENT)
        return op_error(call, "unauthorized",
                        "the session's account no longer exists");
    if (rc != 0)
        return fail_from_store(call, rc, &err);

    result = cJSON_CreateObject();
    cJSON_AddItemToObject(result, "account", account_json(&account));
    cJSON_AddStringToObject(result, "csrf", session.csrf);
    cJSON_AddNumberToObject(result, "expires_at", (double)session.expires_at);
    return result;
}

static cJSON *op_signout(struct op_call *call)
{
    const char *token;
    struct error err = {0};
    int rc;

    if (required_string(call, "token", &token) != 0)
        return NULL;
    rc = auth_session_delete(&call->be->store, token, &err);
    if (rc != 0)
        return fail_from_store(call, rc, &err);
    if (call->account_id > 0)
        log_info("signed out account=%lld", (long long)call->account_id);
    return cJSON_CreateObject();
}

static cJSON *op_apikey(struct op_call *call)
{
    struct auth_account account;
    const char *key;
    struct error err = {0};
    int64_t account_id = 0;
    cJSON *result;
    int rc;

    if (required_string(call, "key", &key) != 0)
        return NULL;
    rc = auth_apikey_lookup(&call->be->store, key, clock_realtime_ms(),
                            &account_id, &err);
    if (rc == -ENOENT)
        return op_error(call, "unauthorized", "%s", err.msg);
    if (rc == 0)
        rc = auth_account_get(&call->be->store, account_id, &account, &err);
    if (rc == -ENOENT)
        return op_error(call, "unauthorized",
                        "the API key's account no longer exists");
    if (rc != 0)
        return fail_from_store(call, rc, &err);

    result = cJSON_CreateObject();
    cJSON_AddItemToObject(result, "account", account_json(&account));
    return result;
}

/* ---- accounts.* ------------------------------------------------------- */

static cJSON *op_accounts_me(struct op_call *call)
{
    struct auth_account account;

    if (require_account(call, &account) != 0)
        return NULL;
    return account_json(&account);
}

static int add_account_to_array(const struct auth_account *account, void *ctx)
{
    cJSON_AddItemToArray(ctx, account_json(account));
    return 0;
}

static cJSON *op_accounts_list(struct op_call *call)
{
    struct auth_account admin;
    struct error err = {0};
    cJSON *result, *list;
    int rc;

    if (require_admin(call, &admin, "list accounts") != 0)
        return NULL;
    result = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(result, "accounts");
    /* TODO: page the list once installations have thousands of
     * accounts; each one is about 100 bytes of JSON. */
    rc = auth_accounts_each(&call->be->store, add_account_to_array, list, &err);
    if (rc != 0) {
        cJSON_Delete(result);
        return fail_from_store(call, rc, &err);
    }
    return result;
}

/* Return -EEXIST when email is taken. The insert checks again,
 * atomically, so this early check only avoids hashing in vain. */
static int check_email_free(struct op_call *call, const char *email,
                            struct error *err)
{
    struct auth_account existing;
    int rc = auth_account_find_email(&call->be->store, email, &existing, err);

    if (rc == 0)
        return error_set(err, -EEXIST,
                         "an account with email '%s' already exists; "
                         "choose another address",
                         email);
    return rc == -ENOENT ? 0 : rc;
}

static cJSON *op_accounts_create(struct op_call *call)
{
    struct auth_account admin, account;
    const char *email, *password, *role = "user", *plan = "free";
    char hash[AUTH_HASH_MAX];
    struct error err = {0};
    int rc;

    if (require_admin(call, &admin, "create accounts") != 0)
        return NULL;
    if (required_string(call, "email", &email) != 0 ||
        required_string(call, "password", &password) != 0 ||
        op_arg_string(call, "role", &role) < 0 ||
        op_arg_string(call, "plan", &plan) < 0)
        return NULL;

    /* Check everything cheap before the expensive hash. */
    rc = auth_email_check(email, &err);
    if (rc == 0)
        rc = auth_password_check(password, &err);
    if (rc == 0 && strcmp(role, "user") != 0 && strcmp(role, "admin") != 0)
        rc = error_set(&err, -EINVAL,
                       "role '%.32s' is invalid; use 'user' or 'admin'", role);
    if (rc == 0 && strcmp(plan, "free") != 0 && strcmp(plan, "pro") != 0)
        rc = error_set(&err, -EINVAL,
                       "plan '%.32s' is invalid; use 'free' or 'pro'", plan);
    if (rc == 0)
        rc = check_email_free(call, email, &err);
    if (rc == 0)
        rc = auth_password_hash(password, hash, &err);
    if (rc != 0)
        return fail_from_store(call, rc, &err);

    rc = auth_account_create(&call->be->store, email, hash, role, plan,
                             &account, &err);
    sodium_memzero(hash, sizeof(hash));
    if (rc != 0)
        return fail_from_store(call, rc, &err);
    log_info("account=%lld created role=%s plan=%s by admin=%lld",
             (long long)account.id, role, plan, (long long)admin.id);
    return account_json(&account);
}

static cJSON *op_accounts_set_plan(struct op_call *call)
{
    struct auth_account admin, account;
    const char *plan;
    struct error err = {0};
    int64_t id;
    int rc;

    if (require_admin(call, &admin, "change plans") != 0)
        return NULL;
    if (required_int64(call, "id", &id) != 0 ||
        required_string(call, "plan", &plan) != 0)
        return NULL;
    rc = auth_account_set_plan(&call->be->store, id, plan, &account, &err);
    if (rc != 0)
        return fail_from_store(call, rc, &err);
    log_info("plan of account=%lld set to %s by admin=%lld", (long long)id,
             plan, (long long)admin.id);
    return account_json(&account);
}

/* ---- apikeys.* -------------------------------------------------------- */

static cJSON *op_apikeys_create(struct op_call *call)
{
    struct auth_account account;
    struct auth_apikey key;
    const char *name;
    struct error err = {0};
    cJSON *result;
    int rc;

    if (require_account(call, &account) != 0 ||
        required_string(call, "name", &name) != 0)
        return NULL;
    rc = auth_apikey_create(&call->be->store, account.id, name,
                            clock_realtime_ms(), &key, &err);
    if (rc != 0)
        return fail_from_store(call, rc, &err);
    result = apikey_json(&key);
    /* The only time the key leaves the backend. */
    cJSON_AddStringToObject(result, "key", key.key);
    sodium_memzero(key.key, sizeof(key.key));
    return result;
}

static int add_apikey_to_array(const struct auth_apikey *key, void *ctx)
{
    cJSON_AddItemToArray(ctx, apikey_json(key));
    return 0;
}

static cJSON *op_apikeys_list(struct op_call *call)
{
    struct auth_account account;
    struct error err = {0};
    cJSON *result, *list;
    int rc;

    if (require_account(call, &account) != 0)
        return NULL;
    result = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(result, "api_keys");
    rc = auth_apikeys_each(&call->be->store, account.id, add_apikey_to_array,
                           list, &err);
    if (rc != 0) {
        cJSON_Delete(result);
        return fail_from_store(call, rc, &err);
    }
    return result;
}

static cJSON *op_apikeys_revoke(struct op_call *call)
{
    struct auth_account account;
    struct auth_apikey key;
    struct error err = {0};
    int64_t id;
    int rc;

    if (require_account(call, &account) != 0 ||
        required_int64(call, "id", &id) != 0)
        return NULL;
    rc = auth_apikey_revoke(&call->be->store, account.id, id,
                            clock_realtime_ms(), &key, &err);
    if (rc != 0)
        return fail_from_store(call, rc, &err);
    return apikey_json(&key);
}

const struct proto_op proto_auth_ops[] = {
    {"auth.signin", op_signin},
    {"auth.session", op_session},
    {"auth.signout", op_signout},
    {"auth.apikey", op_apikey},
    {"accounts.me", op_accounts_me},
    {"accounts.list", op_accounts_list},
    {"accounts.create", op_accounts_create},
    {"accounts.set_plan", op_accounts_set_plan},
    {"apikeys.create", op_apikeys_create},
    {"apikeys.list", op_apikeys_list},
    {"apikeys.revoke", op_apikeys_revoke},
    {NULL, NULL},
};
