/*
 * The Trainyard browser app, compiled to WebAssembly: start-up, the page
 * header with its navigation and sign-out, and hash routing. "#/" is the
 * home screen, "#/datasets" the data sets, "#/account" the account and
 * "#/models/ID" a model's screen. Routes live in the location hash, so
 * browser back and forward move between screens without a page load, and
 * the gateway serves only index.html.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dom.h"
#include "views.h"

static int signed_in;

static void show_signed_out(void)
{
    signed_in = 0;
    api_set_csrf("");
    dom_set_text("who", "");
    dom_set_class("signout", "hidden", 1);
    dom_set_class("nav", "hidden", 1);
    app_route();
}

static void on_signout(int status, const struct json *reply, void *ctx)
{
    (void)status;
    (void)reply;
    (void)ctx;
    show_signed_out();
}

static void click_signout(void *ctx)
{
    (void)ctx;
    api_post("/auth/signout", NULL, on_signout, NULL);
}

void app_signed_in(const struct json *account, const char *csrf)
{
    signed_in = 1;
    api_set_csrf(csrf);
    dom_textf("who", "%s", json_string(json_get(account, "email"), ""));
    dom_set_class("signout", "hidden", 0);
    dom_set_class("nav", "hidden", 0);
    app_route();
}

void app_route(void)
{
    char hash[128];
    long long id;
    int used = 0;

    /* Replies to the previous screen's requests are dropped from here. */
    api_generation++;
    view_model_leave();
    dom_clear("view");
    if (!signed_in) {
        view_signin_show();
        return;
    }
    location_get_hash(hash, sizeof(hash));
    if (sscanf(hash, "#/models/%lld%n", &id, &used) == 1 && id > 0 &&
        hash[used] == '\0') {
        view_model_show((int64_t)id);
        return;
    }
    if (strcmp(hash, "#/datasets") == 0) {
        view_datasets_show();
        return;
    }
    if (strcmp(hash, "#/account") == 0) {
        view_account_show();
        return;
    }
    view_home_show();
}

static void on_hash(void *ctx)
{
    (void)ctx;
    app_route();
}

static void on_me(int status, const struct json *reply, void *ctx)
{
    (void)ctx;
    if (status == 200) {
        app_signed_in(json_get(reply, "account"),
                      json_string(json_get(reply, "csrf"), ""));
        return;
    }
    show_signed_out();
}

int main(void)
{
    dom_element("header", "app", "top", "top", NULL);
    dom_create("a", "top", "brand", "Trainyard");
    dom_set_attr("brand", "href", "#/");
    dom_element("nav", "top", "nav", "nav hidden", NULL);
    dom_set_attr("nav", "aria-label", "Main");
    dom_create("a", "nav", "nav-home", "Models");
    dom_set_attr("nav-home", "href", "#/");
    dom_create("a", "nav", "nav-datasets", "Data sets");
    dom_set_attr("nav-datasets", "href", "#/datasets");
    dom_create("a", "nav", "nav-account", "Account");
    dom_set_attr("nav-account", "href", "#/account");
    dom_element("span", "top", "who", "who", NULL);
    dom_element("button", "top", "signout", "hidden", "Sign out");
    dom_set_attr("signout", "type", "button");
    dom_on("signout", "click", click_signout, NULL);
    dom_create("div", "app", "view", NULL);
    dom_element("p", "view", "loading", "muted", "Loading...");

    api_on_unauthorized = show_signed_out;
    location_on_hash(on_hash, NULL);
    /* A 401 reply goes to show_signed_out through api_on_unauthorized. */
    api_get("/me", on_me, NULL);
    return 0;
}
