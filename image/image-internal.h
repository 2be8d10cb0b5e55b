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
