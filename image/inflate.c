/* Whole regular files decompressed for the image server's push-ahead (image/worker.c),
 * with the inflate helper thread that shares a big file's blocks with its opener, and the
 * server's side of the decompressed-file cache (image/cache.c): its folder, the image's
 * part of the keys, its count (under cache.lock: every serving thread puts entries) and
 * each thread's open fragment entries. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-internal.h"
#include "util/log.h"
#include "util/util.h"

/* The decompressed-file cache (image/cache.c): its folder, opened by inflate_cache_open()
 * before the worker confines itself (negative: none) */
static struct {
        int dirfd;
        uint64_t max;
        pthread_mutex_t lock;      /* over used */
        int64_t used;              /* the folder's bytes as this server counts them; -1: not counted yet */
        struct file_cache_key key; /* the image's part of every entry's key */
} cache = {.dirfd = -ENOTSUP, .lock = PTHREAD_MUTEX_INITIALIZER};

void inflate_cache_image(int image_fd, uint64_t offset)
{
        struct stat st;
        cache.used = -1;
        if (cache.dirfd < 0 || fstat(image_fd, &st) < 0)
                cache.dirfd = -ENOTSUP; /* none: not closed, as the worker ends soon */
        else
                cache.key = (struct file_cache_key){
                        .dev = st.st_dev,
                        .ino = st.st_ino,
                        .size = (uint64_t) st.st_size,
                        .mtime_ns = (uint64_t) st.st_mtim.tv_sec * 1000000000u + (uint64_t) st.st_mtim.tv_nsec,
                        .ctime_ns = (uint64_t) st.st_ctim.tv_sec * 1000000000u + (uint64_t) st.st_ctim.tv_nsec,
                        .offset = offset};
}

int inflate_cache_dir(void)
{
        return cache.dirfd;
}

int inflate_cache_open(uint64_t max, bool usable)
{
        cache.max = max;
        cache.dirfd = -ENOTSUP;
        if (max > 0 && usable) {
                cache.dirfd = file_cache_open(geteuid(), getenv("XDG_RUNTIME_DIR"), true);
                if (cache.dirfd < 0)
                        log_debug("no decompressed-file cache: %s", strerror(-cache.dirfd));
        }
        return cache.dirfd;
}

struct file_cache_key inflate_cache_key(uint64_t inode)
{
        struct file_cache_key k = cache.key;
        k.inode = inode;
        return k;
}

void inflate_cache_done(void)
{
        if (cache.dirfd >= 0)
                close(cache.dirfd);
        cache.dirfd = -ENOTSUP;
}

/* Fragment entries (the tails of files, and whole small ones, packed together) are keyed
 * by the fragment's index with the top bit set (inode numbers have 32). */
#define FRAG_KEY (1ull << 63)
/* The fragment entries a thread has open (many small files share a block: one pread
 * each once the entry is open), oldest first out. */
#define FRAG_FDS 8
static __thread struct {
        uint32_t idx[FRAG_FDS];
        int fd[FRAG_FDS]; /* 0: free (fds of entries are never 0, stdin being open) */
        unsigned next;
} frag_fds;

static int frag_fd(const struct file_cache_key *key, uint32_t idx)
{
        for (unsigned i = 0; i < FRAG_FDS; i++)
                if (frag_fds.fd[i] > 0 && frag_fds.idx[i] == idx)
                        return frag_fds.fd[i];
        int fd = file_cache_get(cache.dirfd, key, 0);
        if (fd <= 0)
                return -1;
        unsigned i = frag_fds.next++ % FRAG_FDS;
        if (frag_fds.fd[i] > 0)
                close(frag_fds.fd[i]);
        frag_fds.fd[i] = fd;
        frag_fds.idx[i] = idx;
        return fd;
}

void inflate_thread_done(void)
{
        for (unsigned i = 0; i < FRAG_FDS; i++)
                if (frag_fds.fd[i] > 0)
                        close(frag_fds.fd[i]);
        memset(&frag_fds, 0, sizeof frag_fds);
}

static void frag_ahead(sqfs *fs, uint32_t idx, bool missed);
static bool frag_wait(uint32_t idx);

/* The tail of a file from its fragment block: from the cache when the block is there
 * (only the bytes wanted are read), else inflated and noted in *put for the cache. A read
 * of the fragment blocks in their order has the inflate helper inflate the next ones into
 * the cache meanwhile (frag_ahead). */
static int read_tail(sqfs *fs, sqfs_inode *inode, char *out, size_t want, struct frag_put *put)
{
        struct file_cache_key key = cache.key;
        uint32_t idx = inode->xtra.reg.frag_idx;
        key.inode = FRAG_KEY | idx;
        if (inflate_cache_dir() >= 0) {
                int fd = frag_fd(&key, idx);
                /* the helper inflating this very block: its entry, once there */
                if (fd < 0 && frag_wait(idx))
                        fd = frag_fd(&key, idx);
                frag_ahead(fs, idx, fd < 0);
                if (fd >= 0 && pread_full(fd, out, want, inode->xtra.reg.frag_off) == (ssize_t) want)
                        return 0;
        }
        const char *data;
        sqfs_block *block;
        if (squash_frag(fs, inode, &data, &block) < 0)
                return -EIO;
        memcpy(out, data, want); /* cached: not disposed */
        if (put && cache.dirfd >= 0)
                *put = (struct frag_put){.data = block->data, .size = block->size, .key = key};
        return 0;
}

/* A data block of a file decompressed whole: where it lies in the image, its header, and
 * where it goes in the file. */
struct whole_block {
        uint64_t pos, off;
        uint32_t header;
        size_t want;
};

/* The blocks of one file, taken one at a time by the opener's thread and, for a big file,
 * the inflate helper (see below); the first error stops both. */
struct whole_job {
        sqfs *fs;
        char *out;
        const struct whole_block *b;
        size_t n;
        atomic_size_t next;
        atomic_int err;
};

/* Every block is to fill exactly its part of the file: an uncompressed one of another
 * length than that part, or one that inflates to another, is corrupt. */
static int inflate_one(sqfs *fs, const struct whole_block *b, char *out, char *in)
{
        size_t bs = fs->sb.block_size;
        bool compressed;
        uint32_t csize;
        sqfs_data_header(b->header, &compressed, &csize);
        if (csize > (compressed ? bs : b->want) || b->pos > fs->sb.bytes_used || csize > fs->sb.bytes_used - b->pos)
                return -EIO;
        if (!compressed && csize > 0 && csize != b->want)
                return -EIO;
        if (csize == 0) /* a hole, zeros already */
                return 0;
        char *dst = compressed ? in : out + b->off;
        if (pread(fs->fd, dst, csize, (off_t) (b->pos + fs->offset)) != (ssize_t) csize)
                return -EIO;
        size_t got = b->want;
        if (compressed && (fs->decompressor(in, csize, out + b->off, &got) != SQFS_OK || got != b->want))
                return -EIO;
        return 0;
}

static void inflate_blocks(struct whole_job *j)
{
        _cleanup_free_ char *in = malloc(j->fs->sb.block_size);
        if (!in) /* the other taker goes on; the opener, alone, fails */
                return;
        for (size_t i; !atomic_load(&j->err) && (i = atomic_fetch_add(&j->next, 1)) < j->n;) {
                int r = inflate_one(j->fs, &j->b[i], j->out, in);
                if (r < 0)
                        atomic_store(&j->err, r);
        }
}

/* The inflate helper: a thread of the server that shares the blocks of a big file being
 * pushed with the thread that opens it. While the opener waits for its OPEN, the CPU it
 * ran on is free, and an image's first start is mostly the inflating of its binaries and
 * libraries (a Python binary is 55 gzip blocks). Started with the serving threads where
 * the server may use more than one CPU, idle on a condition variable otherwise; one file
 * at a time (another opener meanwhile inflates alone), offered before the opener starts
 * and taken back when the opener is done before the helper woke. */
#define HELP_MIN_BLOCKS 8
/* Read-ahead of fragment blocks. A tree read in the order the image stores it (a
 * site-packages, a first start's imports) reads each fragment block, then the next: on an
 * image's first start each is inflated by the serving thread while the opener waits, and
 * the other CPU idles. Where the fragments a stream of opens reads step forward (the next
 * one, or one more; up to STREAMS streams at once), the helper inflates the AHEAD blocks
 * after it into the cache, where the opens to come find them. Only with the cache: the entries are where the serving
 * threads look. The helper's whole-file jobs come first (an opener waits on those); the queue holds what is to be read
 * ahead, oldest first, and a serving thread that needs a queued block takes it back and inflates it itself, or waits
 * for the one the helper is inflating. */
#define AHEAD 2
#define AHEAD_QUEUE 4
#define STREAMS 4
#define FRAG_NONE UINT32_MAX
struct ahead {
        const sqfs *fs; /* the queuing thread's handle, freed only after the helper stops */
        uint64_t pos;
        uint32_t hdr, idx;
};
static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct whole_job *job; /* offered or being worked on */
        bool taken, stop, started;
        pthread_t thread;
        struct ahead queue[AHEAD_QUEUE];
        unsigned queued;
        uint32_t inflating;                   /* the fragment block the helper inflates (FRAG_NONE) */
        uint32_t recent[4 * STREAMS * AHEAD]; /* the blocks queued last, not to be queued again */
        unsigned recent_next;
        /* the block each stream of reads read last (FRAG_NONE: none): ranks of a job read
         * their parts of a tree at once, and each steps forward on its own */
        uint32_t stream[STREAMS];
        unsigned stream_next;
} helper = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .inflating = FRAG_NONE};

/* One block of the queue into the cache, unless it is there (helper.lock not held). */
static void ahead_inflate(const struct ahead *a, char *in, char *out)
{
        struct file_cache_key key = cache.key;
        key.inode = FRAG_KEY | a->idx;
        int fd = file_cache_get(cache.dirfd, &key, 0);
        if (fd >= 0) {
                close(fd);
                return;
        }
        ssize_t n = squash_block_inflate(a->fs, a->pos, a->hdr, in, out);
        if (n > 0)
                inflate_cache_put(&key, out, (size_t) n, "fragment block");
}

static void *helper_main(void *arg)
{
        (void) arg;
        pthread_mutex_lock(&helper.lock);
        for (;;) {
                while ((!helper.job || helper.taken) && !helper.queued && !helper.stop)
                        pthread_cond_wait(&helper.cond, &helper.lock);
                if (helper.stop)
                        break;
                if (helper.job && !helper.taken) {
                        struct whole_job *j = helper.job;
                        helper.taken = true;
                        pthread_mutex_unlock(&helper.lock);
                        inflate_blocks(j);
                        pthread_mutex_lock(&helper.lock);
                        helper.job = NULL;
                        helper.taken = false;
                        pthread_cond_broadcast(&helper.cond);
                        continue;
                }
                struct ahead a = helper.queue[0];
                memmove(helper.queue, helper.queue + 1, --helper.queued * sizeof helper.queue[0]);
                helper.inflating = a.idx;
                pthread_mutex_unlock(&helper.lock);
                /* buffers of the size of the block's own handle (each thread's handle read
                 * the superblock itself: a file changed meanwhile may disagree), back to the
                 * heap after it, which keeps them for the next block (heap_keep) and gives
                 * them back when the server idles */
                size_t bs = a.fs->sb.block_size;
                char *in = malloc(bs), *out = malloc(bs);
                if (in && out) /* else the serving thread that needs it inflates it */
                        ahead_inflate(&a, in, out);
                free(in);
                free(out);
                pthread_mutex_lock(&helper.lock);
                helper.inflating = FRAG_NONE;
                pthread_cond_broadcast(&helper.cond);
        }
        helper.queued = 0;
        pthread_mutex_unlock(&helper.lock);
        image_thread_done();
        return NULL;
}

static bool ahead_recent(uint32_t idx)
{
        for (unsigned i = 0; i < ELEMENTSOF(helper.recent); i++)
                if (helper.recent[i] == idx)
                        return true;
        return false;
}

/* Whether block idx steps a stream forward (the block after the one it read last, or one
 * more), the stream then at idx; a read of no stream starts one, in place of the oldest.
 * helper.lock held. */
static bool stream_step(uint32_t idx)
{
        for (unsigned s = 0; s < STREAMS; s++) {
                uint32_t last = helper.stream[s];
                if (last != FRAG_NONE && idx >= last && idx - last <= 2) {
                        helper.stream[s] = idx;
                        return idx != last;
                }
        }
        helper.stream[helper.stream_next++ % STREAMS] = idx;
        return false;
}

/* An opener reads fragment block idx (missed: not from the cache): where that steps a
 * stream forward, the AHEAD blocks after it are queued for the helper, if the stream is
 * one the cache does not serve already: idx had to be inflated, or was read ahead itself.
 * A tree whose blocks an earlier start left in the cache costs the helper nothing. */
static void frag_ahead(sqfs *fs, uint32_t idx, bool missed)
{
        pthread_mutex_lock(&helper.lock);
        bool step = helper.started && stream_step(idx) && (missed || ahead_recent(idx));
        pthread_mutex_unlock(&helper.lock);
        for (uint32_t j = idx + 1; step && j <= idx + AHEAD && j < fs->sb.fragments; j++) {
                pthread_mutex_lock(&helper.lock);
                bool skip = ahead_recent(j) || helper.queued == AHEAD_QUEUE;
                pthread_mutex_unlock(&helper.lock);
                struct ahead a = {.fs = fs, .idx = j};
                /* the fragment table through this thread's handle, outside the lock */
                if (skip || squash_frag_where(fs, j, &a.pos, &a.hdr) < 0)
                        continue;
                pthread_mutex_lock(&helper.lock);
                if (!ahead_recent(j) && helper.queued < AHEAD_QUEUE) {
                        helper.queue[helper.queued++] = a;
                        helper.recent[helper.recent_next++ % ELEMENTSOF(helper.recent)] = j;
                        pthread_cond_broadcast(&helper.cond);
                }
                pthread_mutex_unlock(&helper.lock);
        }
}

/* A serving thread needs fragment block idx, not in the cache: still queued, it is taken
 * back (the caller inflates it); being inflated by the helper, this waits for its end.
 * true: the entry may be there now (waited for, or read ahead lately). */
static bool frag_wait(uint32_t idx)
{
        bool waited = false;
        pthread_mutex_lock(&helper.lock);
        for (unsigned i = 0; i < helper.queued; i++)
                if (helper.queue[i].idx == idx) {
                        memmove(helper.queue + i, helper.queue + i + 1, (--helper.queued - i) * sizeof helper.queue[0]);
                        break;
                }
        while (helper.inflating == idx) {
                pthread_cond_wait(&helper.cond, &helper.lock);
                waited = true;
        }
        /* read ahead a moment ago, after the caller's look: looked up again, not inflated
         * and put twice (which would count it twice towards the cap) */
        waited = waited || ahead_recent(idx);
        pthread_mutex_unlock(&helper.lock);
        return waited;
}

bool inflate_ahead_settle(void)
{
        pthread_mutex_lock(&helper.lock);
        helper.queued = 0;
        bool busy = helper.inflating != FRAG_NONE;
        pthread_mutex_unlock(&helper.lock);
        return busy;
}

/* Started after the serving threads, which may already be answering (a thread's start is
 * not to delay the mount's first answer): what they read of the helper, under its lock. */
void inflate_helper_start(unsigned cpus)
{
        pthread_mutex_lock(&helper.lock);
        helper.stop = false;
        helper.queued = 0;
        for (unsigned i = 0; i < ELEMENTSOF(helper.recent); i++)
                helper.recent[i] = FRAG_NONE;
        for (unsigned i = 0; i < STREAMS; i++)
                helper.stream[i] = FRAG_NONE;
        pthread_mutex_unlock(&helper.lock);
        bool started = cpus > 1 && pthread_create(&helper.thread, NULL, helper_main, NULL) == 0;
        pthread_mutex_lock(&helper.lock);
        helper.started = started;
        pthread_mutex_unlock(&helper.lock);
}

void inflate_helper_stop(void)
{
        pthread_mutex_lock(&helper.lock);
        bool started = helper.started;
        helper.started = false; /* nothing more is offered or queued */
        helper.stop = true;
        pthread_cond_broadcast(&helper.cond);
        pthread_mutex_unlock(&helper.lock);
        if (started)
                pthread_join(helper.thread, NULL);
}

/* The blocks of j, with the helper's hand where it is free and the file big enough. */
static int inflate_job(struct whole_job *j)
{
        bool offered = false;
        if (j->n >= HELP_MIN_BLOCKS) {
                pthread_mutex_lock(&helper.lock);
                if (helper.started && !helper.job) {
                        helper.job = j;
                        offered = true;
                        pthread_cond_broadcast(&helper.cond);
                }
                pthread_mutex_unlock(&helper.lock);
        }
        inflate_blocks(j);
        if (offered) {
                pthread_mutex_lock(&helper.lock);
                if (!helper.taken && helper.job == j)
                        helper.job = NULL; /* not woken yet: nothing of j is its */
                while (helper.job == j)
                        pthread_cond_wait(&helper.cond, &helper.lock);
                pthread_mutex_unlock(&helper.lock);
        }
        if (atomic_load(&j->err))
                return atomic_load(&j->err);
        return atomic_load(&j->next) < j->n ? -ENOMEM : 0;
}

/* Decompress a whole regular file into out (zeroed, of at least its size): data blocks go
 * from the image straight into place, not through squashfuse's block cache (whose fresh
 * 128 KiB blocks would each cost 32 page faults), then the tail from its fragment block. */
int inflate_whole(sqfs *fs, sqfs_inode *inode, char *out, struct frag_put *put)
{
        uint64_t size = inode->xtra.reg.file_size, off = 0;
        size_t bs = fs->sb.block_size, n = 0;
        sqfs_blocklist bl;
        sqfs_blocklist_init(fs, inode, &bl);
        /* the block list is in the inode: as many entries as blocks the file's size asks */
        _cleanup_free_ struct whole_block *b = bl.remain > 0 ? calloc(bl.remain, sizeof *b) : NULL;
        if (bl.remain > 0 && !b)
                return -ENOMEM;
        while (bl.remain > 0) {
                if (sqfs_blocklist_next(&bl) != SQFS_OK)
                        return -EIO;
                size_t want = size - off < bs ? (size_t) (size - off) : bs;
                b[n++] = (struct whole_block){.pos = bl.block, .off = off, .header = bl.header, .want = want};
                off += want;
        }
        struct whole_job j = {.fs = fs, .out = out, .b = b, .n = n};
        int r = n > 0 ? inflate_job(&j) : 0;
        if (r < 0)
                return r;
        return off < size ? read_tail(fs, inode, out + off, (size_t) (size - off), put) : 0;
}

void image_inflate_helper(bool on)
{
        if (!on)
                inflate_helper_stop();
        else {
                pthread_mutex_lock(&helper.lock);
                bool started = helper.started;
                pthread_mutex_unlock(&helper.lock);
                if (!started)
                        inflate_helper_start(2);
        }
}

int image_push_read(sqfs *fs, sqfs_inode *inode, char *out)
{
        cache.dirfd = -ENOTSUP;
        return inflate_whole(fs, inode, out, NULL);
}

void inflate_cache_put(const struct file_cache_key *key, const void *data, size_t size, const char *what)
{
        pthread_mutex_lock(&cache.lock);
        int r = file_cache_put(cache.dirfd, key, data, size, cache.max, &cache.used);
        pthread_mutex_unlock(&cache.lock);
        if (r < 0 && r != -EFBIG)
                log_debug("cannot keep a decompressed %s: %s", what, strerror(-r));
}
