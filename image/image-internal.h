/* Shared internals of image/: the squashfs reader handle. */
#pragma once

#include "image.h"

/* squashfuse's installed headers carry its config.h (FUSE_USE_VERSION, _POSIX_C_SOURCE)
 * and an old-style declaration: contain both here, the one place that includes them. */
#undef _POSIX_C_SOURCE
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <squashfuse.h>
#include <ll.h>
#pragma GCC diagnostic pop

struct sqfs_handle {
        sqfs_ll ll; /* sqfs_ll embeds the sqfs as its first member */
};

/* Validate the squashfs superblock at img->offset and set img->size from it. */
int squashfs_check(int fd, uint64_t offset, uint64_t avail, uint64_t *ret_size, struct hutch_error *err);
int sqfs_handle_open(struct image *img, struct hutch_error *err);
void sqfs_handle_free(struct sqfs_handle *h);
/* (re)make empty decompressed-block caches of hutch's sizes: at open, and by the FUSE server
 * to give memory back once idle */
int sqfs_handle_reset_caches(struct sqfs_handle *h);
/* Free what a thread that decompressed blocks kept for it (its inflater). */
void image_thread_done(void);

/* ---- The image server's two processes (image/serve.c): the worker serves the mount
 * (image/mount.c), the monitor watches it and answers for it once it is gone. */
#define SERVE_MONITOR_COMM "hutch-sqfs-mon"
enum serve_role { SERVE_MONITOR, SERVE_WORKER };
/* A role's seccomp allow-list as a BPF program (struct sock_filter), compiled ahead. */
struct serve_filter {
        uint64_t insn[256];
        unsigned short len;
};
/* recv_fd, send_fd: the one socket it may receive on (the mount's hand-over), the one it
 * may send on (the FUSE fd to the monitor); -EBADF: none */
int serve_filter_build(enum serve_role role, int recv_fd, int send_fd, struct serve_filter *ret);
/* Confine this process: every fd >= 3 but keep[] closed, no core file, no capability,
 * no_new_privs, no file reachable by path but beneath dir_fd (-EBADF: none; Landlock,
 * where the kernel has it), the filter f. */
int serve_confine(const struct serve_filter *f, const int *keep, size_t n_keep, int dir_fd);
/* The worker: takes sock (the mount's hand-over), sends the monitor its copy of the FUSE
 * fd and the image's path on ctl (which it takes), serves until owner_fd (a pidfd) polls
 * ready or the mount goes away, with a decompressed-file cache of cache_max bytes (0:
 * none); in_flight: shared with the monitor. Returns its exit
 * status: 0, or one of these, which the monitor reports as a crash. */
#define SERVE_EXIT_CONFINE 3    /* it could not confine itself, and served nothing */
#define SERVE_EXIT_UNREADABLE 4 /* squashfuse could not open the image */
int image_serve_worker(int sock, int owner_fd, int ctl, uint64_t cache_max, volatile uint64_t *in_flight);
