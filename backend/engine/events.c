#include "engine/events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static int events_fd = -1;

void events_init(int fd)
{
    events_fd = fd;
}

void events_emit(const char *name, cJSON *fields)
{
    cJSON *o = fields ? fields : cJSON_CreateObject();
    char *text;
    size_t len, off = 0;

    if (events_fd < 0) {
        cJSON_Delete(o);
        return;
    }
    cJSON_AddStringToObject(o, "event", name);
    cJSON_AddNumberToObject(o, "time_ms", (double)clock_realtime_ms());
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text == NULL)
        return;
    len = strlen(text);
    text[len++] = '\n'; /* replaces the NUL: text is written by length */

    while (off < len) {
        ssize_t n = write(events_fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            log_warn("cannot write events to fd %d: %s; events are off",
                     events_fd, strerror(errno));
            events_fd = -1;
            break;
        }
        off += (size_t)n;
    }
    free(text);
}
