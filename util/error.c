/* Filling struct hutch_error. The only formatting util/ does: it is the error type itself. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

static int vfill(struct hutch_error *err, int code, bool sys, const char *fmt, va_list ap)
{
        if (code >= 0)
                code = -EIO;
        if (!err)
                return code;
        err->code = code;
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        if (sys && n >= 0 && (size_t) n < sizeof err->msg)
                snprintf(err->msg + n, sizeof err->msg - n, ": %s", strerror(-code));
        return code;
}

int hutch_err(struct hutch_error *err, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = vfill(err, code, false, fmt, ap);
        va_end(ap);
        return r;
}

int hutch_err_sys(struct hutch_error *err, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = vfill(err, code, true, fmt, ap);
        va_end(ap);
        return r;
}

int hutch_err_wrap(struct hutch_error *err, const char *fmt, ...)
{
        char prefix[sizeof err->msg], old[sizeof err->msg];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        /* a message cut at the buffer's end is still the right message */
        if (snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old) >= (int) sizeof err->msg)
                err->msg[sizeof err->msg - 1] = 0;
        return err->code < 0 ? err->code : -EIO;
}
