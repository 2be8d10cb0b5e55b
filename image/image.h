/* Container images: format detection (folder, squashfs, SIF), the SIF object table,
 * reading metadata files without mounting, the mount backends, and building. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "util/error.h"

struct pidref; /* util/process.h */

enum image_format { IMAGE_FORMAT_DIR, IMAGE_FORMAT_SQUASHFS, IMAGE_FORMAT_SIF };

/* ---- SIF (Singularity Image Format), little endian, packed as the reference Go code writes it */
#define SIF_HEADER_SIZE 128
#define SIF_DESCRIPTOR_SIZE 585
#define SIF_GROUP_MASK 0xf0000000u

enum sif_datatype {
        SIF_DATA_DEFFILE = 0x4001,
        SIF_DATA_ENVVAR,
        SIF_DATA_LABELS,
        SIF_DATA_PARTITION,
        SIF_DATA_SIGNATURE,
        SIF_DATA_GENERICJSON,
        SIF_DATA_GENERIC,
        SIF_DATA_CRYPTOMESSAGE,
        SIF_DATA_SBOM,
};
enum sif_fstype { SIF_FS_SQUASH = 1, SIF_FS_EXT3, SIF_FS_IMMUOBJ, SIF_FS_RAW, SIF_FS_ENCRYPTED_SQUASH };
enum sif_parttype { SIF_PART_SYSTEM = 1, SIF_PART_PRIMSYS, SIF_PART_DATA, SIF_PART_OVERLAY };

struct sif_header {
        char launch[33];
        char version[4];
        char arch[4];
        uint8_t id[16];
        int64_t created, modified;
        int64_t descr_free, descr_total, descr_offset, descr_size, data_offset, data_size;
};

struct sif_descriptor {
        int32_t datatype;
        bool used;
        uint32_t id, groupid, linkid;
        int64_t offset, size, size_with_padding, created, modified, uid, gid;
        char name[129];
        uint8_t extra[384];
        /* decoded from extra for partitions */
        int32_t fstype, parttype;
        char arch[4];
};

struct sif {
        struct sif_header header;
        struct sif_descriptor *descr; /* used descriptors only */
        size_t n_descr;
};

int sif_header_parse(const uint8_t *buf, size_t len, struct sif_header *ret, struct hutch_error *err);
void sif_descriptor_parse(const uint8_t *buf, struct sif_descriptor *ret);
void sif_header_format(const struct sif_header *h, uint8_t *out);         /* SIF_HEADER_SIZE bytes */
void sif_descriptor_format(const struct sif_descriptor *d, uint8_t *out); /* SIF_DESCRIPTOR_SIZE bytes */
/* Reads and validates header and descriptors against file_size. */
int sif_load(int fd, uint64_t file_size, struct sif *ret, struct hutch_error *err);
void sif_free(struct sif *s);
const struct sif_descriptor *sif_descriptor_find(const struct sif *s, uint32_t id);
/* The primary system partition, checked to be squashfs. */
int sif_primary_partition(const struct sif *s, const struct sif_descriptor **ret, struct hutch_error *err);
const char *sif_datatype_name(int32_t t);
const char *sif_fstype_name(int32_t t);
const char *sif_parttype_name(int32_t t);
const char *sif_arch_name(const char *code);   /* "02" -> "amd64" */
const char *sif_arch_code(const char *goarch); /* "amd64" -> "02" */
/* Signature objects (the sylabs integrity format): the hash type and the signing key's
 * fingerprint kept in the descriptor's extra bytes. */
#define SIF_ENTITY_LEN 256
void sif_signature_meta(const struct sif_descriptor *d, int32_t *ret_hashtype, uint8_t ret_entity[SIF_ENTITY_LEN]);
/* Append an object: data written where the data section ends, d (datatype, groupid, linkid,
 * name, extra as given) stored in the first unused descriptor with id, offset, size and
 * times filled in, then the header's counts; the header's other bytes stay as they were. */
int sif_object_append(int fd, const void *data, size_t len, int64_t now, struct sif_descriptor *d,
                      struct hutch_error *err);

/* ---- an opened image */
struct image {
        enum image_format format;
        char *path;            /* absolute */
        int fd;                /* regular file (ro), or O_PATH directory */
        uint64_t offset, size; /* the squashfs filesystem inside the file */
        bool writable;
        struct sqfs_handle *sqfs; /* lazily opened reader for metadata */
        /* inspect --app, run-help --app: the metadata of /.singularity.d is read from the
         * app's /scif/apps/APP/scif instead (the definition file stays the image's) */
        const char *app;
};

#define IMAGE_NULL           \
        {                    \
                .fd = -EBADF \
        }

const char *image_format_name(enum image_format f);
int image_open(const char *path, bool writable, struct image *ret, struct hutch_error *err);
void image_close(struct image *img);

/* "sha256:HEX" of the image's root file system bytes (a SIF's primary partition, a squashfs
 * file whole); -EISDIR for a folder. cache_dir (NULL: none; created 0700 when missing) keeps
 * each file's digest by device and inode while its size, mtime and ctime stay: an image is
 * read whole once per version (image/digest.c). -EINTR when SIGTERM, SIGINT or SIGHUP is
 * pending (blocked) for the caller while it reads. */
int image_digest(const char *path, const char *cache_dir, char ret[72], struct hutch_error *err);

/* Read a file from inside the image (symlinks inside the image resolved inside it), at most
 * max bytes. -ENOENT when absent. */
int image_read_file(struct image *img, const char *path, size_t max, char **ret, size_t *ret_len,
                    struct hutch_error *err);
bool image_has_file(struct image *img, const char *path);
/* The names of the folders in a folder of the image, unsorted; -ENOENT when it is absent. */
int image_list_dirs(struct image *img, const char *path, char ***ret, struct hutch_error *err);
/* The SCIF apps (folders of /scif/apps holding a scif/ folder), sorted; none: *ret NULL. */
int image_list_apps(struct image *img, char ***ret, struct hutch_error *err);

/* ---- mounting. The mount is made in the caller's mount namespace at target. A squashfs
 * mount is served by a server process started beforehand (image_serve_process), waiting
 * at the other end of serve_sock (a seqpacket socket), which the mount's FUSE fd and the
 * image's fd are sent to. */
struct image_mount_opts {
        uid_t uid; /* owner of the FUSE connection, as seen in the current user namespace */
        gid_t gid;
        int serve_sock;
        bool kernel_ok;  /* really root: kernel mounts allowed */
        bool allow_suid; /* root's --allow-setuid: no nosuid (setuid files of the image work) */
};
int image_mount(struct image *img, const char *target, const struct image_mount_opts *o, struct hutch_error *err);
/* Start the image server (hutch-squashfs; image/serve.c), with a decompressed-file cache of
 * cache_max bytes (0: none): it waits on sock (which it
 * takes) for a mount handed over by image_mount(), serves it confined until the mount goes
 * away or owner_fd (a pidfd: a batch container's launcher, which becomes the payload; an
 * instance's supervisor) reports the owner's exit, and ends at once when sock's other end
 * closes with nothing handed over. Should the image crash it, it writes one line to
 * report_fd ("hutch: error: image 'X' is corrupt (server ended: SIGSEGV)") and answers the
 * mount with EIO from then on. ret NULL: detached, out of the caller's tree and session
 * (it cannot wait for a batch container's mount namespace to die: its presence would keep
 * it alive); else the caller's child, held by *ret. */
int image_serve_process(int sock, int owner_fd, int report_fd, uint64_t cache_max, struct pidref *ret,
                        struct hutch_error *err);
/* The server process's life: `hutch-squashfs CACHE_MAX` or `hutch serve-image CACHE_MAX`
 * (hidden; the program's main routes it here, cache_max parsed) with the socket as fd 3,
 * the owner's pidfd as fd 4 and the report fd as fd 5. Returns its exit status; 2: not
 * started by image_serve_process. */
#define IMAGE_SERVE_VERB "serve-image"
int image_serve_main(uint64_t cache_max);

/* hutch-ext3 (image/ext3.c, its own program: libext2fs is linked there alone): an ext3
 * overlay image served over FUSE for a user's kernel overlayfs, `hutch-ext3 IMAGE-FD OFFSET
 * FUSE-FD rw|ro UID GID` with the mount already made on FUSE-FD; owners the user namespace
 * does not map show as UID and GID. It serves until SIGTERM or the
 * mount's end, then writes the image back and marks it clean. Returns its exit status: 1
 * with a line on stderr when the image cannot be used, 2 on a wrong command line. */
int image_ext3_main(int argc, char **argv);

/* ---- the decompressed-file cache (image/cache.c): files of at least one data block that
 * the server pushes whole are kept decompressed per user, so that the next start of the
 * same image stores them into the page cache without inflating them. */
struct file_cache_key {
        uint64_t dev, ino, size, mtime_ns, ctime_ns; /* the image file */
        uint64_t offset;                             /* of the squashfs in it */
        uint64_t inode; /* the file's squashfs inode number; a fragment block: its index | 1 << 63 */
};
#define FILE_CACHE_NAME_MAX 128
/* $XDG_RUNTIME_DIR/hutch/cache when that folder is uid's, else /dev/shm/hutch-UID/cache. */
int file_cache_path(uid_t uid, const char *xdg_runtime_dir, char **ret);
/* The folder, opened (made with create); -EPERM when a level of it is not uid's alone. */
int file_cache_open(uid_t uid, const char *xdg_runtime_dir, bool create);
/* Why file_cache_open said -EPERM: the first level of the folder that is not uid's alone
 * (another's, writable by others, not a folder), its path and lstat; 1 then, 0 when none. */
struct stat;
int file_cache_why_not_own(uid_t uid, const char *xdg_runtime_dir, char **ret_path, struct stat *ret_st);
void file_cache_name(const struct file_cache_key *k, char *buf, size_t len);
/* An entry, opened, checked to be of file_size bytes (unless 0) and marked used; -ENOENT,
 * -ESTALE. */
int file_cache_get(int dirfd, const struct file_cache_key *k, uint64_t file_size);
/* Store size bytes as the entry of k, then trim the folder to max bytes (-EFBIG: an entry
 * of more than half of max is not kept). used: the writer's count of the folder's bytes
 * (-1: unknown yet), so that it scans the folder once, not at every entry; NULL: scan. */
int file_cache_put(int dirfd, const struct file_cache_key *k, const void *data, uint64_t size, uint64_t max,
                   int64_t *used);
int file_cache_usage(int dirfd, uint64_t *ret_bytes, size_t *ret_files);
/* Past max bytes, remove the least recently used entries down to 7/8 of max (0: everything,
 * temporary files of running servers too); *ret_left (may be NULL): the bytes kept. */
int file_cache_trim(int dirfd, uint64_t max, uint64_t *ret_left);

/* ---- building (conversion folder <-> squashfs <-> SIF) */
struct build_spec {
        const char *target;
        const char *source;
        bool sandbox;
        bool force;
        const char *deffile; /* text recorded in the SIF, may be NULL */
        bool progress;       /* mksquashfs's and unsquashfs's progress bars (on a terminal) */
        bool quiet;          /* no "Building"/"Build complete" lines (a step of a pull) */
        /* a folder squashed with zstd level 3 instead of mksquashfs's gzip -9: about 5x
         * faster at the same size (docs/performance.md); squashfuse and Linux >= 4.14 read it */
        bool zstd;
        /* when the whole build began (CLOCK_MONOTONIC); NULL: now */
        const struct timespec *start;
};
int image_build(const struct build_spec *b, struct hutch_error *err);
/* Wrap an existing squashfs file into a new SIF file with the objects Apptainer writes. */
int sif_write(const char *target, int squashfs_fd, const char *deffile, const char *inspect_json,
              struct hutch_error *err);

/* /.singularity.d/env/90-environment.sh as Apptainer's builds start it (a definition file's
 * %environment is appended; an image from a registry keeps it so) */
#define IMAGE_ENV_HEAD "#!/bin/sh\n# Custom environment shell code should follow\n\n"

/* Metadata, as `inspect` shows it. */
enum image_meta {
        IMAGE_META_LABELS = 1u << 0,
        IMAGE_META_DEFFILE = 1u << 1,
        IMAGE_META_RUNSCRIPT = 1u << 2,
        IMAGE_META_STARTSCRIPT = 1u << 3,
        IMAGE_META_TEST = 1u << 4,
        IMAGE_META_ENVIRONMENT = 1u << 5,
        IMAGE_META_HELPFILE = 1u << 6,
        /* every SCIF app's own attributes under "apps" (JSON only), as Apptainer's --all and
         * --list-apps --json show them */
        IMAGE_META_APPS = 1u << 7,
        IMAGE_META_ALL = (1u << 8) - 1,
};
/* Apptainer's shape: {"data":{"attributes":{...}},"type":"container"}; caller frees. */
int image_inspect_json(struct image *img, unsigned what, char **ret, struct hutch_error *err);
/* Plain text, as Apptainer prints without --json. */
int image_inspect_text(struct image *img, unsigned what, char **ret, struct hutch_error *err);

/* ---- persistent overlays (image/overlay.c): --overlay PATH[:ro|:rw] */
struct overlay_spec {
        char *path;
        bool ro;
};
/* One "PATH[:ro|:rw]". */
int overlay_spec_parse(const char *arg, struct overlay_spec *ret, struct hutch_error *err);
/* A comma list of them, appended to *v. */
int overlay_spec_add(const char *list, struct overlay_spec **v, size_t *n, struct hutch_error *err);
void overlay_spec_free_array(struct overlay_spec *v, size_t n);
/* The last writable one: the upper layer (-1: none); every other is a read-only lower layer. */
ssize_t overlay_upper_index(const struct overlay_spec *v, size_t n);

enum overlay_kind { OVERLAY_DIR, OVERLAY_EXT3 /* an ext3 image, or a SIF's overlay partition */ };
struct overlay {
        char *path; /* absolute */
        enum overlay_kind kind;
        bool ro;               /* a lower layer */
        int fd;                /* the folder or image file, opened as the caller (close-on-exec) */
        int lock_fd;           /* holds the lock: see image_overlays_keep_across_exec */
        uint64_t offset, size; /* ext3: the filesystem in the file */
};
/* Open each overlay with the caller's credentials, classify it, give a writable folder its
 * upper/ and work/, and (lock) flock it: shared when read-only, exclusive for the upper
 * layer, without waiting: -EBUSY naming the holder (an instance, or a pid). The locks last
 * as long as the fds (close-on-exec, see image_overlays_keep_across_exec). */
int image_overlays_open(const struct overlay_spec *v, size_t n, bool lock, struct overlay **ret,
                        struct hutch_error *err);
void image_overlays_close(struct overlay *v, size_t n);
/* A folder overlay's lock moves to a fd of tree (O_PATH, the caller's), a detached clone of
 * the folder made in the launcher's own mount namespace: made read-only here, and fit to
 * cross exec (below). */
int image_overlay_lock_move(struct overlay *o, int tree, struct hutch_error *err);
/* The lock fds survive exec: a batch payload holds its overlays' locks for its life.
 * Invariant: a lock fd the payload inherits opens no way out of the container and writes
 * nothing. For an ext3 image or SIF it is a second, read-only, fd of the file (o->fd, read
 * and write, stays close-on-exec); for a folder, the root of a detached, non-recursive,
 * read-only clone of it (image_overlay_lock_move): ".." at a detached mount's root stays
 * there. A folder's lock therefore crosses exec only once it has moved. */
int image_overlays_keep_across_exec(struct overlay *v, size_t n);
/* Who holds a flock on (dev, ino) in /proc/locks's text: its pid, 0 when not listed. Pure. */
pid_t overlay_lock_holder_find(const char *locks, dev_t dev, ino_t ino);
/* A regular file with SIF's magic. */
bool image_file_is_sif(const char *path);
/* -w/--writable on a SIF: its overlay partition as the last, writable, overlay. */
int overlay_spec_writable_sif(const char *image, struct overlay_spec **v, size_t *n, struct hutch_error *err);
/* A SIF's ext3 overlay partition, or NULL. */
const struct sif_descriptor *sif_overlay_partition(const struct sif *s);
/* An ext2/3/4 superblock (the 1024 bytes at offset 1024 of the filesystem). */
bool ext3_superblock_is(const uint8_t *sb, size_t len);
/* An instance's supervisor, named as a lock holder: its comm, and the fd where it keeps
 * its instance folder open (instanced/ checks they match its own). */
#define OVERLAY_SUPERVISOR_COMM "hutch-supervise"
#define OVERLAY_SUPERVISOR_DIR_FD 4

/* `overlay create` (image/overlay-create.c): a new ext3 image of size_mib MiB (at least
 * OVERLAY_SIZE_MIN_MIB) holding upper/ and work/ owned by the caller, and upper/DIR for each
 * create_dirs entry (absolute). sparse: the file's blocks are not allocated up front.
 * When target is a SIF file, the image becomes its overlay partition (-EEXIST when it has
 * one); when it is another file, -EEXIST. */
#define OVERLAY_SIZE_MIN_MIB 64
struct overlay_create_spec {
        const char *target;
        uint64_t size_mib;
        bool sparse;
        char **create_dirs;
};
int image_overlay_create(const struct overlay_create_spec *s, struct hutch_error *err);
int overlay_create_dir_check(const char *dir, struct hutch_error *err);
