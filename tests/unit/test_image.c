/* image: SIF header and descriptor encoding, sif_load bounds checks, partition choice,
 * squashfs superblock checks — on SIF bytes built in memory; the decompressed-file cache's
 * names, entries and eviction in a temporary folder. */
#include <pthread.h>
#include <sys/syscall.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "image/image-internal.h"
#include "util/sha256.h"
#include "util/util.h"

/* The fuzz targets' walks, run here over the corpus, the regression inputs and the crafted
 * images (under ASan in CI) */
int fuzz_squashfs_one(const uint8_t *data, size_t size);
int fuzz_sif_one(const uint8_t *data, size_t size);
#define LLVMFuzzerTestOneInput fuzz_squashfs_one
#include "../fuzz/fuzz_squashfs.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_sif_one
#include "../fuzz/fuzz_sif.c"
#undef LLVMFuzzerTestOneInput
#include "../fuzz/fuzz.c"

#define NDESCR 4
#define DATA_OFF (4096 + NDESCR * SIF_DESCRIPTOR_SIZE)

/* A SIF in a memfd with the given partition objects (fstype, parttype), each 4096 bytes. */
static int make_sif(const int32_t (*parts)[2], size_t n, size_t truncate_to)
{
        struct sif_header h = {.launch = "#!/usr/bin/env run-singularity\n", .version = "01", .arch = "02"};
        uint8_t hb[SIF_HEADER_SIZE], db[SIF_DESCRIPTOR_SIZE];
        int fd = memfd_create("sif", MFD_CLOEXEC);
        assert_true(fd >= 0);
        h.descr_total = NDESCR;
        h.descr_free = NDESCR - (int64_t) n;
        h.descr_offset = 4096;
        h.descr_size = NDESCR * SIF_DESCRIPTOR_SIZE;
        h.data_offset = DATA_OFF;
        for (size_t i = 0; i < n; i++) {
                struct sif_descriptor d = {.datatype = SIF_DATA_PARTITION,
                                           .used = true,
                                           .id = (uint32_t) i + 1,
                                           .groupid = 1 | SIF_GROUP_MASK,
                                           .offset = 8192 + 4096 * (int64_t) i,
                                           .size = 4096,
                                           .fstype = parts[i][0],
                                           .parttype = parts[i][1]};
                strcpy(d.arch, "02");
                sif_descriptor_format(&d, db);
                assert_int_equal(pwrite(fd, db, sizeof db, 4096 + i * SIF_DESCRIPTOR_SIZE), sizeof db);
        }
        sif_header_format(&h, hb);
        assert_int_equal(pwrite(fd, hb, sizeof hb, 0), sizeof hb);
        assert_int_equal(ftruncate(fd, truncate_to ? truncate_to : 8192 + 4096 * n), 0);
        return fd;
}

static off_t fsize(int fd)
{
        return lseek(fd, 0, SEEK_END);
}

static void test_header_roundtrip(void **state)
{
        (void) state;
        struct sif_header h = {.launch = "#!x\n",
                               .version = "01",
                               .arch = "04",
                               .created = 123,
                               .descr_total = 48,
                               .descr_free = 45,
                               .descr_offset = 4096,
                               .descr_size = 48 * SIF_DESCRIPTOR_SIZE,
                               .data_offset = 32176,
                               .data_size = 99};
        uint8_t b[SIF_HEADER_SIZE];
        struct sif_header g;
        struct hutch_error e = HUTCH_ERROR_INIT;
        sif_header_format(&h, b);
        assert_memory_equal(b + 32, "SIF_MAGIC\0", 10);
        assert_int_equal(sif_header_parse(b, sizeof b, &g, &e), 0);
        assert_string_equal(g.launch, "#!x\n");
        assert_string_equal(g.arch, "04");
        assert_int_equal(g.data_offset, 32176);
        assert_int_equal(g.descr_free, 45);
        assert_string_equal(sif_arch_name(g.arch), "arm64");
        assert_true(sif_header_parse(b, 64, &g, &e) < 0);
        b[33] = 'X';
        assert_true(sif_header_parse(b, sizeof b, &g, &e) < 0);
        assert_non_null(strstr(e.msg, "SIF_MAGIC"));
}

static void test_header_bad_table(void **state)
{
        (void) state;
        struct sif_header h = {.version = "01", .descr_total = 10, .descr_offset = 4096, .descr_size = 10};
        uint8_t b[SIF_HEADER_SIZE];
        struct sif_header g;
        struct hutch_error e = HUTCH_ERROR_INIT;
        sif_header_format(&h, b);
        assert_true(sif_header_parse(b, sizeof b, &g, &e) < 0);
        h.descr_size = 10 * SIF_DESCRIPTOR_SIZE;
        h.version[1] = '2';
        sif_header_format(&h, b);
        assert_true(sif_header_parse(b, sizeof b, &g, &e) < 0);
        assert_non_null(strstr(e.msg, "version"));
}

static void test_descriptor_roundtrip(void **state)
{
        (void) state;
        struct sif_descriptor d = {.datatype = SIF_DATA_PARTITION,
                                   .used = true,
                                   .id = 7,
                                   .groupid = 1 | SIF_GROUP_MASK,
                                   .linkid = 3,
                                   .offset = 1 << 20,
                                   .size = 5,
                                   .fstype = SIF_FS_SQUASH,
                                   .parttype = SIF_PART_PRIMSYS,
                                   .name = "root"};
        strcpy(d.arch, "02");
        uint8_t b[SIF_DESCRIPTOR_SIZE];
        struct sif_descriptor g;
        sif_descriptor_format(&d, b);
        sif_descriptor_parse(b, &g);
        assert_true(g.used);
        assert_int_equal(g.id, 7);
        assert_int_equal(g.offset, 1 << 20);
        assert_int_equal(g.fstype, SIF_FS_SQUASH);
        assert_int_equal(g.parttype, SIF_PART_PRIMSYS);
        assert_string_equal(g.arch, "02");
        assert_string_equal(g.name, "root");
        assert_string_equal(sif_datatype_name(g.datatype), "FS");
}

static void test_load_and_primary(void **state)
{
        (void) state;
        const int32_t parts[][2] = {{SIF_FS_RAW, SIF_PART_SYSTEM}, {SIF_FS_SQUASH, SIF_PART_PRIMSYS}};
        int fd = make_sif(parts, 2, 0);
        struct sif s;
        const struct sif_descriptor *d;
        struct hutch_error e = HUTCH_ERROR_INIT;
        assert_int_equal(sif_load(fd, (uint64_t) fsize(fd), &s, &e), 0);
        assert_int_equal(s.n_descr, 2);
        assert_int_equal(sif_primary_partition(&s, &d, &e), 0);
        assert_int_equal(d->id, 2);
        assert_ptr_equal(sif_descriptor_find(&s, 1), &s.descr[0]);
        assert_null(sif_descriptor_find(&s, 9));
        sif_free(&s);
        close(fd);
}

static void test_load_truncated(void **state)
{
        (void) state;
        const int32_t parts[][2] = {{SIF_FS_SQUASH, SIF_PART_PRIMSYS}};
        struct sif s;
        struct hutch_error e = HUTCH_ERROR_INIT;
        int fd = make_sif(parts, 1, 10000); /* object ends at 12288 */
        assert_true(sif_load(fd, (uint64_t) fsize(fd), &s, &e) < 0);
        assert_non_null(strstr(e.msg, "truncated"));
        close(fd);
        fd = make_sif(parts, 1, 4200); /* inside the descriptor table */
        assert_true(sif_load(fd, (uint64_t) fsize(fd), &s, &e) < 0);
        assert_non_null(strstr(e.msg, "descriptor table"));
        close(fd);
}

static void test_primary_kinds(void **state)
{
        (void) state;
        static const struct {
                int32_t fstype, parttype;
                int want;
                const char *msg;
        } cases[] = {
                {SIF_FS_ENCRYPTED_SQUASH, SIF_PART_PRIMSYS, -EOPNOTSUPP, "encrypted"},
                {SIF_FS_EXT3, SIF_PART_PRIMSYS, -EOPNOTSUPP, "Ext3"},
                {SIF_FS_SQUASH, SIF_PART_DATA, -ENOENT, "no primary system partition"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const int32_t parts[][2] = {{cases[i].fstype, cases[i].parttype}};
                int fd = make_sif(parts, 1, 0);
                struct sif s;
                const struct sif_descriptor *d;
                struct hutch_error e = HUTCH_ERROR_INIT;
                assert_int_equal(sif_load(fd, (uint64_t) fsize(fd), &s, &e), 0);
                assert_int_equal(sif_primary_partition(&s, &d, &e), cases[i].want);
                assert_non_null(strstr(e.msg, cases[i].msg));
                sif_free(&s);
                close(fd);
        }
}

/* Corrupt a valid SIF byte by byte (deterministic pseudo-random positions and values) and
 * check the loader either accepts it with every object inside the file or refuses it with a
 * message: never reads out of bounds (ASan in CI) or returns an object past the end. */
static void test_load_mutations(void **state)
{
        (void) state;
        const int32_t parts[][2] = {{SIF_FS_RAW, SIF_PART_SYSTEM}, {SIF_FS_SQUASH, SIF_PART_PRIMSYS}};
        int base = make_sif(parts, 2, 0);
        off_t size = fsize(base);
        uint8_t *orig = malloc(size);
        assert_int_equal(pread(base, orig, size, 0), size);
        uint32_t seed = 12345;
        for (int round = 0; round < 3000; round++) {
                int fd = memfd_create("mut", MFD_CLOEXEC);
                assert_int_equal(pwrite(fd, orig, size, 0), size);
                for (int k = 0; k < 1 + round % 4; k++) {
                        seed = seed * 1103515245u + 12345u;
                        /* header and descriptor table are where the parser looks */
                        off_t pos = (round % 2) ? (off_t) (seed >> 8) % SIF_HEADER_SIZE
                                                : 4096 + (off_t) (seed >> 8) % (2 * SIF_DESCRIPTOR_SIZE);
                        uint8_t v = (uint8_t) (seed >> 3);
                        assert_int_equal(pwrite(fd, &v, 1, pos), 1);
                }
                struct sif s;
                const struct sif_descriptor *d;
                struct hutch_error e = HUTCH_ERROR_INIT;
                if (sif_load(fd, (uint64_t) size, &s, &e) < 0) {
                        assert_true(e.msg[0] != 0);
                } else {
                        for (size_t i = 0; i < s.n_descr; i++)
                                assert_true(s.descr[i].offset + s.descr[i].size <= size);
                        if (sif_primary_partition(&s, &d, &e) < 0)
                                assert_true(e.msg[0] != 0);
                        sif_free(&s);
                }
                close(fd);
        }
        free(orig);
        close(base);
}

static void test_cache_name(void **state)
{
        (void) state;
        struct file_cache_key k = {
                .dev = 0xfe00, .ino = 42, .size = 4096, .mtime_ns = 1, .ctime_ns = 2, .offset = 0x9000, .inode = 31};
        char name[FILE_CACHE_NAME_MAX];
        file_cache_name(&k, name, sizeof name);
        assert_string_equal(name, "f-fe00-2a-1000-1-2-9000-1f");
        k.ctime_ns = 3; /* any field of the image's identity makes another entry */
        file_cache_name(&k, name, sizeof name);
        assert_string_equal(name, "f-fe00-2a-1000-1-3-9000-1f");
        k = (struct file_cache_key){~0ull, ~0ull, ~0ull, ~0ull, ~0ull, ~0ull, ~0ull};
        file_cache_name(&k, name, sizeof name);
        assert_true(strlen(name) < sizeof name - 1);
}

static void set_used(int dirfd, const struct file_cache_key *k, time_t when)
{
        char name[FILE_CACHE_NAME_MAX];
        struct timespec t[2] = {{.tv_sec = when}, {.tv_sec = when}};
        file_cache_name(k, name, sizeof name);
        assert_int_equal(utimensat(dirfd, name, t, 0), 0);
}

static bool has_entry(int dirfd, const struct file_cache_key *k)
{
        char name[FILE_CACHE_NAME_MAX];
        file_cache_name(k, name, sizeof name);
        return faccessat(dirfd, name, F_OK, 0) == 0;
}

static void test_cache_entries(void **state)
{
        (void) state;
        char dir[] = "/tmp/hutch-test-cache.XXXXXX", path[64];
        assert_non_null(mkdtemp(dir));
        /* the folder is made below a base of the user's own, 0700 */
        int fd = file_cache_open(geteuid(), dir, true);
        assert_true(fd >= 0);
        snprintf(path, sizeof path, "%s/hutch/cache", dir);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        char *p = NULL;
        assert_int_equal(file_cache_path(geteuid(), dir, &p), 0);
        assert_string_equal(p, path);
        free(p);

        char data[16384];
        for (size_t i = 0; i < sizeof data; i++)
                data[i] = (char) (i * 7);
        struct file_cache_key a = {.dev = 1, .inode = 1}, b = {.dev = 1, .inode = 2}, c = {.dev = 1, .inode = 3};
        assert_int_equal(file_cache_get(fd, &a, sizeof data), -ENOENT);
        assert_int_equal(file_cache_put(fd, &a, data, sizeof data, 1 << 20, NULL), 0);
        int e = file_cache_get(fd, &a, sizeof data);
        assert_true(e >= 0);
        char back[sizeof data];
        assert_int_equal(pread(e, back, sizeof back, 0), sizeof back);
        assert_memory_equal(back, data, sizeof data);
        close(e);
        /* size 0: any size will do (a fragment block's) */
        e = file_cache_get(fd, &a, 0);
        assert_true(e >= 0);
        close(e);
        /* an entry whose size is not the file's is dropped */
        assert_int_equal(file_cache_get(fd, &a, sizeof data + 1), -ESTALE);
        assert_false(has_entry(fd, &a));
        /* more than half the cap: not kept */
        assert_int_equal(file_cache_put(fd, &a, data, sizeof data, 30000, NULL), -EFBIG);
        assert_false(has_entry(fd, &a));

        /* the least recently used go first */
        assert_int_equal(file_cache_put(fd, &a, data, sizeof data, 1 << 20, NULL), 0);
        assert_int_equal(file_cache_put(fd, &b, data, sizeof data, 1 << 20, NULL), 0);
        set_used(fd, &a, 2000);
        set_used(fd, &b, 1000);
        assert_int_equal(file_cache_put(fd, &c, data, sizeof data, 40000, NULL), 0);
        assert_true(has_entry(fd, &a) && !has_entry(fd, &b) && has_entry(fd, &c));
        uint64_t bytes;
        size_t files;
        assert_int_equal(file_cache_usage(fd, &bytes, &files), 0);
        assert_int_equal(files, 2);
        assert_true(bytes >= 2 * sizeof data && bytes <= 40000);
        /* a writer that counts: no scan while its count is under the cap, then one */
        int64_t used = -1;
        struct file_cache_key d = {.dev = 1, .inode = 4}, e2 = {.dev = 1, .inode = 5};
        assert_int_equal(file_cache_put(fd, &d, data, sizeof data, 1 << 20, &used), 0);
        assert_true(used >= 3 * (int64_t) sizeof data);
        int64_t before = used;
        assert_int_equal(file_cache_put(fd, &e2, data, sizeof data, 1 << 20, &used), 0);
        assert_int_equal(used, before + (int64_t) sizeof data);
        set_used(fd, &a, 3000);
        set_used(fd, &c, 4000);
        set_used(fd, &d, 5000);
        set_used(fd, &e2, 6000);
        used = 1 << 20; /* says full: the next put scans and trims to 7/8 of the cap */
        struct file_cache_key f = {.dev = 1, .inode = 6};
        assert_int_equal(file_cache_put(fd, &f, data, sizeof data, 65536, &used), 0);
        assert_true(used <= 65536 - 65536 / 8 && !has_entry(fd, &a) && has_entry(fd, &f));
        assert_int_equal(file_cache_trim(fd, 0, NULL), 0);

        /* a stale temporary file (a server that died) goes at the next trim; a fresh one is
         * being written and stays, except for a full clean */
        struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
        int t = openat(fd, ".t-1-1", O_WRONLY | O_CREAT, 0600);
        assert_true(t >= 0);
        assert_int_equal(futimens(t, old), 0);
        close(t);
        t = openat(fd, ".t-1-2", O_WRONLY | O_CREAT, 0600);
        assert_true(t >= 0);
        close(t);
        assert_int_equal(file_cache_trim(fd, 1 << 20, NULL), 0);
        assert_int_equal(faccessat(fd, ".t-1-1", F_OK, 0), -1);
        assert_int_equal(faccessat(fd, ".t-1-2", F_OK, 0), 0);
        assert_int_equal(file_cache_trim(fd, 0, NULL), 0);
        assert_int_equal(file_cache_usage(fd, &bytes, &files), 0);
        assert_int_equal(files, 0);
        assert_int_equal(faccessat(fd, ".t-1-2", F_OK, 0), -1);
        close(fd);

        /* a level others may write to, or a symlink, is refused */
        assert_int_equal(chmod(path, 0777), 0);
        assert_int_equal(file_cache_open(geteuid(), dir, true), -EPERM);
        assert_int_equal(rmdir(path), 0);
        assert_int_equal(symlink("/tmp", path), 0);
        assert_true(file_cache_open(geteuid(), dir, true) < 0);
        assert_int_equal(unlink(path), 0);
        snprintf(path, sizeof path, "%s/hutch", dir);
        assert_int_equal(rmdir(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

/* ---- crafted squashfs images */

static const char *src_path(const char *rel, char *buf, size_t len)
{
        const char *src = getenv("HUTCH_SRC");
        snprintf(buf, len, "%s/%s", src && *src ? src : ".", rel);
        return buf;
}

static size_t load(const char *path, uint8_t **ret)
{
        char *buf = NULL;
        size_t len = 0;
        assert_int_equal(read_full_at(AT_FDCWD, path, 16 << 20, &buf, &len), 0);
        *ret = (uint8_t *) buf;
        return len;
}

static void replay_dir(const char *rel, int (*one)(const uint8_t *, size_t))
{
        char dir[PATH_MAX], path[PATH_MAX * 2];
        DIR *d = opendir(src_path(rel, dir, sizeof dir));
        if (!d)
                return; /* an empty regressions folder is not in the tree */
        for (struct dirent *de; (de = readdir(d));) {
                if (de->d_name[0] == '.')
                        continue;
                uint8_t *data;
                snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                size_t len = load(path, &data);
                one(data, len);
                free(data);
        }
        closedir(d);
}

static void test_fuzz_replay(void **state)
{
        (void) state;
        replay_dir("tests/fuzz/corpus/squashfs", fuzz_squashfs_one);
        replay_dir("tests/fuzz/corpus/sif", fuzz_squashfs_one);
        replay_dir("tests/fuzz/regressions/squashfs", fuzz_squashfs_one);
        replay_dir("tests/fuzz/corpus/sif", fuzz_sif_one);
        replay_dir("tests/fuzz/regressions/sif", fuzz_sif_one);
}

static void put_le(uint8_t *p, uint64_t v, size_t n)
{
        for (size_t i = 0; i < n; i++, v >>= 8)
                p[i] = (uint8_t) v;
}

/* Each superblock field an attacker may set, on a good image: refused, saying which. */
static void test_squashfs_check(void **state)
{
        (void) state;
        static const struct {
                size_t off, width;
                uint64_t value;
                const char *msg;
        } cases[] = {
                {72, 8, 12345, "directory table"},     /* directory_table_start */
                {32, 8, 12345, "root inode"},          /* root_inode */
                {32, 8, 1ull << 48, "root inode"},     /* root_inode past 48 bits */
                {26, 2, 0, "no_ids is 0"},             /* no_ids */
                {4, 4, 0, "inodes is 0"},              /* inodes */
                {12, 4, 1, "block size"},              /* block_size */
                {12, 4, 0, "block size"},              /* block_size */
                {12, 4, 2 << 20, "block size"},        /* block_size */
                {12, 4, 12288, "block size"},          /* block_size */
                {22, 2, 13, "block size"},             /* block_log */
                {20, 2, 9, "compression"},             /* compression */
                {20, 2, 0, "compression"},             /* compression */
                {40, 8, 1ull << 40, "truncated"},      /* bytes_used */
                {64, 8, 0, "directory table"},         /* inode_table_start */
                {48, 8, 4790, "id table"},             /* id_table_start: its index past the end */
                {48, 8, 200, "id table"},              /* id_table_start: before the directories */
                {80, 8, 12345, "fragment table"},      /* fragment_table_start */
                {16, 4, 0xfffffff0, "fragment table"}, /* fragments: an index of 64 MiB */
                {88, 8, 12345, "export table"},        /* lookup_table_start */
                {56, 8, 1ull << 40, "xattr table"},    /* xattr_id_table_start */
                {28, 2, 3, "version"},                 /* s_major */
                {30, 2, 1, "version"},                 /* s_minor */
                {0, 4, 0x12345678, "magic"},
        };
        char path[PATH_MAX];
        uint8_t *good;
        size_t len = load(src_path("tests/fuzz/corpus/squashfs/gzip.sqfs", path, sizeof path), &good);
        struct hutch_error e = HUTCH_ERROR_INIT;
        uint64_t size = 0;
        int fd = memfd_create("sq", MFD_CLOEXEC);
        assert_int_equal(write(fd, good, len), (ssize_t) len);
        assert_int_equal(squashfs_check(fd, 0, len, &size, &e), 0);
        assert_int_equal(size, len);
        assert_true(squashfs_check(fd, 0, len - 1, &size, &e) < 0);
        assert_non_null(strstr(e.msg, "truncated"));
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint8_t sb[96];
                memcpy(sb, good, sizeof sb);
                /* UINT64_MAX: the filesystem's last byte */
                put_le(sb + cases[i].off, cases[i].value == UINT64_MAX ? len - 1 : cases[i].value, cases[i].width);
                assert_int_equal(pwrite(fd, sb, sizeof sb, 0), (ssize_t) sizeof sb);
                e.msg[0] = 0;
                if (squashfs_check(fd, 0, len, &size, &e) >= 0 || !strstr(e.msg, cases[i].msg))
                        fail_msg("case %zu (offset %zu): '%s'", i, cases[i].off, e.msg);
        }
        free(good);
        close(fd);
}

/* A listing of several metadata blocks, found by its index: every name is looked up, and a
 * listing resumed at any entry's offset goes on with that entry. */
static void test_dir_index(void **state)
{
        (void) state;
        char path[PATH_MAX], name[SQUASHFS_NAME_LEN + 1], want[64];
        struct image img;
        struct hutch_error e = HUTCH_ERROR_INIT;
        const char *images[] = {"tests/fuzz/corpus/squashfs/gzip.sqfs", "tests/fuzz/corpus/squashfs/raw.sqfs"};
        for (size_t k = 0; k < ELEMENTSOF(images); k++) {
                assert_int_equal(image_open(src_path(images[k], path, sizeof path), false, &img, &e), 0);
                assert_int_equal(sqfs_handle_open(&img, &e), 0);
                sqfs *fs = &img.sqfs->ll.fs;
                sqfs_inode root, dir;
                sqfs_dir_entry ent, found;
                struct squash_dir d, again;
                assert_int_equal(squash_inode_get(fs, fs->sb.root_inode, &root), 0);
                assert_int_equal(squash_dir_lookup(fs, &root, "many", &ent), 0);
                assert_int_equal(squash_inode_get(fs, ent.inode, &dir), 0);
                assert_true(dir.xtra.dir.idx_count >= 1);
                assert_int_equal(squash_dir_open(fs, &dir, 0, &d), 0);
                int n = 0;
                while (squash_dir_next(&d, &ent, name) > 0) {
                        snprintf(want, sizeof want, "entry-with-a-longish-name-%d", 1000 + n++);
                        assert_string_equal(name, want);
                        assert_int_equal(squash_dir_lookup(fs, &dir, name, &found), 0);
                        assert_true(found.inode == ent.inode);
                        assert_int_equal(squash_dir_open(fs, &dir, (uint64_t) ent.offset, &again), 0);
                        assert_int_equal(squash_dir_next(&again, &found, name), 1);
                        assert_string_equal(name, want);
                }
                assert_int_equal(n, 400);
                assert_int_equal(squash_dir_lookup(fs, &dir, "entry-with-a-longish-name-1400", &found), -ENOENT);
                assert_int_equal(squash_dir_lookup(fs, &dir, "a", &found), -ENOENT);
                image_close(&img);
        }
}

/* The image (opened, with its squashfs handle) and its file /DIR/NAME. */
static sqfs *open_file(const char *image, const char *dir, const char *name, struct image *img, sqfs_inode *file)
{
        char path[PATH_MAX];
        struct hutch_error e = HUTCH_ERROR_INIT;
        assert_int_equal(image_open(src_path(image, path, sizeof path), false, img, &e), 0);
        assert_int_equal(sqfs_handle_open(img, &e), 0);
        sqfs *fs = &img->sqfs->ll.fs;
        sqfs_inode root, folder;
        sqfs_dir_entry ent;
        assert_int_equal(squash_inode_get(fs, fs->sb.root_inode, &root), 0);
        assert_int_equal(squash_dir_lookup(fs, &root, dir, &ent), 0);
        assert_int_equal(squash_inode_get(fs, ent.inode, &folder), 0);
        assert_int_equal(squash_dir_lookup(fs, &folder, name, &ent), 0);
        assert_int_equal(squash_inode_get(fs, ent.inode, file), 0);
        return fs;
}

/* Where a range of a file is stored as is: what squash_extent points at in the image file
 * reads the same as squash_read, for every range it accepts; it accepts whole files stored
 * raw in blocks, refuses compressed blocks and the end of the file. */
static void test_extent(void **state)
{
        (void) state;
        static const struct {
                const char *image;
                int whole; /* the whole file: 0 an extent, -1 none */
        } cases[] = {
                {"tests/fuzz/corpus/squashfs/raw-nofrag.sqfs", 0},
                {"tests/fuzz/corpus/squashfs/raw.sqfs", 0}, /* its tail too is a block of its own */
                {"tests/fuzz/corpus/sif/raw.sif", 0},       /* at the partition's offset in the file */
                {"tests/fuzz/corpus/squashfs/gzip.sqfs", -1},
        };
        static const size_t sizes[] = {1, 100, 4096, 5000, 8192, 12000, 1 << 20};
        for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                struct image img;
                sqfs_inode file;
                sqfs *fs = open_file(cases[k].image, "bin", "two-blocks", &img, &file);
                uint64_t size = file.xtra.reg.file_size, pos;
                size_t len, stored = 0;
                assert_true(size > 2 * 4096 && size < 3 * 4096);
                assert_int_equal(squash_extent(fs, &file, 0, (size_t) size, &pos, &len), cases[k].whole);
                assert_int_equal(squash_extent(fs, &file, size, 1, &pos, &len), -1); /* at the end */
                char *want = malloc(1 << 20), *got = malloc(1 << 20);
                assert_true(want && got);
                for (uint64_t off = 0; off < size; off += 1000)
                        for (size_t j = 0; j < ELEMENTSOF(sizes); j++) {
                                if (squash_extent(fs, &file, off, sizes[j], &pos, &len) < 0)
                                        continue;
                                stored++;
                                ssize_t n = squash_read(fs, &file, off, sizes[j], want);
                                assert_true(n > 0 && (size_t) n == len);
                                assert_int_equal(pread(fs->fd, got, len, (off_t) pos), (ssize_t) len);
                                if (memcmp(want, got, len) != 0)
                                        fail_msg("%s: %zu bytes at %" PRIu64 " differ", cases[k].image, len, off);
                        }
                assert_true(strstr(cases[k].image, "gzip") ? stored == 0 : stored > 0); /* gzip: compressed blocks */
                free(want);
                free(got);
                image_close(&img);
        }
}

/* The read-ahead's fragment blocks: squash_frag_where and squash_block_inflate give the
 * block squashfuse's own fragment read gives (compressed and stored, in a bare squashfs and
 * at a SIF's offset), and refuse what lies outside the filesystem. */
static void test_frag_blocks(void **state)
{
        (void) state;
        static const char *const images[] = {
                "tests/fuzz/corpus/squashfs/gzip.sqfs",
                "tests/fuzz/corpus/squashfs/raw.sqfs",
                "tests/fuzz/corpus/sif/raw.sif",
        };
        for (size_t k = 0; k < ELEMENTSOF(images); k++) {
                struct image img;
                sqfs_inode file;
                sqfs *fs = open_file(images[k], "etc", "passwd", &img, &file);
                uint32_t idx = file.xtra.reg.frag_idx;
                assert_true(idx < fs->sb.fragments);
                const char *data;
                sqfs_block *block;
                assert_int_equal(squash_frag(fs, &file, &data, &block), 0);
                uint64_t pos;
                uint32_t hdr;
                assert_int_equal(squash_frag_where(fs, idx, &pos, &hdr), 0);
                size_t bs = fs->sb.block_size;
                char *in = malloc(bs), *out = malloc(bs);
                assert_true(in && out);
                ssize_t n = squash_block_inflate(fs, pos, hdr, in, out);
                if (n < 0 || (size_t) n != block->size || memcmp(out, block->data, (size_t) n) != 0)
                        fail_msg("%s: fragment block %u differs from squashfuse's", images[k], idx);
                /* outside the table, inside the superblock, past the filesystem, empty, too big */
                assert_int_equal(squash_frag_where(fs, fs->sb.fragments, &pos, &hdr), -EIO);
                assert_int_equal(squash_block_inflate(fs, 10, hdr, in, out), -EIO);
                assert_int_equal(squash_block_inflate(fs, fs->sb.bytes_used, hdr, in, out), -EIO);
                assert_int_equal(squash_block_inflate(fs, fs->sb.bytes_used - 1, hdr, in, out), -EIO);
                assert_int_equal(squash_block_inflate(fs, pos, 0, in, out), -EIO);
                assert_int_equal(squash_block_inflate(fs, pos, (uint32_t) bs + 1, in, out), -EIO);
                free(in);
                free(out);
                image_close(&img);
        }
}

/* The crafted images of tests/helpers/craft.py, made from the corpus: those of kind open are
 * refused when opened, with one message; those of kind read open (or are refused, where
 * the damage falls on the root), and what they corrupt reads as an error (an uncompressed block longer than the file's
 * rest: the server's push too), never past a buffer. */
static void check_crafted(const char *file, const char *kind, const char *name)
{
        struct image img;
        struct hutch_error e = HUTCH_ERROR_INIT;
        char *buf = NULL;
        int r = image_open(file, false, &img, &e);
        bool opened = r == 0;
        if (opened)
                r = sqfs_handle_open(&img, &e);
        if (r < 0 && opened)
                image_close(&img);
        if (strcmp(kind, "open") == 0) {
                if (r >= 0 || !(strstr(e.msg, "corrupt") || strstr(e.msg, "unsupported") || strstr(e.msg, "truncated")))
                        fail_msg("%s: opened, or no reason ('%s')", name, e.msg);
                if (r == 0)
                        image_close(&img);
                return;
        }
        if (r < 0) { /* where the image's layout puts the damage under the root: refused */
                if (!strstr(e.msg, "corrupt") || strncmp(name, "data_block", 10) == 0)
                        fail_msg("%s: not opened: %s", name, e.msg);
                return;
        }
        sqfs *fs = &img.sqfs->ll.fs;
        if (strncmp(name, "data_block", 10) == 0) {
                sqfs_inode root, inode;
                sqfs_dir_entry bin, two;
                assert_int_equal(squash_inode_get(fs, fs->sb.root_inode, &root), 0);
                assert_int_equal(squash_dir_lookup(fs, &root, "bin", &bin), 0);
                assert_int_equal(squash_inode_get(fs, bin.inode, &inode), 0);
                assert_int_equal(squash_dir_lookup(fs, &inode, "two-blocks", &two), 0);
                assert_int_equal(squash_inode_get(fs, two.inode, &inode), 0);
                char *out = calloc(1, inode.xtra.reg.file_size + 4096);
                assert_int_equal(image_push_read(fs, &inode, out), -EIO);
                free(out);
        } else {
                const char *path = strcmp(name, "dir_entry_inode") == 0 ? "/.singularity.d/runscript" : "/etc/passwd";
                assert_true(image_read_file(&img, path, 1 << 20, &buf, NULL, &e) < 0);
        }
        image_close(&img);
}

static void test_crafted(void **state)
{
        (void) state;
        char dir[] = "/tmp/hutch-crafted-XXXXXX", cmd[PATH_MAX * 4], src[PATH_MAX], craft[PATH_MAX];
        assert_non_null(mkdtemp(dir));
        src_path("tests/helpers/craft.py", craft, sizeof craft);
        snprintf(cmd, sizeof cmd, "python3 %s cases %s %s 2>/dev/null", craft,
                 src_path("tests/fuzz/corpus/squashfs/raw.sqfs", src, sizeof src), dir);
        assert_int_equal(system(cmd), 0);
        snprintf(cmd, sizeof cmd, "python3 %s list", craft);
        FILE *list = popen(cmd, "r");
        assert_non_null(list);
        char name[64], kind[16], file[PATH_MAX];
        int n = 0;
        while (fscanf(list, "%63s %15s", name, kind) == 2) {
                snprintf(file, sizeof file, "%s/%s.sqfs", dir, name);
                uint8_t *data;
                size_t len = load(file, &data);
                fuzz_squashfs_one(data, len);
                free(data);
                check_crafted(file, kind, name);
                unlink(file);
                n++;
        }
        assert_int_equal(pclose(list), 0);
        assert_true(n >= 20);
        assert_int_equal(rmdir(dir), 0);
}

/* The server's confinement, as a worker applies it: what its filter and Landlock refuse. */
enum {
        TRY_OPEN_OUTSIDE,
        TRY_SETOWN,
        TRY_EXEC,
        TRY_CACHE_CREATE,
        TRY_THREAD,
        TRY_FORK,
        TRY_CLONE3,
        TRY_SIGACTION,
        TRY_PERROR,
        TRY_ISATTY
};

static void *thread_noop(void *arg)
{
        return arg;
}

static int confined_try(bool cache, int dirfd, int what)
{
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct serve_filter f;
                int keep[] = {dirfd};
                /* perror's line: /dev/null read-write, as the worker's stderr is
                 * (spawn_child); a stream never written, as the worker's stderr is. perror
                 * then writes through a stream of its own ("w+", which a write-only fd
                 * refuses), whose first write asks isatty */
                int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (nul < 0 || dup2(nul, STDERR_FILENO) < 0)
                        _exit(102);
                FILE *fresh = fdopen(STDERR_FILENO, "w");
                if (!fresh)
                        _exit(103);
                stderr = fresh;
                if (serve_filter_build(SERVE_WORKER, -EBADF, -EBADF, cache, &f) < 0 ||
                    serve_confine(&f, keep, 1, cache ? dirfd : -EBADF) < 0)
                        _exit(100);
                switch (what) {
                case TRY_OPEN_OUTSIDE: _exit(open("/etc/hostname", O_RDONLY) < 0 ? errno : 0);
                case TRY_SETOWN: _exit(fcntl(dirfd, F_SETOWN, getpid()) < 0 ? errno : 0);
                case TRY_EXEC: execl("/bin/true", "true", (char *) NULL); _exit(errno);
                case TRY_CACHE_CREATE:
                        _exit(openat(dirfd, "entry", O_CREAT | O_WRONLY | O_CLOEXEC, 0600) < 0 ? errno : 0);
                case TRY_THREAD: {
                        pthread_t t;
                        void *ret = NULL;
                        _exit(pthread_create(&t, NULL, thread_noop, &ret) || pthread_join(t, &ret) ? 1 : 0);
                }
                case TRY_FORK: _exit(fork() < 0 ? errno : 0);
                case TRY_CLONE3: _exit(syscall(SYS_clone3, NULL, 0) < 0 ? errno : 0);
                case TRY_SIGACTION: _exit(signal(SIGUSR1, SIG_IGN) == SIG_ERR ? errno : 0);
                case TRY_PERROR:
                        errno = EIO;
                        perror("hutch-squashfs");
                        _exit(0);
                case TRY_ISATTY: _exit(isatty(STDERR_FILENO) ? 0 : errno);
                }
                _exit(101);
        }
        int ws;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        return WIFSIGNALED(ws) ? -WTERMSIG(ws) : WEXITSTATUS(ws);
}

static void test_serve_confinement(void **state)
{
        (void) state;
        if (getenv("HUTCH_VALGRIND")) /* dev.sh's valgrind run: valgrind does not know seccomp(2) */
                skip();
        char dir[] = "/tmp/hutch-confine.XXXXXX";
        assert_non_null(mkdtemp(dir));
        int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dirfd >= 0);
        /* no signal can be aimed at another process through the fds it keeps */
        assert_int_equal(confined_try(true, dirfd, TRY_SETOWN), -SIGSYS);
        assert_int_equal(confined_try(false, dirfd, TRY_SETOWN), -SIGSYS);
        assert_int_equal(confined_try(true, dirfd, TRY_EXEC), -SIGSYS);
        /* threads (the worker's serving threads), but no process, nor a clone3 whose flags
         * the filter cannot see, nor another signal handler than glibc's SIGSETXID */
        assert_int_equal(confined_try(false, dirfd, TRY_THREAD), 0);
        assert_int_equal(confined_try(false, dirfd, TRY_FORK), -SIGSYS);
        assert_int_equal(confined_try(false, dirfd, TRY_CLONE3), ENOSYS);
        assert_int_equal(confined_try(false, dirfd, TRY_SIGACTION), -SIGSYS);
        /* libfuse reports a failed read or write of /dev/fuse with perror (which dups stderr) */
        assert_int_equal(confined_try(false, dirfd, TRY_PERROR), 0);
        assert_int_equal(confined_try(true, dirfd, TRY_PERROR), 0);
        assert_int_equal(confined_try(false, dirfd, TRY_ISATTY), ENOTTY);
        /* without the cache every open fails and nothing can be created */
        assert_int_equal(confined_try(false, dirfd, TRY_OPEN_OUTSIDE), EACCES);
        assert_int_equal(confined_try(false, dirfd, TRY_CACHE_CREATE), EACCES);
        if (serve_landlock_available()) {
                /* with it, Landlock holds paths beneath the cache folder */
                assert_int_equal(confined_try(true, dirfd, TRY_OPEN_OUTSIDE), EACCES);
                assert_int_equal(confined_try(true, dirfd, TRY_CACHE_CREATE), 0);
                unlinkat(dirfd, "entry", 0);
        }
        close(dirfd);
        rmdir(dir);
}

/* --overlay PATH[:ro|:rw], comma lists, the upper layer's choice */
static void test_overlay_spec(void **state)
{
        (void) state;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct overlay_spec o, *v = NULL;
        size_t n = 0;

        assert_int_equal(overlay_spec_parse("/a/b", &o, &err), 0);
        assert_string_equal(o.path, "/a/b");
        assert_false(o.ro);
        free(o.path);
        assert_int_equal(overlay_spec_parse("/a:b:ro", &o, &err), 0);
        assert_string_equal(o.path, "/a:b");
        assert_true(o.ro);
        free(o.path);
        assert_int_equal(overlay_spec_parse("rel:rw", &o, &err), 0);
        assert_string_equal(o.path, "rel");
        assert_false(o.ro);
        free(o.path);
        assert_int_equal(overlay_spec_parse("/a:rx", &o, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "ro or rw"));
        assert_int_equal(overlay_spec_parse(":ro", &o, &err), -EINVAL);
        assert_int_equal(overlay_spec_parse("", &o, &err), -EINVAL);
        assert_int_equal(overlay_spec_parse("/a:", &o, &err), -EINVAL);

        assert_int_equal(overlay_spec_add("/l1:ro,/u1,/l2:ro", &v, &n, &err), 0);
        assert_int_equal(overlay_spec_add("/u2", &v, &n, &err), 0);
        assert_int_equal(n, 4);
        assert_string_equal(v[3].path, "/u2");
        assert_int_equal(overlay_upper_index(v, n), 3);
        assert_int_equal(overlay_upper_index(v, 3), 1);
        assert_int_equal(overlay_upper_index(v, 1), -1);
        assert_int_equal(overlay_spec_add(",", &v, &n, &err), -EINVAL);
        assert_int_equal(overlay_spec_add("/x,/y:bad", &v, &n, &err), -EINVAL);
        assert_int_equal(n, 5); /* the good ones before the bad one stay, freed with the rest */
        overlay_spec_free_array(v, n);
}

/* /proc/locks: a flock's holder by device and inode; waiters and other kinds skipped */
static void test_overlay_lock_holder(void **state)
{
        (void) state;
        const char *locks = "1: POSIX  ADVISORY  WRITE 11 fe:00:42 0 EOF\n"
                            "2: FLOCK  ADVISORY  WRITE 22 fe:00:4242 0 EOF\n"
                            "2: -> FLOCK  ADVISORY  WRITE 33 fe:00:42 0 EOF\n"
                            "3: FLOCK  ADVISORY  READ 44 08:01:42 0 EOF\n"
                            "4: FLOCK  ADVISORY  WRITE 55 fe:00:42 0 EOF\n";
        assert_int_equal(overlay_lock_holder_find(locks, makedev(0xfe, 0), 42), 55);
        assert_int_equal(overlay_lock_holder_find(locks, makedev(8, 1), 42), 44);
        assert_int_equal(overlay_lock_holder_find(locks, makedev(0xfe, 0), 4242), 22);
        assert_int_equal(overlay_lock_holder_find(locks, makedev(0xfe, 0), 7), 0);
        assert_int_equal(overlay_lock_holder_find("", makedev(0xfe, 0), 42), 0);
        assert_int_equal(overlay_lock_holder_find("garbage\n 00:00:0 \n", makedev(0, 0), 0), 0);
}

static void test_ext3_superblock(void **state)
{
        (void) state;
        uint8_t sb[1024] = {0};
        assert_false(ext3_superblock_is(sb, sizeof sb));
        sb[56] = 0x53;
        sb[57] = 0xef;
        assert_true(ext3_superblock_is(sb, sizeof sb));
        assert_false(ext3_superblock_is(sb, 57));
}

/* ---- Threads reading one image, each through a handle of its own (the image server's
 * serving threads, image/worker.c): every file byte-exact in every thread, in orders that
 * overlap, with caches emptied under way (fragment blocks evicted while files sharing them
 * are read); inode numbers the same from every handle. */
#define PAR_THREADS 4
#define PAR_FILES 256
struct par_file {
        sqfs_inode_id id;
        fuse_ino_t ino;
        uint64_t size;
        char *data;
};
static struct par_file par_files[PAR_FILES];
static size_t par_n;
static struct image par_img;

static void par_collect(sqfs_ll *ll, const sqfs_inode *dir, int depth)
{
        struct squash_dir d;
        sqfs_dir_entry ent;
        char name[SQUASHFS_NAME_LEN + 1];
        assert_int_equal(squash_dir_open(&ll->fs, dir, 0, &d), 0);
        while (squash_dir_next(&d, &ent, name) > 0 && par_n < PAR_FILES) {
                sqfs_inode inode;
                assert_int_equal(squash_inode_get(&ll->fs, ent.inode, &inode), 0);
                if (S_ISDIR(inode.base.mode) && depth < 8)
                        par_collect(ll, &inode, depth + 1);
                else if (S_ISREG(inode.base.mode) && inode.xtra.reg.file_size < (4u << 20)) {
                        struct par_file *f = &par_files[par_n++];
                        f->id = ent.inode;
                        f->ino = ll->ino_register(ll, &ent);
                        f->size = inode.xtra.reg.file_size;
                        f->data = malloc(f->size + 1);
                        assert_non_null(f->data);
                        assert_int_equal(squash_read(&ll->fs, &inode, 0, f->size, f->data), (ssize_t) f->size);
                }
        }
}

static void *par_reader(void *arg)
{
        unsigned k = (unsigned) (uintptr_t) arg;
        struct image img = par_img;
        struct hutch_error e = HUTCH_ERROR_INIT;
        img.sqfs = NULL;
        if (sqfs_handle_open(&img, &e) < 0)
                return (void *) "open";
        sqfs_ll *ll = &img.sqfs->ll;
        const char *bad = NULL;
        char *buf = malloc(4u << 20);
        for (unsigned round = 0; round < 6 && !bad && buf; round++) {
                for (size_t j = 0; j < par_n && !bad; j++) {
                        /* thread k starts at its own place, odd threads walk backwards */
                        size_t i = (k % 2 ? par_n - 1 - (j + k * 7) % par_n : (j + k * 7) % par_n);
                        struct par_file *f = &par_files[i];
                        sqfs_inode inode;
                        if (ll->ino_fuse(ll, f->id) != f->ino || sqfs_ll_inode(ll, &inode, f->ino) != SQFS_OK)
                                bad = "inode";
                        /* read in pieces of a few sizes, from the start */
                        size_t piece = round % 3 == 0 ? 4096 : round % 3 == 1 ? 70000 : (size_t) f->size + 1;
                        for (uint64_t off = 0; !bad && off < f->size; off += piece) {
                                ssize_t got = squash_read(&ll->fs, &inode, off, piece, buf);
                                size_t want = f->size - off < piece ? (size_t) (f->size - off) : piece;
                                if (got != (ssize_t) want || memcmp(buf, f->data + off, want) != 0)
                                        bad = "bytes";
                        }
                        if (j % 17 == k && sqfs_handle_reset_caches(img.sqfs) < 0)
                                bad = "reset";
                }
        }
        free(buf);
        sqfs_handle_free(img.sqfs);
        image_thread_done();
        return (void *) bad;
}

static void test_parallel_reads(void **state)
{
        (void) state;
        char path[PATH_MAX];
        struct hutch_error e = HUTCH_ERROR_INIT;
        const char *images[] = {"tests/fuzz/corpus/squashfs/gzip.sqfs", "tests/fuzz/corpus/squashfs/xz.sqfs",
                                "tests/fuzz/corpus/squashfs/raw.sqfs"};
        for (size_t k = 0; k < ELEMENTSOF(images); k++) {
                assert_int_equal(image_open(src_path(images[k], path, sizeof path), false, &par_img, &e), 0);
                assert_int_equal(sqfs_handle_open(&par_img, &e), 0);
                sqfs_ll *ll = &par_img.sqfs->ll;
                /* the 64-bit mapping (no table): what lets every thread have its own handle */
                assert_null(ll->ino_data);
                sqfs_inode root;
                assert_int_equal(squash_inode_get(&ll->fs, ll->fs.sb.root_inode, &root), 0);
                par_n = 0;
                par_collect(ll, &root, 0);
                assert_true(par_n >= 2);
                pthread_t t[PAR_THREADS];
                for (unsigned i = 0; i < PAR_THREADS; i++)
                        assert_int_equal(pthread_create(&t[i], NULL, par_reader, (void *) (uintptr_t) i), 0);
                for (unsigned i = 0; i < PAR_THREADS; i++) {
                        void *bad;
                        assert_int_equal(pthread_join(t[i], &bad), 0);
                        if (bad)
                                fail_msg("%s: thread %u: %s", images[k], i, (const char *) bad);
                }
                for (size_t i = 0; i < par_n; i++)
                        free(par_files[i].data);
                image_close(&par_img);
        }
}

/* image_digest: SHA-256 of the squashfs bytes, kept in the cache by the file's identity,
 * and read again once the file changed (its ctime moved) */
/* ---- The inflate helper (image/inflate.c): a big file pushed whole by several threads at
 * once, each through a handle of its own, its blocks shared with the helper: byte-exact
 * every time. */
struct whole_arg {
        const char *expected;
        uint64_t size;
        sqfs_inode_id id;
};

static void *whole_reader(void *arg)
{
        const struct whole_arg *a = arg;
        struct image img = par_img;
        struct hutch_error e = HUTCH_ERROR_INIT;
        img.sqfs = NULL;
        if (sqfs_handle_open(&img, &e) < 0)
                return (void *) "open";
        const char *bad = NULL;
        char *out = malloc(a->size);
        sqfs_inode inode;
        if (!out || squash_inode_get(&img.sqfs->ll.fs, a->id, &inode) < 0)
                bad = "inode";
        /* many rounds: an opener that did not wait for the helper's last block shows in a
         * few of them only; few under valgrind, which runs threads one at a time */
        int rounds = getenv("HUTCH_VALGRIND") ? 5 : 500;
        for (int round = 0; round < rounds && !bad; round++) {
                memset(out, 0, a->size);
                if (image_push_read(&img.sqfs->ll.fs, &inode, out) < 0)
                        bad = "read";
                else if (memcmp(out, a->expected, a->size) != 0)
                        bad = "bytes";
        }
        free(out);
        sqfs_handle_free(img.sqfs);
        image_thread_done();
        return (void *) bad;
}

static void test_inflate_helper(void **state)
{
        (void) state;
        char dir[] = "/tmp/hutch-whole-XXXXXX", cmd[PATH_MAX * 3], path[PATH_MAX];
        struct hutch_error e = HUTCH_ERROR_INIT;
        assert_non_null(mkdtemp(dir));
        /* 100 blocks of 4 KiB and a tail, compressible */
        snprintf(cmd, sizeof cmd,
                 "mkdir %s/root && seq 1 50000 | sed 's/$/ a line of the big file/' | head -c 412345 > %s/root/big && "
                 "mksquashfs %s/root %s/img.sqfs -b 4096 -noappend -quiet -no-progress -all-root >/dev/null",
                 dir, dir, dir, dir);
        if (system(cmd) != 0) {
                snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
                (void) !system(cmd);
                skip(); /* no mksquashfs */
        }
        snprintf(path, sizeof path, "%s/img.sqfs", dir);
        assert_int_equal(image_open(path, false, &par_img, &e), 0);
        assert_int_equal(sqfs_handle_open(&par_img, &e), 0);
        sqfs_ll *ll = &par_img.sqfs->ll;
        sqfs_inode root, inode;
        sqfs_dir_entry entry;
        assert_int_equal(squash_inode_get(&ll->fs, ll->fs.sb.root_inode, &root), 0);
        assert_int_equal(squash_dir_lookup(&ll->fs, &root, "big", &entry), 0);
        assert_int_equal(squash_inode_get(&ll->fs, entry.inode, &inode), 0);
        struct whole_arg a = {.size = inode.xtra.reg.file_size, .id = entry.inode};
        assert_int_equal(a.size, 412345);
        char *expected = malloc(a.size);
        assert_non_null(expected);
        assert_int_equal(squash_read(&ll->fs, &inode, 0, a.size, expected), (ssize_t) a.size);
        a.expected = expected;
        image_inflate_helper(true);
        pthread_t t[PAR_THREADS];
        for (unsigned i = 0; i < PAR_THREADS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, whole_reader, &a), 0);
        for (unsigned i = 0; i < PAR_THREADS; i++) {
                void *bad;
                assert_int_equal(pthread_join(t[i], &bad), 0);
                if (bad)
                        fail_msg("thread %u: %s", i, (const char *) bad);
        }
        image_inflate_helper(false);
        free(expected);
        image_close(&par_img);
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
}

static void test_digest(void **state)
{
        (void) state;
        char src[PATH_MAX], tmp[] = "/tmp/hutch-digest-XXXXXX", file[PATH_MAX], cache[PATH_MAX], d[72], want[72];
        struct hutch_error e = HUTCH_ERROR_INIT;
        struct image img;
        uint8_t *data, h[32];
        size_t len = load(src_path("tests/fuzz/corpus/squashfs/gzip.sqfs", src, sizeof src), &data);
        assert_non_null(mkdtemp(tmp));
        snprintf(file, sizeof file, "%s/a.sqfs", tmp);
        snprintf(cache, sizeof cache, "%s/cache", tmp);
        assert_int_equal(write_file_at(AT_FDCWD, file, (char *) data, len, 0644), 0);
        assert_int_equal(image_open(file, false, &img, &e), 0);
        struct sha256 s;
        sha256_init(&s);
        sha256_update(&s, data + img.offset, img.size);
        sha256_final(&s, h);
        sha256_hex(h, want);
        image_close(&img);
        assert_int_equal(image_digest(file, NULL, d, &e), 0);
        assert_string_equal(d, want);
        assert_int_equal(image_digest(file, cache, d, &e), 0);
        assert_string_equal(d, want);
        /* the entry is what a second start reads: a changed digest in it is believed... */
        DIR *dir = opendir(cache);
        struct dirent *de;
        char entry[PATH_MAX + 300] = "";
        while ((de = readdir(dir)))
                if (de->d_name[0] != '.')
                        snprintf(entry, sizeof entry, "%s/%s", cache, de->d_name);
        closedir(dir);
        char *text = NULL;
        assert_int_equal(read_full_at(AT_FDCWD, entry, 4096, &text, NULL), 0);
        char *at = strstr(text, "sha256:");
        assert_non_null(at);
        memset(at + 7, '0', 64);
        assert_int_equal(write_file_at(AT_FDCWD, entry, text, strlen(text), 0600), 0);
        assert_int_equal(image_digest(file, cache, d, &e), 0);
        assert_true(startswith(d, "sha256:0000000000"));
        /* ...until the file changes */
        assert_int_equal(utimensat(AT_FDCWD, file, NULL, 0), 0);
        assert_int_equal(image_digest(file, cache, d, &e), 0);
        assert_string_equal(d, want);
        assert_int_equal(image_digest(tmp, cache, d, &e), -EISDIR);
        free(text);
        free(data);
        unlink(entry);
        rmdir(cache);
        unlink(file);
        assert_int_equal(rmdir(tmp), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_header_roundtrip),
                cmocka_unit_test(test_header_bad_table),
                cmocka_unit_test(test_descriptor_roundtrip),
                cmocka_unit_test(test_load_and_primary),
                cmocka_unit_test(test_load_truncated),
                cmocka_unit_test(test_primary_kinds),
                cmocka_unit_test(test_squashfs_check),
                cmocka_unit_test(test_load_mutations),
                cmocka_unit_test(test_cache_name),
                cmocka_unit_test(test_cache_entries),
                cmocka_unit_test(test_fuzz_replay),
                cmocka_unit_test(test_crafted),
                cmocka_unit_test(test_dir_index),
                cmocka_unit_test(test_extent),
                cmocka_unit_test(test_frag_blocks),
                cmocka_unit_test(test_serve_confinement),
                cmocka_unit_test(test_overlay_spec),
                cmocka_unit_test(test_overlay_lock_holder),
                cmocka_unit_test(test_ext3_superblock),
                cmocka_unit_test(test_parallel_reads),
                cmocka_unit_test(test_inflate_helper),
                cmocka_unit_test(test_digest),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
