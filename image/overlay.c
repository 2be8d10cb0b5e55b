/* Persistent overlays (--overlay PATH[:ro|:rw]): the argument's parse, what a path holds
 * (a folder or an ext3 image), the one-writer lock held for a container's life and who
 * holds it. Mounting them is the launcher's (runtime/overlay.c). */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "image.h"
#include "util/util.h"

int overlay_spec_parse(const char *arg, struct overlay_spec *ret, struct hutch_error *err)
{
        const char *colon = strrchr(arg, ':');
        bool ro = false;
        size_t len = strlen(arg);
        if (colon) {
                if (!strcmp(colon + 1, "ro"))
                        ro = true;
                else if (strcmp(colon + 1, "rw") != 0)
                        return hutch_err(err, -EINVAL, "--overlay '%s': the mode after ':' is ro or rw, not '%s'", arg,
                                         colon + 1);
                len = (size_t) (colon - arg);
        }
        if (len == 0)
                return hutch_err(err, -EINVAL, "--overlay '%s' names no path", arg);
        char *path = strndup(arg, len);
        if (!path)
                return hutch_err(err, -ENOMEM, "out of memory");
        *ret = (struct overlay_spec){.path = path, .ro = ro};
        return 0;
}

int overlay_spec_add(const char *list, struct overlay_spec **v, size_t *n, struct hutch_error *err)
{
        _cleanup_strv_ char **parts = NULL;
        if (strsplit(list, ",", &parts) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (!parts || !parts[0])
                return hutch_err(err, -EINVAL, "--overlay '%s' names no path", list);
        for (char **p = parts; *p; p++) {
                struct overlay_spec o;
                int r = overlay_spec_parse(*p, &o, err);
                if (r < 0)
                        return r;
                struct overlay_spec *nv = realloc(*v, (*n + 1) * sizeof *nv);
                if (!nv) {
                        free(o.path);
                        return hutch_err(err, -ENOMEM, "out of memory");
                }
                *v = nv;
                nv[(*n)++] = o;
        }
        return 0;
}

void overlay_spec_free_array(struct overlay_spec *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i].path);
        free(v);
}

ssize_t overlay_upper_index(const struct overlay_spec *v, size_t n)
{
        for (size_t i = n; i > 0; i--)
                if (!v[i - 1].ro)
                        return (ssize_t) (i - 1);
        return -1;
}

pid_t overlay_lock_holder_find(const char *locks, dev_t dev, ino_t ino)
{
        char key[64];
        snprintf(key, sizeof key, " %02x:%02x:%llu ", major(dev), minor(dev), (unsigned long long) ino);
        for (const char *l = locks; l && *l;) {
                const char *nl = strchrnul(l, '\n');
                const char *k = strstr(l, key);
                /* "N: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INO 0 EOF"; a waiter's line has "->" */
                if (k && k < nl && !memmem(l, (size_t) (nl - l), "->", 2) && !strncmp(strchr(l, ' ') + 1, "FLOCK", 5)) {
                        const char *p = k;
                        while (p > l && p[-1] == ' ')
                                p--;
                        while (p > l && p[-1] >= '0' && p[-1] <= '9')
                                p--;
                        long pid = strtol(p, NULL, 10);
                        if (pid > 0)
                                return (pid_t) pid;
                }
                l = *nl ? nl + 1 : nl;
        }
        return 0;
}

/* "instance 'db' (its supervisor, pid N)" for an instance's supervisor (its comm, and its
 * instance folder open at OVERLAY_SUPERVISOR_DIR_FD), else "pid N (COMM)". The supervisor
 * holds the lock, not the init whose pid `instance list` shows: the line says whose pid. */
static void holder_describe(pid_t pid, char *buf, size_t len)
{
        char p[64], comm[32] = "";
        _cleanup_free_ char *text = NULL;
        snprintf(p, sizeof p, "/proc/%d/comm", (int) pid);
        if (read_full_at(AT_FDCWD, p, 4096, &text, NULL) >= 0)
                snprintf(comm, sizeof comm, "%.*s", (int) strcspn(text, "\n"), text);
        if (!strcmp(comm, OVERLAY_SUPERVISOR_COMM)) {
                char link[PATH_MAX];
                snprintf(p, sizeof p, "/proc/%d/fd/%d", (int) pid, OVERLAY_SUPERVISOR_DIR_FD);
                ssize_t k = readlink(p, link, sizeof link - 1);
                if (k > 0) {
                        link[k] = 0;
                        const char *name = strrchr(link, '/');
                        snprintf(buf, len, "instance '%.64s' (its supervisor, pid %d)", name ? name + 1 : link,
                                 (int) pid);
                        return;
                }
        }
        if (comm[0])
                snprintf(buf, len, "pid %d (%s)", (int) pid, comm);
        else
                snprintf(buf, len, "pid %d", (int) pid);
}

/* flock the overlay through fd: shared to read, exclusive to write; a conflict names the holder. */
static int overlay_lock(struct overlay *o, int fd, struct hutch_error *err)
{
        if (flock(fd, (o->ro ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0) {
                o->lock_fd = fd;
                return 0;
        }
        if (errno != EWOULDBLOCK)
                return hutch_err_sys(err, -errno, "cannot lock overlay '%s'", o->path);
        struct stat st;
        _cleanup_free_ char *locks = NULL;
        char who[128] = "another process";
        if (fstat(o->fd, &st) == 0 && read_full_at(AT_FDCWD, "/proc/locks", 16 << 20, &locks, NULL) >= 0) {
                pid_t pid = overlay_lock_holder_find(locks, st.st_dev, st.st_ino);
                if (pid > 0)
                        holder_describe(pid, who, sizeof who);
        }
        if (o->ro)
                return hutch_err(err, -EBUSY, "overlay '%s' is being written by %s", o->path, who);
        return hutch_err(err, -EBUSY, "overlay '%s' is in use by %s: one writer at a time", o->path, who);
}

bool ext3_superblock_is(const uint8_t *sb, size_t len)
{
        /* struct ext2_super_block: s_magic (0xEF53, little endian) at byte 56 */
        return len >= 58 && sb[56] == 0x53 && sb[57] == 0xef;
}

const struct sif_descriptor *sif_overlay_partition(const struct sif *s)
{
        for (size_t i = 0; i < s->n_descr; i++)
                if (s->descr[i].datatype == SIF_DATA_PARTITION && s->descr[i].parttype == SIF_PART_OVERLAY &&
                    s->descr[i].fstype == SIF_FS_EXT3)
                        return &s->descr[i];
        return NULL;
}

/* A SIF's overlay partition: its ext3 filesystem's place in the file. */
static int overlay_sif(struct overlay *o, const struct stat *st, struct hutch_error *err)
{
        struct sif s;
        int r = sif_load(o->fd, (uint64_t) st->st_size, &s, err);
        if (r < 0)
                return hutch_err_wrap(err, "overlay '%s'", o->path);
        const struct sif_descriptor *d = sif_overlay_partition(&s);
        if (d) {
                o->kind = OVERLAY_EXT3;
                o->offset = (uint64_t) d->offset;
                o->size = (uint64_t) d->size;
        }
        sif_free(&s);
        if (!d)
                return hutch_err(err, -ENOENT,
                                 "SIF '%s' has no overlay partition: add one with 'hutch overlay create %s'", o->path,
                                 o->path);
        return 0;
}

/* Folder, ext3 image or SIF with an overlay partition: anything else is refused here. */
static int overlay_classify(struct overlay *o, const struct stat *st, struct hutch_error *err)
{
        if (S_ISDIR(st->st_mode)) {
                o->kind = OVERLAY_DIR;
                return 0;
        }
        if (!S_ISREG(st->st_mode))
                return hutch_err(err, -EINVAL, "overlay '%s' is neither a folder nor an ext3 image file", o->path);
        uint8_t sb[1024];
        ssize_t k = pread_full(o->fd, sb, sizeof sb, 1024);
        if (k < 0)
                return hutch_err_sys(err, (int) k, "cannot read overlay '%s'", o->path);
        uint8_t head[48];
        if (pread_full(o->fd, head, sizeof head, 0) == (ssize_t) sizeof head && !memcmp(head + 32, "SIF_MAGIC", 10))
                return overlay_sif(o, st, err);
        if (!ext3_superblock_is(sb, (size_t) k))
                return hutch_err(err, -EINVAL, "overlay '%s' is neither a folder nor an ext3 image file", o->path);
        o->kind = OVERLAY_EXT3;
        o->offset = 0;
        o->size = (uint64_t) st->st_size;
        return 0;
}

/* A writable folder overlay keeps its changes in upper/, overlayfs's scratch in work/. */
static int overlay_dir_prepare(struct overlay *o, struct hutch_error *err)
{
        static const char *const sub[] = {"upper", "work"};
        for (size_t i = 0; i < ELEMENTSOF(sub); i++)
                if (mkdirat(o->fd, sub[i], 0755) < 0 && errno != EEXIST)
                        return hutch_err_sys(err, -errno, "cannot create '%s/%s'", o->path, sub[i]);
        return 0;
}

static int overlay_open_one(const struct overlay_spec *s, bool ro, bool lock, struct overlay *o,
                            struct hutch_error *err)
{
        char abs[PATH_MAX];
        struct stat st;
        *o = (struct overlay){.fd = -EBADF, .lock_fd = -EBADF, .ro = ro};
        if (!realpath(s->path, abs))
                return hutch_err_sys(err, -errno, "overlay '%s' does not exist or is not reachable", s->path);
        if (!(o->path = strdup(abs)))
                return hutch_err(err, -ENOMEM, "out of memory");
        /* with the caller's own credentials: the launcher may hold capabilities of its user
         * namespace already, which must not open what the user could not */
        int fd = open(abs, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 && errno == EISDIR)
                fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open overlay '%s'%s", s->path, ro ? "" : " for writing");
        o->fd = fd;
        if (fstat(fd, &st) < 0)
                return hutch_err_sys(err, -errno, "cannot read overlay '%s'", s->path);
        int r = overlay_classify(o, &st, err);
        if (r < 0)
                return r;
        if (o->kind == OVERLAY_DIR && !ro) {
                if (faccessat(fd, ".", W_OK, AT_EACCESS) < 0)
                        return hutch_err_sys(err, -errno, "cannot write to overlay '%s'", s->path);
                if ((r = overlay_dir_prepare(o, err)) < 0)
                        return r;
        }
        if (!lock)
                return 0;
        if (o->kind == OVERLAY_DIR)
                return overlay_lock(o, o->fd, err);
        /* an image's lock is on a read-only fd of its own, the one that may cross exec */
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
        int lfd = open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (lfd < 0)
                return hutch_err_sys(err, -errno, "cannot open overlay '%s' to lock it", s->path);
        r = overlay_lock(o, lfd, err);
        if (r < 0)
                close(lfd);
        return r;
}

int image_overlay_lock_move(struct overlay *o, int tree, struct hutch_error *err)
{
        struct mount_attr attr = {.attr_set =
                                          MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC};
        if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
                return hutch_err_sys(err, -errno, "cannot make the lock of overlay '%s' read-only", o->path);
        /* two fds of one file are two lockers even in one process: the lock is let go, then
         * taken again (someone taking it in between is a conflict, reported as such) */
        if (o->lock_fd == o->fd && flock(o->fd, LOCK_UN) < 0)
                return hutch_err_sys(err, -errno, "cannot lock overlay '%s'", o->path);
        o->lock_fd = -EBADF;
        /* tree is O_PATH, which flock refuses: a folder fd of the same mount */
        int fd = openat(tree, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open overlay '%s' to lock it", o->path);
        int r = overlay_lock(o, fd, err);
        if (r < 0)
                close(fd);
        return r;
}

int image_overlays_open(const struct overlay_spec *v, size_t n, bool lock, struct overlay **ret,
                        struct hutch_error *err)
{
        ssize_t upper = overlay_upper_index(v, n);
        struct overlay *o = calloc(n ? n : 1, sizeof *o);
        if (!o)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                /* every writable overlay but the last is a read-only lower layer */
                int r = overlay_open_one(&v[i], (ssize_t) i != upper, lock, &o[i], err);
                if (r < 0) {
                        image_overlays_close(o, i + 1);
                        return r;
                }
        }
        *ret = o;
        return 0;
}

void image_overlays_close(struct overlay *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++) {
                if (v[i].lock_fd >= 0 && v[i].lock_fd != v[i].fd)
                        close(v[i].lock_fd);
                if (v[i].fd >= 0)
                        close(v[i].fd);
                free(v[i].path);
        }
        free(v);
}

int image_overlays_keep_across_exec(struct overlay *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (v[i].lock_fd >= 0) {
                        if (v[i].lock_fd == v[i].fd)
                                return -EBADFD; /* a folder's own fd: its lock has not moved */
                        if (fcntl(v[i].lock_fd, F_SETFD, 0) < 0)
                                return -errno;
                }
        return 0;
}

bool image_file_is_sif(const char *path)
{
        uint8_t head[48];
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;
        return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
               pread_full(fd, head, sizeof head, 0) == (ssize_t) sizeof head && !memcmp(head + 32, "SIF_MAGIC", 10);
}

int overlay_spec_writable_sif(const char *image, struct overlay_spec **v, size_t *n, struct hutch_error *err)
{
        struct overlay_spec *nv = realloc(*v, (*n + 1) * sizeof *nv);
        if (!nv)
                return hutch_err(err, -ENOMEM, "out of memory");
        *v = nv;
        nv[*n] = (struct overlay_spec){.path = strdup(image)};
        if (!nv[*n].path)
                return hutch_err(err, -ENOMEM, "out of memory");
        (*n)++;
        return 0;
}
