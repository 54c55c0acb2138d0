/*
 * Accounts: who may sign in, who is an operator (role "admin"), and who
 * may train in the cloud (plan "pro").
 *
 * Cloud training is an entitlement of the Pro plan, and only an admin
 * grants or revokes it. Passwords are the gateway's business: this module
 * stores the password hash that the gateway computed as an opaque string
 * and never logs it. Email addresses are not logged either, only ids.
 */
#ifndef TRAINYARD_ACCOUNTS_H
#define TRAINYARD_ACCOUNTS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "store.h"

/* Maximum length of an email address (RFC 5321 limits a path to 256
 * bytes, angle brackets included) and of a password hash string. */
#define ACCOUNT_EMAIL_MAX 254
#define ACCOUNT_HASH_MAX 255

/* Message for an account without the Pro plan that tries to train. */
#define ACCOUNT_NEEDS_PRO_MESSAGE                                              \
    "Cloud training needs the Pro plan; ask your operator to enable it"

struct account {
    int64_t id;
    char email[ACCOUNT_EMAIL_MAX + 1];
    char password_hash[ACCOUNT_HASH_MAX + 1]; /* "": no sign-in */
    char role[8];                             /* "user" or "admin" */
    char plan[8];                             /* "free" or "pro" */
    int64_t created_at;                       /* Unix time, ms */
};

/* Create an account. password_hash may be NULL (no sign-in); role is
 * "user" or "admin" and plan "free" or "pro", NULL meaning "user" and
 * "free". Fails with -EINVAL for an invalid value and -EEXIST when the
 * email is taken (emails compare case-insensitively). */
int accounts_create(struct store *st, const char *email,
                    const char *password_hash, const char *role,
                    const char *plan, int64_t *id, struct error *err);

/* Read account id into *out; -ENOENT when it does not exist. */
int accounts_get(struct store *st, int64_t id, struct account *out,
                 struct error *err);

/* Read the account with this email (case-insensitive); -ENOENT when none
 * has it. */
int accounts_find_email(struct store *st, const char *email,
                        struct account *out, struct error *err);

/* Check that admin_id is an admin; fails with -EPERM naming the action
 * ("change plans", ...) otherwise, or -ENOENT when it does not exist. */
int accounts_require_admin(struct store *st, int64_t admin_id,
                           const char *action, struct error *err);

/* Set the plan of account_id to "pro" or "free". Only an admin may; any
 * other caller gets -EPERM. */
int accounts_set_plan(struct store *st, int64_t admin_id, int64_t account_id,
                      const char *plan, struct error *err);

/* Check whether account_id may train in the cloud. Returns 1 when its plan
 * is "pro". Returns 0 when it is not, with ACCOUNT_NEEDS_PRO_MESSAGE in
 * msg, or a negative error with its message in msg. */
int accounts_can_train(struct store *st, int64_t account_id, char *msg,
                       size_t msg_len);

#endif
