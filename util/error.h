/* The error type every fallible function fills: caller-owned, fixed size, so it can be
 * filled in a child after clone() and sent whole over a sync socket. */
#pragma once

#include <stdarg.h>

struct hutch_error {
        int code;      /* negative errno */
        char msg[500]; /* one line, complete: what failed, on what, and why */
};

#define HUTCH_ERROR_INIT \
        {                \
                0, ""    \
        }

/* Describe a failure; returns code (a negative errno) so callers can `return hutch_err(...)`. */
int hutch_err(struct hutch_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* As hutch_err, and appends ": <strerror(-code)>" to the message. */
int hutch_err_sys(struct hutch_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Put context in front of an existing message: "<fmt>: <old message>"; returns err->code. */
int hutch_err_wrap(struct hutch_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
