/* File helpers with the durability rules that checkpoints, secrets and
 * reports rely on. */
#ifndef TRAINYARD_FSUTIL_H
#define TRAINYARD_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/* Create path and any missing parents with mode (like mkdir -p). */
int fs_mkdir_p(const char *path, mode_t mode, struct error *err);

/* Read a whole file of at most max_len bytes into a new NUL-terminated
 * buffer that the caller frees. A longer file fails with -EFBIG. */
int fs_read_file(const char *path, size_t max_len, char **data, size_t *len,
                 struct error *err);

/* Replace path with data durably: write to "path.tmp.PID", fsync it,
 * rename it over path, then fsync the folder. A crash at any point leaves
 * either the old file or the new one, never a mix. */
int fs_write_atomic(const char *path, const void *data, size_t len,
                    mode_t mode, struct error *err);

/* fsync the folder that contains path. */
int fs_sync_parent(const char *path, struct error *err);

/* Delete a folder and everything in it, without following symbolic
 * links. Returns 0 or an errno value. */
int fs_remove_tree(const char *path);

/* Delete the "BASE.partial-PID" folders in parent whose process no longer
 * runs: what writers that build a folder under a temporary name and
 * rename it leave when they are killed. Each removal is logged as a
 * warning that starts with who ("fmnist import", say). */
void fs_remove_stale_partials(const char *parent, const char *base,
                              const char *who);

#endif
