/* Protocol ops for uploading, validating, reporting on and deleting data
 * sets (see ops_uploads.c, docs/DATASETS.md and schema/protocol.md). */
#ifndef TRAINYARD_OPS_UPLOADS_H
#define TRAINYARD_OPS_UPLOADS_H

#include "proto.h"

/* Largest archive accepted, in bytes: 2 GiB. The gateway rejects a
 * larger Content-Length with 413 before it reads the body. */
#define UPLOAD_MAX_BYTES (2LL << 30)
/* Largest chunk of one datasets.upload_chunk, decoded: 512 KiB, so its
 * base64 text fits in one protocol message (PROTO_MESSAGE_MAX). */
#define UPLOAD_CHUNK_MAX (512 * 1024)
/* Longest data set name, in bytes. */
#define UPLOAD_NAME_MAX 100

extern const struct proto_op proto_upload_ops[];

#endif
