/* `backend init-demo`: the first-start accounts and sample data set of
 * `make run` (see demo.c). */
#ifndef TRAINYARD_DEMO_H
#define TRAINYARD_DEMO_H

/* Run the command; argv[0] is "init-demo". Returns the exit status. */
int demo_init(int argc, char **argv);

#endif
