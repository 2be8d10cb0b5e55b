/* Conversions between a sandbox folder, a squashfs file and a SIF file, and the SIF writer.
 * Every target is made in a private folder beside its final name and renamed into place,
 * so a failure leaves neither a partial file nor a changed target, and nothing another
 * user put at a name hutch would use is followed. */
#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "util/log.h"
#include "util/util.h"

#define SIF_DESCRIPTORS 48
#define SIF_DESCR_OFFSET 4096
#define SIF_ALIGN 4096

static int copy_range(int in, off_t off, uint64_t len, int out, off_t out_off)
{
        while (len > 0) {
                ssize_t n = copy_file_range(in, &off, out, &out_off, len > (1u << 30) ? (1u << 30) : len, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EXDEV || errno == ENOSYS || errno == EINVAL) {
                                char buf[65536];
                                ssize_t k = pread(in, buf, len < sizeof buf ? len : sizeof buf, off);
                                if (k <= 0)
                                        return k < 0 ? -errno : -EIO;
                                if (pwrite(out, buf, k, out_off) != k)
                                        return -EIO;
                                off += k;
                                out_off += k;
                                len -= k;
                                continue;
                        }
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                len -= n;
        }
        return 0;
}

static const char *host_arch_code(void)
{
        struct utsname u;
        static const struct {
                const char *machine, *goarch;
        } m[] = {{"x86_64", "amd64"},    {"aarch64", "arm64"}, {"i686", "386"},
                 {"ppc64le", "ppc64le"}, {"s390x", "s390x"},   {"riscv64", "riscv64"}};
        if (uname(&u) == 0)
                for (size_t i = 0; i < ELEMENTSOF(m); i++)
                        if (!strcmp(u.machine, m[i].machine))
                                return sif_arch_code(m[i].goarch);
        return "00";
}

int sif_write(const char *target, int sqfs_fd, const char *deffile, const char *inspect_json, struct hutch_error *err)
{
        struct sif_header h = {.launch = "#!/usr/bin/env run-singularity\n", .version = "01"};
        struct sif_descriptor d[3];
        struct stat st;
        int64_t now = time(NULL);

        if (fstat(sqfs_fd, &st) < 0)
                return hutch_err_sys(err, -errno, "cannot stat squashfs");
        snprintf(h.arch, sizeof h.arch, "%s", host_arch_code());
        if (getrandom(h.id, sizeof h.id, 0) != sizeof h.id)
                return hutch_err_sys(err, -errno, "getrandom");
        h.id[6] = (h.id[6] & 0x0f) | 0x40; /* UUID version 4, variant 1 */
        h.id[8] = (h.id[8] & 0x3f) | 0x80;
        h.created = h.modified = now;
        h.descr_total = SIF_DESCRIPTORS;
        h.descr_free = SIF_DESCRIPTORS - 3;
        h.descr_offset = SIF_DESCR_OFFSET;
        h.descr_size = SIF_DESCRIPTORS * SIF_DESCRIPTOR_SIZE;
        h.data_offset = h.descr_offset + h.descr_size;

        const char *blobs[2] = {deffile ? deffile : "", inspect_json ? inspect_json : "{}"};
        int32_t types[3] = {SIF_DATA_DEFFILE, SIF_DATA_GENERICJSON, SIF_DATA_PARTITION};
        int64_t end = h.data_offset;
        memset(d, 0, sizeof d);
        for (int i = 0; i < 3; i++) {
                int64_t size = i < 2 ? (int64_t) strlen(blobs[i]) : st.st_size;
                int64_t off = i < 2 ? end : (end + SIF_ALIGN - 1) / SIF_ALIGN * SIF_ALIGN;
                d[i] = (struct sif_descriptor){
                        .datatype = types[i],
                        .used = true,
                        .id = (uint32_t) i + 1,
                        .groupid = 1 | SIF_GROUP_MASK,
                        .offset = off,
                        .size = size,
                        .size_with_padding = off - end + size,
                        .created = now,
                        .modified = now,
                };
                end = off + size;
        }
        d[2].fstype = SIF_FS_SQUASH;
        d[2].parttype = SIF_PART_PRIMSYS;
        snprintf(d[2].arch, sizeof d[2].arch, "%s", h.arch);
        h.data_size = end - h.data_offset;

        _cleanup_close_ int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0755);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s'", target);
        uint8_t hb[SIF_HEADER_SIZE];
        _cleanup_free_ uint8_t *tb = calloc(SIF_DESCRIPTORS, SIF_DESCRIPTOR_SIZE);
        if (!tb)
                return hutch_err(err, -ENOMEM, "out of memory");
        sif_header_format(&h, hb);
        for (int i = 0; i < 3; i++)
                sif_descriptor_format(&d[i], tb + i * SIF_DESCRIPTOR_SIZE);
        int r = 0;
        if (pwrite(fd, hb, sizeof hb, 0) != (ssize_t) sizeof hb ||
            pwrite(fd, tb, h.descr_size, h.descr_offset) != (ssize_t) h.descr_size ||
            pwrite(fd, blobs[0], d[0].size, d[0].offset) != (ssize_t) d[0].size ||
            pwrite(fd, blobs[1], d[1].size, d[1].offset) != (ssize_t) d[1].size)
                r = -EIO;
        if (r >= 0)
                r = copy_range(sqfs_fd, 0, (uint64_t) st.st_size, fd, d[2].offset);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0)
                return hutch_err_sys(err, r, "cannot write SIF '%s'", target);
        return 0;
}

static void remove_tree(const char *path)
{
        char *argv[] = {"rm", "-rf", "--", (char *) path, NULL};
        spawn_wait(argv, true);
}

/* The build's private folder beside the target, where every intermediate file is made:
 * mkdtemp makes it 0700 under a name nobody can guess, so nothing another user planted (a
 * symlink, a folder) is followed or written through, and only what hutch made is renamed
 * into place; beside the target, so that rename stays on one filesystem. */
struct work {
        char *dir;    /* TARGET.hutch-tmp-XXXXXX */
        char *result; /* dir/image: the new file or folder */
        char *sqfs;   /* dir/image.sqfs: an intermediate squashfs */
};

static void work_remove(struct work *w)
{
        if (w->dir)
                remove_tree(w->dir);
        free(w->dir);
        free(w->result);
        free(w->sqfs);
}

static int work_make(const char *target, struct work *ret, struct hutch_error *err)
{
        struct work w = {0};
        _cleanup_free_ char *t = strdup(target);
        if (!t)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t n = strlen(t); n > 1 && t[n - 1] == '/'; n--)
                t[n - 1] = 0;
        if (asprintf(&w.dir, "%s.hutch-tmp-XXXXXX", t) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (!mkdtemp(w.dir)) {
                int r = hutch_err_sys(err, -errno, "cannot create a temporary folder beside '%s'", target);
                free(w.dir);
                return r;
        }
        w.result = strjoin(w.dir, "/image", NULL);
        w.sqfs = strjoin(w.dir, "/image.sqfs", NULL);
        if (!w.result || !w.sqfs) {
                work_remove(&w);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        *ret = w;
        return 0;
}

/* Squashfs bytes of img in a new file at path (mksquashfs for folders). progress: leave
 * mksquashfs's progress bar on (it draws it only on a terminal). */
static int squashfs_from(struct image *img, const char *path, bool progress, struct hutch_error *err)
{
        if (img->format == IMAGE_FORMAT_DIR) {
                char *argv[8] = {"mksquashfs", img->path, (char *) path, "-noappend", "-quiet"};
                size_t n = 5;
                if (!progress)
                        argv[n++] = "-no-progress";
                if (getuid() != 0)
                        argv[n++] = "-all-root";
                int r = spawn_wait(argv, !progress);
                if (r != 0)
                        return hutch_err(err, r < 0 ? r : -EIO, "mksquashfs of '%s' failed (%s %d)", img->path,
                                         r < 0 ? "error" : "exit status", r < 0 ? -r : r);
                return 0;
        }
        _cleanup_close_ int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (out < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s'", path);
        int r = copy_range(img->fd, (off_t) img->offset, img->size, out, 0);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot write '%s'", path);
        return 0;
}

/* Bytes in the regular files of a folder tree and its device nodes (fts: no callback, no
 * globals; not crossing into other mounts, not following symlinks). */
static void tree_scan(const char *path, uint64_t *ret_bytes, size_t *ret_devices)
{
        char *paths[] = {(char *) path, NULL};
        uint64_t bytes = 0;
        size_t devices = 0;
        FTS *f = fts_open(paths, FTS_PHYSICAL | FTS_XDEV | FTS_NOCHDIR, NULL);
        for (FTSENT *e; f && (e = fts_read(f));) {
                if (e->fts_info == FTS_F)
                        bytes += (uint64_t) e->fts_statp->st_size;
                else if (e->fts_info == FTS_DEFAULT &&
                         (S_ISCHR(e->fts_statp->st_mode) || S_ISBLK(e->fts_statp->st_mode)))
                        devices++;
        }
        if (f)
                fts_close(f);
        *ret_bytes = bytes;
        *ret_devices = devices;
}

/* The device nodes of the squashfs at sqfs, from unsquashfs's listing, one name a line
 * (relative to the root) into a new file at exclude. Returns how many; *ret_first: the
 * first one's name. */
static int devices_list(const char *sqfs, const char *exclude, char **ret_first, struct hutch_error *err)
{
        static const char prefix[] = " squashfs-root/";
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return hutch_err_sys(err, -errno, "cannot create a pipe");
        pid_t p = fork();
        if (p == 0) {
                dup2(pfd[1], STDOUT_FILENO);
                execlp("unsquashfs", "unsquashfs", "-lln", sqfs, (char *) NULL);
                _exit(127);
        }
        close(pfd[1]);
        _cleanup_fclose_ FILE *in = p < 0 ? NULL : fdopen(pfd[0], "r");
        if (!in)
                close(pfd[0]);
        _cleanup_fclose_ FILE *out = in ? fopen(exclude, "wxe") : NULL;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        int n = 0;
        while (out && getline(&line, &cap, in) > 0) {
                char *name = strstr(line, prefix);
                if ((line[0] != 'c' && line[0] != 'b') || !name)
                        continue;
                name += strlen(prefix);
                name[strcspn(name, "\n")] = 0;
                if (n++ == 0 && !*ret_first)
                        *ret_first = strdup(name);
                fprintf(out, "%s\n", name);
        }
        if (in) { /* before the wait: a writer must not block on a full pipe */
                fclose(in);
                in = NULL;
        }
        int status = 0;
        if (p > 0)
                while (waitpid(p, &status, 0) < 0 && errno == EINTR)
                        ;
        if (!out || fflush(out) != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return hutch_err(err, -EIO, "cannot list the device nodes of '%s'", sqfs);
        return n;
}

/* A folder: copied (cp -a). A squashfs or SIF, or a folder with device nodes built by a
 * user: through a squashfs, unpacked (unsquashfs). A user cannot make device nodes (mknod
 * needs CAP_MKNOD in the initial user namespace), so a user's sandbox leaves them out, as
 * Apptainer's does. */
static int build_sandbox(struct image *img, bool progress, const struct work *w, struct hutch_error *err)
{
        bool user = getuid() != 0;
        uint64_t bytes;
        size_t devices = 0;
        if (img->format == IMAGE_FORMAT_DIR && user)
                tree_scan(img->path, &bytes, &devices);
        if (img->format == IMAGE_FORMAT_DIR && devices == 0) {
                char *argv[] = {"cp", "-a", "--", img->path, w->result, NULL};
                if (spawn_wait(argv, false) != 0)
                        return hutch_err(err, -EIO, "copying '%s' failed", img->path);
                return 0;
        }
        int r = squashfs_from(img, w->sqfs, progress, err);
        if (r < 0)
                return r;
        char *argv[12] = {"unsquashfs", "-quiet"};
        size_t n = 2;
        if (!progress)
                argv[n++] = "-no-progress";
        _cleanup_free_ char *exclude = strjoin(w->dir, "/devices", NULL), *first = NULL;
        if (!exclude)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (user) {
                if ((r = devices_list(w->sqfs, exclude, &first, err)) < 0)
                        return r;
                if (r > 0) {
                        log_verbose("leaving out %d device node%s (/%s%s): a user cannot create them", r,
                                    r > 1 ? "s" : "", first ? first : "", r > 1 ? ", ..." : "");
                        argv[n++] = "-no-wildcards";
                        argv[n++] = "-exclude-file";
                        argv[n++] = exclude;
                }
        }
        argv[n++] = "-d";
        argv[n++] = w->result;
        argv[n++] = w->sqfs;
        r = spawn_wait(argv, !progress);
        if (r != 0)
                return hutch_err(err, -EIO, "unsquashfs of '%s' failed", img->path);
        return 0;
}
static char *default_deffile(struct image *img)
{
        char *d = NULL;
        if (image_read_file(img, "/.singularity.d/Singularity", 1 << 20, &d, NULL, &(struct hutch_error){0}) >= 0)
                return d;
        if (asprintf(&d, "bootstrap: localimage\nfrom: %s\n", img->path) < 0)
                return NULL;
        return d;
}

static int build_file(struct image *img, const struct build_spec *b, const struct work *w, bool sif,
                      struct hutch_error *err)
{
        if (!sif)
                return squashfs_from(img, w->result, b->progress, err);
        int r = squashfs_from(img, w->sqfs, b->progress, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *def = b->deffile ? strdup(b->deffile) : default_deffile(img), *json = NULL;
        if (image_inspect_json(img, IMAGE_META_ALL, &json, err) < 0)
                json = NULL;
        _cleanup_close_ int fd = open(w->sqfs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot reopen '%s'", w->sqfs);
        return sif_write(w->result, fd, def, json, err);
}

static double seconds_since(const struct timespec *t0)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double) (t.tv_sec - t0->tv_sec) + (double) (t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The new image into place: an existing folder target (--force) is removed first, as
 * rename(2) replaces only an empty one. */
static int result_install(const struct work *w, const char *target, struct hutch_error *err)
{
        struct stat st;
        if (lstat(target, &st) == 0 && S_ISDIR(st.st_mode))
                remove_tree(target);
        if (rename(w->result, target) < 0)
                return hutch_err_sys(err, -errno, "cannot move the new image to '%s'", target);
        return 0;
}

int image_build(const struct build_spec *b, struct hutch_error *err)
{
        struct image img = IMAGE_NULL;
        struct work w = {0};
        struct stat st;
        struct timespec t0;
        bool sandbox = b->sandbox;
        bool sif = !sandbox && !endswith(b->target, ".sqfs") && !endswith(b->target, ".squashfs");

        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (lstat(b->target, &st) == 0 && !b->force)
                return hutch_err(err, -EEXIST, "build target '%s' already exists; use --force to overwrite it",
                                 b->target);
        int r = image_open(b->source, false, &img, err);
        if (r < 0)
                return r;
        r = work_make(b->target, &w, err);
        if (r < 0) {
                image_close(&img);
                return r;
        }
        log_info("Building %s %s from %s image %s",
                 sandbox ? "sandbox"
                 : sif   ? "SIF file"
                         : "squashfs file",
                 b->target, image_format_name(img.format), img.path);
        r = sandbox ? build_sandbox(&img, b->progress, &w, err) : build_file(&img, b, &w, sif, err);
        image_close(&img);
        if (r >= 0)
                r = result_install(&w, b->target, err);
        work_remove(&w);
        if (r < 0)
                return r;
        uint64_t bytes = 0;
        size_t devices;
        if (lstat(b->target, &st) == 0 && S_ISREG(st.st_mode))
                bytes = (uint64_t) st.st_size;
        else
                tree_scan(b->target, &bytes, &devices);
        char size[32];
        size_format(bytes, size, sizeof size);
        log_info("Build complete: %s (%s, %.1f s)", b->target, size, seconds_since(&t0));
        return 0;
}
