/*
 * Executors: how the backend runs a trainer and watches it.
 *
 * An executor is a table of function pointers, so that a batch-system
 * executor (Slurm, for example) can replace the local one without changes
 * to the session code. Callers see only an opaque job with a readable,
 * non-blocking descriptor that delivers the trainer's JSON-line events, a
 * numeric job id to store, and poll/signal/close operations. Nothing
 * outside an executor may assume that a job is a local child process.
 *
 * The local executor forks and execs the program in its own session and
 * process group (setsid), so that a signal reaches the trainer and any
 * process it starts. The child gets standard input from /dev/null,
 * standard output and error appended to the log file, the write end of a
 * pipe as descriptor 3 (pass events_fd=3 to train) and no other open
 * descriptor. The job id is the process id, which is also the process
 * group id.
 */
#ifndef TRAINYARD_EXECUTOR_H
#define TRAINYARD_EXECUTOR_H

#include <stdint.h>

#include "error.h"

/* Descriptor number on which a started program finds its events pipe. */
#define EXECUTOR_EVENTS_FD 3

struct executor_job;

enum executor_job_state {
    EXECUTOR_RUNNING,
    EXECUTOR_EXITED,   /* code is the exit status */
    EXECUTOR_SIGNALED, /* code is the signal number that ended it */
};

struct executor_status {
    enum executor_job_state state;
    int code;
};

struct executor {
    const char *name; /* for logs: "local", ... */

    /* Start argv (argv[0] is the program path) in folder cwd (NULL: the
     * backend's own), with standard output and error appended to
     * log_path and events on EXECUTOR_EVENTS_FD. On success *job is a new
     * job that the caller must release with close. */
    int (*start)(const struct executor *ex, char *const argv[], const char *cwd,
                 const char *log_path, struct executor_job **job,
                 struct error *err);

    /* Read end of the job's events: non-blocking and close-on-exec. It
     * reports end of file once the job and everything it started have
     * exited. */
    int (*events_fd)(const struct executor_job *job);

    /* Id to store and to pass to kill_orphan after a backend restart. */
    int64_t (*job_id)(const struct executor_job *job);

    /* Send sig to every process of the job. A job that has ended fails
     * with -ESRCH. */
    int (*signal)(struct executor_job *job, int sig, struct error *err);

    /* Check without blocking whether the job still runs. Once a job has
     * ended, every later call returns the same status. */
    int (*poll)(struct executor_job *job, struct executor_status *status,
                struct error *err);

    /* Release the job. A job that still runs is killed (SIGKILL) and
     * waited for first. */
    void (*close)(struct executor_job *job);

    /* Kill every process of a job that an earlier backend started, when
     * job_id still names a running job of program (compared by file
     * name). Returns 1 when it killed the job, 0 when no such job runs,
     * or a negative error. */
    int (*kill_orphan)(const struct executor *ex, int64_t job_id,
                       const char *program, struct error *err);

    /* Nice value (0 to 19) that started programs run at, so that a
     * trainer that keeps every core busy leaves CPU time to the backend
     * and gateway. The local executor also sets it on the program's
     * autogroup: with CONFIG_SCHED_AUTOGROUP each session (setsid) is a
     * scheduling group of its own, and a process's nice value then weighs
     * it only against the processes of its own session. */
    int nice;
};

/* The executor that runs jobs as child processes of this backend. Every
 * job it starts gets SIGKILL when the thread that started it exits, so a
 * backend crash never leaves a trainer running unwatched. Start jobs
 * from the backend's long-lived main thread. */
const struct executor *executor_local(void);

/* Fill *ex with the local executor, starting programs at nice value nice
 * (0 to 19). */
void executor_local_init(struct executor *ex, int nice);

#endif
