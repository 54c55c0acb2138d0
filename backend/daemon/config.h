/*
 * The backend's configuration file, YAML, every key optional:
 *
 *   listen: 127.0.0.1:8081      # address for gateways (port 0: any free)
 *   unix_socket: ""             # also listen on this Unix socket path
 *   data: var                   # data folder: database, data sets, runs
 *   train: build/bin/train      # the training program ($TRAINYARD_TRAIN)
 *   heartbeat_timeout_s: 120    # a silent trainer is stopped after this
 *   stop_timeout_s: 30          # SIGTERM, then SIGKILL after this
 *   trainer_nice: 10            # CPU priority of trainers, 0 to 19
 *   payment_provider: test      # test (test cards) or operator (credits)
 *   instance_types:             # what users can train on, and the price
 *     - name: cpu
 *       device: cpu             # train's device= value
 *       price_per_hour: "0.50"  # USD, up to 6 decimals, read exactly
 *       capacity: 1             # trainings at once (GPUs: always 1)
 *
 * Without an instance_types list the backend offers one CPU type at $0.50
 * per hour with capacity 1. Command-line options override the file.
 */
#ifndef TRAINYARD_CONFIG_H
#define TRAINYARD_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "error.h"

#define CONFIG_TEXT_MAX 512
#define CONFIG_INSTANCE_TYPES_MAX 32

struct config_instance_type {
    char name[64];
    char device[16];
    int64_t price_per_hour; /* micro-dollars */
    int capacity;
};

struct config {
    char listen_host[256];
    int listen_port;
    char unix_socket[CONFIG_TEXT_MAX];
    char data_dir[CONFIG_TEXT_MAX];
    char train_program[CONFIG_TEXT_MAX];
    int heartbeat_timeout_s;
    int stop_timeout_s;
    int trainer_nice;
    char payment_provider[32];
    struct config_instance_type types[CONFIG_INSTANCE_TYPES_MAX];
    int ntypes;
};

/* Fill every field with its default. */
void config_defaults(struct config *c);

/* Read path over the current values; unknown keys are errors. */
int config_load(struct config *c, const char *path, struct error *err);

/* Parse a dollar amount such as "2", "0.5" or "1.234567" into
 * micro-dollars without floating point; more than 6 decimals, a sign or
 * other characters are errors. */
int config_parse_dollars(const char *text, int64_t *micro);

/* Split "HOST:PORT". */
int config_parse_address(const char *text, char *host, size_t host_len,
                         int *port);

/* Print the file format with the defaults, for --help. */
void config_print_help(FILE *out);

#endif
