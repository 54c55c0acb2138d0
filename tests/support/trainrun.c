/* Runs of the tested train program; see trainrun.h. */
#include "trainrun.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define MAX_ARGS 64

static void exec_child(char *const argv[], const char *out_path,
                       const char *err_path, int events_fd)
{
    int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err = strcmp(out_path, err_path) == 0
                  ? out
                  : open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);

    if (out >= 0)
        dup2(out, 1);
    if (err >= 0)
        dup2(err, 2);
    dup2(events_fd, 3);
    execv(argv[0], argv);
    fprintf(stderr, "failed to run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int trainrun_start(const char *const *args, const char *out_path,
                   const char *err_path, struct train_proc *proc)
{
    static char prog[PATH_MAX];
    char *argv[MAX_ARGS + 2];
    int fds[2], n = 0;

    harness_program("train", prog, sizeof(prog));
    argv[n++] = prog;
    for (int i = 0; args[i] != NULL; i++) {
        if (n > MAX_ARGS)
            return -E2BIG;
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;

    if (pipe(fds) != 0)
        return -errno;
    proc->pid = fork();
    if (proc->pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return -e;
    }
    if (proc->pid == 0) {
        close(fds[0]);
        exec_child(argv, out_path, err_path, fds[1]);
    }
    close(fds[1]);
    proc->events = fdopen(fds[0], "r");
    return proc->events != NULL ? 0 : -errno;
}

cJSON *trainrun_next_event(struct train_proc *proc)
{
    char line[16384];

    while (fgets(line, sizeof(line), proc->events) != NULL) {
        cJSON *event = cJSON_Parse(line);
        if (cJSON_IsObject(event))
            return event;
        cJSON_Delete(event);
    }
    return NULL;
}

int trainrun_event_int(const cJSON *event, const char *field, int fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(event, field);

    return cJSON_IsNumber(v) ? (int)v->valuedouble : fallback;
}

int trainrun_event_is(const cJSON *event, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(event, "event");

    return cJSON_IsString(v) && strcmp(v->valuestring, name) == 0;
}

int trainrun_finish(struct train_proc *proc)
{
    int status;

    while (fgetc(proc->events) != EOF)
        ;
    fclose(proc->events);
    proc->events = NULL;
    if (waitpid(proc->pid, &status, 0) != proc->pid)
        return -1;
    return status;
}

int trainrun_run(const char *const *args, const char *out_path,
                 const char *err_path)
{
    struct train_proc proc;

    if (trainrun_start(args, out_path, err_path, &proc) != 0)
        return -1;
    return trainrun_finish(&proc);
}
