/* The image server's confined worker (image/serve.c starts and watches it) serving a
 * squashfs/SIF mount (libsquashfuse_ll, libfuse3 low-level API): the FUSE operations, the
 * push-ahead into the page cache (files decompressed by image/inflate.c) and the serving
 * threads, which end when the owner's pidfd reports the owner gone or the mount goes away.
 *
 * Threads. The worker answers requests with one thread per CPU it may run on (at most
 * SERVE_THREADS_MAX), each blocked in its own read of /dev/fuse, so that readers on several
 * cores are not served one after the other. squashfuse's caches (metadata, data and fragment
 * blocks) and its cursors are not thread-safe: every thread reads the image through a
 * squashfs handle of its own (`own`), with caches of its own, and the inode numbers mean
 * the same to all of them (squashfuse's 64-bit mapping is arithmetic, no table). The set of
 * pushed inodes they share is under `pool.lock` (the decompressed-file cache's count under
 * a lock of its own, image/inflate.c); a fragment block one thread inflated reaches the
 * others through the decompressed-file cache, when there is one. */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <linux/fuse.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-internal.h"
#include "util/log.h"
#include "util/util.h"

/* Push-ahead. Paging a file in through FUSE costs a round trip per fault, and a container's
 * first steps are execs (its /bin/sh, then the payload) whose faults hop across the whole
 * binary: busybox's 2 MB took ~35 READ requests. On the first open of a regular file of up
 * to PUSH_MAX bytes, the server decompresses it once and stores it into the kernel's page
 * cache with FUSE_NOTIFY_STORE before it answers the open (keep_cache then keeps it), so
 * the faults that follow find their pages. Before the open reply no read of that inode can
 * be in flight, so no page the store must lock is held by a request only this process could
 * answer. Larger files are paged in on demand as before. */
#define PUSH_MAX (8u << 20)
#define PUSH_CHUNK (1u << 20)

/* This thread's squashfs handle (see Threads above). */
static __thread struct sqfs_handle *own;

static sqfs_ll *own_ll(void)
{
        return &own->ll;
}

/* What the serving threads share: the session (for the store), the image, the inodes
 * already pushed or being pushed (an open-addressing set; inode numbers are never 0) and
 * the lock over the set. */
static struct {
        struct fuse_session *se;
        struct image *img;
        volatile uint64_t *in_flight;
        unsigned n; /* threads to serve with */
        pthread_mutex_t lock;
        pthread_cond_t pushed; /* a push ended */
        /* held shared while a request is answered, exclusively to give caches back */
        pthread_rwlock_t busy;
        atomic_uint_fast64_t answered; /* requests answered: the idle check's */
        atomic_uint running;           /* threads still serving */
        atomic_uint storing;           /* opens whose cache entries are still being written */
        _Atomic(struct sqfs_handle *) handle[SERVE_THREADS_MAX];
        char *_Atomic small[SERVE_THREADS_MAX];
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .pushed = PTHREAD_COND_INITIALIZER,
          .busy = PTHREAD_RWLOCK_INITIALIZER,
          .n = 1};

static struct {
        struct pushed_slot {
                fuse_ino_t ino;
                bool pushing;
        } * slot;
        size_t cap, n;
} pushed;

static struct pushed_slot *pushed_find(fuse_ino_t ino)
{
        if (!pushed.cap)
                return NULL;
        for (size_t j = ino % pushed.cap; pushed.slot[j].ino; j = (j + 1) % pushed.cap)
                if (pushed.slot[j].ino == ino)
                        return &pushed.slot[j];
        return NULL;
}

static bool pushed_grow(void)
{
        size_t cap = pushed.cap ? pushed.cap * 2 : 256;
        struct pushed_slot *slot = calloc(cap, sizeof *slot);
        if (!slot)
                return false;
        for (size_t i = 0; i < pushed.cap; i++)
                for (size_t j = pushed.slot[i].ino % cap; pushed.slot[i].ino; j = (j + 1) % cap)
                        if (!slot[j].ino) {
                                slot[j] = pushed.slot[i];
                                break;
                        }
        free(pushed.slot);
        pushed.slot = slot;
        pushed.cap = cap;
        return true;
}

/* true: this thread is to push ino (marked as being pushed). false: it was pushed, or
 * could not be noted; an open that finds a push of ino under way waits for its end, so that
 * no read of ino is sent while the store locks its pages (a store waiting on a page that a
 * read holds, with every thread storing so, would leave the read unanswered). */
static bool pushed_add(fuse_ino_t ino)
{
        pthread_mutex_lock(&pool.lock);
        struct pushed_slot *s;
        bool add = false;
        while ((s = pushed_find(ino)) && s->pushing)
                pthread_cond_wait(&pool.pushed, &pool.lock);
        if (!s && (pushed.n * 2 < pushed.cap || pushed_grow())) {
                size_t j = ino % pushed.cap;
                while (pushed.slot[j].ino)
                        j = (j + 1) % pushed.cap;
                pushed.slot[j] = (struct pushed_slot){.ino = ino, .pushing = true};
                pushed.n++;
                add = true;
        }
        pthread_mutex_unlock(&pool.lock);
        return add;
}

static void pushed_done(fuse_ino_t ino)
{
        pthread_mutex_lock(&pool.lock);
        struct pushed_slot *s = pushed_find(ino);
        if (s)
                s->pushing = false;
        pthread_cond_broadcast(&pool.pushed);
        pthread_mutex_unlock(&pool.lock);
}
/* Files of up to PUSH_SMALL bytes are decompressed into push_buf, this thread's (pool.small
 * holds every thread's, given back when idle). */
#define PUSH_SMALL (256u << 10)
static __thread char *push_buf;

/* A file pushed whole, kept mapped until the open is answered when it is to be cached. */
struct push {
        char *buf;
        size_t map;
        uint64_t size;
        struct file_cache_key key;
        struct frag_put frag;
};

static void push_file(sqfs_ll *ll, fuse_ino_t ino, struct push *p)
{
        sqfs_inode inode;
        if (sqfs_ll_inode(ll, &inode, ino) != SQFS_OK || !S_ISREG(inode.base.mode))
                return;
        uint64_t size = inode.xtra.reg.file_size;
        if (size == 0 || size > PUSH_MAX)
                return;
        size_t map = (size_t) ((size + 4095) & ~(uint64_t) 4095);
        /* a file of less than a block lives in a fragment, inflated once for many */
        bool cacheable = size >= ll->fs.sb.block_size && inflate_cache_dir() >= 0, ok = false, keep = false;
        struct file_cache_key key = inflate_cache_key(inode.base.inode_number);
        /* an entry is stored straight from its mapping (only the kernel reads it: were the
         * file cut short meanwhile, the store fails with EFAULT, no SIGBUS) */
        char *buf = MAP_FAILED;
        if (cacheable) {
                int fd = file_cache_get(inflate_cache_dir(), &key, size);
                if (fd >= 0) {
                        buf = mmap(NULL, map, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
                        ok = buf != MAP_FAILED;
                        close(fd);
                }
        }
        /* a small file: this thread's buffer, kept (an unmap per file would stop every CPU
         * that runs a thread of the server to flush its TLB) */
        bool small = !cacheable && size <= PUSH_SMALL && push_buf;
        if (small) {
                buf = push_buf;
                memset(buf, 0, size);
        }
        /* else one populate instead of a page fault per 4 KiB */
        if (!ok && !small)
                buf = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (buf == MAP_FAILED)
                return;
        if (!ok)
                keep = ok = inflate_whole(&ll->fs, &inode, buf, &p->frag) == 0;
        if (ok)
                for (uint64_t off = 0; off < size; off += PUSH_CHUNK) {
                        size_t n = size - off < PUSH_CHUNK ? (size_t) (size - off) : PUSH_CHUNK;
                        struct fuse_bufvec bv = FUSE_BUFVEC_INIT(n);
                        bv.buf[0].mem = buf + off;
                        /* written, never spliced: a pipe that held a 1 MiB chunk is over a
                         * user's pipe-max-size, and libfuse would stop splicing op_read's
                         * replies on this thread for good once it failed to grow it */
                        if (fuse_lowlevel_notify_store(pool.se, ino, (off_t) off, &bv, FUSE_BUF_NO_SPLICE) != 0)
                                break;
                }
        if (keep && cacheable) {
                p->buf = buf;
                p->map = map;
                p->size = size;
                p->key = key;
        } else if (!small)
                munmap(buf, map);
}
/* squashfuse's open, on this thread's handle: the inode is kept as the handle of the open
 * file (freed by squashfuse's release), the page cache kept across opens (the image does
 * not change). */
static void open_reply(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        sqfs_inode *inode = malloc(sizeof *inode);
        int e = 0;
        if (fi->flags & (O_WRONLY | O_RDWR))
                e = EROFS;
        else if (!inode)
                e = ENOMEM;
        else if (sqfs_ll_inode(own_ll(), inode, ino) != SQFS_OK)
                e = ENOENT;
        else if (!S_ISREG(inode->base.mode))
                e = EISDIR;
        if (e) {
                free(inode);
                fuse_reply_err(req, e);
                return;
        }
        fi->fh = (uintptr_t) inode;
        fi->keep_cache = 1;
        if (fuse_reply_open(req, fi) != 0)
                free(inode); /* the open was interrupted: no release comes */
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct push p = {0};
        bool push = !(fi->flags & (O_WRONLY | O_RDWR)) && pushed_add(ino);
        if (push)
                push_file(own_ll(), ino, &p);
        /* counted before the answer: an owner that ends right after its open (`true`) must
         * not end us before the entry is written (serve waits for these) */
        bool store = p.frag.data || p.buf;
        if (store)
                atomic_fetch_add(&pool.storing, 1);
        open_reply(req, ino, fi);
        if (push)
                pushed_done(ino);
        /* written once the opener goes on */
        if (p.frag.data)
                inflate_cache_put(&p.frag.key, p.frag.data, p.frag.size, "fragment block");
        if (p.buf) {
                inflate_cache_put(&p.key, p.buf, p.size, "file");
                munmap(p.buf, p.map);
        }
        if (store)
                atomic_fetch_sub(&pool.storing, 1);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        (void) fi;
        sqfs_inode inode;
        struct stat st;
        if (sqfs_ll_inode(own_ll(), &inode, ino) != SQFS_OK || sqfs_stat(&own_ll()->fs, &inode, &st) != SQFS_OK) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        st.st_ino = ino;
        fuse_reply_attr(req, &st, DBL_MAX);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
        sqfs_inode inode;
        size_t size;
        sqfs_ll *ll = own_ll();
        if (sqfs_ll_inode(ll, &inode, ino) != SQFS_OK) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        if (!S_ISLNK(inode.base.mode)) {
                fuse_reply_err(req, EINVAL);
                return;
        }
        if (sqfs_readlink(&ll->fs, &inode, NULL, &size) != SQFS_OK) {
                fuse_reply_err(req, EIO);
                return;
        }
        _cleanup_free_ char *target = malloc(size + 1);
        if (!target || sqfs_readlink(&ll->fs, &inode, target, &size) != SQFS_OK)
                fuse_reply_err(req, target ? EIO : ENOMEM);
        else
                fuse_reply_readlink(req, target);
}

/* Directories are never opened through the server: the first OPENDIR's ENOSYS makes the
 * kernel skip OPENDIR and RELEASEDIR for good and cache what READDIR returns (no_opendir,
 * Linux 5.1; FOPEN_CACHE_DIR is its default then), two round trips fewer per directory
 * opened and one per directory read. READDIR then comes with no handle: the inode is
 * looked up from its number, as for any other request. */
static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        (void) ino;
        (void) fi;
        fuse_reply_err(req, ENOSYS);
}

/* READDIR and READDIRPLUS, through hutch's bounded directory reader. READDIRPLUS: every
 * entry comes with its attributes, so the stat or open of each entry that tends to follow
 * a listing (the rootfs split's, a shell's glob) finds it in the dentry cache instead of
 * sending a LOOKUP of its own (a round trip between two processes, often across the two
 * vCPUs). An entry in the reply counts as a lookup, which the kernel forgets as one. The
 * kernel asks for it on a directory's first read and falls back to READDIR where no lookups
 * follow (READDIRPLUS_AUTO, libfuse's default). Directories are read with no handle (see
 * op_opendir): the inode is looked up from its number. */
static size_t add_entry(fuse_req_t req, sqfs_ll *ll, sqfs_dir_entry *entry, char *buf, size_t room, bool plus, int *err)
{
        struct fuse_entry_param e = {.attr_timeout = DBL_MAX, .entry_timeout = DBL_MAX};
        sqfs_inode inode;
        if (!plus) {
                e.attr.st_ino = (ino_t) ll->ino_fuse_num(ll, entry);
                e.attr.st_mode = sqfs_mode(entry->type);
                return fuse_add_direntry(req, buf, room, entry->name, &e.attr, entry->next_offset);
        }
        if (squash_inode_get(&ll->fs, entry->inode, &inode) < 0 || sqfs_stat(&ll->fs, &inode, &e.attr) != SQFS_OK) {
                *err = EIO;
                return SIZE_MAX;
        }
        e.ino = ll->ino_register(ll, entry);
        e.attr.st_ino = (ino_t) e.ino;
        size_t n = fuse_add_direntry_plus(req, buf, room, entry->name, &e, entry->next_offset);
        if (n > room) /* no room: not sent, so not counted */
                ll->ino_forget(ll, e.ino, 1);
        return n;
}

static void list_dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
        sqfs_ll *ll = own_ll();
        sqfs_inode dir_inode;
        struct squash_dir dir;
        if (sqfs_ll_inode(ll, &dir_inode, ino) != SQFS_OK) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        int r = off < 0 ? -EINVAL : squash_dir_open(&ll->fs, &dir_inode, (uint64_t) off, &dir);
        if (r < 0) {
                fuse_reply_err(req, -r);
                return;
        }
        _cleanup_free_ char *buf = malloc(size);
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        char name[SQUASHFS_NAME_LEN + 1];
        sqfs_dir_entry entry;
        int err = 0;
        size_t used = 0;
        while ((r = squash_dir_next(&dir, &entry, name)) > 0) {
                size_t n = add_entry(req, ll, &entry, buf + used, size - used, plus, &err);
                if (n > size - used)
                        break;
                used += n;
        }
        if (r < 0)
                err = EIO;
        /* what was added is counted by the kernel once replied, error or not after it */
        if (err && used == 0)
                fuse_reply_err(req, err);
        else
                fuse_reply_buf(req, buf, used);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
        (void) fi;
        list_dir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
        (void) fi;
        list_dir(req, ino, size, off, true);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        sqfs_ll *ll = own_ll();
        sqfs_inode dir, inode;
        sqfs_dir_entry entry;
        struct fuse_entry_param e = {.attr_timeout = DBL_MAX, .entry_timeout = DBL_MAX};
        if (sqfs_ll_inode(ll, &dir, parent) != SQFS_OK) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        int r = squash_dir_lookup(&ll->fs, &dir, name, &entry);
        if (r == 0 &&
            (squash_inode_get(&ll->fs, entry.inode, &inode) < 0 || sqfs_stat(&ll->fs, &inode, &e.attr) != SQFS_OK))
                r = -EIO;
        /* a name the image lacks is cached as such (an entry of inode 0): the image never
         * changes, and an interpreter's start probes many paths that do not exist (Python's
         * import looks for each module in every folder of its path) */
        if (r == -ENOENT) {
                struct fuse_entry_param none = {.ino = 0, .entry_timeout = DBL_MAX};
                fuse_reply_entry(req, &none);
                return;
        }
        if (r < 0) {
                fuse_reply_err(req, -r);
                return;
        }
        e.ino = ll->ino_register(ll, &entry);
        e.attr.st_ino = (ino_t) e.ino;
        fuse_reply_entry(req, &e);
}

/* The inode is the one the open checked and kept (squashfuse's open). */
static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
        (void) ino;
        sqfs_ll *ll = own_ll();
        const sqfs_inode *inode = (const sqfs_inode *) (uintptr_t) fi->fh;
        if (off < 0) {
                fuse_reply_err(req, EINVAL);
                return;
        }
        /* data stored as is (incompressible) goes from the image file to the kernel by
         * splice: one copy, into the page cache, instead of three (a read into the block
         * cache, a copy into buf, the reply's write). Only while the file still holds the
         * range: a splice past its end would be a short reply, which the kernel takes for
         * the file's end, where squash_read fails with EIO. */
        uint64_t pos;
        size_t len;
        struct stat st;
        if (squash_extent(&ll->fs, inode, (uint64_t) off, size, &pos, &len) == 0 && fstat(ll->fs.fd, &st) == 0 &&
            (uint64_t) st.st_size >= pos + len) {
                struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
                bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
                bv.buf[0].fd = ll->fs.fd;
                bv.buf[0].pos = (off_t) pos;
                fuse_reply_data(req, &bv, 0);
                return;
        }
        _cleanup_free_ char *buf = malloc(size ? size : 1);
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        ssize_t n = squash_read(&ll->fs, inode, (uint64_t) off, size, buf);
        if (n < 0)
                fuse_reply_err(req, (int) -n);
        else
                fuse_reply_buf(req, buf, (size_t) n);
}

/* Replies of data from the image file (op_read) are spliced where the kernel takes them. */
static void op_init(void *userdata, struct fuse_conn_info *conn)
{
        (void) userdata;
        if (conn->capable & FUSE_CAP_SPLICE_WRITE)
                conn->want |= FUSE_CAP_SPLICE_WRITE;
}

static const struct fuse_lowlevel_ops sqfs_ops = {
        .init = op_init,
        .lookup = op_lookup,
        .forget = sqfs_ll_op_forget,
        .getattr = op_getattr,
        .readlink = op_readlink,
        .open = op_open,
        .read = op_read,
        .release = sqfs_ll_op_release,
        .opendir = op_opendir,
        .readdir = op_readdir,
        .readdirplus = op_readdirplus,
        .releasedir = sqfs_ll_op_releasedir,
        .statfs = stfs_ll_op_statfs,
        /* no getxattr, listxattr: squashfuse's xattr reader follows unchecked references and
         * sizes, and on a nosuid mount in a user namespace the only xattrs that would take
         * effect, file capabilities, do not (ENOSYS: the kernel stops asking) */
        .create = sqfs_ll_op_create,
};

/* Fresh memory costs a page fault per 4 KiB page on first touch, dear on virtual machines
 * (an order of magnitude more than a page populated by one madvise: docs/performance.md). A server keeps its heap while
 * requests come (128 KiB blocks from the heap, freed memory kept), and a pushed file is decompressed into a populated
 * mapping of its own. Its heap is not populated ahead (image_serve_worker tells why). Once the
 * mount has been idle for IDLE_MS, caches and heap are given back so that a long-running
 * instance's server stays small. */
#define IDLE_MS 2000

static void heap_keep(void)
{
        mallopt(M_MMAP_THRESHOLD, 16 << 20); /* 128 KiB blocks come from the heap, not mmap */
        mallopt(M_TRIM_THRESHOLD, 64 << 20); /* and free() keeps it */
}

/* Every thread's caches emptied, the heap trimmed: called with pool.busy held exclusively,
 * so that no request is being answered. The threads' receive buffers (libfuse's 1 MiB each,
 * of which requests to a read-only mount touch a page or two) stay: each thread is blocked
 * in a read into its own. */
static int heap_release(void)
{
        int r = 0;
        /* from here on, freed memory goes back at once */
        mallopt(M_TRIM_THRESHOLD, 128 << 10);
        for (unsigned i = 0; i < SERVE_THREADS_MAX; i++) {
                struct sqfs_handle *h = atomic_load(&pool.handle[i]);
                char *small = atomic_load(&pool.small[i]);
                if (h && sqfs_handle_reset_caches(h) < 0)
                        r = -ENOMEM;
                if (small)
                        madvise(small, PUSH_SMALL, MADV_DONTNEED);
        }
        malloc_trim(0);
        return r;
}

/* A serving thread: its own squashfs handle (the first thread's is the image's), then
 * requests until the mount goes away (ENODEV) or its handle cannot be opened. The unique
 * id of the request it answers is kept in its slot of in_flight, memory shared with the
 * monitor (image/serve.c), which answers that request with EIO should this process die
 * before it does. */
static void *serve_thread(void *arg)
{
        unsigned i = (unsigned) (uintptr_t) arg;
        struct fuse_buf buf = {0};
        struct hutch_error e = HUTCH_ERROR_INIT;
        struct image img = *pool.img;
        img.sqfs = NULL;
        own = i == 0 ? pool.img->sqfs : sqfs_handle_open(&img, &e) == 0 ? img.sqfs : NULL;
        atomic_store(&pool.handle[i], own);
        push_buf = mmap(NULL, PUSH_SMALL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (push_buf == MAP_FAILED)
                push_buf = NULL;
        atomic_store(&pool.small[i], push_buf);
        while (own) {
                int r = fuse_session_receive_buf(pool.se, &buf);
                if (r == -EINTR || r == -EAGAIN)
                        continue;
                if (r <= 0)
                        break;
                /* struct fuse_in_header (40 bytes): len, opcode, unique id */
                uint64_t unique;
                memcpy(&unique, (char *) buf.mem + 8, sizeof unique);
                pthread_rwlock_rdlock(&pool.busy);
                pool.in_flight[i] = unique;
                fuse_session_process_buf(pool.se, &buf);
                pool.in_flight[i] = 0;
                atomic_fetch_add(&pool.answered, 1);
                pthread_rwlock_unlock(&pool.busy);
        }
        free(buf.mem);
        inflate_thread_done();
        image_thread_done();
        atomic_fetch_sub(&pool.running, 1);
        return NULL;
}

/* The CPUs this process may run on, which the worker counts before it confines itself
 * (sched_getaffinity is not on its allow-list). */
static unsigned cpus_usable(void)
{
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) < 0)
                return 1;
        unsigned n = (unsigned) CPU_COUNT(&set);
        return n < 1 ? 1 : n > SERVE_THREADS_MAX ? SERVE_THREADS_MAX : n;
}

/* The threads start. Threads only where squashfuse maps inode numbers without a table
 * (its 64-bit mapping, ino_data NULL), which every thread's handle then computes alike. */
static unsigned threads_start(pthread_t *t)
{
        unsigned n = own_ll()->ino_data == NULL ? pool.n : 1, started = 0;
        for (unsigned i = 0; i < n; i++) {
                atomic_fetch_add(&pool.running, 1);
                if (pthread_create(&t[started], NULL, serve_thread, (void *) (uintptr_t) i) != 0) {
                        atomic_fetch_sub(&pool.running, 1);
                        break;
                }
                started++;
        }
        return started;
}

/* Serve requests until the owner exits (owner_fd polls ready) or the mount goes away.
 * Takes fuse_fd. This thread serves no request: it watches the owner and the mount, and
 * gives caches and heap back once no request came for IDLE_MS. Returns false when the
 * threads may still be serving (the owner is gone, or memory could not be given back):
 * the process is then to end without freeing what they use. */
static bool serve(struct image *img, int fuse_fd, int owner_fd, volatile uint64_t *in_flight)
{
        char *argv[] = {"hutch-squashfuse", NULL};
        struct fuse_args args = FUSE_ARGS_INIT(1, argv);
        char dev[32];
        pthread_t t[SERVE_THREADS_MAX];

        /* the user data: the image's handle, for squashfuse's own operations (forget,
         * release, statfs), which use nothing of it that a thread changes */
        struct fuse_session *se = fuse_session_new(&args, &sqfs_ops, sizeof sqfs_ops, &img->sqfs->ll);
        snprintf(dev, sizeof dev, "/dev/fd/%d", fuse_fd);
        /* libfuse >= 3.3: a /dev/fd/N mountpoint means "already mounted, serve this fd" */
        if (!se || fuse_session_mount(se, dev) != 0) {
                if (se)
                        fuse_session_destroy(se);
                close(fuse_fd);
                return true;
        }
        pool.se = se;
        pool.img = img;
        pool.in_flight = in_flight;
        own = img->sqfs;
        unsigned n = threads_start(t);
        if (n > 0)
                inflate_helper_start(pool.n);
        /* the mount's end polls as POLLERR on its fd, with no event asked for */
        struct pollfd p[2] = {{.fd = owner_fd, .events = POLLIN}, {.fd = fuse_fd, .events = 0}};
        uint_fast64_t seen = UINT_FAST64_MAX;
        bool released = false, ended = n == 0;
        while (!ended) {
                int ready = poll(p, 2, IDLE_MS);
                if (ready < 0 && errno == EINTR)
                        continue;
                if (ready != 0 || atomic_load(&pool.running) == 0)
                        break;
                uint_fast64_t now = atomic_load(&pool.answered);
                if (now != seen) {
                        seen = now;
                        released = false;
                } else if (!released) {
                        pthread_rwlock_wrlock(&pool.busy);
                        /* no cache to serve from: the mount fails (ENOTCONN) */
                        ended = heap_release() < 0;
                        pthread_rwlock_unlock(&pool.busy);
                        released = true;
                        if (ended)
                                return false;
                }
        }
        /* the cache entries being written are finished first (0.8 s at most: within the
         * monitor's WORKER_GRACE_MS): the next start of the image finds them */
        for (int i = 0; i < 80 && (atomic_load(&pool.storing) > 0 || inflate_ahead_settle()); i++)
                (void) poll(NULL, 0, 10); /* the allow-list's sleep */
        if (p[0].revents || (atomic_load(&pool.running) > 0 && !(p[1].revents & (POLLERR | POLLHUP | POLLNVAL))))
                return false;
        /* the mount is gone: every thread ends with ENODEV */
        for (unsigned i = 0; i < n; i++)
                pthread_join(t[i], NULL);
        inflate_helper_stop();
        for (unsigned i = 0; i < SERVE_THREADS_MAX; i++) {
                struct sqfs_handle *h = atomic_exchange(&pool.handle[i], NULL);
                char *small = atomic_exchange(&pool.small[i], NULL);
                if (h && i > 0)
                        sqfs_handle_free(h);
                if (small)
                        munmap(small, PUSH_SMALL);
        }
        pool.se = NULL;
        free(pushed.slot);
        memset(&pushed, 0, sizeof pushed);
        fuse_session_destroy(se); /* closes fuse_fd */
        return true;
}

/* The device the worker serves the mount on: its own clone of the mount's (blank: opened
 * blank), where it can be had, else the mount's. The kernel keeps each device's requests
 * apart: those read from the clone are answered through it alone, and ended (with
 * ECONNABORTED) when its last copy closes, the mount staying up while the monitor holds
 * the mount's device. The monitor holds a copy of the clone too, so that it can answer
 * with EIO the requests in_flight names once this process is gone; closing the clone then
 * ends the ones a thread had read but not yet named (killed between the read and the
 * store), which would otherwise wait for an answer for ever. Takes blank. */
static int fuse_clone(int blank, int fuse)
{
        uint32_t from = (uint32_t) fuse;
        if (blank < 0)
                return fuse;
        if (ioctl(blank, FUSE_DEV_IOC_CLONE, &from) < 0) {
                close(blank);
                return fuse;
        }
        return blank;
}

/* The worker's life: open the cache folder (of cache_max bytes; 0: none) and confine
 * itself while the launcher works up to the mount, wait for the mount on sock (which it
 * takes), give the monitor its copy of the FUSE fd and the image's name on ctl, serve,
 * clean up. Ends at once when sock's other end closes with nothing sent (a launch that
 * failed first). The heap is not populated ahead: the launcher reaches the mount first and
 * waits there, and a populate cost more than the faults it saves. */
int image_serve_worker(int sock, int owner_fd, int ctl, uint64_t cache_max, volatile uint64_t *in_flight)
{
        int fds[2] = {-EBADF, -EBADF};
        struct serve_msg m;
        struct serve_filter filter;
        heap_keep();
        pool.n = cpus_usable();
        /* the cache only where Landlock keeps the worker beneath it (see landlock_beneath) */
        int cdir = inflate_cache_open(cache_max, serve_landlock_available());
        /* the worker's own device of the mount, once cloned (fuse_clone) */
        int own_dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        int keep[] = {sock, owner_fd, ctl, cdir, own_dev};
        int r = serve_filter_build(SERVE_WORKER, sock, ctl, cdir >= 0, &filter);
        if (r >= 0)
                r = serve_confine(&filter, keep, ELEMENTSOF(keep), cdir);
        if (r < 0)
                return SERVE_EXIT_CONFINE; /* the monitor answers the mount with EIO */
        ssize_t n = recv_fds(sock, &m, sizeof m, fds, 2);
        close(sock);
        bool ok = n == (ssize_t) sizeof m && fds[0] >= 0 && fds[1] >= 0;
        if (ok) {
                int dev[2] = {fds[0], fuse_clone(own_dev, fds[0])};
                m.path[sizeof m.path - 1] = 0;
                ok = send_fds(ctl, m.path, strlen(m.path) + 1, dev, 2) == 0;
                if (dev[1] != fds[0]) {
                        close(fds[0]);
                        fds[0] = dev[1];
                }
        } else if (own_dev >= 0)
                close(own_dev);
        close(ctl);
        if (ok) {
                struct image img = {
                        .format = m.format, .fd = fds[1], .offset = m.offset, .size = m.size, .path = m.path};
                struct hutch_error e = HUTCH_ERROR_INIT;
                inflate_cache_image(img.fd, img.offset);
                if (sqfs_handle_open(&img, &e) == 0) {
                        /* the threads still serve: the process ends now, with them */
                        if (!serve(&img, fds[0], owner_fd, in_flight))
                                return r;
                        fds[0] = -EBADF;
                        sqfs_handle_free(img.sqfs);
                } else /* the monitor says so and answers the mount's requests with EIO */
                        r = SERVE_EXIT_UNREADABLE;
        }
        for (int i = 0; i < 2; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        inflate_thread_done();
        inflate_cache_done();
        image_thread_done();
        return r;
}
