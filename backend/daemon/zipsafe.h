/*
 * Safe extraction of uploaded zip archives (libzip). An archive comes
 * from a user, so every entry name is checked before anything is
 * written, and one bad entry rejects the whole archive with a message
 * that names it. The checks and limits are in zipsafe.c's file comment
 * and in docs/DATASETS.md.
 */
#ifndef TRAINYARD_ZIPSAFE_H
#define TRAINYARD_ZIPSAFE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "error.h"

/* Default largest total of bytes written by one extraction: 8 GiB. */
#define ZIPSAFE_MAX_UNCOMPRESSED_DEFAULT (8ULL << 30)
/* Default largest number of entries in one archive. */
#define ZIPSAFE_MAX_FILES_DEFAULT 200000ULL

/* Environment variable that lowers the limits, for tests only, such as
 * "max_uncompressed=1048576,max_files=100". */
#define ZIPSAFE_TEST_LIMITS_ENV "TRAINYARD_UPLOAD_TEST_LIMITS"

struct zipsafe_limits {
    uint64_t max_uncompressed; /* bytes actually written, in total */
    uint64_t max_files;        /* entries, folders included */
};

/* Fill limits with the defaults, then apply ZIPSAFE_TEST_LIMITS_ENV when
 * it is set. An unknown key or a bad number in it is logged and
 * ignored. */
void zipsafe_limits_load(struct zipsafe_limits *limits);

/* Check one entry name. Returns 0 when it is a relative path of plain
 * components, else -EINVAL with err naming the entry and the reason.
 * Rejected are an empty name, an absolute path, a drive letter, a
 * backslash, a "." or ".." component, an empty component, a control
 * character, a name over 1,024 bytes and a component over 255 bytes. */
int zipsafe_check_name(const char *name, struct error *err);

/* 1 when some component of name starts with '.' or is "__MACOSX", so
 * the entry is skipped and reported, else 0. */
int zipsafe_is_hidden(const char *name);

/* Extract the archive at zip_path into the new folder dest (which must
 * not exist; it is created with mode 0700). Hidden entries are skipped
 * and each gets a report entry {path, problem, action} appended to
 * report (a JSON array). When every other entry lies under one top
 * folder that contains train/, that folder is stripped. Returns 0, or a
 * negative code with err set: -EINVAL for an archive that breaks a rule
 * or is not a zip archive, -EFBIG over a limit, others for I/O. On
 * failure dest may hold part of the files; remove it with
 * zipsafe_remove_tree. */
int zipsafe_extract(const char *zip_path, const char *dest,
                    const struct zipsafe_limits *limits, cJSON *report,
                    struct error *err);

/* Remove path and everything under it without following symbolic
 * links. A missing path is not an error. Returns 0 or -errno. */
int zipsafe_remove_tree(const char *path);

#endif
