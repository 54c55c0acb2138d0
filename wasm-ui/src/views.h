/*
 * The screens of the app. app.c owns the routing and the signed-in
 * account. Each views_*.c file renders one screen into the element
 * "view", which app.c empties on each route change.
 */
#ifndef TRAINYARD_UI_VIEWS_H
#define TRAINYARD_UI_VIEWS_H

#include <stdint.h>

#include "json.h"

/* app.c */
/* Record a signed-in account (from sign-in or GET /me) and show its home. */
void app_signed_in(const struct json *account, const char *csrf);
/* Show the screen that the location hash names. */
void app_route(void);

/* views_signin.c */
void view_signin_show(void);

/* views_home.c */
void view_home_show(void);

/* views_datasets.c */
void view_datasets_show(void);

/* views_account.c */
void view_account_show(void);

/* views_train.c */
/* Open the Train Model dialog at step 1 over the current screen. */
void view_train_open(void);
/* Open the dialog at step 3 for an existing model, with epochs as the
 * default duration. */
void view_train_open_model(int64_t model_id, long epochs);

/* views_model.c */
void view_model_show(int64_t model_id);
/* Prefill the Start form's epochs when model_id's screen opens next. */
void view_model_suggest_epochs(int64_t model_id, long epochs);
/* Stop the model screen's live updates; safe to call on any screen. */
void view_model_leave(void);

#endif
