/* hutch-ext3: an ext3 overlay image served over FUSE with libext2fs, so that an ordinary
 * user's container can take it as the upper layer of the kernel's overlayfs. In a user
 * namespace overlayfs takes a FUSE upper layer once it keeps file types in its directory
 * entries (d_type), renames with RENAME_WHITEOUT and stores user.* attributes: this server
 * does all three, where fuse2fs (libfuse 2) does none, so one FUSE server sits between the
 * container and the image instead of fuse2fs under fuse-overlayfs.
 *
 * One thread: libext2fs is not thread-safe. FUSE node ids are inode numbers (the root's
 * inode 2 is FUSE's 1); the server is the image's only writer (its caller holds the
 * overlay's lock), so the kernel may cache entries and attributes for long. What it keeps:
 * the kernel's lookup count of each inode, so that a file unlinked while the kernel still
 * holds it (open, say) is freed once forgotten (or when the server ends), and the names of
 * big directories (see "the names of big directories"). Files are opened with libext2fs
 * for each read or write, never kept open: two opens of one inode would each hold a copy
 * of it.
 *
 * The filesystem is marked not clean from the start until it has been written back at
 * the end (SIGTERM, or the mount gone), as the kernel's ext3 and fuse2fs do: an image
 * whose server was killed says so to e2fsck. */
#define FUSE_USE_VERSION 35
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <et/com_err.h>
#include <ext2fs/ext2_err.h>
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <fuse3/fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"

#define TIMEOUT 86400.0 /* the server is the image's only writer */
#define NAME_MAX_EXT2 255

struct idmap {
        uint32_t first[340], count[340]; /* the ranges of ids inside (the kernel's most) */
        size_t n;
        uint32_t squash;
};

struct ix_entry;
struct ix {
        ext2_ino_t dir;      /* 0: unused */
        size_t n, used, cap; /* names, slots used (names and removed), slots (a power of two) */
        struct ix_entry *e;
};

struct known {
        ext2_ino_t ino; /* 0: free; KNOWN_GONE: removed */
        uint64_t n;
};

struct ext3 {
        ext2_filsys fs;
        bool ro;
        int fd;              /* the image */
        struct known *known; /* the inodes the kernel knows, and its lookup counts */
        size_t n_known, used_known, cap_known;
        bool no_open; /* the kernel sends no OPEN and RELEASE for files */
        /* the next new inode's generation: a freed inode number made again must not be
         * taken by the kernel for the inode it still caches (a removed directory's stays
         * dead: lookups in the new one would fail with ENOENT) */
        uint32_t generation;
        /* the ids the user namespace maps, and what shows instead of any other */
        struct idmap uids, gids;
        struct ix ix[4]; /* IX_SLOTS */
        unsigned ix_next;
};

typedef struct ext2_inode_large inode_t;

/* the file type a directory entry records for mode */
static int ft_of(unsigned mode)
{
        switch (mode & LINUX_S_IFMT) {
        case LINUX_S_IFREG: return EXT2_FT_REG_FILE;
        case LINUX_S_IFDIR: return EXT2_FT_DIR;
        case LINUX_S_IFCHR: return EXT2_FT_CHRDEV;
        case LINUX_S_IFBLK: return EXT2_FT_BLKDEV;
        case LINUX_S_IFIFO: return EXT2_FT_FIFO;
        case LINUX_S_IFSOCK: return EXT2_FT_SOCK;
        case LINUX_S_IFLNK: return EXT2_FT_SYMLINK;
        default: return EXT2_FT_UNKNOWN;
        }
}

static int errno_of(errcode_t e)
{
        switch (e) {
        case 0: return 0;
        case EXT2_ET_NO_MEMORY: return ENOMEM;
        case EXT2_ET_DIR_NO_SPACE:
        case EXT2_ET_BLOCK_ALLOC_FAIL:
        case EXT2_ET_INODE_ALLOC_FAIL:
        case EXT2_ET_EA_NO_SPACE:
        case EXT2_ET_DIR_NO_SPACE_FOR_CSUM: return ENOSPC;
        case EXT2_ET_FILE_NOT_FOUND: return ENOENT;
        case EXT2_ET_DIR_EXISTS: return EEXIST;
        case EXT2_ET_RO_FILSYS: return EROFS;
        case EXT2_ET_FILE_TOO_BIG: return EFBIG;
        case EXT2_ET_EA_KEY_NOT_FOUND: return ENODATA;
        case EXT2_ET_EA_BAD_NAME_LEN:
        case EXT2_ET_EA_BAD_VALUE_SIZE: return ERANGE;
        case EXT2_ET_NO_DIRECTORY: return ENOTDIR;
        case EXT2_ET_TOO_MANY_REFS: return EMLINK;
        default: /* the I/O manager's own errors are errno values */ return e > 0 && e < 256 ? (int) e : EIO;
        }
}

static ext2_ino_t ino_of(fuse_ino_t n)
{
        return n == FUSE_ROOT_ID ? EXT2_ROOT_INO : (ext2_ino_t) n;
}

static fuse_ino_t node_of(ext2_ino_t i)
{
        return i == EXT2_ROOT_INO ? FUSE_ROOT_ID : i;
}

/* An inode a directory entry may name: the root, or one past the reserved ones (a crafted
 * entry naming inode 1 would otherwise be FUSE's root). */
static bool ino_ok(const struct ext3 *x, ext2_ino_t i)
{
        return i == EXT2_ROOT_INO || (i >= EXT2_FIRST_INO(x->fs->super) && i <= x->fs->super->s_inodes_count);
}

static int ino_read(struct ext3 *x, ext2_ino_t ino, inode_t *in)
{
        memset(in, 0, sizeof *in);
        if (ino != EXT2_ROOT_INO && !ino_ok(x, ino))
                return -EIO;
        return -errno_of(ext2fs_read_inode_full(x->fs, ino, EXT2_INODE(in), sizeof *in));
}

static int ino_write(struct ext3 *x, ext2_ino_t ino, inode_t *in)
{
        return -errno_of(ext2fs_write_inode_full(x->fs, ino, EXT2_INODE(in), sizeof *in));
}

/* The nanoseconds and epoch bits live in the large inode's extra fields, when it has them. */
static bool has_extra(const struct ext3 *x, const inode_t *in)
{
        return EXT2_INODE_SIZE(x->fs->super) > EXT2_GOOD_OLD_INODE_SIZE &&
               in->i_extra_isize >= offsetof(inode_t, i_crtime) - EXT2_GOOD_OLD_INODE_SIZE;
}

static struct timespec time_get(const struct ext3 *x, const inode_t *in, uint32_t sec, uint32_t extra)
{
        struct timespec t = {.tv_sec = (int32_t) sec};
        if (has_extra(x, in)) {
                t.tv_sec += (int64_t) (extra & EXT4_EPOCH_MASK) << 32;
                t.tv_nsec = extra >> EXT4_EPOCH_BITS;
        }
        return t;
}

static void time_put(const struct ext3 *x, const inode_t *in, struct timespec t, uint32_t *sec, uint32_t *extra)
{
        *sec = (uint32_t) t.tv_sec;
        if (has_extra(x, in))
                *extra = (uint32_t) (((t.tv_sec - (int32_t) *sec) >> 32) & EXT4_EPOCH_MASK) |
                         (uint32_t) t.tv_nsec << EXT4_EPOCH_BITS;
}

enum { T_A = 1, T_M = 2, T_C = 4 };

static void times_now(const struct ext3 *x, inode_t *in, int which)
{
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        if (which & T_A)
                time_put(x, in, t, &in->i_atime, &in->i_atime_extra);
        if (which & T_M)
                time_put(x, in, t, &in->i_mtime, &in->i_mtime_extra);
        if (which & T_C)
                time_put(x, in, t, &in->i_ctime, &in->i_ctime_extra);
}

/* An owner the user namespace does not map (an image written by real root, used by a user)
 * shows as the caller's, as fuse-overlayfs's squash_to_uid shows it: the kernel refuses to
 * change or remove a file whose owner it cannot name (EOVERFLOW). */
static uint32_t id_shown(const struct idmap *m, uint32_t id)
{
        for (size_t i = 0; i < m->n; i++)
                if (id >= m->first[i] && id - m->first[i] < m->count[i])
                        return id;
        return m->n ? m->squash : id;
}

/* /proc/self/uid_map or gid_map: "inside outside count" lines */
static void idmap_read(struct idmap *m, const char *path, uint32_t squash)
{
        FILE *f = fopen(path, "re");
        unsigned long a, b, c;
        m->squash = squash;
        while (f && m->n < sizeof m->first / sizeof m->first[0] && fscanf(f, "%lu %lu %lu", &a, &b, &c) == 3) {
                m->first[m->n] = (uint32_t) a;
                m->count[m->n++] = (uint32_t) c;
        }
        if (f)
                fclose(f);
}

static void attr_of(const struct ext3 *x, ext2_ino_t ino, const inode_t *in, struct stat *st)
{
        memset(st, 0, sizeof *st);
        st->st_ino = node_of(ino);
        st->st_mode = in->i_mode;
        st->st_nlink = in->i_links_count;
        st->st_uid = id_shown(&x->uids, inode_uid(*in));
        st->st_gid = id_shown(&x->gids, inode_gid(*in));
        st->st_size = (off_t) EXT2_I_SIZE(in);
        st->st_blksize = x->fs->blocksize;
        st->st_blocks = (blkcnt_t) ext2fs_get_stat_i_blocks(x->fs, EXT2_INODE((inode_t *) in));
        st->st_atim = time_get(x, in, in->i_atime, in->i_atime_extra);
        st->st_mtim = time_get(x, in, in->i_mtime, in->i_mtime_extra);
        st->st_ctim = time_get(x, in, in->i_ctime, in->i_ctime_extra);
        if (LINUX_S_ISCHR(in->i_mode) || LINUX_S_ISBLK(in->i_mode)) {
                /* the old encoding in i_block[0], the new one (32-bit numbers) in i_block[1] */
                uint32_t b0 = in->i_block[0], b1 = in->i_block[1];
                if (b0)
                        st->st_rdev = makedev((b0 >> 8) & 0xff, b0 & 0xff);
                else
                        st->st_rdev = makedev((b1 & 0xfff00) >> 8, (b1 & 0xff) | ((b1 >> 12) & 0xfff00));
        }
}

static void rdev_put(inode_t *in, dev_t rdev)
{
        unsigned ma = major(rdev), mi = minor(rdev);
        if (ma < 256 && mi < 256) {
                in->i_block[0] = ma << 8 | mi;
                in->i_block[1] = 0;
        } else {
                in->i_block[0] = 0;
                in->i_block[1] = (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
        }
}

static int entry_of(struct ext3 *x, ext2_ino_t ino, struct fuse_entry_param *e)
{
        inode_t in;
        int r = ino_read(x, ino, &in);
        if (r < 0)
                return r;
        memset(e, 0, sizeof *e);
        e->ino = node_of(ino);
        e->generation = in.i_generation;
        e->attr_timeout = e->entry_timeout = TIMEOUT;
        attr_of(x, ino, &in, &e->attr);
        return 0;
}

/* ---- the names of big directories, in memory. libext2fs looks a name up by reading the
 * whole directory, and overlayfs looks up every name it makes first: 5000 files made in
 * one folder read it 5000 times over. A directory of IX_MIN_BLOCKS blocks or more gets a
 * hash table of its names on its first lookup, kept true by the helpers that change
 * names (link_add, dirent_set, name_unlink) and dropped where libext2fs adds a name itself
 * (mkdir, symlink) or the directory goes (inode_free); the server is the image's only
 * writer. IX_SLOTS tables at most, the oldest dropped first. */

#define IX_MIN_BLOCKS 4
#define IX_SLOTS 4

struct ix_entry {
        char *name; /* NULL: free; IX_GONE: removed */
        ext2_ino_t ino;
};

static char ix_gone;
#define IX_GONE (&ix_gone)

static uint32_t ix_hash(const char *name)
{
        uint32_t h = 2166136261u; /* FNV-1a */
        for (; *name; name++)
                h = (h ^ (unsigned char) *name) * 16777619u;
        return h;
}

static void ix_free(struct ix *t)
{
        for (size_t i = 0; i < t->cap; i++)
                if (t->e[i].name != IX_GONE)
                        free(t->e[i].name);
        free(t->e);
        *t = (struct ix){0};
}

/* the slot of name, or the free one where it would go */
static struct ix_entry *ix_slot(struct ix *t, const char *name)
{
        struct ix_entry *gone = NULL;
        for (size_t i = ix_hash(name) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
                struct ix_entry *e = &t->e[i];
                if (!e->name)
                        return gone ? gone : e;
                if (e->name == IX_GONE)
                        gone = gone ? gone : e;
                else if (!strcmp(e->name, name))
                        return e;
        }
}

static int ix_put(struct ix *t, const char *name, ext2_ino_t ino)
{
        if ((t->used + 1) * 2 > t->cap) { /* grow (and drop what was removed) at half full */
                struct ix old = *t;
                size_t cap = 64;
                while (cap < (old.n + 1) * 4)
                        cap *= 2;
                t->e = calloc(cap, sizeof *t->e);
                if (!t->e) {
                        *t = old;
                        return -ENOMEM;
                }
                t->cap = cap, t->n = t->used = 0;
                for (size_t i = 0; i < old.cap; i++)
                        if (old.e[i].name && old.e[i].name != IX_GONE) {
                                struct ix_entry *e = ix_slot(t, old.e[i].name);
                                *e = old.e[i];
                                t->n++, t->used++;
                        }
                free(old.e);
        }
        struct ix_entry *e = ix_slot(t, name);
        if (e->name && e->name != IX_GONE) {
                e->ino = ino;
                return 0;
        }
        char *copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        if (!e->name)
                t->used++;
        *e = (struct ix_entry){.name = copy, .ino = ino};
        t->n++;
        return 0;
}

static struct ix *ix_of(struct ext3 *x, ext2_ino_t dir)
{
        for (size_t i = 0; i < IX_SLOTS; i++)
                if (x->ix[i].dir == dir)
                        return &x->ix[i];
        return NULL;
}

static void ix_drop(struct ext3 *x, ext2_ino_t dir)
{
        struct ix *t = ix_of(x, dir);
        if (t)
                ix_free(t);
}

struct ix_build {
        struct ix *t;
        int err;
};

static int ix_build_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *d, int offset, int blocksize, char *buf,
                       void *data)
{
        (void) dir, (void) offset, (void) blocksize, (void) buf;
        struct ix_build *b = data;
        char name[NAME_MAX_EXT2 + 1];
        int len = ext2fs_dirent_name_len(d);
        if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE || !d->inode || len == 0)
                return 0;
        memcpy(name, d->name, (size_t) len);
        name[len] = 0;
        if ((b->err = ix_put(b->t, name, d->inode)) < 0)
                return DIRENT_ABORT;
        return 0;
}

/* dir's table, made if dir is big enough for one; NULL: look it up in the directory */
static struct ix *ix_get(struct ext3 *x, ext2_ino_t dir)
{
        struct ix *t = ix_of(x, dir);
        inode_t in;
        if (t || ino_read(x, dir, &in) < 0 || !LINUX_S_ISDIR(in.i_mode) ||
            EXT2_I_SIZE(&in) < IX_MIN_BLOCKS * x->fs->blocksize)
                return t;
        t = &x->ix[x->ix_next++ % IX_SLOTS];
        ix_free(t);
        if (!(t->e = calloc(t->cap = 64, sizeof *t->e))) {
                t->cap = 0;
                return NULL;
        }
        struct ix_build b = {.t = t};
        errcode_t e = ext2fs_dir_iterate2(x->fs, dir, 0, NULL, ix_build_cb, &b);
        if (e || b.err) {
                ix_free(t);
                return NULL;
        }
        t->dir = dir;
        return t;
}

/* name's inode in dir: -ENOENT when there is none */
static int name_find(struct ext3 *x, ext2_ino_t dir, const char *name, ext2_ino_t *ret)
{
        size_t len = strlen(name);
        if (len > NAME_MAX_EXT2)
                return -ENAMETOOLONG;
        ext2_ino_t ino;
        struct ix *t = ix_get(x, dir);
        if (t) {
                struct ix_entry *e = ix_slot(t, name);
                if (!e->name || e->name == IX_GONE)
                        return -ENOENT;
                ino = e->ino;
        } else {
                errcode_t e = ext2fs_lookup(x->fs, dir, name, (int) len, NULL, &ino);
                if (e)
                        return -errno_of(e);
        }
        if (!ino_ok(x, ino))
                return -EIO;
        *ret = ino;
        return 0;
}

/* A table follows a change of names, or goes when it cannot. */
static void ix_changed(struct ext3 *x, ext2_ino_t dir, const char *name, ext2_ino_t ino)
{
        struct ix *t = ix_of(x, dir);
        if (!t)
                return;
        if (ino) {
                if (ix_put(t, name, ino) < 0)
                        ix_free(t);
                return;
        }
        struct ix_entry *e = ix_slot(t, name);
        if (e->name && e->name != IX_GONE) {
                free(e->name);
                e->name = IX_GONE;
                t->n--;
        }
}

/* ---- the inodes the kernel knows: each entry replied adds one to its count, a FORGET
 * takes them off. An inode whose last link goes while the kernel knows it (a file open,
 * or its cached inode) is freed when the kernel forgets it, or at the server's end. Files
 * are not tracked by open and release: the kernel sends neither when the server does not
 * implement OPEN (two requests fewer for each file a container writes). */

#define KNOWN_GONE ((ext2_ino_t) -1)

static struct known *known_slot(struct ext3 *x, ext2_ino_t ino)
{
        struct known *gone = NULL;
        for (size_t i = (ino * 2654435761u) & (x->cap_known - 1);; i = (i + 1) & (x->cap_known - 1)) {
                struct known *k = &x->known[i];
                if (k->ino == ino)
                        return k;
                if (!k->ino)
                        return gone ? gone : k;
                if (k->ino == KNOWN_GONE && !gone)
                        gone = k;
        }
}

static bool known(struct ext3 *x, ext2_ino_t ino)
{
        return x->cap_known && known_slot(x, ino)->ino == ino;
}

static void known_add(struct ext3 *x, ext2_ino_t ino)
{
        struct known *k = x->cap_known ? known_slot(x, ino) : NULL;
        if (k && k->ino == ino) {
                k->n++;
                return;
        }
        if ((x->used_known + 1) * 2 > x->cap_known) { /* grow, dropping the removed, at half full */
                struct known *old = x->known;
                size_t old_cap = x->cap_known, cap = 1024;
                while (cap < (x->n_known + 1) * 4)
                        cap *= 2;
                struct known *v = calloc(cap, sizeof *v);
                if (!v)
                        return; /* not counted: freed at once when unlinked, as if unknown */
                x->known = v, x->cap_known = cap, x->used_known = x->n_known = 0;
                for (size_t i = 0; i < old_cap; i++)
                        if (old[i].ino && old[i].ino != KNOWN_GONE) {
                                *known_slot(x, old[i].ino) = old[i];
                                x->n_known++, x->used_known++;
                        }
                free(old);
        }
        k = known_slot(x, ino);
        if (!k->ino)
                x->used_known++;
        *k = (struct known){.ino = ino, .n = 1};
        x->n_known++;
}

/* Free an inode whose last link has gone: its blocks, its attribute block, then itself. */
static int inode_free(struct ext3 *x, ext2_ino_t ino)
{
        inode_t in;
        /* a damaged entry may name an inode freed already: never twice */
        if (!ext2fs_test_inode_bitmap2(x->fs->inode_map, ino))
                return -EIO;
        int r = ino_read(x, ino, &in);
        if (r < 0)
                return r;
        errcode_t e = 0;
        if (ext2fs_inode_has_valid_blocks2(x->fs, EXT2_INODE(&in)))
                e = ext2fs_punch(x->fs, ino, EXT2_INODE(&in), NULL, 0, ~0ULL);
        if (!e && ext2fs_file_acl_block(x->fs, EXT2_INODE(&in)))
                e = ext2fs_free_ext_attr(x->fs, ino, &in);
        if (e)
                return -errno_of(e);
        if ((r = ino_read(x, ino, &in)) < 0)
                return r;
        in.i_links_count = 0;
        in.i_dtime = (uint32_t) time(NULL);
        if ((r = ino_write(x, ino, &in)) < 0)
                return r;
        ext2fs_inode_alloc_stats2(x->fs, ino, -1, LINUX_S_ISDIR(in.i_mode));
        if (LINUX_S_ISDIR(in.i_mode))
                ix_drop(x, ino);
        return 0;
}

/* An inode that lost a link: freed at once, or once the kernel forgets it. */
static int inode_unref(struct ext3 *x, ext2_ino_t ino, inode_t *in)
{
        if (in->i_links_count > 0)
                in->i_links_count--;
        times_now(x, in, T_C);
        int r = ino_write(x, ino, in);
        if (r < 0 || in->i_links_count > 0 || known(x, ino))
                return r;
        return inode_free(x, ino);
}

static void known_sub(struct ext3 *x, ext2_ino_t ino, uint64_t n)
{
        struct known *k = x->cap_known ? known_slot(x, ino) : NULL;
        if (!k || k->ino != ino)
                return;
        k->n -= n < k->n ? n : k->n;
        if (k->n > 0)
                return;
        k->ino = KNOWN_GONE;
        x->n_known--;
        inode_t in;
        if (!x->ro && ino_read(x, ino, &in) == 0 && in.i_links_count == 0 && in.i_mode)
                (void) inode_free(x, ino);
}

/* ---- directories */

struct dirent_edit {
        const char *name;
        size_t len;
        ext2_ino_t ino;
        int type;
        bool done;
};

static int dirent_set_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *d, int offset, int blocksize, char *buf,
                         void *data)
{
        (void) dir, (void) entry, (void) offset, (void) blocksize, (void) buf;
        struct dirent_edit *s = data;
        if (!d->inode || (size_t) ext2fs_dirent_name_len(d) != s->len || memcmp(d->name, s->name, s->len))
                return 0;
        d->inode = s->ino;
        ext2fs_dirent_set_file_type(d, s->type);
        s->done = true;
        return DIRENT_CHANGED | DIRENT_ABORT;
}

/* Point dir's existing entry name at ino (of the file type of mode). */
static int dirent_set(struct ext3 *x, ext2_ino_t dir, const char *name, ext2_ino_t ino, uint16_t mode)
{
        struct dirent_edit s = {.name = name, .len = strlen(name), .ino = ino, .type = ft_of(mode)};
        errcode_t e = ext2fs_dir_iterate2(x->fs, dir, DIRENT_FLAG_INCLUDE_EMPTY, NULL, dirent_set_cb, &s);
        if (e)
                return -errno_of(e);
        if (s.done)
                ix_changed(x, dir, name, ino);
        return s.done ? 0 : -ENOENT;
}

static int dir_empty_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *d, int offset, int blocksize, char *buf,
                        void *data)
{
        (void) dir, (void) offset, (void) blocksize, (void) buf;
        if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE || !d->inode)
                return 0;
        *(bool *) data = false;
        return DIRENT_ABORT;
}

static int dir_empty(struct ext3 *x, ext2_ino_t dir)
{
        bool empty = true;
        errcode_t e = ext2fs_dir_iterate2(x->fs, dir, 0, NULL, dir_empty_cb, &empty);
        return e ? -errno_of(e) : empty;
}

/* A directory entry, the directory made bigger once when it is full. */
static int link_add(struct ext3 *x, ext2_ino_t dir, const char *name, ext2_ino_t ino, uint16_t mode)
{
        errcode_t e = ext2fs_link(x->fs, dir, name, ino, ft_of(mode));
        if (e == EXT2_ET_DIR_NO_SPACE) {
                e = ext2fs_expand_dir(x->fs, dir);
                if (!e)
                        e = ext2fs_link(x->fs, dir, name, ino, ft_of(mode));
        }
        if (!e)
                ix_changed(x, dir, name, ino);
        return -errno_of(e);
}

static int name_unlink(struct ext3 *x, ext2_ino_t dir, const char *name, ext2_ino_t ino)
{
        errcode_t e = ext2fs_unlink(x->fs, dir, name, ino, 0);
        if (!e)
                ix_changed(x, dir, name, 0);
        return -errno_of(e);
}

static int dir_touch(struct ext3 *x, ext2_ino_t dir, int links)
{
        inode_t in;
        int r = ino_read(x, dir, &in);
        if (r < 0)
                return r;
        if (links < 0 && in.i_links_count > 1)
                in.i_links_count--;
        else if (links > 0 && in.i_links_count < EXT2_LINK_MAX)
                in.i_links_count++;
        times_now(x, &in, T_M | T_C);
        return ino_write(x, dir, &in);
}

/* ---- making nodes */

struct owner {
        uid_t uid;
        gid_t gid;
};

/* The new node's owner: the caller, the group of a set-group-ID parent. */
static struct owner owner_of(fuse_req_t req, const inode_t *parent, mode_t *mode)
{
        const struct fuse_ctx *c = fuse_req_ctx(req);
        struct owner o = {.uid = c->uid, .gid = c->gid};
        if (parent->i_mode & LINUX_S_ISGID) {
                o.gid = inode_gid(*parent);
                if (S_ISDIR(*mode))
                        *mode |= S_ISGID;
        }
        return o;
}

static void owner_put(inode_t *in, struct owner o)
{
        in->i_uid = (uint16_t) o.uid;
        ext2fs_set_i_uid_high(*in, o.uid >> 16);
        in->i_gid = (uint16_t) o.gid;
        ext2fs_set_i_gid_high(*in, o.gid >> 16);
}

/* A new inode of mode, owned by o, named nowhere yet: a link count of 1, a directory's 2
 * (its "." too) with one more for its parent's "..", as libext2fs counts them.
 * libext2fs makes a directory's and a symbolic link's blocks here, before the name is
 * added: with the name first, an indexed parent growing a leaf could take the block
 * ext2fs_mkdir had chosen and not yet marked used. */
static int inode_make(struct ext3 *x, ext2_ino_t parent, mode_t mode, dev_t rdev, const char *target, struct owner o,
                      ext2_ino_t *ret)
{
        ext2_filsys fs = x->fs;
        ext2_ino_t ino;
        inode_t in = {0};
        int r;
        errcode_t e = ext2fs_new_inode(fs, parent, (int) mode, NULL, &ino);
        if (e)
                return -errno_of(e);
        if (S_ISDIR(mode) || S_ISLNK(mode)) {
                e = S_ISDIR(mode) ? ext2fs_mkdir(fs, parent, ino, NULL) : ext2fs_symlink(fs, parent, ino, NULL, target);
                if (e)
                        return -errno_of(e);
                if ((r = ino_read(x, ino, &in)) < 0)
                        return r;
                if (S_ISDIR(mode))
                        in.i_mode = (uint16_t) ((in.i_mode & LINUX_S_IFMT) | (mode & 07777));
        } else {
                ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
                in.i_mode = (uint16_t) mode;
                in.i_links_count = 1;
                if (S_ISCHR(mode) || S_ISBLK(mode))
                        rdev_put(&in, rdev);
                if (S_ISREG(mode) && ext2fs_has_feature_extents(fs->super)) {
                        ext2_extent_handle_t h;
                        if ((e = ext2fs_extent_open2(fs, ino, EXT2_INODE(&in), &h)) != 0)
                                return -errno_of(e);
                        ext2fs_extent_free(h);
                }
                /* zeroes the whole on-disk inode (a freed one's attributes must not come
                 * back); the large fields (the times' nanoseconds) follow */
                if ((e = ext2fs_write_new_inode(fs, ino, EXT2_INODE(&in))) != 0 || (r = ino_read(x, ino, &in)) < 0)
                        return e ? -errno_of(e) : r;
        }
        owner_put(&in, o);
        in.i_generation = x->generation++;
        times_now(x, &in, T_A | T_M | T_C);
        if ((r = ino_write(x, ino, &in)) < 0)
                return r;
        *ret = ino;
        return 0;
}

/* Undo inode_make when its name could not be added. */
static void inode_discard(struct ext3 *x, ext2_ino_t parent, ext2_ino_t ino)
{
        inode_t in;
        if (ino_read(x, ino, &in) < 0)
                return;
        if (LINUX_S_ISDIR(in.i_mode))
                (void) dir_touch(x, parent, -1);
        in.i_links_count = 0;
        if (ino_write(x, ino, &in) == 0)
                (void) inode_free(x, ino);
}

static int node_new(struct ext3 *x, fuse_req_t req, ext2_ino_t parent, const char *name, mode_t mode, dev_t rdev,
                    const char *target, ext2_ino_t *ret)
{
        if (x->ro)
                return -EROFS;
        ext2_ino_t ino;
        int r = name_find(x, parent, name, &ino);
        if (r == 0)
                return -EEXIST;
        if (r != -ENOENT)
                return r;
        inode_t pin;
        if ((r = ino_read(x, parent, &pin)) < 0)
                return r;
        if (!LINUX_S_ISDIR(pin.i_mode))
                return -ENOTDIR;
        if (S_ISDIR(mode) && pin.i_links_count >= EXT2_LINK_MAX)
                return -EMLINK;
        struct owner o = owner_of(req, &pin, &mode);
        if ((r = inode_make(x, parent, mode, rdev, target, o, &ino)) < 0)
                return r;
        if ((r = link_add(x, parent, name, ino, (uint16_t) mode)) < 0) {
                inode_discard(x, parent, ino);
                return r;
        }
        *ret = ino;
        return dir_touch(x, parent, 0);
}

/* ---- the operations */

static struct ext3 *X(fuse_req_t req)
{
        return fuse_req_userdata(req);
}

static void reply_entry(fuse_req_t req, struct ext3 *x, ext2_ino_t ino, int r)
{
        struct fuse_entry_param e;
        if (r == 0)
                r = entry_of(x, ino, &e);
        if (r < 0)
                fuse_reply_err(req, -r);
        else if (fuse_reply_entry(req, &e) == 0 && ino != EXT2_ROOT_INO)
                known_add(x, ino);
}

static void op_forget(fuse_req_t req, fuse_ino_t n, uint64_t nlookup)
{
        known_sub(X(req), ino_of(n), nlookup);
        fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *v)
{
        for (size_t i = 0; i < count; i++)
                known_sub(X(req), ino_of(v[i].ino), v[i].nlookup);
        fuse_reply_none(req);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        struct ext3 *x = X(req);
        ext2_ino_t ino;
        int r = name_find(x, ino_of(parent), name, &ino);
        if (r == -ENOENT) { /* cached as missing: this server alone adds names */
                struct fuse_entry_param e = {.entry_timeout = TIMEOUT};
                fuse_reply_entry(req, &e);
                return;
        }
        reply_entry(req, x, ino, r);
}

static void op_getattr(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
        (void) fi;
        struct ext3 *x = X(req);
        inode_t in;
        struct stat st;
        int r = ino_read(x, ino_of(n), &in);
        if (r < 0)
                return (void) fuse_reply_err(req, -r);
        attr_of(x, ino_of(n), &in, &st);
        fuse_reply_attr(req, &st, TIMEOUT);
}

static int size_set(struct ext3 *x, ext2_ino_t ino, off_t size)
{
        ext2_file_t f;
        errcode_t e = ext2fs_file_open(x->fs, ino, EXT2_FILE_WRITE, &f);
        if (e)
                return -errno_of(e);
        e = ext2fs_file_set_size2(f, (ext2_off64_t) size);
        errcode_t c = ext2fs_file_close(f);
        return -errno_of(e ? e : c);
}

static void op_setattr(fuse_req_t req, fuse_ino_t n, struct stat *a, int set, struct fuse_file_info *fi)
{
        (void) fi;
        struct ext3 *x = X(req);
        ext2_ino_t ino = ino_of(n);
        inode_t in;
        int r = x->ro ? -EROFS : 0;
        if (r == 0 && (set & FUSE_SET_ATTR_SIZE))
                r = size_set(x, ino, a->st_size);
        if (r == 0)
                r = ino_read(x, ino, &in);
        if (r < 0)
                return (void) fuse_reply_err(req, -r);
        if (set & FUSE_SET_ATTR_MODE)
                in.i_mode = (uint16_t) ((in.i_mode & LINUX_S_IFMT) | (a->st_mode & 07777));
        if (set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
                owner_put(&in, (struct owner){.uid = (set & FUSE_SET_ATTR_UID) ? a->st_uid : inode_uid(in),
                                              .gid = (set & FUSE_SET_ATTR_GID) ? a->st_gid : inode_gid(in)});
        if (set & FUSE_SET_ATTR_ATIME_NOW)
                times_now(x, &in, T_A);
        else if (set & FUSE_SET_ATTR_ATIME)
                time_put(x, &in, a->st_atim, &in.i_atime, &in.i_atime_extra);
        if (set & FUSE_SET_ATTR_MTIME_NOW)
                times_now(x, &in, T_M);
        else if (set & FUSE_SET_ATTR_MTIME)
                time_put(x, &in, a->st_mtim, &in.i_mtime, &in.i_mtime_extra);
        if (set & FUSE_SET_ATTR_SIZE)
                times_now(x, &in, T_M);
        times_now(x, &in, T_C);
        if ((r = ino_write(x, ino, &in)) < 0)
                return (void) fuse_reply_err(req, -r);
        struct stat st;
        attr_of(x, ino, &in, &st);
        fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t n)
{
        struct ext3 *x = X(req);
        ext2_ino_t ino = ino_of(n);
        inode_t in;
        int r = ino_read(x, ino, &in);
        if (r < 0)
                return (void) fuse_reply_err(req, -r);
        size_t len = EXT2_I_SIZE(&in);
        if (!LINUX_S_ISLNK(in.i_mode) || len == 0 || len >= PATH_MAX)
                return (void) fuse_reply_err(req, EINVAL);
        char buf[PATH_MAX];
        if (ext2fs_is_fast_symlink(EXT2_INODE(&in))) {
                if (len >= sizeof in.i_block)
                        return (void) fuse_reply_err(req, EIO);
                memcpy(buf, in.i_block, len);
        } else {
                ext2_file_t f;
                unsigned got = 0;
                errcode_t e = ext2fs_file_open(x->fs, ino, 0, &f);
                if (!e) {
                        e = ext2fs_file_read(f, buf, (unsigned) len, &got);
                        ext2fs_file_close(f);
                }
                if (e || got != len)
                        return (void) fuse_reply_err(req, e ? errno_of(e) : EIO);
        }
        buf[len] = 0;
        fuse_reply_readlink(req, buf);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
        struct ext3 *x = X(req);
        ext2_ino_t ino = 0;
        int r = S_ISDIR(mode) || S_ISLNK(mode) ? -EINVAL
                                               : node_new(x, req, ino_of(parent), name, mode, rdev, NULL, &ino);
        reply_entry(req, x, ino, r);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
        struct ext3 *x = X(req);
        ext2_ino_t ino = 0;
        int r = node_new(x, req, ino_of(parent), name, S_IFDIR | (mode & 07777), 0, NULL, &ino);
        reply_entry(req, x, ino, r);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
        struct ext3 *x = X(req);
        ext2_ino_t ino = 0;
        int r = strlen(target) >= x->fs->blocksize
                        ? -ENAMETOOLONG
                        : node_new(x, req, ino_of(parent), name, S_IFLNK | 0777, 0, target, &ino);
        reply_entry(req, x, ino, r);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
        struct ext3 *x = X(req);
        ext2_ino_t ino = 0;
        struct fuse_entry_param e;
        int r = node_new(x, req, ino_of(parent), name, S_IFREG | (mode & 07777), 0, NULL, &ino);
        if (r == 0)
                r = entry_of(x, ino, &e);
        if (r < 0)
                return (void) fuse_reply_err(req, -r);
        fi->keep_cache = 1;
        if (fuse_reply_create(req, &e, fi) == 0)
                known_add(x, ino);
}

static void op_link(fuse_req_t req, fuse_ino_t n, fuse_ino_t newparent, const char *newname)
{
        struct ext3 *x = X(req);
        ext2_ino_t ino = ino_of(n), dir = ino_of(newparent), old;
        inode_t in;
        int r = x->ro ? -EROFS : ino_read(x, ino, &in);
        if (r == 0 && LINUX_S_ISDIR(in.i_mode))
                r = -EPERM;
        if (r == 0 && in.i_links_count >= EXT2_LINK_MAX)
                r = -EMLINK;
        if (r == 0)
                r = name_find(x, dir, newname, &old) == 0 ? -EEXIST : 0;
        if (r == 0)
                r = link_add(x, dir, newname, ino, in.i_mode);
        if (r == 0) {
                in.i_links_count++;
                times_now(x, &in, T_C);
                r = ino_write(x, ino, &in);
        }
        if (r == 0)
                r = dir_touch(x, dir, 0);
        reply_entry(req, x, ino, r);
}

/* Remove name from dir; want_dir: rmdir (the directory must be empty), else unlink. */
static int name_remove(struct ext3 *x, ext2_ino_t dir, const char *name, bool want_dir)
{
        ext2_ino_t ino;
        inode_t in;
        int r = x->ro ? -EROFS : name_find(x, dir, name, &ino);
        if (r == 0)
                r = ino_read(x, ino, &in);
        if (r < 0)
                return r;
        if (want_dir != LINUX_S_ISDIR(in.i_mode))
                return want_dir ? -ENOTDIR : -EISDIR;
        if (want_dir && (r = dir_empty(x, ino)) <= 0)
                return r < 0 ? r : -ENOTEMPTY;
        if ((r = name_unlink(x, dir, name, ino)) < 0)
                return r;
        if (want_dir)
                in.i_links_count = 1; /* its own "." goes with it */
        if ((r = inode_unref(x, ino, &in)) < 0)
                return r;
        return dir_touch(x, dir, want_dir ? -1 : 0);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        fuse_reply_err(req, -name_remove(X(req), ino_of(parent), name, false));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        fuse_reply_err(req, -name_remove(X(req), ino_of(parent), name, true));
}

struct side {
        ext2_ino_t dir, ino;
        const char *name;
        inode_t in;
        bool exists;
};

static int side_read(struct ext3 *x, ext2_ino_t dir, const char *name, struct side *s)
{
        *s = (struct side){.dir = dir, .name = name};
        int r = name_find(x, dir, name, &s->ino);
        if (r == -ENOENT)
                return 0;
        if (r == 0)
                r = ino_read(x, s->ino, &s->in);
        s->exists = r == 0;
        return r;
}

/* A directory moved to another parent: its ".." follows, and the parents' link counts. */
static int dir_moved(struct ext3 *x, const struct side *s, ext2_ino_t from, ext2_ino_t to)
{
        if (!LINUX_S_ISDIR(s->in.i_mode) || from == to)
                return 0;
        int r = dirent_set(x, s->ino, "..", to, LINUX_S_IFDIR);
        if (r == 0)
                r = dir_touch(x, from, -1);
        if (r == 0)
                r = dir_touch(x, to, +1);
        return r;
}

/* A directory moving into another parent adds a link to it: refused at the most. */
static int dir_room(struct ext3 *x, const struct side *moving, ext2_ino_t from, ext2_ino_t to)
{
        inode_t in;
        if (!LINUX_S_ISDIR(moving->in.i_mode) || from == to)
                return 0;
        int r = ino_read(x, to, &in);
        return r < 0 ? r : in.i_links_count >= EXT2_LINK_MAX ? -EMLINK : 0;
}

static int rename_exchange(struct ext3 *x, struct side *a, struct side *b)
{
        if (!b->exists)
                return -ENOENT;
        /* a directory swapped with a file moves a link from one parent to the other */
        int r = LINUX_S_ISDIR(a->in.i_mode) == LINUX_S_ISDIR(b->in.i_mode) ? 0 : dir_room(x, a, a->dir, b->dir);
        if (r == 0 && LINUX_S_ISDIR(a->in.i_mode) != LINUX_S_ISDIR(b->in.i_mode))
                r = dir_room(x, b, b->dir, a->dir);
        if (r == 0)
                r = dirent_set(x, a->dir, a->name, b->ino, b->in.i_mode);
        if (r == 0)
                r = dirent_set(x, b->dir, b->name, a->ino, a->in.i_mode);
        if (r == 0)
                r = dir_moved(x, a, a->dir, b->dir);
        if (r == 0)
                r = dir_moved(x, b, b->dir, a->dir);
        if (r == 0)
                r = dir_touch(x, a->dir, 0);
        if (r == 0 && b->dir != a->dir)
                r = dir_touch(x, b->dir, 0);
        return r;
}

/* The names' part of a rename: a's inode named at b, b's old inode let go, a's name
 * removed, or pointed at the whiteout wh when there is one. */
static int rename_names(struct ext3 *x, struct side *a, struct side *b, ext2_ino_t wh, bool *wh_named)
{
        int r = b->exists ? dirent_set(x, b->dir, b->name, a->ino, a->in.i_mode)
                          : link_add(x, b->dir, b->name, a->ino, a->in.i_mode);
        if (r < 0)
                return r;
        if (wh) {
                if ((r = dirent_set(x, a->dir, a->name, wh, LINUX_S_IFCHR)) < 0)
                        return r;
                *wh_named = true;
        } else if ((r = name_unlink(x, a->dir, a->name, a->ino)) < 0) {
                return r;
        }
        if (b->exists && LINUX_S_ISDIR(b->in.i_mode)) {
                b->in.i_links_count = 1;
                if ((r = dir_touch(x, b->dir, -1)) < 0)
                        return r;
        }
        if (b->exists && (r = inode_unref(x, b->ino, &b->in)) < 0)
                return r;
        return dir_moved(x, a, a->dir, b->dir);
}

static int rename_move(struct ext3 *x, fuse_req_t req, struct side *a, struct side *b, unsigned flags)
{
        int r;
        if (b->exists) {
                if (flags & RENAME_NOREPLACE)
                        return -EEXIST;
                if (b->ino == a->ino)
                        return 0;
                if (LINUX_S_ISDIR(a->in.i_mode) != LINUX_S_ISDIR(b->in.i_mode))
                        return LINUX_S_ISDIR(a->in.i_mode) ? -ENOTDIR : -EISDIR;
                if (LINUX_S_ISDIR(b->in.i_mode) && (r = dir_empty(x, b->ino)) <= 0)
                        return r < 0 ? r : -ENOTEMPTY;
        } else if ((r = dir_room(x, a, a->dir, b->dir)) < 0) {
                return r;
        }
        /* the whiteout is made first, so that a full image fails the rename before any name
         * has moved */
        ext2_ino_t wh = 0;
        bool wh_named = false;
        if (flags & RENAME_WHITEOUT) {
                inode_t pin;
                mode_t mode = S_IFCHR;
                if ((r = ino_read(x, a->dir, &pin)) < 0 ||
                    (r = inode_make(x, a->dir, mode, 0, NULL, owner_of(req, &pin, &mode), &wh)) < 0)
                        return r;
        }
        r = rename_names(x, a, b, wh, &wh_named);
        if (r < 0) {
                if (wh && !wh_named)
                        inode_discard(x, a->dir, wh);
                return r;
        }
        inode_t in;
        if ((r = ino_read(x, a->ino, &in)) < 0)
                return r;
        times_now(x, &in, T_C);
        if ((r = ino_write(x, a->ino, &in)) < 0 || (r = dir_touch(x, a->dir, 0)) < 0)
                return r;
        return b->dir != a->dir ? dir_touch(x, b->dir, 0) : 0;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname,
                      unsigned flags)
{
        struct ext3 *x = X(req);
        struct side a, b;
        int r = x->ro ? -EROFS : 0;
        if (flags & ~(unsigned) (RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) ||
            ((flags & RENAME_EXCHANGE) && (flags & ~(unsigned) RENAME_EXCHANGE)))
                r = -EINVAL;
        if (r == 0)
                r = side_read(x, ino_of(parent), name, &a);
        if (r == 0 && !a.exists)
                r = -ENOENT;
        if (r == 0)
                r = side_read(x, ino_of(newparent), newname, &b);
        if (r == 0)
                r = (flags & RENAME_EXCHANGE) ? rename_exchange(x, &a, &b) : rename_move(x, req, &a, &b, flags);
        fuse_reply_err(req, -r);
}

/* ENOSYS where the kernel can do without (FUSE_CAP_NO_OPEN_SUPPORT): it then opens files
 * by itself, keeping their cache, and never asks again */
static void op_open(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
        struct ext3 *x = X(req);
        inode_t in;
        int r = x->no_open ? -ENOSYS : ino_read(x, ino_of(n), &in);
        if (r == 0 && x->ro && (fi->flags & O_ACCMODE) != O_RDONLY)
                r = -EROFS;
        if (r == 0 && LINUX_S_ISDIR(in.i_mode))
                r = -EISDIR;
        if (r < 0)
                return (void) fuse_reply_err(req, -r);
        fi->keep_cache = 1;
        fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t n, size_t size, off_t off, struct fuse_file_info *fi)
{
        (void) fi;
        struct ext3 *x = X(req);
        char *buf = malloc(size ? size : 1);
        ext2_file_t f;
        unsigned got = 0;
        errcode_t e = buf ? ext2fs_file_open(x->fs, ino_of(n), 0, &f) : EXT2_ET_NO_MEMORY;
        if (!e) {
                e = ext2fs_file_llseek(f, (uint64_t) off, EXT2_SEEK_SET, NULL);
                if (!e)
                        e = ext2fs_file_read(f, buf, (unsigned) size, &got);
                ext2fs_file_close(f);
        }
        if (e && !got)
                fuse_reply_err(req, errno_of(e));
        else
                fuse_reply_buf(req, buf, got);
        free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t n, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
        (void) fi;
        struct ext3 *x = X(req);
        ext2_ino_t ino = ino_of(n);
        ext2_file_t f;
        unsigned done = 0;
        if (x->ro)
                return (void) fuse_reply_err(req, EROFS);
        errcode_t e = ext2fs_file_open(x->fs, ino, EXT2_FILE_WRITE, &f);
        if (!e) {
                e = ext2fs_file_llseek(f, (uint64_t) off, EXT2_SEEK_SET, NULL);
                if (!e)
                        e = ext2fs_file_write(f, buf, (unsigned) size, &done);
                errcode_t c = ext2fs_file_close(f);
                if (!e)
                        e = c;
        }
        inode_t in;
        if (done && ino_read(x, ino, &in) == 0) {
                times_now(x, &in, T_M | T_C);
                (void) ino_write(x, ino, &in);
        }
        if (e && !done)
                fuse_reply_err(req, errno_of(e));
        else
                fuse_reply_write(req, done);
}

static void op_release(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
        (void) n, (void) fi;
        fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t n, int datasync, struct fuse_file_info *fi)
{
        (void) n, (void) datasync, (void) fi;
        struct ext3 *x = X(req);
        errcode_t e = x->ro ? 0 : ext2fs_flush2(x->fs, 0);
        fuse_reply_err(req, errno_of(e));
}

/* ---- reading directories: each opendir takes a copy of the entries, read by index */

struct listing {
        size_t n, len, cap;
        size_t *at; /* offsets into buf of {ino, type, name\0} records */
        char *buf;
};

struct list_ctx {
        struct ext3 *x;
        struct listing *l;
        int err;
};

static int list_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *d, int offset, int blocksize, char *buf,
                   void *data)
{
        (void) dir, (void) entry, (void) offset, (void) blocksize, (void) buf;
        struct list_ctx *c = data;
        struct listing *l = c->l;
        size_t nl = (size_t) ext2fs_dirent_name_len(d), need = sizeof(uint32_t) + 1 + nl + 1;
        if (!d->inode || nl == 0)
                return 0;
        if (l->len + need > l->cap || l->n % 64 == 0) {
                size_t cap = (l->len + need) * 2 + 4096;
                char *nb = realloc(l->buf, cap);
                size_t *na = nb ? realloc(l->at, (l->n + 65) * sizeof *na) : NULL;
                if (nb)
                        l->buf = nb, l->cap = cap;
                if (!na) {
                        c->err = ENOMEM;
                        return DIRENT_ABORT;
                }
                l->at = na;
        }
        uint32_t ino = d->inode;
        char *p = l->buf + l->len;
        memcpy(p, &ino, sizeof ino);
        p[sizeof ino] = (char) ext2fs_dirent_file_type(d);
        memcpy(p + sizeof ino + 1, d->name, nl);
        p[sizeof ino + 1 + nl] = 0;
        l->at[l->n++] = l->len;
        l->len += need;
        return 0;
}

static void listing_free(struct listing *l)
{
        if (!l)
                return;
        free(l->at);
        free(l->buf);
        free(l);
}

static void op_opendir(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
        struct ext3 *x = X(req);
        struct listing *l = calloc(1, sizeof *l);
        struct list_ctx c = {.x = x, .l = l};
        errcode_t e = l ? ext2fs_dir_iterate2(x->fs, ino_of(n), 0, NULL, list_cb, &c) : EXT2_ET_NO_MEMORY;
        if (e || c.err) {
                listing_free(l);
                return (void) fuse_reply_err(req, c.err ? c.err : errno_of(e));
        }
        fi->fh = (uint64_t) (uintptr_t) l;
        fi->cache_readdir = 1;
        fi->keep_cache = 1;
        if (fuse_reply_open(req, fi) != 0)
                listing_free(l);
}

static const unsigned char dtype_of[] = {
        [EXT2_FT_REG_FILE] = DT_REG, [EXT2_FT_DIR] = DT_DIR,   [EXT2_FT_CHRDEV] = DT_CHR,  [EXT2_FT_BLKDEV] = DT_BLK,
        [EXT2_FT_FIFO] = DT_FIFO,    [EXT2_FT_SOCK] = DT_SOCK, [EXT2_FT_SYMLINK] = DT_LNK,
};

static void op_readdir(fuse_req_t req, fuse_ino_t n, size_t size, off_t off, struct fuse_file_info *fi)
{
        (void) n;
        struct ext3 *x = X(req);
        struct listing *l = (struct listing *) (uintptr_t) fi->fh;
        char *buf = malloc(size);
        size_t used = 0;
        if (!buf)
                return (void) fuse_reply_err(req, ENOMEM);
        for (size_t i = off < 0 ? 0 : (size_t) off; i < l->n; i++) {
                const char *p = l->buf + l->at[i];
                uint32_t ino;
                memcpy(&ino, p, sizeof ino);
                unsigned char ft = (unsigned char) p[sizeof ino];
                struct stat st = {.st_ino = node_of(ino)};
                inode_t in;
                if (ft < sizeof dtype_of && dtype_of[ft])
                        st.st_mode = DTTOIF(dtype_of[ft]);
                else if (ino_read(x, ino, &in) == 0) /* no file types in the entries (no filetype feature) */
                        st.st_mode = in.i_mode & LINUX_S_IFMT;
                size_t k = fuse_add_direntry(req, buf + used, size - used, p + sizeof ino + 1, &st, (off_t) i + 1);
                if (k > size - used)
                        break;
                used += k;
        }
        fuse_reply_buf(req, buf, used);
        free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t n, struct fuse_file_info *fi)
{
        (void) n;
        listing_free((struct listing *) (uintptr_t) fi->fh);
        fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t n)
{
        (void) n;
        struct ext2_super_block *sb = X(req)->fs->super;
        blk64_t total = ext2fs_blocks_count(sb), free_ = ext2fs_free_blocks_count(sb), res = ext2fs_r_blocks_count(sb);
        struct statvfs v = {
                .f_bsize = EXT2_BLOCK_SIZE(sb),
                .f_frsize = EXT2_BLOCK_SIZE(sb),
                .f_blocks = total,
                .f_bfree = free_,
                .f_bavail = free_ > res ? free_ - res : 0,
                .f_files = sb->s_inodes_count,
                .f_ffree = sb->s_free_inodes_count,
                .f_favail = sb->s_free_inodes_count,
                .f_namemax = NAME_MAX_EXT2,
        };
        fuse_reply_statfs(req, &v);
}

/* ---- extended attributes */

static int xattr_open(struct ext3 *x, ext2_ino_t ino, struct ext2_xattr_handle **h)
{
        errcode_t e = ext2fs_xattrs_open(x->fs, ino, h);
        if (!e && (e = ext2fs_xattrs_read(*h)) != 0)
                ext2fs_xattrs_close(h);
        return -errno_of(e);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t n, const char *name, const char *value, size_t size, int flags)
{
        struct ext3 *x = X(req);
        ext2_ino_t ino = ino_of(n);
        struct ext2_xattr_handle *h = NULL;
        int r = x->ro ? -EROFS : xattr_open(x, ino, &h);
        if (r < 0)
                return (void) fuse_reply_err(req, -r);
        void *old = NULL;
        size_t len = 0;
        errcode_t e = ext2fs_xattr_get(h, name, &old, &len);
        if (!e)
                ext2fs_free_mem(&old);
        if (!e && (flags & XATTR_CREATE))
                r = -EEXIST;
        else if (e && (flags & XATTR_REPLACE))
                r = -ENODATA;
        else
                r = -errno_of(ext2fs_xattr_set(h, name, value, size));
        ext2fs_xattrs_close(&h);
        inode_t in;
        if (r == 0 && (r = ino_read(x, ino, &in)) == 0) {
                times_now(x, &in, T_C);
                r = ino_write(x, ino, &in);
        }
        fuse_reply_err(req, -r);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t n, const char *name, size_t size)
{
        struct ext3 *x = X(req);
        struct ext2_xattr_handle *h = NULL;
        int r = xattr_open(x, ino_of(n), &h);
        if (r < 0)
                return (void) fuse_reply_err(req, -r);
        void *v = NULL;
        size_t len = 0;
        errcode_t e = ext2fs_xattr_get(h, name, &v, &len);
        /* a folder made opaque by a kernel overlay as real root (Apptainer's, or the kernel's
         * without userxattr) is marked trusted.overlay.opaque, which a user's overlay
         * (userxattr) never asks for: it is read as user.overlay.opaque, so that a folder
         * removed and made again there stays without the lower layers' files */
        if (e == EXT2_ET_EA_KEY_NOT_FOUND && !strcmp(name, "user.overlay.opaque")) {
                e = ext2fs_xattr_get(h, "trusted.overlay.opaque", &v, &len);
                if (!e && (len != 1 || *(char *) v != 'y')) { /* "y" only: "x" asks for more marks */
                        ext2fs_free_mem(&v);
                        e = EXT2_ET_EA_KEY_NOT_FOUND;
                }
        }
        ext2fs_xattrs_close(&h);
        if (e)
                fuse_reply_err(req, errno_of(e));
        else if (size == 0)
                fuse_reply_xattr(req, len);
        else if (len > size)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, v, len);
        if (!e)
                ext2fs_free_mem(&v);
}

struct names {
        char *buf;
        size_t len, cap;
};

static int names_cb(char *name, char *value, size_t value_len, void *data)
{
        (void) value, (void) value_len;
        struct names *l = data;
        size_t k = strlen(name) + 1;
        if (l->len + k > l->cap) {
                size_t cap = (l->len + k) * 2;
                char *nb = realloc(l->buf, cap);
                if (!nb)
                        return XATTR_ABORT;
                l->buf = nb, l->cap = cap;
        }
        memcpy(l->buf + l->len, name, k);
        l->len += k;
        return 0;
}

static void op_listxattr(fuse_req_t req, fuse_ino_t n, size_t size)
{
        struct ext3 *x = X(req);
        struct ext2_xattr_handle *h = NULL;
        struct names l = {0};
        int r = xattr_open(x, ino_of(n), &h);
        if (r == 0) {
                r = -errno_of(ext2fs_xattrs_iterate(h, names_cb, &l));
                ext2fs_xattrs_close(&h);
        }
        if (r < 0)
                fuse_reply_err(req, -r);
        else if (size == 0)
                fuse_reply_xattr(req, l.len);
        else if (l.len > size)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, l.buf, l.len);
        free(l.buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t n, const char *name)
{
        struct ext3 *x = X(req);
        struct ext2_xattr_handle *h = NULL;
        int r = x->ro ? -EROFS : xattr_open(x, ino_of(n), &h);
        if (r < 0)
                return (void) fuse_reply_err(req, -r);
        void *v = NULL;
        size_t len = 0;
        errcode_t e = ext2fs_xattr_get(h, name, &v, &len);
        if (!e) {
                ext2fs_free_mem(&v);
                e = ext2fs_xattr_remove(h, name);
        }
        ext2fs_xattrs_close(&h);
        fuse_reply_err(req, errno_of(e));
}

static void op_init(void *data, struct fuse_conn_info *conn)
{
        struct ext3 *x = data;
        x->no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
        conn->time_gran = 1;
        conn->want &= ~(unsigned) FUSE_CAP_HANDLE_KILLPRIV; /* the kernel clears set-user-ID bits */
}

static const struct fuse_lowlevel_ops ops = {
        .init = op_init,
        .lookup = op_lookup,
        .forget = op_forget,
        .forget_multi = op_forget_multi,
        .getattr = op_getattr,
        .setattr = op_setattr,
        .readlink = op_readlink,
        .mknod = op_mknod,
        .mkdir = op_mkdir,
        .unlink = op_unlink,
        .rmdir = op_rmdir,
        .symlink = op_symlink,
        .rename = op_rename,
        .link = op_link,
        .open = op_open,
        .read = op_read,
        .write = op_write,
        .release = op_release,
        .fsync = op_fsync,
        .opendir = op_opendir,
        .readdir = op_readdir,
        .releasedir = op_releasedir,
        .statfs = op_statfs,
        .setxattr = op_setxattr,
        .getxattr = op_getxattr,
        .listxattr = op_listxattr,
        .removexattr = op_removexattr,
        .create = op_create,
};

/* ---- the image */

/* libext2fs's unix I/O manager fsyncs the image as it opens it, only to clear a write
 * error an earlier writer's writeback may have left. A start would wait there for the
 * host's filesystem to commit what the previous server wrote back (1-2 ms, on the
 * critical path of every start). hutch-ext3 is linked with --wrap=fsync (meson.build):
 * while ext3_open opens the image, fsync is not called; every other fsync (the
 * container's own, through op_fsync) is. t-overlay checks with strace that a start
 * makes no fsync. */
static bool opening;
int __real_fsync(int fd);
int __wrap_fsync(int fd);
int __wrap_fsync(int fd)
{
        return opening ? 0 : __real_fsync(fd);
}

static int ext3_open(struct ext3 *x, int fd, uint64_t offset)
{
        char name[32], opts[48];
        snprintf(name, sizeof name, "%d", fd);
        snprintf(opts, sizeof opts, "offset=%" PRIu64, offset);
        int flags = EXT2_FLAG_64BITS | EXT2_FLAG_MASTER_SB_ONLY | (x->ro ? 0 : EXT2_FLAG_RW);
        opening = true;
        errcode_t e = ext2fs_open2(name, opts, flags, 0, 0, unixfd_io_manager, &x->fs);
        opening = false;
        if (e) {
                fprintf(stderr, "not an ext2/3/4 filesystem it can use: %s\n", error_message(e));
                return -1;
        }
        struct ext2_super_block *sb = x->fs->super;
        if (ext2fs_has_feature_journal_needs_recovery(sb)) {
                fprintf(stderr, "its journal needs recovery: run e2fsck -fy on it\n");
                return -1;
        }
        if (x->ro)
                return 0;
        if ((e = ext2fs_read_bitmaps(x->fs)) != 0) {
                fprintf(stderr, "cannot read its bitmaps: %s\n", error_message(e));
                return -1;
        }
        sb->s_state &= (uint16_t) ~EXT2_VALID_FS;
        sb->s_mnt_count++;
        sb->s_mtime = (uint32_t) time(NULL);
        ext2fs_mark_super_dirty(x->fs);
        if ((e = ext2fs_flush2(x->fs, EXT2_FLAG_FLUSH_NO_SYNC)) != 0) {
                fprintf(stderr, "cannot write to it: %s\n", error_message(e));
                return -1;
        }
        return 0;
}

/* Write the image back and mark it clean; files unlinked while known are freed first. */
static int ext3_close(struct ext3 *x)
{
        for (size_t i = 0; i < x->cap_known; i++)
                if (x->known[i].ino && x->known[i].ino != KNOWN_GONE)
                        known_sub(x, x->known[i].ino, x->known[i].n);
        if (!x->ro) {
                x->fs->super->s_state |= EXT2_VALID_FS;
                ext2fs_mark_super_dirty(x->fs);
        }
        free(x->known);
        for (size_t i = 0; i < IX_SLOTS; i++)
                ix_free(&x->ix[i]);
        /* written, and its writeback started, not waited for: durable as the container's
         * own writes are, on its fsync (op_fsync) or the host's writeback. The next
         * server's open does not wait for it either (__wrap_fsync). */
        errcode_t e = ext2fs_close2(x->fs, EXT2_FLAG_FLUSH_NO_SYNC);
        ext2fs_free(x->fs);
        x->fs = NULL;
        if (!x->ro)
                (void) sync_file_range(x->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        if (e)
                fprintf(stderr, "cannot write the image back: %s\n", error_message(e));
        return e ? -1 : 0;
}

/* ---- confinement */

/* The image is the user's, but it may come from elsewhere (a SIF's overlay partition): once
 * the server has read what it needs of the system (the id maps) and holds its two fds, it
 * confines itself before libext2fs reads a byte of the image. A seccomp filter lets
 * through what serving takes (the two fds' I/O, memory, signals, the clock) and fails
 * everything else with EPERM: nothing is opened, executed or connected, no process but
 * itself signalled (abort), no memory made executable. EPERM, not death: a call missing
 * here fails one request and the image is still written back at the end, where a killed
 * server would leave it for e2fsck. The filter is written out rather than compiled by libseccomp, whose first
 * use probes the kernel (~0.45 ms, on the start's path). t-overlay checks that the server
 * runs confined. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hutch-ext3's seccomp filter reads the low half of arguments as a little-endian CPU keeps them"
#endif
#if defined(__x86_64__)
#define EXT3_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define EXT3_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "hutch-ext3's seccomp filter knows x86_64 and aarch64 only"
#endif

static const int confined_calls[] = {
        SYS_read,         SYS_write,          SYS_readv,        SYS_writev,          SYS_pread64,     SYS_pwrite64,
        SYS_lseek,        SYS_fsync,          SYS_fdatasync,    SYS_sync_file_range, SYS_fallocate,   SYS_ftruncate,
        SYS_close,        SYS_munmap,         SYS_mremap,       SYS_madvise,         SYS_brk,         SYS_futex,
        SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_restart_syscall, SYS_sigaltstack, SYS_exit,
        SYS_exit_group,   SYS_getpid,         SYS_gettid,       SYS_getuid,          SYS_geteuid,     SYS_getgid,
        SYS_getegid,      SYS_clock_gettime,  SYS_gettimeofday, SYS_getrandom,
#ifdef SYS_time
        SYS_time,
#endif
#ifdef SYS_fstat
        SYS_fstat, /* glibc before 2.33 */
#endif
};

static int ext3_confine(void)
{
        struct sock_filter f[128];
        size_t n = 0;
#define EMIT(insn) (n < sizeof f / sizeof f[0] ? (void) (f[n] = (struct sock_filter) insn) : (void) 0, n++)
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + (i) * sizeof(uint64_t)) /* little-endian */
        EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, EXT3_AUDIT_ARCH, 1, 0));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
        EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
        for (size_t i = 0; i < (sizeof confined_calls / sizeof confined_calls[0]); i++) {
                EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t) confined_calls[i], 0, 1));
                EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
        }
        /* memory, never executable (mmap's and mprotect's prot); each block leaves the
         * syscall number in A when it does not match */
        static const int no_exec[] = {SYS_mmap, SYS_mprotect};
        for (size_t i = 0; i < (sizeof no_exec / sizeof no_exec[0]); i++) {
                EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t) no_exec[i], 0, 4));
                EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2)));
                EMIT(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 1, 0));
                EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
                EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
        }
        /* fstat of an fd (glibc's fstat is fstatat(fd, "", AT_EMPTY_PATH)); the path itself
         * is out of a filter's sight, so a path's metadata (never its content) stays
         * readable; F_GETFD and F_GETFL of an fd (libext2fs's unixfd open) */
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_newfstatat, 0, 4));
        EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(3)));
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AT_EMPTY_PATH, 0, 1));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
        /* a signal to itself only (abort) */
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_tgkill, 0, 4));
        EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)));
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t) getpid(), 0, 1));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fcntl, 0, 5));
        EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(1)));
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, F_GETFD, 1, 0));
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, F_GETFL, 0, 1));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)); /* any other call */
#undef ARG_LO
#undef EMIT
        struct sock_fprog prog = {.len = (unsigned short) n, .filter = f};
        if (n > sizeof f / sizeof f[0])
                errno = E2BIG;
        if (n > sizeof f / sizeof f[0] || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0) {
                fprintf(stderr, "cannot confine itself (seccomp): %s\n", strerror(errno));
                return -1;
        }
        return 0;
}

int image_ext3_main(int argc, char **argv)
{
        /* hutch-ext3 IMAGE-FD OFFSET FUSE-FD rw|ro UID GID */
        if (argc != 7 || (strcmp(argv[4], "ro") && strcmp(argv[4], "rw")))
                return 2;
        struct ext3 x = {.ro = !strcmp(argv[4], "ro")};
        idmap_read(&x.uids, "/proc/self/uid_map", (uint32_t) strtoul(argv[5], NULL, 10));
        idmap_read(&x.gids, "/proc/self/gid_map", (uint32_t) strtoul(argv[6], NULL, 10));
        initialize_ext2_error_table(); /* error_message's words for libext2fs's codes */
        if (getrandom(&x.generation, sizeof x.generation, 0) != sizeof x.generation)
                x.generation = (uint32_t) time(NULL) ^ (uint32_t) getpid();
        char mnt[32];
        snprintf(mnt, sizeof mnt, "/dev/fd/%d", atoi(argv[3]));
        x.fd = atoi(argv[1]);
        char *args_v[] = {argv[0], NULL};
        struct fuse_args args = FUSE_ARGS_INIT(1, args_v);
        struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, &x);
        int r = se ? 0 : -1;
        if (r == 0 && (fuse_set_signal_handlers(se) < 0 || fuse_session_mount(se, mnt) < 0))
                r = -1;
        /* confined before the image is read (see "confinement") */
        if (r == 0 && ext3_confine() < 0)
                r = -1;
        if (r == 0 && ext3_open(&x, x.fd, strtoull(argv[2], NULL, 10)) < 0) {
                if (x.fs)
                        ext2fs_free(x.fs);
                x.fs = NULL;
                r = -1;
        }
        if (r < 0) {
                if (se) {
                        fuse_remove_signal_handlers(se);
                        fuse_session_destroy(se);
                }
                return 1;
        }
        fuse_session_loop(se);
        /* from here on the image is written back: a SIGTERM that comes now, once libfuse
         * has put the default action back, must not cut that short */
        sigset_t term;
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        sigaddset(&term, SIGINT);
        sigaddset(&term, SIGHUP);
        sigprocmask(SIG_BLOCK, &term, NULL);
        fuse_remove_signal_handlers(se);
        fuse_session_destroy(se);
        return ext3_close(&x) < 0 ? 1 : 0;
}
