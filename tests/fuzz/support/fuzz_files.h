/*
 * Files and folders of the fuzz targets. Several parsers take a path, so
 * their targets write each input to one anonymous in-memory file and
 * pass its /proc/self/fd/N path. Targets that need real folders make
 * one under $TMPDIR (default /tmp) per process. Every function aborts
 * when the system call it needs fails, because a target cannot go on
 * without its files, and libFuzzer then reports the stack.
 */
#ifndef TRAINYARD_FUZZ_FILES_H
#define TRAINYARD_FUZZ_FILES_H

#include <stddef.h>
#include <stdint.h>

/* Replace the contents of the process's in-memory input file with data
 * and then tail (which may be NULL when tail_len is 0), and return the
 * file's path. The file is made by the first call, named name for
 * /proc/PID/fd listings. Returns NULL when the write fails, so the
 * caller can skip the input. */
const char *fuzz_input_file(const char *name, const uint8_t *data,
                            size_t size, const uint8_t *tail,
                            size_t tail_len);

/* Make a new folder $TMPDIR/PREFIX.XXXXXX, copy its path into out and
 * remove it with everything in it when the process exits. A run that
 * crashes leaves the folder behind. */
void fuzz_temp_folder(const char *prefix, char *out, size_t len);

/* Remove path and everything below it without following links. A
 * missing path is not an error. */
void fuzz_remove_tree(const char *path);

#endif
