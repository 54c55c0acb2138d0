/*
 * `backend create-admin EMAIL`: the command that creates an admin
 * account, chiefly the first one, since accounts are otherwise created
 * only by admins. It opens (and migrates) the database directly, so it
 * works whether or not the backend is running, and exits.
 */
#ifndef TRAINYARD_ADMIN_CLI_H
#define TRAINYARD_ADMIN_CLI_H

/* Run the command; argv[0] is "create-admin". Returns the exit status:
 * 0 on success, 1 on failure, 2 for a usage error. */
int admin_cli_create_admin(int argc, char **argv);

#endif
