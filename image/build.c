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

#include "image-internal.h"
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

/* The SIF into fd, a new empty file; target names it in messages. */
static int sif_write_fd(int fd, const char *target, int sqfs_fd, const char *deffile, const char *inspect_json,
                        struct hutch_error *err)
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

int sif_write(const char *target, int sqfs_fd, const char *deffile, const char *inspect_json, struct hutch_error *err)
{
        _cleanup_close_ int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0755);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s'", target);
        return sif_write_fd(fd, target, sqfs_fd, deffile, inspect_json, err);
}

/* Runs a tool with cwd as its working directory (fchdir in the child), so every relative
 * name in argv resolves through that open folder, never through a path another user could
 * change. stdout: to out (>= 0), else the terminal when show, else /dev/null. stderr is
 * captured and its last non-empty line kept in last, for the one error message. Returns
 * the exit status, or negative errno. */
int tool_run(int cwd, char *const argv[], int out, bool show, char *last, size_t cap)
{
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -errno;
        pid_t p = fork();
        if (p < 0) {
                int r = -errno;
                close(pfd[0]);
                close(pfd[1]);
                return r;
        }
        if (p == 0) {
                if (fchdir(cwd) < 0)
                        _exit(127);
                if (out < 0 && !show)
                        out = open("/dev/null", O_WRONLY);
                if (out >= 0)
                        dup2(out, STDOUT_FILENO);
                dup2(pfd[1], STDERR_FILENO);
                execvp(argv[0], argv);
                _exit(127);
        }
        close(pfd[1]);
        char buf[4096], line[512];
        size_t len = 0;
        if (cap)
                last[0] = 0;
        for (ssize_t n = 1; n != 0;) {
                n = read(pfd[0], buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                for (ssize_t i = 0; i <= (n > 0 ? n : 0); i++) {
                        bool end = i == n || n <= 0 || buf[i] == '\n' || buf[i] == '\r';
                        if (!end) {
                                if (len < sizeof line - 1)
                                        line[len++] = buf[i];
                                continue;
                        }
                        if (i == n && n > 0)
                                break; /* the line goes on in the next read */
                        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
                                len--;
                        if (len > 0 && cap)
                                snprintf(last, cap, "%.*s", (int) len, line);
                        len = 0;
                }
                if (n < 0)
                        break;
        }
        close(pfd[0]);
        int status;
        while (waitpid(p, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The one error message of a failed tool ("STEP 'WHAT' failed"): the tool's own last line
 * when it printed one. */
int tool_error(const char *step, const char *what, int r, const char *last, struct hutch_error *err)
{
        if (r > 0 && last[0])
                return hutch_err(err, -EIO, "%s '%s' failed: %s", step, what, last);
        return hutch_err(err, r < 0 ? r : -EIO, "%s '%s' failed (%s %d)", step, what, r < 0 ? "error" : "exit status",
                         r < 0 ? -r : r);
}

/* The build's private folder beside the target, where every intermediate file is made:
 * mkdtemp makes it 0700 under a name nobody can guess, beside the target so the final
 * rename stays on one filesystem. Its name is used once, to open it; after the check that
 * the folder opened is the one made (ours, 0700), everything happens through fd (tools run
 * in it, files are opened and renamed relative to it), since another user who can write
 * to the target's folder can still rename the private folder away and put theirs, or a
 * symlink, under its name. */

/* Names made in the private folder. */
#define W_IMAGE "image"     /* the new file or folder */
#define W_SQFS "image.sqfs" /* an intermediate squashfs */
#define W_DEVICES "devices" /* device nodes a user's sandbox leaves out */
#define W_LISTING "listing" /* unsquashfs's listing */

void work_remove(struct work *w)
{
        struct stat st;
        char last[1];
        if (w->fd >= 0) {
                char *argv[] = {"rm", "-rf", "--", W_IMAGE, W_SQFS, W_DEVICES, W_LISTING, NULL};
                tool_run(w->fd, argv, -1, false, last, 0);
                /* by name only while the name is still this folder: it may have been renamed away */
                if (fstatat(w->parent, w->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == w->st.st_dev &&
                    st.st_ino == w->st.st_ino)
                        unlinkat(w->parent, w->name, AT_REMOVEDIR);
                close(w->fd);
        }
        if (w->parent >= 0)
                close(w->parent);
        free(w->dir);
        free(w->base);
        *w = WORK_NULL;
}

int work_make(const char *target, struct work *ret, struct hutch_error *err)
{
        struct work w = WORK_NULL;
        _cleanup_free_ char *t = strdup(target);
        if (!t)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t n = strlen(t); n > 1 && t[n - 1] == '/'; n--)
                t[n - 1] = 0;
        char *slash = strrchr(t, '/');
        w.base = strdup(slash ? slash + 1 : t);
        if (slash)
                slash[slash == t ? 1 : 0] = 0;
        if (!w.base || asprintf(&w.dir, "%s/%s.hutch-tmp-XXXXXX", slash ? t : ".", w.base) < 0) {
                work_remove(&w);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        w.parent = open(slash ? t : ".", O_DIRECTORY | O_PATH | O_CLOEXEC);
        if (w.parent < 0) {
                int r = hutch_err_sys(err, -errno, "cannot open the folder of '%s'", target);
                work_remove(&w);
                return r;
        }
        if (!mkdtemp(w.dir)) {
                int r = hutch_err_sys(err, -errno, "cannot create a temporary folder beside '%s'", target);
                work_remove(&w);
                return r;
        }
        w.name = strrchr(w.dir, '/') + 1;
        w.fd = openat(w.parent, w.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (w.fd < 0 || fstat(w.fd, &w.st) < 0 || !S_ISDIR(w.st.st_mode) || w.st.st_uid != geteuid() ||
            (w.st.st_mode & 07777) != 0700) {
                /* not the folder made: leave whatever is there alone */
                if (w.fd >= 0)
                        close(w.fd);
                w.fd = -1;
                work_remove(&w);
                return hutch_err(err, -EPERM, "the temporary folder beside '%s' was replaced while opening it", target);
        }
        *ret = w;
        return 0;
}

/* Squashfs bytes of img in a new file name in the private folder (mksquashfs for
 * folders). progress: leave mksquashfs's progress bar on (it draws it only on a terminal).
 * zstd: build_spec's. */
static int squashfs_from(struct image *img, const struct work *w, const char *name, bool progress, bool zstd,
                         struct hutch_error *err)
{
        char last[256];
        if (img->format == IMAGE_FORMAT_DIR) {
                char *argv[12] = {"mksquashfs", img->path, (char *) name, "-noappend", "-quiet"};
                size_t n = 5;
                if (zstd) {
                        argv[n++] = "-comp";
                        argv[n++] = "zstd";
                        argv[n++] = "-Xcompression-level";
                        argv[n++] = "3";
                }
                if (!progress)
                        argv[n++] = "-no-progress";
                if (getuid() != 0)
                        argv[n++] = "-all-root";
                int r = tool_run(w->fd, argv, -1, progress, last, sizeof last);
                return r != 0 ? tool_error("mksquashfs of", img->path, r, last, err) : 0;
        }
        _cleanup_close_ int out = openat(w->fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (out < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s/%s'", w->dir, name);
        int r = copy_range(img->fd, (off_t) img->offset, img->size, out, 0);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot write '%s/%s'", w->dir, name);
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

/* The device nodes of the private folder's squashfs, from unsquashfs's listing, one name a
 * line (relative to the root) into a new file W_DEVICES there. Returns how many;
 * *ret_first: the first one's name. */
static int devices_list(struct image *img, const struct work *w, char **ret_first, struct hutch_error *err)
{
        static const char prefix[] = " squashfs-root/";
        char last[256];
        _cleanup_close_ int lfd = openat(w->fd, W_LISTING, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (lfd < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s/%s'", w->dir, W_LISTING);
        char *argv[] = {"unsquashfs", "-lln", W_SQFS, NULL};
        int r = tool_run(w->fd, argv, lfd, false, last, sizeof last);
        if (r != 0)
                return tool_error("unsquashfs of", img->path, r, last, err);
        int dfd = openat(w->fd, W_DEVICES, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        _cleanup_fclose_ FILE *out = dfd < 0 ? NULL : fdopen(dfd, "w");
        if (!out && dfd >= 0)
                close(dfd);
        int in_fd = lseek(lfd, 0, SEEK_SET) == 0 ? dup(lfd) : -1;
        _cleanup_fclose_ FILE *in = in_fd < 0 ? NULL : fdopen(in_fd, "r");
        if (!in && in_fd >= 0)
                close(in_fd);
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        int n = 0;
        while (out && in && getline(&line, &cap, in) > 0) {
                char *name = strstr(line, prefix);
                if ((line[0] != 'c' && line[0] != 'b') || !name)
                        continue;
                name += strlen(prefix);
                name[strcspn(name, "\n")] = 0;
                if (n++ == 0 && !*ret_first)
                        *ret_first = strdup(name);
                fprintf(out, "%s\n", name);
        }
        if (!out || !in || fflush(out) != 0)
                return hutch_err(err, -EIO, "cannot list the device nodes of '%s'", img->path);
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
        char last[256];
        int r;
        if (img->format == IMAGE_FORMAT_DIR && user)
                tree_scan(img->path, &bytes, &devices);
        if (img->format == IMAGE_FORMAT_DIR && devices == 0) {
                char *argv[] = {"cp", "-a", "--", img->path, W_IMAGE, NULL};
                r = tool_run(w->fd, argv, -1, true, last, sizeof last);
                return r != 0 ? tool_error("copying", img->path, r, last, err) : 0;
        }
        if ((r = squashfs_from(img, w, W_SQFS, progress, false, err)) < 0)
                return r;
        char *argv[12] = {"unsquashfs", "-quiet"};
        size_t n = 2;
        if (!progress)
                argv[n++] = "-no-progress";
        _cleanup_free_ char *first = NULL;
        if (user) {
                if ((r = devices_list(img, w, &first, err)) < 0)
                        return r;
                if (r > 0) {
                        log_verbose("leaving out %d device node%s (/%s%s): a user cannot create them", r,
                                    r > 1 ? "s" : "", first ? first : "", r > 1 ? ", ..." : "");
                        argv[n++] = "-no-wildcards";
                        argv[n++] = "-exclude-file";
                        argv[n++] = W_DEVICES;
                }
        }
        argv[n++] = "-d";
        argv[n++] = W_IMAGE;
        argv[n++] = W_SQFS;
        r = tool_run(w->fd, argv, -1, progress, last, sizeof last);
        return r != 0 ? tool_error("unsquashfs of", img->path, r, last, err) : 0;
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
                return squashfs_from(img, w, W_IMAGE, b->progress, b->zstd, err);
        int r = squashfs_from(img, w, W_SQFS, b->progress, b->zstd, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *def = b->deffile ? strdup(b->deffile) : default_deffile(img), *json = NULL;
        if (image_inspect_json(img, IMAGE_META_ALL, &json, err) < 0)
                json = NULL;
        _cleanup_close_ int fd = openat(w->fd, W_SQFS, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot reopen '%s/%s'", w->dir, W_SQFS);
        _cleanup_close_ int out = openat(w->fd, W_IMAGE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0755);
        if (out < 0)
                return hutch_err_sys(err, -errno, "cannot create '%s/%s'", w->dir, W_IMAGE);
        return sif_write_fd(out, b->target, fd, def, json, err);
}

static double seconds_since(const struct timespec *t0)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double) (t.tv_sec - t0->tv_sec) + (double) (t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The new image into place, from the private folder into the target's folder, both by fd:
 * an existing folder target (--force) is removed first, as rename(2) replaces only an
 * empty one. */
static int result_install(const struct work *w, const char *target, struct hutch_error *err)
{
        struct stat st;
        char last[1];
        if (fstatat(w->parent, w->base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
                char *argv[] = {"rm", "-rf", "--", w->base, NULL};
                tool_run(w->parent, argv, -1, false, last, 0);
        }
        if (renameat(w->fd, W_IMAGE, w->parent, w->base) < 0)
                return hutch_err_sys(err, -errno, "cannot move the new image to '%s'", target);
        return 0;
}

int image_build(const struct build_spec *b, struct hutch_error *err)
{
        struct image img = IMAGE_NULL;
        struct work w = WORK_NULL;
        struct stat st;
        struct timespec t0;
        bool sandbox = b->sandbox;
        bool sif = !sandbox && !endswith(b->target, ".sqfs") && !endswith(b->target, ".squashfs");

        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (b->start)
                t0 = *b->start;
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
        if (!b->quiet)
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
        if (!b->quiet)
                log_info("Build complete: %s (%s, %.1f s)", b->target, size, seconds_since(&t0));
        return 0;
}
