/* Shared internals of image/: the squashfs reader handle. */
#pragma once

#include <limits.h>
#include <sys/stat.h>

#include "image.h"

/* squashfuse's installed headers carry its config.h (FUSE_USE_VERSION, _POSIX_C_SOURCE)
 * and an old-style declaration: contain both here, the one place that includes them. */
#undef _POSIX_C_SOURCE
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <squashfuse.h>
#include <ll.h>
#include <decompress.h>
#pragma GCC diagnostic pop

/* libsquashfuse's own attribute filler (the one its GETATTR uses: an entry must read the same
 * from a LOOKUP), exported but declared only in its private fuseprivate.h. */
sqfs_err sqfs_stat(sqfs *fs, sqfs_inode *inode, struct stat *st);

struct sqfs_handle {
        sqfs_ll ll; /* first: sqfs_ll embeds the sqfs as its first member, and ll's callbacks find
                     * the handle from it */
        sqfs_inode_id (*ino_sqfs)(sqfs_ll *ll, fuse_ino_t i); /* squashfuse's mapping, checked */
};

/* ---- image/squash.c: a squashfs anyone may have crafted, read within bounds */
#define SQUASHFS_SB_SIZE 96
/* Check the superblock at offset and every table it names against the avail bytes there;
 * *ret_size: the filesystem's bytes. squashfs_read_check also returns the raw superblock. */
int squashfs_check(int fd, uint64_t offset, uint64_t avail, uint64_t *ret_size, struct hutch_error *err);
int squashfs_read_check(int fd, uint64_t offset, uint64_t avail, uint8_t sb[SQUASHFS_SB_SIZE], struct hutch_error *err);
/* Once squashfuse opened it: its superblock is sb, the table blocks squashfuse copies entries
 * from hold them, the root is a directory. */
int squash_open_check(sqfs *fs, const uint8_t sb[SQUASHFS_SB_SIZE]);
/* The inode at id, read only when id points inside the inode table, and checked (ids,
 * fragment, directory, symlink fields within bounds). -EIO otherwise. */
int squash_inode_get(sqfs *fs, sqfs_inode_id id, sqfs_inode *ret);
/* id when squash_inode_get accepts it, else a reference squashfuse fails to read */
sqfs_inode_id squash_inode_ref_checked(sqfs *fs, sqfs_inode_id id);
/* A directory listing, from the entry at off (bytes of the listing before it). */
struct squash_dir {
        sqfs *fs;
        sqfs_md_cursor cur;
        uint64_t off, total;
        uint32_t left, start_block, inode_number; /* the current header's */
};
int squash_dir_open(sqfs *fs, const sqfs_inode *dir, uint64_t off, struct squash_dir *ret);
/* 1 and the next entry (its name in name), 0 at the end, -EIO on a corrupt listing */
int squash_dir_next(struct squash_dir *d, sqfs_dir_entry *e, char name[SQUASHFS_NAME_LEN + 1]);
/* The entry of name in dir (e->name NULL); -ENOENT. */
int squash_dir_lookup(sqfs *fs, const sqfs_inode *dir, const char *name, sqfs_dir_entry *ret);
/* Read up to size bytes of a regular file from off; the bytes read, 0 at its end, -EIO. */
ssize_t squash_read(sqfs *fs, const sqfs_inode *inode, uint64_t off, size_t size, char *buf);
/* Where [off, off + size) of a regular file (cut at its end) is stored as is in the image
 * file, when it is: uncompressed blocks, no hole, each where the one before it ends. Sets
 * the position in the image file (fs->fd) and the length; -1 otherwise (read it with
 * squash_read). Uses the thread's block-list walk, as squash_read does. */
int squash_extent(sqfs *fs, const sqfs_inode *inode, uint64_t off, size_t size, uint64_t *ret_pos, size_t *ret_len);
/* The tail of a file in its fragment block (cached by squashfuse: not to be freed), checked
 * to hold the tail. */
int squash_frag(sqfs *fs, const sqfs_inode *inode, const char **ret_data, sqfs_block **ret_block);
/* Where fragment block idx lies in the image and its header, checked to lie inside the
 * filesystem (reads the fragment table: the thread's own handle). -EIO. */
int squash_frag_where(sqfs *fs, uint32_t idx, uint64_t *ret_pos, uint32_t *ret_hdr);
/* A data or fragment block read and inflated into out (in, out: block_size bytes each),
 * from the image alone (fs's fd, decompressor and superblock, which no thread changes: any
 * thread); its size, or -EIO. */
ssize_t squash_block_inflate(const sqfs *fs, uint64_t pos, uint32_t hdr, char *in, char *out);
/* This thread forgets what it kept of fs (before fs is freed). */
void squash_forget(sqfs *fs);

/* ---- image/inflate.c: whole files decompressed for the worker's push-ahead, and the
 * worker's side of the decompressed-file cache */
/* A fragment block freshly inflated for a file, to be kept in the cache once the open is
 * answered. */
struct frag_put {
        const void *data; /* squashfuse's cached block: valid until it inflates another */
        size_t size;
        struct file_cache_key key;
};
/* Decompress a whole regular file into out (zeroed, of at least its size): data blocks go
 * from the image straight into place, shared with the inflate helper for a big file, then
 * the tail from its fragment block (from the cache when there, else noted in *put). */
int inflate_whole(sqfs *fs, sqfs_inode *inode, char *out, struct frag_put *put);
/* The inflate helper thread, started where the server may use more than one CPU. */
void inflate_helper_start(unsigned cpus);
void inflate_helper_stop(void);
/* The fragment blocks queued to be read ahead dropped; true while the helper still reads
 * one into the cache. */
bool inflate_ahead_settle(void);
/* The cache's folder for entries of up to max bytes in all (0: none), opened before the
 * worker confines itself; usable false: none (closed again). Its fd or negative. */
int inflate_cache_open(uint64_t max, bool usable);
/* The image's part of the keys, once the image has come. */
void inflate_cache_image(int image_fd, uint64_t offset);
/* The folder's fd, or negative: no cache. */
int inflate_cache_dir(void);
/* The key of an entry: the image's part and inode. */
struct file_cache_key inflate_cache_key(uint64_t inode);
/* An entry in, counted (any thread). */
void inflate_cache_put(const struct file_cache_key *key, const void *data, size_t size, const char *what);
void inflate_cache_done(void);
/* This thread's open fragment entries closed (a serving thread's end). */
void inflate_thread_done(void);
/* The server's read of a whole file it pushes (out: zeroed, of the file's size), without
 * the decompressed-file cache: for the fuzz target */
int image_push_read(sqfs *fs, sqfs_inode *inode, char *out);
/* The server's inflate helper, started (on) or stopped as the server does, for the unit
 * tests: with it started, image_push_read shares a big file's blocks with it */
void image_inflate_helper(bool on);

/* ---- image/image.c */
int sqfs_handle_open(struct image *img, struct hutch_error *err);
void sqfs_handle_free(struct sqfs_handle *h);
/* (re)make empty decompressed-block caches of hutch's sizes: at open, and by the FUSE server
 * to give memory back once idle */
int sqfs_handle_reset_caches(struct sqfs_handle *h);
/* Free what a thread that decompressed blocks kept for it (its inflater). */
void image_thread_done(void);

/* ---- The image server's two processes (image/serve.c): the worker serves the mount
 * (image/worker.c), the monitor watches it and answers for it once it is gone. */
#define SERVE_MONITOR_COMM "hutch-sqfs-mon"
enum serve_role { SERVE_MONITOR, SERVE_WORKER };
/* A role's seccomp allow-list as a BPF program (struct sock_filter), compiled ahead. */
struct serve_filter {
        uint64_t insn[256];
        unsigned short len;
};
/* recv_fd, send_fd: the one socket it may receive on (the mount's hand-over), the one it
 * may send on (the FUSE fd to the monitor); -EBADF: none */
int serve_filter_build(enum serve_role role, int recv_fd, int send_fd, bool cache, struct serve_filter *ret);
bool serve_landlock_available(void);
/* Confine this process: every fd >= 3 but keep[] closed, no core file, no capability,
 * no_new_privs, no file reachable by path but beneath dir_fd (-EBADF: none; Landlock,
 * where the kernel has it), the filter f. */
int serve_confine(const struct serve_filter *f, const int *keep, size_t n_keep, int dir_fd);
/* The worker serves with up to SERVE_THREADS_MAX threads (one per CPU it may run on), each
 * its own squashfs reader (image/worker.c). */
#define SERVE_THREADS_MAX 8
/* The worker: takes sock (the mount's hand-over), sends the monitor copies of the mount's
 * FUSE device and of the one it serves on (its clone, where it can be had) and the image's
 * path on ctl (which it takes), serves until owner_fd (a pidfd) polls
 * ready or the mount goes away, with a decompressed-file cache of cache_max bytes (0:
 * none); in_flight: SERVE_THREADS_MAX slots shared with the monitor, each the unique id of
 * the request a thread answers (0: none). Returns its exit status: 0, or one of these,
 * which the monitor reports as a crash. */
#define SERVE_EXIT_CONFINE 3    /* it could not confine itself, and served nothing */
#define SERVE_EXIT_UNREADABLE 4 /* squashfuse could not open the image */
int image_serve_worker(int sock, int owner_fd, int ctl, uint64_t cache_max, volatile uint64_t *in_flight);
/* What image_mount() hands the worker with the FUSE fd and the image's fd. */
struct serve_msg {
        uint64_t offset, size;
        int32_t format;
        char path[PATH_MAX];
};

/* ---- image/build.c's helpers, shared with overlay create (image/overlay-create.c) */
/* The build's private folder beside the target: see work_make in image/build.c. */
struct work {
        char *dir;        /* TARGET.hutch-tmp-XXXXXX */
        const char *name; /* its last component */
        char *base;       /* the target's last component */
        int parent;       /* the target's folder (O_PATH) */
        int fd;           /* the private folder, checked */
        struct stat st;
};
#define WORK_NULL ((struct work){.parent = -1, .fd = -1})
int work_make(const char *target, struct work *ret, struct hutch_error *err);
/* Remove build.c's own names in it, then the folder (other names: remove them first). */
void work_remove(struct work *w);
/* Run a tool in the folder cwd; its stderr's last line in last (cap bytes). */
int tool_run(int cwd, char *const argv[], int out, bool show, char *last, size_t cap);
int tool_error(const char *step, const char *what, int r, const char *last, struct hutch_error *err);
