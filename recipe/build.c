/* Building from a definition file: each stage's rootfs is bootstrapped in a private folder
 * beside the target, its sections run in Apptainer's order (%setup on the host, %files,
 * %post in the container through the launcher, then the metadata of /.singularity.d, then
 * %test), and the last stage becomes the target through image_build. Every path inside a
 * rootfs is resolved in it (openat2 RESOLVE_IN_ROOT), so a symlink of a base image never
 * makes the build write or copy outside the rootfs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <json-c/json.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"
#include "recipe-internal.h"
#include "runtime/runtime.h"
#include "util/log.h"
#include "util/util.h"

#define DEFFILE_MAX (4u << 20)

int root_open(int rootfd, const char *path, int flags)
{
        struct open_how how = {.flags = (uint64_t) (flags | O_CLOEXEC),
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        int fd = (int) syscall(SYS_openat2, rootfd, path[0] ? path : "/", &how, sizeof how);
        return fd < 0 ? -errno : fd;
}

/* Every folder of path (absolute, inside the root), made where missing. */
int root_mkdirs(int rootfd, const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + strspn(p, "/"); *s;) {
                char *e = s + strcspn(s, "/");
                char c = *e;
                *e = 0;
                char *slash = strrchr(p, '/');
                *slash = 0;
                _cleanup_close_ int dfd = root_open(rootfd, p[0] ? p : "/", O_RDONLY | O_DIRECTORY);
                *slash = '/';
                if (dfd < 0)
                        return dfd;
                if (mkdirat(dfd, slash + 1, mode) < 0 && errno != EEXIST)
                        return -errno;
                *e = c;
                s = e + strspn(e, "/");
        }
        return 0;
}

/* The folder of path (made where missing) opened in the root; *ret_base: its last name. */
static int root_parent(int rootfd, const char *path, const char **ret_base)
{
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        *ret_base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        if (slash)
                *slash = 0;
        int r = root_mkdirs(rootfd, slash ? dir : "/", 0755);
        if (r < 0)
                return r;
        return root_open(rootfd, slash && dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY);
}

/* A new file at path inside the root, replacing what was there (a symlink is replaced, not
 * followed). */
int root_write(int rootfd, const char *path, const char *data, size_t len, mode_t mode)
{
        const char *base;
        _cleanup_close_ int dfd = root_parent(rootfd, path, &base);
        if (dfd < 0)
                return dfd;
        if (unlinkat(dfd, base, 0) < 0 && errno != ENOENT)
                return -errno;
        _cleanup_close_ int fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        int r = write_full(fd, data, len);
        if (r >= 0 && fchmod(fd, mode) < 0)
                r = -errno;
        return r;
}

int root_read(int rootfd, const char *path, char **ret)
{
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        if (!slash)
                return -EINVAL;
        *slash = 0;
        _cleanup_close_ int dfd = root_open(rootfd, dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY);
        if (dfd < 0)
                return dfd;
        /* a symlink at the name: resolved inside the root */
        struct stat st;
        if (fstatat(dfd, slash + 1, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
                _cleanup_close_ int fd = root_open(rootfd, path, O_PATH);
                char proc[64];
                if (fd < 0)
                        return fd;
                snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
                return read_regular_at(AT_FDCWD, proc, DEFFILE_MAX, ret, NULL);
        }
        return read_regular_at(dfd, slash + 1, DEFFILE_MAX, ret, NULL);
}

bool root_exists(int rootfd, const char *path)
{
        _cleanup_close_ int fd = root_open(rootfd, path, O_PATH);
        return fd >= 0;
}

/* ---- processes */

/* SIGINT, SIGTERM, SIGHUP during a build: the running step's process group (a script, a
 * container) is ended, the step fails, and the build removes its folder as on any failure.
 * Steps run in process groups of their own so that this reaches everything they started
 * (a %post's background jobs too); their stdin is /dev/null, as they are not in the
 * terminal's foreground group. */
static volatile sig_atomic_t interrupted, cleaning; /* cleaning: the removal is not interrupted */
static volatile pid_t step_pgid;

static void on_signal(int sig)
{
        interrupted = sig;
        if (step_pgid > 0)
                kill(-step_pgid, SIGKILL);
}

static void step_child_setup(void)
{
        setpgid(0, 0);
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && fd != STDIN_FILENO) {
                dup2(fd, STDIN_FILENO);
                close(fd);
        }
}

static void step_started(pid_t p)
{
        setpgid(p, p);
        if (cleaning)
                return;
        step_pgid = p;
        if (interrupted)
                kill(-p, SIGKILL);
}

/* -q: the tools' and scripts' output (a package manager's) is not shown; their errors are. */
static void quiet_stdout(void)
{
        if (log_get_level() >= LOG_LEVEL_INFO)
                return;
        int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (fd >= 0 && fd != STDOUT_FILENO) {
                dup2(fd, STDOUT_FILENO);
                close(fd);
        }
}

/* Run argv on the host with env added to ours, wait: its exit status (128+N for a signal),
 * or -errno. The fds of keep_fds (ended by -1) stay open in it, for paths
 * /proc/self/fd/N/NAME that reach into a rootfs without resolving its symlinks on the
 * host. */
static int run_on_host(char *const argv[], char *const env[], const int *keep_fds, int (*setup)(void *arg), void *arg,
                       bool quiet);

int host_run(char *const argv[], char *const env[], const int *keep_fds)
{
        return run_on_host(argv, env, keep_fds, NULL, NULL, true);
}

int host_run_setup(char *const argv[], char *const env[], const int *keep_fds, int (*setup)(void *arg), void *arg)
{
        return run_on_host(argv, env, keep_fds, setup, arg, true);
}

int host_run_script(char *const argv[], char *const env[])
{
        return run_on_host(argv, env, NULL, NULL, NULL, false);
}

static int run_on_host(char *const argv[], char *const env[], const int *keep_fds, int (*setup)(void *arg), void *arg,
                       bool quiet)
{
        fflush(NULL);
        pid_t p = fork();
        if (p < 0)
                return -errno;
        if (p == 0) {
                step_child_setup();
                if (quiet)
                        quiet_stdout();
                for (size_t i = 0; env && env[i]; i++)
                        putenv(env[i]);
                for (size_t i = 0; keep_fds && keep_fds[i] >= 0; i++)
                        fcntl(keep_fds[i], F_SETFD, 0);
                int r = setup ? setup(arg) : 0;
                if (r < 0) {
                        fprintf(stderr, "hutch: error: cannot prepare '%s': %s\n", argv[0], strerror(-r));
                        _exit(127);
                }
                execvp(argv[0], argv);
                fprintf(stderr, "hutch: error: cannot run '%s': %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        step_started(p);
        int status;
        while (waitpid(p, &status, 0) < 0)
                if (errno != EINTR) {
                        step_pgid = 0;
                        return -errno;
                }
        step_pgid = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Run argv in the rootfs through the launcher, in a child (the launcher becomes its
 * payload): the payload's exit status, or a negative errno with err filled when the
 * container could not be set up. */
int container_run(const struct build_ctx *b, const char *rootfs, enum launch_action action, char *const argv[],
                  char **env, bool writable, const char *pwd, struct hutch_error *err)
{
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return hutch_err_sys(err, -errno, "cannot create a pipe");
        fflush(NULL);
        pid_t p = fork();
        if (p < 0) {
                close(pfd[0]);
                close(pfd[1]);
                return hutch_err_sys(err, -errno, "cannot fork");
        }
        if (p == 0) {
                struct hutch_error e = HUTCH_ERROR_INIT;
                struct launch_spec ls = {
                        .image = rootfs,
                        .action = action,
                        .argv = (char **) argv,
                        .writable = writable,
                        .writable_tmpfs = !writable && b->spec->writable_tmpfs,
                        .binds = b->spec->binds,
                        .n_binds = b->spec->n_binds,
                        .contain = true,
                        .session_uncapped = true,
                        .cleanenv = true,
                        .env = env,
                        .host_env = b->spec->host_env,
                        .conf = b->spec->conf,
                        .pwd = pwd ? pwd : "/",
                };
                close(pfd[0]);
                step_child_setup();
                int status = 0;
                if (runtime_launch(&ls, NULL, &status, &e) < 0) {
                        (void) !write(pfd[1], &e, sizeof e);
                        _exit(255);
                }
                _exit(status);
        }
        close(pfd[1]);
        step_started(p);
        struct hutch_error e;
        ssize_t n;
        while ((n = read(pfd[0], &e, sizeof e)) < 0 && errno == EINTR)
                ;
        close(pfd[0]);
        int status;
        while (waitpid(p, &status, 0) < 0)
                if (errno != EINTR) {
                        step_pgid = 0;
                        return hutch_err_sys(err, -errno, "cannot wait for the container");
                }
        step_pgid = 0;
        if (n == (ssize_t) sizeof e) {
                *err = e;
                err->msg[sizeof err->msg - 1] = 0;
                return e.code < 0 ? e.code : -EIO;
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* "-c /bin/bash" (the interpreter) or sh options ("-x") of a section, before the script. */
int script_argv(const char *args, const char *script, bool errexit, bool trace, char ***ret)
{
        _cleanup_strv_ char **words = NULL, **v = NULL;
        if (args && strsplit(args, " \t", &words) < 0)
                return -ENOMEM;
        size_t i = 0;
        if (words && words[0] && !strcmp(words[0], "-c") && words[1]) {
                for (i = 1; words[i]; i++)
                        if (strv_extend(&v, words[i]) < 0)
                                return -ENOMEM;
        } else {
                if (strv_extend(&v, "/bin/sh") < 0 || (errexit && strv_extend(&v, "-e") < 0) ||
                    (trace && strv_extend(&v, "-x") < 0))
                        return -ENOMEM;
                for (; words && words[i]; i++)
                        if (strv_extend(&v, words[i]) < 0)
                                return -ENOMEM;
        }
        if (strv_extend(&v, script) < 0)
                return -ENOMEM;
        *ret = steal_pointer(&v);
        return 0;
}

/* ---- a whole build */

static double seconds_since(const struct timespec *t0)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double) (t.tv_sec - t0->tv_sec) + (double) (t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The private folder beside the target, TARGET.hutch-build-XXXXXX (0700), made in the
 * target's folder held open and itself held open (b->workfd): checked to be the folder we
 * made, and emptied and removed through those descriptors, so that a rename or symlink in
 * the target's path while the build runs cannot turn the removal onto another folder. */
static int work_make(struct build_ctx *b, struct hutch_error *err)
{
        char abs[PATH_MAX], name[NAME_MAX + 1];
        _cleanup_free_ char *t = strdup(b->spec->target), *base = NULL;
        if (!t)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t n = strlen(t); n > 1 && t[n - 1] == '/'; n--)
                t[n - 1] = 0;
        char *slash = strrchr(t, '/');
        if (!(base = strdup(slash ? slash + 1 : t)))
                return hutch_err(err, -ENOMEM, "out of memory");
        if (slash)
                slash[slash == t ? 1 : 0] = 0;
        if (!realpath(slash ? t : ".", abs))
                return hutch_err_sys(err, -errno, "cannot reach the folder of '%s'", b->spec->target);
        _cleanup_close_ int parent = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (parent < 0)
                return hutch_err_sys(err, -errno, "cannot open the folder of '%s'", b->spec->target);
        int r = -EEXIST;
        for (int i = 0; i < 100 && r == -EEXIST; i++) {
                static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                unsigned char rnd[6];
                char sfx[7];
                if (getrandom(rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
                        return hutch_err_sys(err, -errno, "cannot name a temporary folder");
                for (size_t k = 0; k < sizeof rnd; k++)
                        sfx[k] = chars[rnd[k] % (sizeof chars - 1)];
                sfx[6] = 0;
                if (snprintf(name, sizeof name, "%.*s.hutch-build-%s", NAME_MAX - 20, base, sfx) < 0)
                        return hutch_err(err, -EINVAL, "cannot name a temporary folder");
                r = mkdirat(parent, name, 0700) < 0 ? -errno : 0;
        }
        if (r < 0)
                return hutch_err_sys(err, r, "cannot create a temporary folder beside '%s'", b->spec->target);
        struct stat st;
        int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || st.st_uid != geteuid() || fchmod(fd, 0700) < 0) {
                r = hutch_err(err, fd < 0 ? -errno : -EPERM, "the temporary folder '%s/%s' was replaced", abs, name);
                if (fd >= 0)
                        close(fd);
                return r;
        }
        if (asprintf(&b->work, "%s/%s", strcmp(abs, "/") ? abs : "", name) < 0)
                b->work = NULL; /* asprintf leaves it undefined */
        if (!b->work || !(b->workname = strdup(name))) {
                close(fd);
                (void) unlinkat(parent, name, AT_REMOVEDIR); /* ours, and still empty */
                b->work = mfree_str(b->work);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        b->workfd = fd;
        b->parentfd = steal_fd(&parent);
        return 0;
}

/* What is in the folder, through its descriptor (rm -rf of /proc/self/fd/N/ENTRY: a
 * symlink there is removed, not followed), then the folder itself from its parent's. */
static void work_remove(struct build_ctx *b)
{
        if (b->workfd < 0)
                return;
        cleaning = 1;
        /* first the stages' overlays (stage_overlay), which rm would descend into */
        for (size_t i = 0; b->overlaid && i < b->rec.n_stages; i++) {
                char p[64];
                snprintf(p, sizeof p, "/proc/self/fd/%d/stage-%zu", b->workfd, i + 1);
                if (b->overlaid[i] && umount2(p, MNT_DETACH) == 0)
                        b->overlaid[i] = false;
        }
        _cleanup_strv_ char **argv = NULL;
        int r = 0, dfd = dup(b->workfd);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
        if (dfd >= 0 && !d)
                close(dfd);
        r = d && strv_extend(&argv, "rm") >= 0 && strv_extend(&argv, "-rf") >= 0 && strv_extend(&argv, "--") >= 0
                    ? 0
                    : -ENOMEM;
        for (struct dirent *e; r >= 0 && (e = readdir(d));) {
                char p[64 + NAME_MAX];
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                snprintf(p, sizeof p, "/proc/self/fd/%d/%s", b->workfd, e->d_name);
                r = strv_extend(&argv, p);
        }
        if (d)
                closedir(d);
        int keep[] = {b->workfd, -1};
        if (r < 0 || (argv[3] && host_run(argv, NULL, keep) != 0) ||
            unlinkat(b->parentfd, b->workname, AT_REMOVEDIR) < 0)
                log_warning("cannot remove the build folder '%s', ignoring", b->work);
        close(b->workfd);
        close(b->parentfd);
        b->workfd = b->parentfd = -EBADF;
        b->work = mfree_str(b->work);
        b->workname = mfree_str(b->workname);
        cleaning = 0;
}

/* --keep-build after a failure: the folder stays where it is (its stages' rootfs inside,
 * one folder per stage) and the error names it, replacing "nothing is left" wordings. */
static void work_keep(struct build_ctx *b, struct hutch_error *err)
{
        char *nothing = strstr(err->msg, "; nothing of it is left");
        if (nothing)
                *nothing = 0;
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, " (build folder kept: %s)", b->work);
        close(b->workfd);
        close(b->parentfd);
        b->workfd = b->parentfd = -EBADF;
        b->work = mfree_str(b->work);
        b->workname = mfree_str(b->workname);
}

/* Root of the initial user namespace (the whole id range mapped to itself): where the
 * kernel lets overlay keep its trusted.* markers, which redirect_dir and index need. */
static bool initial_userns(void)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/uid_map", "re");
        unsigned long inside, outside, count;
        char extra[2];
        return f && fscanf(f, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 && outside == 0 &&
               count == 4294967295UL && fscanf(f, "%1s", extra) != 1;
}

/* A localimage stage of a folder may be an overlay of it (stage.c: stage_overlay) where the
 * build runs as root (a user's build, as root of a user namespace, copies: the copy leaves
 * out the device nodes a user cannot make, which an overlay would show), in a mount
 * namespace of its own, so that no mount of the build is seen outside it, and none is
 * left should the build be killed; it still sees what the host mounts meanwhile (slave).
 * Not with --keep-build (the kept folder would hold an upper folder, not the tree) nor
 * for --sandbox's last stage (renamed into place). */
static void overlays_allow(struct build_ctx *b)
{
        const struct recipe_build_spec *s = b->spec;
        if (b->fakeroot || getuid() != 0 || s->keep_build || !initial_userns())
                return;
        bool any = false;
        for (size_t i = 0; i < b->rec.n_stages; i++)
                any |= !strcasecmp(b->rec.stages[i].bootstrap, "localimage");
        if (!any || !(b->overlaid = calloc(b->rec.n_stages, sizeof *b->overlaid)))
                return;
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) {
                log_verbose("no mount namespace for the build (%s): localimage folders are copied", strerror(errno));
                return;
        }
        b->private_mounts = true;
}

char *mfree_str(char *p)
{
        free(p);
        return NULL;
}

/* The last stage into the target: a folder renamed into place, or a file made by
 * image_build from it (which removes its own temporary files on failure). */
static int output(struct build_ctx *b, const char *rootfs, const struct timespec *t0, struct hutch_error *err)
{
        const struct recipe_build_spec *s = b->spec;
        struct stat st;
        int r = s->fix_perms ? tree_fix_perms(rootfs) : 0;
        if (r < 0)
                return hutch_err_sys(err, r, "--fix-perms: cannot set the permissions in '%s'", rootfs);
        if (s->update) {
                log_info("Build complete: %s (sandbox updated, %.1f s)", s->target, seconds_since(t0));
                return 0;
        }
        if (!s->sandbox) {
                log_info("Creating SIF file...");
                struct build_spec bs = {.target = s->target,
                                        .source = rootfs,
                                        .force = true,
                                        .deffile = b->rec.raw,
                                        .progress = s->progress,
                                        .start = t0};
                return image_build(&bs, err);
        }
        if (lstat(s->target, &st) == 0) {
                char *argv[] = {"rm", "-rf", "--", (char *) s->target, NULL};
                if (host_run(argv, NULL, NULL) != 0)
                        return hutch_err(err, -EIO, "cannot remove the existing '%s'", s->target);
        }
        if (rename(rootfs, s->target) < 0)
                return hutch_err_sys(err, -errno, "cannot move the new sandbox to '%s'", s->target);
        log_info("Build complete: %s (sandbox, %.1f s)", s->target, seconds_since(t0));
        return 0;
}

static int deffile_read(const char *path, char **ret, size_t *ret_len, struct hutch_error *err)
{
        int r = read_regular_at(AT_FDCWD, path, DEFFILE_MAX, ret, ret_len);
        if (r == -EFBIG)
                return hutch_err(err, r, "definition file '%s' is larger than 4 MiB", path);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read definition file '%s'", path);
        return 0;
}

int recipe_build(const struct recipe_build_spec *s, struct hutch_error *err)
{
        struct build_ctx b = {.spec = s, .workfd = -EBADF, .parentfd = -EBADF};
        struct timespec t0;
        struct stat st;
        _cleanup_free_ char *text = NULL;
        size_t len;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = deffile_read(s->path, &text, &len, err);
        if (r < 0)
                return r;
        if ((r = recipe_parse(text, len, s->build_args, s->path, &b.rec, err)) < 0)
                return r;
        if (b.rec.unused_args && !s->warn_unused_args) {
                char list[512] = "";
                for (char **u = b.rec.unused_args; *u; u++)
                        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                                 u == b.rec.unused_args ? "" : ", ", *u);
                r = hutch_err(err, -EINVAL, "unused build args: %s (--warn-unused-build-args makes this a warning)",
                              list);
                recipe_free(&b.rec);
                return r;
        }
        for (char **u = b.rec.unused_args; u && *u; u++)
                log_warning("build argument '%s' is not used by %s", *u, s->path);
        if (s->update && (lstat(s->target, &st) < 0 || !S_ISDIR(st.st_mode) || !s->sandbox))
                r = hutch_err(err, -EINVAL,
                              "--update needs --sandbox and TARGET an existing sandbox folder ('%s' is not)",
                              s->target);
        else if (!s->update && lstat(s->target, &st) == 0 && !s->force)
                r = hutch_err(err, -EEXIST, "build target '%s' already exists; use --force to overwrite it", s->target);
        for (size_t i = 0; r >= 0 && i < s->n_binds; i++)
                if (stat(s->binds[i].src, &st) < 0)
                        r = hutch_err_sys(err, -errno, "--bind: cannot use '%s'", s->binds[i].src);
        for (size_t i = 0; r >= 0 && i < b.rec.n_stages; i++)
                r = agent_check(&b, &b.rec.stages[i], err);
        if (r >= 0) {
                log_info("Starting build...");
                r = agents_fetch(&b, err);
        }
        /* before the user namespace: hutch-sign reads the caller's keyrings as the caller */
        for (size_t i = 0; r >= 0 && i < b.rec.n_stages; i++)
                r = fingerprints_check(&b, &b.rec.stages[i], b.pulled[i] ? b.pulled[i] : b.rec.stages[i].from, err);
        if (r >= 0 && getuid() != 0) {
                if (!s->fakeroot)
                        log_verbose("building as a user: as root of a user namespace (--fakeroot)");
                r = runtime_fakeroot_enter(&b.subids, err);
                if (r >= 0 && !b.subids)
                        log_warning("only your own id is mapped in the build (no range for you in /etc/subuid and "
                                    "/etc/subgid): %%post cannot give files to other users");
                b.fakeroot = true;
        }
        struct sigaction sa = {.sa_handler = on_signal}, old[3];
        static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                sigaction(sigs[i], &sa, &old[i]);
        /* first: the build folder's descriptors then belong to the build's mount namespace,
         * where its stages' overlays are */
        if (r >= 0)
                overlays_allow(&b);
        if (r >= 0)
                r = work_make(&b, err);
        for (size_t i = 0; r >= 0 && i < b.rec.n_stages && !interrupted; i++)
                r = stage_build(&b, i, err);
        if (interrupted)
                r = hutch_err(err, -EINTR, "build interrupted by signal %d; nothing of it is left", (int) interrupted);
        if (r >= 0) {
                _cleanup_free_ char *last = stage_rootfs(&b, b.rec.n_stages - 1);
                r = last ? output(&b, last, &t0, err) : hutch_err(err, -ENOMEM, "out of memory");
        }
        if (r < 0 && s->keep_build && b.workfd >= 0)
                work_keep(&b, err);
        else
                work_remove(&b);
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                sigaction(sigs[i], &old[i], NULL);
        for (size_t i = 0; b.pulled && i < b.rec.n_stages; i++) {
                if (b.pulled[i] && s->disable_cache)
                        unlink_with_folder(b.pulled[i]);
                free(b.pulled[i]);
        }
        free(b.pulled);
        free(b.overlaid);
        recipe_free(&b.rec);
        return r;
}
