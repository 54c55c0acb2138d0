/* Files embedded into a program at build time by scripts/embed.sh. */
#ifndef TRAINYARD_EMBEDDED_H
#define TRAINYARD_EMBEDDED_H

struct embedded_file {
    const char *name; /* base name of the source file */
    const char *text; /* its bytes, NUL-terminated */
};

/* SQL migrations from schema/db/, sorted by name; ends with name NULL. */
extern const struct embedded_file schema_sql[];

#endif
