/*
 * The sign-in screen: an email and password form that posts to
 * /auth/signin. A failed sign-in shows the gateway's message, such as
 * "Invalid email or password.", in an alert region that screen readers
 * announce.
 */
#include <stdio.h>

#include "api.h"
#include "dom.h"
#include "views.h"

static void on_signin(int status, const struct json *reply, void *ctx)
{
    char text[300];

    (void)ctx;
    dom_set_disabled("signin-submit", 0);
    if (status == 200) {
        app_signed_in(json_get(reply, "account"),
                      json_string(json_get(reply, "csrf"), ""));
        return;
    }
    api_error_text(status, reply, text, sizeof(text));
    dom_set_text("signin-error", text);
    dom_focus("signin-password");
}

static void submit_signin(void *ctx)
{
    char email[300], password[1100], body[2900];
    char email_json[620], password_json[2220];

    (void)ctx;
    dom_get_value("signin-email", email, sizeof(email));
    dom_get_value("signin-password", password, sizeof(password));
    json_quote(email, email_json, sizeof(email_json));
    json_quote(password, password_json, sizeof(password_json));
    snprintf(body, sizeof(body), "{\"email\":%s,\"password\":%s}",
             email_json, password_json);
    dom_set_text("signin-error", "");
    dom_set_disabled("signin-submit", 1);
    api_post("/auth/signin", body, on_signin, NULL);
}

void view_signin_show(void)
{
    dom_element("section", "view", "signin", "card narrow", NULL);
    dom_create("h1", "signin", "signin-title", "Sign in");
    dom_create("form", "signin", "signin-form", NULL);
    dom_set_attr("signin-form", "aria-labelledby", "signin-title");
    dom_input("signin-form", "signin-email", "Email", "email", NULL);
    dom_set_attr("signin-email", "autocomplete", "username");
    dom_set_attr("signin-email", "required", "");
    dom_input("signin-form", "signin-password", "Password", "password",
              NULL);
    dom_set_attr("signin-password", "autocomplete", "current-password");
    dom_set_attr("signin-password", "required", "");
    dom_element("p", "signin-form", "signin-error", "error", NULL);
    dom_set_attr("signin-error", "role", "alert");
    dom_create("button", "signin-form", "signin-submit", "Sign in");
    dom_set_attr("signin-submit", "type", "submit");
    dom_on("signin-form", "submit", submit_signin, NULL);
    dom_focus("signin-email");
}
