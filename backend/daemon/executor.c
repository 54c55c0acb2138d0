/*
 * The local executor (see executor.h): trainers as child processes.
 *
 * Between fork and exec the child may call only async-signal-safe
 * functions, because the backend has other threads (SQLite's, for
 * example) whose locks the child inherits in whatever state they were.
 * Everything the child needs is therefore prepared before fork. A second
 * close-on-exec pipe reports a failure before exec (chdir, exec itself)
 * as an errno value. So start fails with a clear message instead of
 * returning a job that exits 127. When exec succeeds, the pipe closes
 * with nothing written. Because start waits for that moment, the child
 * has already called setsid when start returns, and a signal sent to its
 * process group cannot miss it.
 */
#include "executor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Descriptors at or above this number are free for the child's shuffle
 * of its four descriptors onto 0 to 4. */
#define CHILD_FD_SCRATCH 10
#define CHILD_REPORT_FD 4
/* Upper bound for the fallback loop that closes descriptors when the
 * kernel lacks close_range (Linux before 5.9). */
#define CHILD_CLOSE_FALLBACK_MAX 65536

enum child_stage {
    CHILD_STAGE_SETUP = 1, /* setsid, prctl, descriptor moves */
    CHILD_STAGE_CHDIR,
    CHILD_STAGE_EXEC,
};

struct executor_job {
    pid_t pid; /* also the process group id */
    int events_fd;
    int ended;
    struct executor_status status;
};

/* Failure report that the child writes on the report pipe. */
struct child_report {
    int stage;
    int error;
};

static _Noreturn void child_fail(int report_fd, int stage, int error)
{
    struct child_report r = {stage, error};
    ssize_t n = write(report_fd, &r, sizeof(r));

    (void)n;
    _exit(127);
}

/* Close every descriptor from first up, and leave the others alone. */
static void child_close_from(int first, int max_fd)
{
    if (close_range((unsigned)first, ~0U, 0) == 0)
        return;
    for (int fd = first; fd < max_fd; fd++)
        close(fd);
}

/* Lower the child's CPU priority to nice, and that of its autogroup,
 * which /proc/self/autogroup sets from a plain number, when the kernel
 * has autogroups. Raising a nice value needs no privilege. */
static void child_set_nice(int nice, const char *autogroup_text,
                           int report_wr)
{
    ssize_t written;
    int fd;

    if (nice <= 0)
        return;
    if (setpriority(PRIO_PROCESS, 0, nice) != 0)
        child_fail(report_wr, CHILD_STAGE_SETUP, errno);
    fd = open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* a kernel without CONFIG_SCHED_AUTOGROUP */
    /* NOTE: a failed write is ignored. The process's own nice value
     * still ranks it within its session, but not against the servers. */
    written = write(fd, autogroup_text, strlen(autogroup_text));
    (void)written;
    close(fd);
}

/* Runs in the child: only async-signal-safe calls from here on. */
static _Noreturn void run_child(char *const argv[], const char *cwd,
                                int null_fd, int log_fd, int events_wr,
                                int report_wr, pid_t parent, int max_fd,
                                int nice, const char *autogroup_text)
{
    struct sigaction dfl;
    sigset_t none;
    int n, l, w, r;

    /* The backend ignores SIGPIPE and handles SIGTERM; the trainer must
     * start with default dispositions and no blocked signal. */
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (setsid() < 0)
        child_fail(report_wr, CHILD_STAGE_SETUP, errno);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        child_fail(report_wr, CHILD_STAGE_SETUP, errno);
    child_set_nice(nice, autogroup_text, report_wr);
    /* The backend died before prctl, so no one would watch this
     * trainer. */
    if (getppid() != parent)
        _exit(127);

    /* Copy the four descriptors out of the way first, so that moving one
     * onto 0 to 4 can never overwrite another. */
    n = fcntl(null_fd, F_DUPFD, CHILD_FD_SCRATCH);
    l = fcntl(log_fd, F_DUPFD, CHILD_FD_SCRATCH);
    w = fcntl(events_wr, F_DUPFD, CHILD_FD_SCRATCH);
    r = fcntl(report_wr, F_DUPFD_CLOEXEC, CHILD_FD_SCRATCH);
    if (n < 0 || l < 0 || w < 0 || r < 0)
        child_fail(report_wr, CHILD_STAGE_SETUP, errno);
    if (dup2(n, 0) < 0 || dup2(l, 1) < 0 || dup2(l, 2) < 0 ||
        dup2(w, EXECUTOR_EVENTS_FD) < 0 ||
        dup3(r, CHILD_REPORT_FD, O_CLOEXEC) < 0)
        child_fail(r, CHILD_STAGE_SETUP, errno);
    child_close_from(CHILD_REPORT_FD + 1, max_fd);

    if (cwd != NULL && chdir(cwd) < 0)
        child_fail(CHILD_REPORT_FD, CHILD_STAGE_CHDIR, errno);
    execv(argv[0], argv);
    child_fail(CHILD_REPORT_FD, CHILD_STAGE_EXEC, errno);
}

static int max_open_fds(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > CHILD_CLOSE_FALLBACK_MAX)
        return CHILD_CLOSE_FALLBACK_MAX;
    return (int)rl.rlim_cur;
}

static void close_if_open(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void reap_blocking(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Wait until the child has exec'd (0) or reported a failed step. */
static int wait_for_exec(int report_rd, pid_t pid, char *const argv[],
                         const char *cwd, struct error *err)
{
    struct child_report r;
    ssize_t got;

    do
        got = read(report_rd, &r, sizeof(r));
    while (got < 0 && errno == EINTR);
    if (got == 0)
        return 0;

    reap_blocking(pid);
    if (got != (ssize_t)sizeof(r))
        return error_set(err, -EIO,
                         "cannot start '%s': the child process ended "
                         "before exec without a report",
                         argv[0]);
    switch (r.stage) {
    case CHILD_STAGE_CHDIR:
        return error_errno(err, r.error, "cannot start '%s' in folder '%s'",
                           argv[0], cwd);
    case CHILD_STAGE_EXEC:
        return error_errno(err, r.error,
                           "cannot run '%s'; check the train program path "
                           "in the configuration",
                           argv[0]);
    default:
        return error_errno(err, r.error, "cannot prepare the process for '%s'",
                           argv[0]);
    }
}

static int local_start(const struct executor *ex, char *const argv[],
                       const char *cwd, const char *log_path,
                       struct executor_job **out, struct error *err)
{
    int events[2] = {-1, -1}, report[2] = {-1, -1};
    int log_fd = -1, null_fd = -1, rc = 0;
    int max_fd = max_open_fds();
    char autogroup_text[32];
    pid_t parent = getpid(), pid;
    sigset_t all, saved;
    struct executor_job *job;

    *out = NULL;
    /* The child may not call snprintf, so the text is made here. */
    snprintf(autogroup_text, sizeof(autogroup_text), "%d", ex->nice);
    job = calloc(1, sizeof(*job));
    if (job == NULL)
        return error_set(err, -ENOMEM, "out of memory for a job");

    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0)
        rc = error_errno(err, errno, "cannot open log file '%s'", log_path);
    if (rc == 0 && (null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        rc = error_errno(err, errno, "cannot open /dev/null");
    if (rc == 0 &&
        (pipe2(events, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0))
        rc = error_errno(err, errno, "cannot create a pipe for '%s'", argv[0]);
    if (rc != 0)
        goto out;

    /* Block signals across fork, so that no handler of the backend runs
     * in the child before it resets them. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid = fork();
    if (pid == 0)
        run_child(argv, cwd, null_fd, log_fd, events[1], report[1], parent,
                  max_fd, ex->nice, autogroup_text);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (pid < 0) {
        rc = error_errno(err, errno, "cannot fork to run '%s'", argv[0]);
        goto out;
    }

    close_if_open(&events[1]);
    close_if_open(&report[1]);
    rc = wait_for_exec(report[0], pid, argv, cwd, err);
    if (rc != 0)
        goto out;
    if (fcntl(events[0], F_SETFL, O_NONBLOCK) != 0) {
        rc = error_errno(err, errno,
                         "cannot make the events pipe of '%s' "
                         "non-blocking",
                         argv[0]);
        kill(-pid, SIGKILL);
        reap_blocking(pid);
        goto out;
    }
    job->pid = pid;
    job->events_fd = events[0];
    events[0] = -1;
    *out = job;
    job = NULL;

out:
    close_if_open(&events[0]);
    close_if_open(&events[1]);
    close_if_open(&report[0]);
    close_if_open(&report[1]);
    close_if_open(&log_fd);
    close_if_open(&null_fd);
    free(job);
    return rc;
}

static int local_events_fd(const struct executor_job *job)
{
    return job->events_fd;
}

static int64_t local_job_id(const struct executor_job *job)
{
    return job->pid;
}

static int local_signal(struct executor_job *job, int sig, struct error *err)
{
    /* Once reaped, the pid may belong to another process. */
    if (job->ended)
        return error_set(err, -ESRCH,
                         "process group %d has already exited; nothing to "
                         "signal",
                         (int)job->pid);
    if (kill(-job->pid, sig) != 0)
        return error_errno(err, errno,
                           "cannot send signal %d to process group %d", sig,
                           (int)job->pid);
    return 0;
}

static int local_poll(struct executor_job *job, struct executor_status *st,
                      struct error *err)
{
    int ws;
    pid_t got;

    if (!job->ended) {
        got = waitpid(job->pid, &ws, WNOHANG);
        if (got == 0 || (got < 0 && errno == EINTR)) {
            st->state = EXECUTOR_RUNNING;
            st->code = 0;
            return 0;
        }
        if (got < 0)
            return error_errno(err, errno, "cannot check process %d",
                               (int)job->pid);
        job->ended = 1;
        if (WIFSIGNALED(ws)) {
            job->status.state = EXECUTOR_SIGNALED;
            job->status.code = WTERMSIG(ws);
        } else {
            job->status.state = EXECUTOR_EXITED;
            job->status.code = WEXITSTATUS(ws);
        }
    }
    *st = job->status;
    return 0;
}

static void local_close(struct executor_job *job)
{
    if (job == NULL)
        return;
    if (!job->ended) {
        kill(-job->pid, SIGKILL);
        reap_blocking(job->pid);
    }
    close_if_open(&job->events_fd);
    free(job);
}

static const char *file_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash != NULL ? slash + 1 : path;
}

/* 1 when pid runs a program whose file name equals that of program. */
static int runs_program(pid_t pid, const char *program)
{
    char link[64], exe[PATH_MAX];
    const char *deleted = " (deleted)";
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
    n = readlink(link, exe, sizeof(exe) - 1);
    if (n <= 0)
        return 0; /* gone, a zombie, or not ours to inspect */
    exe[n] = '\0';
    /* A rebuilt program shows as "PATH (deleted)" in running processes. */
    size_t len = strlen(exe), dlen = strlen(deleted);
    if (len > dlen && strcmp(exe + len - dlen, deleted) == 0)
        exe[len - dlen] = '\0';
    return strcmp(file_name(exe), file_name(program)) == 0;
}

static int local_kill_orphan(const struct executor *ex, int64_t job_id,
                             const char *program, struct error *err)
{
    pid_t pid = (pid_t)job_id;

    (void)ex;
    if (job_id <= 1 || job_id > INT_MAX)
        return 0;
    /* Jobs of this executor lead their own process group; a process that
     * does not is a later, unrelated one with a reused pid. */
    if (getpgid(pid) != pid || !runs_program(pid, program))
        return 0;
    if (kill(-pid, SIGKILL) != 0) {
        if (errno == ESRCH)
            return 0;
        return error_errno(err, errno, "cannot kill process group %d",
                           (int)pid);
    }
    return 1;
}

static const struct executor local_executor = {
    .name = "local",
    .start = local_start,
    .events_fd = local_events_fd,
    .job_id = local_job_id,
    .signal = local_signal,
    .poll = local_poll,
    .close = local_close,
    .kill_orphan = local_kill_orphan,
};

const struct executor *executor_local(void)
{
    return &local_executor;
}

void executor_local_init(struct executor *ex, int nice)
{
    *ex = local_executor;
    if (nice < 0)
        nice = 0;
    if (nice > 19)
        nice = 19;
    ex->nice = nice;
}
