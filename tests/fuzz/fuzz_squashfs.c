/* libFuzzer target: a squashfs image (or a SIF holding one) as hutch opens and serves it:
 * image_open's checks, then every inode, directory, symlink and file reached from the
 * root through the functions the FUSE server and `inspect` use (squashfuse's inode mapping
 * as hutch checks it, hutch's directory and data readers, the range a read splices, the
 * server's whole-file push, the fragment blocks its read-ahead inflates). */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image-internal.h"
#include "fuzz.h"

#define MAX_NODES 256
#define MAX_ENTRIES 512
#define MAX_LOOKUPS 8
#define MAX_READ (1u << 20)

struct walk {
        sqfs_ll *ll;
        unsigned nodes;
        char *buf, *in;
};

static void visit_file(struct walk *w, sqfs_inode *inode)
{
        sqfs *fs = &w->ll->fs;
        uint64_t size = inode->xtra.reg.file_size;
        (void) squash_read(fs, inode, 0, MAX_READ, w->buf);
        if (size > 1)
                (void) squash_read(fs, inode, size / 2, 4096, w->buf);
        /* the range a read would splice: inside the filesystem, and the walk it leaves
         * still serves squash_read */
        uint64_t pos;
        size_t len;
        if (squash_extent(fs, inode, 0, MAX_READ, &pos, &len) == 0 &&
            (len == 0 || len > MAX_READ || pos < fs->offset || pos - fs->offset + len > fs->sb.bytes_used))
                abort();
        if (size > 1 && squash_extent(fs, inode, size / 2, 8192, &pos, &len) == 0 &&
            (len == 0 || len > 8192 || pos - fs->offset + len > fs->sb.bytes_used))
                abort();
        if (size > 1)
                (void) squash_read(fs, inode, size / 2, 4096, w->buf);
        if (size > 0 && size <= MAX_READ) {
                memset(w->buf, 0, size);
                (void) image_push_read(fs, inode, w->buf);
        }
        /* the file's fragment block and the next, as the read-ahead takes them */
        uint32_t idx = inode->xtra.reg.frag_idx;
        for (uint64_t j = idx; idx != SQUASHFS_INVALID_FRAG && j <= (uint64_t) idx + 1 && fs->sb.block_size <= MAX_READ;
             j++) {
                uint64_t at;
                uint32_t hdr;
                if (j <= UINT32_MAX && squash_frag_where(fs, (uint32_t) j, &at, &hdr) == 0 &&
                    squash_block_inflate(fs, at, hdr, w->in, w->buf) > (ssize_t) fs->sb.block_size)
                        abort();
        }
}

static void visit(struct walk *w, fuse_ino_t ino, int depth)
{
        sqfs_inode inode;
        struct stat st;
        if (w->nodes++ >= MAX_NODES || depth > 8 || sqfs_ll_inode(w->ll, &inode, ino) != SQFS_OK)
                return;
        (void) sqfs_stat(&w->ll->fs, &inode, &st);
        if (S_ISREG(inode.base.mode))
                visit_file(w, &inode);
        if (S_ISLNK(inode.base.mode)) {
                char target[PATH_MAX];
                size_t sz = sizeof target;
                (void) sqfs_readlink(&w->ll->fs, &inode, target, &sz);
        }
        if (!S_ISDIR(inode.base.mode))
                return;
        struct squash_dir d;
        char name[SQUASHFS_NAME_LEN + 1];
        sqfs_dir_entry e;
        if (squash_dir_open(&w->ll->fs, &inode, 0, &d) < 0)
                return;
        uint64_t second = 0;
        /* a few lookups and visits per directory: a large listing (the corpus has one of 400)
         * would cost each input a lookup per entry, most of the run's time */
        for (int n = 0; n < MAX_ENTRIES && squash_dir_next(&d, &e, name) > 0; n++) {
                sqfs_dir_entry found;
                if (n == 1)
                        second = (uint64_t) e.offset;
                if (n < MAX_LOOKUPS)
                        (void) squash_dir_lookup(&w->ll->fs, &inode, name, &found);
                if (n < MAX_LOOKUPS || n == MAX_ENTRIES - 1)
                        visit(w, w->ll->ino_register(w->ll, &e), depth + 1);
        }
        if (second && squash_dir_open(&w->ll->fs, &inode, second, &d) == 0)
                (void) squash_dir_next(&d, &e, name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const paths[] = {"/.singularity.d/runscript", "/etc/passwd", "/singularity", "/bin/sh"};
        char path[64];
        struct image img;
        struct hutch_error err = HUTCH_ERROR_INIT;
        if (fuzz_write_file(data, size, path, sizeof path) < 0)
                return 0;
        if (image_open(path, false, &img, &err) == 0) {
                for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
                        char *buf = NULL;
                        if (image_read_file(&img, paths[i], 1 << 16, &buf, NULL, &err) == 0)
                                free(buf);
                }
                if (img.sqfs) {
                        struct walk w = {.ll = &img.sqfs->ll, .buf = malloc(MAX_READ), .in = malloc(MAX_READ)};
                        if (w.buf && w.in)
                                visit(&w, FUSE_ROOT_ID, 0);
                        free(w.buf);
                        free(w.in);
                }
                image_close(&img);
        }
        return 0;
}
