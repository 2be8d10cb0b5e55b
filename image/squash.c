/* Reading a squashfs that anyone may have crafted: the superblock and every table it names
 * are checked before squashfuse sees the image, and what squashfuse's own code does not
 * bound is done here instead: metadata cursors, inodes, directories and file data are read
 * through the bounded readers below, over squashfuse's block caches. squashfuse itself only
 * reads inodes at checked references, table entries at checked indexes, and blocks. */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "image-internal.h"
#include "util/util.h"

#define MD_SIZE SQUASHFS_METADATA_SIZE
#define NO_TABLE UINT64_MAX
#define BAD_INODE UINT64_MAX /* an inode reference whose block lies past any file */
/* Blocks start after the superblock. squashfuse's caches mark a free slot with index 0: a
 * lookup of position 0 finds a slot with no block in it. */
#define FIRST_BLOCK SQUASHFS_SB_SIZE

static uint64_t get_le(const uint8_t *p, size_t n)
{
        uint64_t v = 0;
        for (size_t i = n; i-- > 0;)
                v = v << 8 | p[i];
        return v;
}

/* An index of count entries of each bytes (its metadata blocks' positions, 8 bytes each) at
 * start: inside the filesystem, after the directory table. */
static bool table_fits(uint64_t start, uint64_t count, uint64_t each, uint64_t dir_start, uint64_t used)
{
        uint64_t len = (count * each + MD_SIZE - 1) / MD_SIZE * 8;
        return start > dir_start && start <= used && len <= used - start;
}

static int check_tables(int fd, uint64_t offset, const uint8_t *sb, uint64_t used, struct hutch_error *err)
{
        uint64_t inodes = get_le(sb + 4, 4), fragments = get_le(sb + 16, 4), no_ids = get_le(sb + 26, 2);
        uint64_t root = get_le(sb + 32, 8), id_start = get_le(sb + 48, 8), xattr_start = get_le(sb + 56, 8);
        uint64_t inode_start = get_le(sb + 64, 8), dir_start = get_le(sb + 72, 8);
        uint64_t frag_start = get_le(sb + 80, 8), export_start = get_le(sb + 88, 8);

        if (inodes == 0 || no_ids == 0)
                return hutch_err(err, -EINVAL, "corrupt squashfs superblock: %s is 0", inodes ? "no_ids" : "inodes");
        if (inode_start < 96 || dir_start <= inode_start || dir_start >= used)
                return hutch_err(err, -EINVAL, "corrupt squashfs superblock: inode or directory table out of place");
        if ((root >> 16) >= dir_start - inode_start || (root & 0xffff) >= MD_SIZE || root >> 48)
                return hutch_err(err, -EINVAL, "corrupt squashfs superblock: root inode outside the inode table");
        if (!table_fits(id_start, no_ids, 4, dir_start, used))
                return hutch_err(err, -EINVAL, "corrupt squashfs superblock: id table out of place");
        if (fragments && !table_fits(frag_start, fragments, 16, dir_start, used))
                return hutch_err(err, -EINVAL, "corrupt squashfs superblock: fragment table out of place");
        if (export_start != NO_TABLE && !table_fits(export_start, inodes, 8, dir_start, used))
                return hutch_err(err, -EINVAL, "corrupt squashfs superblock: export table out of place");
        if (xattr_start == NO_TABLE)
                return 0;
        uint8_t x[16];
        if (xattr_start <= dir_start || xattr_start > used - sizeof x ||
            pread_full(fd, x, sizeof x, (off_t) (offset + xattr_start)) != (ssize_t) sizeof x ||
            get_le(x, 8) >= xattr_start || !table_fits(xattr_start + sizeof x, get_le(x + 8, 4), 16, dir_start, used))
                return hutch_err(err, -EINVAL, "corrupt squashfs superblock: xattr table out of place");
        return 0;
}

int squashfs_read_check(int fd, uint64_t offset, uint64_t avail, uint8_t sb[SQUASHFS_SB_SIZE], struct hutch_error *err)
{
        ssize_t n = pread_full(fd, sb, SQUASHFS_SB_SIZE, (off_t) offset);
        if (n < 0)
                return hutch_err_sys(err, (int) n, "cannot read squashfs superblock");
        if ((size_t) n < SQUASHFS_SB_SIZE)
                return hutch_err(err, -EINVAL, "truncated squashfs image: no complete superblock");
        if (get_le(sb, 4) != SQUASHFS_MAGIC)
                return hutch_err(err, -EINVAL, "not a squashfs filesystem (bad magic)");
        if (get_le(sb + 28, 2) != 4 || get_le(sb + 30, 2) != 0)
                return hutch_err(err, -EINVAL, "unsupported squashfs version %u.%u", (unsigned) get_le(sb + 28, 2),
                                 (unsigned) get_le(sb + 30, 2));
        uint64_t used = get_le(sb + 40, 8), bs = get_le(sb + 12, 4), log = get_le(sb + 22, 2);
        if (used > avail)
                return hutch_err(err, -EINVAL,
                                 "truncated squashfs image: filesystem needs %llu bytes, only %llu present",
                                 (unsigned long long) used, (unsigned long long) avail);
        if (bs < 4096 || bs > SQUASHFS_FILE_MAX_SIZE || (bs & (bs - 1)) || log >= 32 || (1ull << log) != bs)
                return hutch_err(err, -EINVAL,
                                 "corrupt squashfs superblock: block size %llu (log %llu) is not a power of two "
                                 "between 4 KiB and 1 MiB",
                                 (unsigned long long) bs, (unsigned long long) log);
        int comp = (int) get_le(sb + 20, 2);
        if (!sqfs_decompressor_get(comp))
                return hutch_err(err, -EINVAL, "unsupported squashfs compression %d", comp);
        return check_tables(fd, offset, sb, used, err);
}

int squashfs_check(int fd, uint64_t offset, uint64_t avail, uint64_t *ret_size, struct hutch_error *err)
{
        uint8_t sb[SQUASHFS_SB_SIZE];
        int r = squashfs_read_check(fd, offset, avail, sb, err);
        if (r < 0)
                return r;
        if (ret_size)
                *ret_size = get_le(sb + 40, 8);
        return 0;
}

/* Every metadata block of a table: squashfuse copies entries out of them unchecked. */
static int check_table_blocks(sqfs *fs, const sqfs_table *t, uint64_t count, size_t each)
{
        uint64_t len = count * each;
        for (uint64_t i = 0; i * MD_SIZE < len; i++) {
                sqfs_off_t pos = (sqfs_off_t) t->blocks[i];
                sqfs_block *b;
                if (t->blocks[i] < FIRST_BLOCK || t->blocks[i] >= fs->sb.bytes_used ||
                    sqfs_md_cache(fs, &pos, &b) != SQFS_OK || !b)
                        return -EIO;
                uint64_t want = len - i * MD_SIZE < MD_SIZE ? len - i * MD_SIZE : MD_SIZE;
                if (b->size < want)
                        return -EIO;
        }
        return 0;
}

int squash_open_check(sqfs *fs, const uint8_t sb[SQUASHFS_SB_SIZE])
{
        /* what squashfuse read is what was checked (the file may have changed between) */
        if (memcmp(&fs->sb, sb, sizeof fs->sb) != 0)
                return -EIO;
        if (check_table_blocks(fs, &fs->id_table, fs->sb.no_ids, 4) < 0 ||
            check_table_blocks(fs, &fs->frag_table, fs->sb.fragments, sizeof(struct squashfs_fragment_entry)) < 0)
                return -EIO;
        sqfs_inode root;
        if (squash_inode_get(fs, fs->sb.root_inode, &root) < 0 || !S_ISDIR(root.base.mode))
                return -EIO;
        return 0;
}

/* ---- metadata */

/* Where squashfuse's sqfs_md_read would copy from past a block's end (a cursor's offset
 * beyond a short block), this refuses. */
static int md_read(sqfs *fs, sqfs_md_cursor *cur, void *buf, size_t size)
{
        char *out = buf;
        while (size > 0) {
                sqfs_off_t pos = cur->block;
                sqfs_block *b;
                if (pos < FIRST_BLOCK || (uint64_t) pos >= fs->sb.bytes_used ||
                    sqfs_md_cache(fs, &pos, &b) != SQFS_OK || !b || cur->offset > b->size)
                        return -EIO;
                size_t take = b->size - cur->offset < size ? b->size - cur->offset : size;
                if (out) {
                        memcpy(out, (char *) b->data + cur->offset, take);
                        out += take;
                }
                size -= take;
                cur->offset += take;
                if (cur->offset == b->size) {
                        cur->block = pos;
                        cur->offset = 0;
                }
        }
        return 0;
}

/* A cursor that starts inside a block between lo and hi (relative to the filesystem). */
static int md_cursor_check(sqfs *fs, const sqfs_md_cursor *cur, uint64_t lo, uint64_t hi)
{
        if (cur->block < 0 || (uint64_t) cur->block < lo || (uint64_t) cur->block >= hi)
                return -EIO;
        sqfs_md_cursor c = *cur;
        return md_read(fs, &c, NULL, 1);
}

static bool inode_fields_ok(const sqfs *fs, const sqfs_inode *i)
{
        uint64_t bs = fs->sb.block_size;
        if (i->base.uid >= fs->sb.no_ids || i->base.guid >= fs->sb.no_ids ||
            (i->base.mode & S_IFMT) != (sqfs_mode(i->base.inode_type) & S_IFMT))
                return false;
        switch (i->base.inode_type) {
        case SQUASHFS_REG_TYPE:
        case SQUASHFS_LREG_TYPE:
                if (i->xtra.reg.frag_idx == SQUASHFS_INVALID_FRAG)
                        return true;
                return i->xtra.reg.frag_idx < fs->sb.fragments && i->xtra.reg.frag_off < bs &&
                       i->xtra.reg.frag_off + i->xtra.reg.file_size % bs <= bs;
        case SQUASHFS_DIR_TYPE:
        case SQUASHFS_LDIR_TYPE:
                return i->xtra.dir.dir_size >= 3 && i->xtra.dir.offset < MD_SIZE &&
                       fs->sb.directory_table_start + i->xtra.dir.start_block < fs->sb.bytes_used;
        case SQUASHFS_SYMLINK_TYPE:
        case SQUASHFS_LSYMLINK_TYPE: return i->xtra.symlink_size < PATH_MAX;
        default: return true;
        }
}

int squash_inode_get(sqfs *fs, sqfs_inode_id id, sqfs_inode *ret)
{
        sqfs_md_cursor cur;
        if (id >> 48)
                return -EIO;
        sqfs_md_cursor_inode(&cur, id, (sqfs_off_t) fs->sb.inode_table_start);
        if (md_cursor_check(fs, &cur, fs->sb.inode_table_start, fs->sb.directory_table_start) < 0)
                return -EIO;
        /* squashfuse reads on from a cursor that starts inside its block: in bounds */
        if (sqfs_inode_get(fs, ret, id) != SQFS_OK || !inode_fields_ok(fs, ret))
                return -EIO;
        return 0;
}

sqfs_inode_id squash_inode_ref_checked(sqfs *fs, sqfs_inode_id id)
{
        sqfs_inode inode;
        return squash_inode_get(fs, id, &inode) == 0 ? id : BAD_INODE;
}

/* ---- directories: a listing is a run of headers {count - 1, inode block, first inode
 * number}, each followed by count entries {inode offset, number delta, type, name size - 1,
 * name}; the offset of an entry is the bytes of the listing before it. */
/* A large directory's inode carries an index: for each metadata block its listing spans,
 * the offset in the listing of the first header there, the block, and that header's first
 * name. Skip to the last indexed header before name (or at most off), to read on from it. */
static int dir_skip(struct squash_dir *d, const sqfs_inode *dir, const char *name, uint64_t off)
{
        sqfs_md_cursor cur = dir->next;
        bool moved = false;
        for (unsigned i = 0; i < dir->xtra.dir.idx_count; i++) {
                uint8_t x[12];
                char key[SQUASHFS_NAME_LEN + 1];
                if (md_read(d->fs, &cur, x, sizeof x) < 0)
                        return -EIO;
                uint64_t index = get_le(x, 4), start = get_le(x + 4, 4), len = get_le(x + 8, 4) + 1;
                if (len > SQUASHFS_NAME_LEN || md_read(d->fs, &cur, key, len) < 0)
                        return -EIO;
                key[len] = 0;
                if (name ? strcmp(key, name) > 0 : index > off)
                        break;
                if (index < d->off || index > d->total)
                        return -EIO;
                d->cur.block = (sqfs_off_t) (d->fs->sb.directory_table_start + start);
                d->cur.offset = (dir->xtra.dir.offset + index) % MD_SIZE;
                d->off = index;
                moved = true;
        }
        if (moved && md_cursor_check(d->fs, &d->cur, d->fs->sb.directory_table_start, d->fs->sb.bytes_used) < 0)
                return -EIO;
        return 0;
}

static int dir_start(sqfs *fs, const sqfs_inode *dir, const char *name, uint64_t off, struct squash_dir *ret)
{
        if (!S_ISDIR(dir->base.mode) || dir->xtra.dir.dir_size < 3)
                return -ENOTDIR;
        struct squash_dir d = {
                .fs = fs,
                .cur = {.block = (sqfs_off_t) (fs->sb.directory_table_start + dir->xtra.dir.start_block),
                        .offset = dir->xtra.dir.offset},
                .total = dir->xtra.dir.dir_size - 3,
        };
        if (d.total > 0 && md_cursor_check(fs, &d.cur, fs->sb.directory_table_start, fs->sb.bytes_used) < 0)
                return -EIO;
        if ((name || off > 0) && d.total > 0 && dir_skip(&d, dir, name, off) < 0)
                return -EIO;
        *ret = d;
        return 0;
}

int squash_dir_open(sqfs *fs, const sqfs_inode *dir, uint64_t off, struct squash_dir *ret)
{
        struct squash_dir d;
        int r = dir_start(fs, dir, NULL, off, &d);
        if (r < 0)
                return r;
        char name[SQUASHFS_NAME_LEN + 1];
        sqfs_dir_entry e;
        while (d.off < off) {
                r = squash_dir_next(&d, &e, name);
                if (r <= 0)
                        return r < 0 ? r : -EINVAL;
        }
        if (d.off != off)
                return -EINVAL;
        *ret = d;
        return 0;
}

static int dir_take(struct squash_dir *d, void *buf, size_t len)
{
        if (len > d->total - d->off)
                return -EIO;
        d->off += len;
        return md_read(d->fs, &d->cur, buf, len);
}

int squash_dir_next(struct squash_dir *d, sqfs_dir_entry *e, char name[SQUASHFS_NAME_LEN + 1])
{
        uint8_t h[12], x[8];
        e->offset = (sqfs_off_t) d->off; /* a header's offset is its first entry's */
        if (d->left == 0) {
                if (d->off >= d->total)
                        return 0;
                if (dir_take(d, h, sizeof h) < 0 || get_le(h, 4) >= 256)
                        return -EIO;
                d->left = (uint32_t) get_le(h, 4) + 1;
                d->start_block = (uint32_t) get_le(h + 4, 4);
                d->inode_number = (uint32_t) get_le(h + 8, 4);
        }
        if (dir_take(d, x, sizeof x) < 0)
                return -EIO;
        size_t len = get_le(x + 6, 2) + 1;
        int type = (int) get_le(x + 4, 2);
        if (len > SQUASHFS_NAME_LEN || type < SQUASHFS_DIR_TYPE || type > SQUASHFS_LSOCKET_TYPE ||
            dir_take(d, name, len) < 0)
                return -EIO;
        name[len] = 0;
        /* names the kernel would refuse or misread */
        if (strlen(name) != len || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return -EIO;
        d->left--;
        e->inode = (uint64_t) d->start_block << 16 | get_le(x, 2);
        e->inode_number = d->inode_number + (uint32_t) (int32_t) (int16_t) get_le(x + 2, 2);
        e->type = type;
        e->name = name;
        e->name_size = len;
        e->next_offset = (sqfs_off_t) d->off;
        return 1;
}

int squash_dir_lookup(sqfs *fs, const sqfs_inode *dir, const char *name, sqfs_dir_entry *ret)
{
        struct squash_dir d;
        char buf[SQUASHFS_NAME_LEN + 1];
        sqfs_dir_entry e;
        int r = dir_start(fs, dir, name, 0, &d);
        while (r >= 0 && (r = squash_dir_next(&d, &e, buf)) > 0) {
                int order = strcmp(buf, name);
                if (order == 0) {
                        *ret = e;
                        ret->name = NULL;
                        return 0;
                }
                if (order > 0) /* mksquashfs sorts a listing by strcmp */
                        break;
        }
        return r < 0 ? r : -ENOENT;
}

/* ---- file data */

/* The block of a data block list entry, or the fragment block of a file, checked to hold
 * at least want bytes from off. */
static int data_block(sqfs *fs, sqfs_cache *cache, uint64_t pos, uint32_t hdr, size_t off, size_t want,
                      sqfs_block **ret)
{
        bool compressed;
        uint32_t csize;
        sqfs_data_header(hdr, &compressed, &csize);
        if (csize > fs->sb.block_size || pos < FIRST_BLOCK || pos >= fs->sb.bytes_used ||
            csize > fs->sb.bytes_used - pos)
                return -EIO;
        if (sqfs_data_cache(fs, cache, (sqfs_off_t) pos, hdr, ret) != SQFS_OK || !*ret || (*ret)->size < off ||
            (*ret)->size - off < want)
                return -EIO;
        return 0;
}

int squash_frag(sqfs *fs, const sqfs_inode *inode, const char **ret_data, sqfs_block **ret_block)
{
        struct squashfs_fragment_entry f;
        size_t tail = (size_t) (inode->xtra.reg.file_size % fs->sb.block_size);
        if (inode->xtra.reg.frag_idx >= fs->sb.fragments ||
            sqfs_frag_entry(fs, &f, inode->xtra.reg.frag_idx) != SQFS_OK)
                return -EIO;
        int r = data_block(fs, &fs->frag_cache, f.start_block, f.size, inode->xtra.reg.frag_off, tail, ret_block);
        if (r < 0)
                return r;
        *ret_data = (const char *) (*ret_block)->data + inode->xtra.reg.frag_off;
        return 0;
}

int squash_frag_where(sqfs *fs, uint32_t idx, uint64_t *ret_pos, uint32_t *ret_hdr)
{
        struct squashfs_fragment_entry f;
        bool compressed;
        uint32_t csize;
        if (idx >= fs->sb.fragments || sqfs_frag_entry(fs, &f, idx) != SQFS_OK)
                return -EIO;
        sqfs_data_header(f.size, &compressed, &csize);
        if (csize > fs->sb.block_size || f.start_block < FIRST_BLOCK || f.start_block >= fs->sb.bytes_used ||
            csize > fs->sb.bytes_used - f.start_block)
                return -EIO;
        *ret_pos = f.start_block;
        *ret_hdr = f.size;
        return 0;
}

ssize_t squash_block_inflate(const sqfs *fs, uint64_t pos, uint32_t hdr, char *in, char *out)
{
        bool compressed;
        uint32_t csize;
        sqfs_data_header(hdr, &compressed, &csize);
        /* as squash_frag_where checked it: a caller may hand over any header */
        if (csize == 0 || csize > fs->sb.block_size || pos < FIRST_BLOCK || pos >= fs->sb.bytes_used ||
            csize > fs->sb.bytes_used - pos)
                return -EIO;
        if (pread(fs->fd, compressed ? in : out, csize, (off_t) (pos + fs->offset)) != (ssize_t) csize)
                return -EIO;
        if (!compressed)
                return csize;
        size_t got = fs->sb.block_size;
        if (fs->decompressor(in, csize, out, &got) != SQFS_OK)
                return -EIO;
        return (ssize_t) got;
}

/* The block list of the file last read by this thread, where the last read left it:
 * reading on costs no walk from the file's start. */
static __thread struct {
        sqfs *fs;
        sqfs_md_cursor at; /* the file's inode: where its block list starts */
        uint64_t index;    /* of the block bl.next() returns next */
        sqfs_blocklist bl;
} walk;

void squash_forget(sqfs *fs)
{
        if (walk.fs == fs)
                walk.fs = NULL;
}

static int seek_block(sqfs *fs, const sqfs_inode *inode, uint64_t index)
{
        bool same = walk.fs == fs && walk.at.block == inode->next.block && walk.at.offset == inode->next.offset;
        if (same && walk.index == index + 1) /* bl holds that block already */
                return 0;
        if (!same || walk.index > index) {
                sqfs_blocklist_init(fs, (sqfs_inode *) inode, &walk.bl);
                walk.fs = fs;
                walk.at = inode->next;
                walk.index = 0;
        }
        for (; walk.index <= index; walk.index++) {
                if (walk.bl.remain == 0 || sqfs_blocklist_next(&walk.bl) != SQFS_OK) {
                        walk.fs = NULL;
                        return -EIO;
                }
        }
        return 0;
}

int squash_extent(sqfs *fs, const sqfs_inode *inode, uint64_t off, size_t size, uint64_t *ret_pos, size_t *ret_len)
{
        uint64_t file = inode->xtra.reg.file_size, bs = fs->sb.block_size, start = 0, next = 0;
        if (!S_ISREG(inode->base.mode) || off >= file || size == 0)
                return -1;
        if (size > file - off)
                size = (size_t) (file - off);
        uint64_t first = off / bs, last = (off + size - 1) / bs;
        if (last >= sqfs_blocklist_count(fs, (sqfs_inode *) inode) || seek_block(fs, inode, first) < 0)
                return -1; /* the tail is in a fragment */
        /* a refusal leaves the walk at the first block, where squash_read starts next: else
         * it would walk the file's block list again from its start */
        __typeof__(walk) at_first = walk;
        for (uint64_t i = first; i <= last; i++) {
                bool compressed;
                uint32_t csize;
                if (seek_block(fs, inode, i) < 0) {
                        walk = at_first;
                        return -1;
                }
                sqfs_data_header(walk.bl.header, &compressed, &csize);
                uint64_t pos = walk.bl.block, want = file - i * bs < bs ? file - i * bs : bs;
                /* a hole, a compressed block, or one that is not where the last one ended */
                if (walk.bl.input_size == 0 || compressed || csize != want || pos < FIRST_BLOCK ||
                    pos >= fs->sb.bytes_used || csize > fs->sb.bytes_used - pos || (i > first && pos != next)) {
                        walk = at_first;
                        return -1;
                }
                if (i == first)
                        start = pos;
                next = pos + csize;
        }
        *ret_pos = fs->offset + start + off % bs;
        *ret_len = size;
        return 0;
}

ssize_t squash_read(sqfs *fs, const sqfs_inode *inode, uint64_t off, size_t size, char *buf)
{
        uint64_t file = inode->xtra.reg.file_size, bs = fs->sb.block_size, done = 0;
        if (!S_ISREG(inode->base.mode))
                return -EISDIR;
        if (off >= file)
                return 0;
        if (size > file - off)
                size = (size_t) (file - off);
        uint64_t blocks = sqfs_blocklist_count(fs, (sqfs_inode *) inode);
        while (done < size) {
                uint64_t at = off + done, index = at / bs, in = at % bs;
                size_t take = size - done < bs - in ? (size_t) (size - done) : (size_t) (bs - in);
                const char *src = NULL;
                sqfs_block *b;
                if (index >= blocks) {
                        if (inode->xtra.reg.frag_idx == SQUASHFS_INVALID_FRAG || squash_frag(fs, inode, &src, &b) < 0)
                                return -EIO;
                        src += in;
                } else {
                        if (seek_block(fs, inode, index) < 0)
                                return -EIO;
                        uint64_t want = file - index * bs < bs ? file - index * bs : bs;
                        if (walk.bl.input_size != 0) { /* else a hole */
                                if (data_block(fs, &fs->data_cache, walk.bl.block, walk.bl.header, 0, want, &b) < 0)
                                        return -EIO;
                                src = (const char *) b->data + in;
                        }
                }
                if (src)
                        memcpy(buf + done, src, take);
                else
                        memset(buf + done, 0, take);
                done += take;
        }
        return (ssize_t) done;
}
