/* Scope-bound cleanup (GCC/Clang cleanup attribute) and ownership hand-off. */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

#define DEFINE_CLEANUP_FUNC(type, func)     \
        static inline void func##p(type *p) \
        {                                   \
                if (*p)                     \
                        func(*p);           \
        }

static inline void freep(void *p)
{
        free(*(void **) p);
}

/* Never retries on EINTR (the fd is gone either way on Linux) and keeps errno. */
static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

DEFINE_CLEANUP_FUNC(FILE *, fclose)
DEFINE_CLEANUP_FUNC(DIR *, closedir)

void strv_free(char **v);
DEFINE_CLEANUP_FUNC(char **, strv_free)

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _cleanup_closedir_ _cleanup_(closedirp)
#define _cleanup_strv_ _cleanup_(strv_freep)

#define steal_pointer(pp)                       \
        ({                                      \
                __typeof__(*(pp)) _tmp = *(pp); \
                *(pp) = NULL;                   \
                _tmp;                           \
        })

#define steal_fd(fdp)              \
        ({                         \
                int _tmp = *(fdp); \
                *(fdp) = -EBADF;   \
                _tmp;              \
        })
