/* The launch path as a list of named stages: learn the host (user, paths opened as fds),
 * enter namespaces, assemble the rootfs, pivot, build the payload's argv/env, exec.
 * With --pid the launcher forks once: the child is PID 1 of the new namespace and runs a
 * minimal init, the parent waits and passes the exit status on. In an instance (an io
 * struct given, the one thing that tells the paths apart) the init is forked as the
 * launcher's sibling (a child of the supervisor) and handed back once the payload runs. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <linux/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime-internal.h"
#include "util/log.h"
#include "util/process.h"
#include "util/util.h"

static void host_path_close(struct host_path *h)
{
        if (h->fd >= 0)
                close(h->fd);
        h->fd = -EBADF;
        free(h->path);
        h->path = NULL;
}

/* Open a host path as O_PATH. required: a missing path is an error, else it is skipped. */
static int host_path_open(const char *path, bool required, const char *what, struct host_path *ret,
                          struct hutch_error *err)
{
        char abs[PATH_MAX];
        struct stat st;
        ret->fd = -EBADF;
        ret->path = NULL;
        if (!realpath(path, abs) || stat(abs, &st) < 0) {
                if (!required)
                        return 0;
                return hutch_err_sys(err, -errno, "%s '%s' does not exist or is not reachable", what, path);
        }
        /* A detached clone of the host mount tree at that path, taken before the staging tmpfs
         * covers /tmp: a plain fd of a dentry that later gets a mount on top binds what is on
         * top (kernel walks mounts after the /proc/self/fd jump); a clone does not. */
        ret->fd = (int) syscall(SYS_open_tree, AT_FDCWD, abs, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (ret->fd < 0)
                return hutch_err_sys(err, -errno, "cannot open %s '%s'", what, path);
        ret->is_dir = S_ISDIR(st.st_mode);
        ret->path = strdup(path[0] == '/' ? path : abs);
        if (!ret->path)
                return hutch_err(err, -ENOMEM, "out of memory");
        return 0;
}

void ctx_free(struct launch_ctx *c)
{
        image_close(&c->img);
        seccomp_prog_free(&c->seccomp);
        free(c->user);
        free(c->host_home);
        free(c->shell);
        free(c->gecos);
        free(c->group);
        free(c->home_dst);
        free(c->cwd);
        free(c->hosts_text);
        free(c->cache_bad);
        free(c->resolv_text);
        host_path_close(&c->home);
        host_path_close(&c->cwdp);
        host_path_close(&c->tmp);
        host_path_close(&c->vartmp);
        host_path_close(&c->hosts);
        host_path_close(&c->resolv);
        for (size_t i = 0; i < c->n_binds; i++) {
                host_path_close(&c->binds[i].src);
                free(c->binds[i].dst);
        }
        free(c->binds);
        if (c->owner_pidfd >= 0)
                close(c->owner_pidfd);
        if (c->init_fd >= 0)
                close(c->init_fd);
        if (c->ext3_fd >= 0)
                close(c->ext3_fd);
        if (c->serve_sock >= 0)
                close(c->serve_sock);
        overlays_fuse_close(c);
        net_helper_close(&c->net);
        for (size_t i = 0; c->ovl_tree && i < c->n_ovl; i++)
                if (c->ovl_tree[i] >= 0)
                        close(c->ovl_tree[i]);
        free(c->ovl_tree);
        image_overlays_close(c->ovl, c->n_ovl);
}

static int learn_user(struct launch_ctx *c, struct hutch_error *err)
{
        uid_t uid = getuid();
        struct passwd *pw = getpwuid(uid);
        const char *home_env = strv_env_get(c->spec->host_env, "HOME");
        char num[32];

        snprintf(num, sizeof num, "%u", (unsigned) uid);
        c->user = strdup(pw ? pw->pw_name : num);
        c->host_home = strdup(home_env && *home_env ? home_env : pw ? pw->pw_dir : "/");
        c->shell = strdup(pw && pw->pw_shell && *pw->pw_shell ? pw->pw_shell : "/bin/sh");
        c->gecos = strdup(pw && pw->pw_gecos ? pw->pw_gecos : "");
        if (!c->user || !c->host_home || !c->shell || !c->gecos)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = idmap_plan_make(uid, getgid(), c->user, c->spec->fakeroot, !c->spec->ignore_subuid, &c->ids);
        if (r < 0 || c->ids.inside_uid == 0)
                return r; /* root needs no /etc/group line (mounts.c: write_identity) */
        /* the primary group's host name, as Apptainer writes the container's /etc/group */
        struct group *gr = getgrgid(getgid());
        if (gr && gr->gr_name && *gr->gr_name && !(c->group = strdup(gr->gr_name)))
                return hutch_err(err, -ENOMEM, "out of memory");
        return 0;
}

char *runtime_home_inside(const struct launch_spec *s, const char *host_home)
{
        if (s->home) {
                const char *colon = strchr(s->home, ':');
                return strdup(colon ? colon + 1 : s->home);
        }
        return strdup(s->fakeroot ? "/root" : host_home);
}

/* -H src[:dst], --no-home, --contain: where HOME comes from and where it goes. */
static int plan_home(struct launch_ctx *c, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        _cleanup_free_ char *src = NULL;
        char *dst = NULL;

        if (s->home) {
                const char *colon = strchr(s->home, ':');
                src = colon ? strndup(s->home, colon - s->home) : strdup(s->home);
                dst = strdup(colon ? colon + 1 : s->home);
                if (!src || !dst) {
                        free(dst);
                        return hutch_err(err, -ENOMEM, "out of memory");
                }
                if (dst[0] != '/') {
                        free(dst);
                        return hutch_err(err, -EINVAL, "home destination '%s' must be an absolute path",
                                         colon ? colon + 1 : s->home);
                }
        } else if (!(dst = runtime_home_inside(s, c->host_home)))
                return hutch_err(err, -ENOMEM, "out of memory");
        c->home_dst = dst;
        /* under --fakeroot too, at /root (as Apptainer): HOME is where the user's files are */
        if (!c->want_home || (s->contain && !s->home))
                return 0;
        return host_path_open(src ? src : c->host_home, true, "home folder", &c->home, err);
}

static int add_bind(struct launch_ctx *c, const char *src, const char *dst, bool ro, bool required,
                    struct hutch_error *err)
{
        struct plan_bind *nb = realloc(c->binds, (c->n_binds + 1) * sizeof *nb);
        if (!nb)
                return hutch_err(err, -ENOMEM, "out of memory");
        c->binds = nb;
        struct plan_bind *b = &c->binds[c->n_binds];
        *b = (struct plan_bind){.ro = ro};
        int r = host_path_open(src, required, "bind source", &b->src, err);
        if (r < 0)
                return r;
        if (b->src.fd < 0) {
                log_verbose("bind path '%s' does not exist on this host, skipping", src);
                return 0;
        }
        if (path_normalize(dst, &b->dst) < 0) {
                host_path_close(&b->src);
                return hutch_err(err, -EINVAL, "bind destination '%s' must be an absolute path", dst);
        }
        if (required && (r = conf_bind_check(c->spec->conf, b->dst, err)) < 0) {
                host_path_close(&b->src);
                free(b->dst);
                return r;
        }
        c->n_binds++;
        return 0;
}

static int plan_binds(struct launch_ctx *c, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        int r;

        if ((s->no_mount & NO_MOUNT_BIND_PATHS) && s->conf->enforce_bind_paths && s->conf->bind_paths)
                return hutch_err(err, -EPERM,
                                 "--no-mount bind-paths is not allowed by hutch.conf "
                                 "('enforce bind paths = yes')");
        if (s->n_binds > 0 && !s->conf->user_bind_control)
                return hutch_err(err, -EPERM,
                                 "binds of your own are not allowed by hutch.conf "
                                 "('user bind control = no'): '%s'",
                                 s->binds[0].src);
        if (!(s->no_mount & NO_MOUNT_BIND_PATHS))
                for (char **b = s->conf->bind_paths; b && *b; b++) {
                        struct bind_spec *v = NULL;
                        size_t n = 0;
                        r = bind_spec_parse(*b, &v, &n, err);
                        for (size_t i = 0; r >= 0 && i < n; i++)
                                if (!strv_contains(s->no_mount_paths, v[i].dst))
                                        r = add_bind(c, v[i].src, v[i].dst, v[i].ro, false, err);
                        bind_spec_free_array(v, n);
                        if (r < 0)
                                return hutch_err_wrap(err, "hutch.conf 'bind path = %s'", *b);
                }
        for (size_t i = 0; i < s->n_binds; i++)
                if ((r = add_bind(c, s->binds[i].src, s->binds[i].dst, s->binds[i].ro, true, err)) < 0)
                        return r;
        /* hutch's own from here: no admin bind policy (as Apptainer's --nv under 'user bind
         * control = no') */
        for (enum gpu_kind k = GPU_NV; k <= GPU_ROCM; k++) {
                if (!(k == GPU_NV ? s->nv : s->rocm))
                        continue;
                struct bind_spec *v = NULL;
                size_t n = 0;
                r = gpu_files(k, s, &v, &n, err);
                for (size_t i = 0; r >= 0 && i < n; i++)
                        r = add_bind(c, v[i].src, v[i].dst, v[i].ro, false, err);
                bind_spec_free_array(v, n);
                if (r < 0)
                        return r;
        }
        /* -S with --workdir: WORKDIR/scratch/PATH (kept there, as Apptainer keeps it) */
        for (char **d = s->scratch; s->workdir && d && *d; d++) {
                _cleanup_close_ int wd = open(s->workdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                r = wd < 0 ? -errno : 0;
                _cleanup_free_ char *src = strjoin(s->workdir, "/scratch", *d);
                if (!src)
                        return hutch_err(err, -ENOMEM, "out of memory");
                if (r < 0 || (r = mkdir_p_at(wd, src + strlen(s->workdir) + 1, 0700)) < 0)
                        return hutch_err_sys(err, r, "cannot create scratch folder '%s'", src);
                if ((r = add_bind(c, src, *d, false, false, err)) < 0)
                        return r;
        }
        /* hutch's own, not the user's: no admin bind policy; writable, as connect(2) on a
         * unix socket needs write permission */
        if (s->notify_socket && s->notify_socket[0] == '/' &&
            (r = add_bind(c, s->notify_socket, s->notify_socket_dst ? s->notify_socket_dst : s->notify_socket, false,
                          false, err)) < 0)
                return hutch_err_wrap(err, "the notify socket");
        return 0;
}

/* /tmp and /var/tmp: the host's; under --contain fresh ones, or with --workdir its folders
 * (and $HOME there); --workdir alone changes nothing here, as in Apptainer. */
static int plan_tmp(struct launch_ctx *c, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        int r;
        if (!c->want_tmp)
                return 0;
        if (s->workdir && s->contain) {
                _cleanup_free_ char *t = strjoin(s->workdir, "/tmp", NULL), *v = strjoin(s->workdir, "/var_tmp", NULL);
                if (!t || !v)
                        return hutch_err(err, -ENOMEM, "out of memory");
                if ((mkdir(t, 0700) < 0 && errno != EEXIST) || (mkdir(v, 0700) < 0 && errno != EEXIST))
                        return hutch_err_sys(err, -errno, "cannot create folders in workdir '%s'", s->workdir);
                if ((r = host_path_open(t, true, "workdir", &c->tmp, err)) < 0 ||
                    (r = host_path_open(v, true, "workdir", &c->vartmp, err)) < 0)
                        return r;
                if (s->contain && !s->home && c->home.fd < 0 && c->want_home) {
                        _cleanup_free_ char *h = strjoin(s->workdir, "/home", NULL);
                        if (!h || (mkdir(h, 0700) < 0 && errno != EEXIST))
                                return hutch_err_sys(err, h ? -errno : -ENOMEM, "cannot create home in workdir");
                        return host_path_open(h, true, "workdir", &c->home, err);
                }
                return 0;
        }
        if (s->contain)
                return 0; /* fresh folders in the staging tmpfs */
        if ((r = host_path_open("/tmp", false, "/tmp", &c->tmp, err)) < 0)
                return r;
        return host_path_open("/var/tmp", false, "/var/tmp", &c->vartmp, err);
}

static int check_allowed(const struct launch_ctx *c, struct hutch_error *err)
{
        const struct hutch_conf *cf = c->spec->conf;
        bool ok = c->img.format == IMAGE_FORMAT_SIF        ? cf->allow_sif
                  : c->img.format == IMAGE_FORMAT_SQUASHFS ? cf->allow_squashfs
                                                           : cf->allow_dir;
        if (!ok)
                return hutch_err(
                        err, -EPERM, "%s images are not allowed by hutch.conf ('allow container %s = no'): '%s'",
                        image_format_name(c->img.format),
                        c->img.format == IMAGE_FORMAT_DIR ? "dir" : image_format_name(c->img.format), c->img.path);
        if (c->spec->fakeroot && !cf->allow_fakeroot)
                return hutch_err(err, -EPERM, "--fakeroot is not allowed by hutch.conf ('allow fakeroot = no')");
        return conf_image_check(cf, c->img.fd, c->img.path, err);
}

/* --dns, --add-host, and --hostname in a network namespace of its own: the container's
 * resolv.conf and hosts are written (the host's hosts file plus those lines). */
static int plan_net_files(struct launch_ctx *c, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        const struct net_spec *n = s->net;
        if (!n)
                return 0;
        if (n->dns && !(s->no_mount & NO_MOUNT_RESOLV) && net_resolv_text(n, &c->resolv_text) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        if ((n->add_hosts || (n->enabled && s->hostname)) && !(s->no_mount & NO_MOUNT_HOSTS)) {
                _cleanup_free_ char *base = NULL;
                int r = read_regular_at(AT_FDCWD, "/etc/hosts", 1 << 20, &base, NULL);
                if (r < 0 && r != -ENOENT)
                        log_verbose("cannot read the host's /etc/hosts (%s), writing a new one", strerror(-r));
                if (net_hosts_text(n, base, n->enabled ? s->hostname : NULL, &c->hosts_text) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        return 0;
}

/* A cache folder another user made first (/dev/shm/hutch-UID is anyone's to create) is
 * never used; say so loudly, as silence would hide the attempt. */
/* Before the user namespace, with the caller's own uid (inside it, under --fakeroot, the
 * uid is 0 and the owners are mapped): the cache folder the image server, started as the
 * caller, refused. */
static void cache_probe(struct launch_ctx *c)
{
        struct stat st;
        if (c->spec->conf->file_cache_size == 0 ||
            file_cache_why_not_own(geteuid(), strv_env_get(c->spec->host_env, "XDG_RUNTIME_DIR"), &c->cache_bad, &st) <=
                    0)
                return;
        c->cache_bad_own = st.st_uid == geteuid();
        c->cache_bad_mode = st.st_mode & 07777;
}

/* ... said once the image is known to be one the server reads (not a folder). The owner's
 * uid is not shown: inside the user namespace another user's is the overflow uid. */
static void cache_check(const struct launch_ctx *c)
{
        if (c->cache_bad && c->img.format != IMAGE_FORMAT_DIR)
                log_warning("the decompressed-file cache '%s' is not yours alone (%s, mode %04o): not used; "
                            "someone may have planted it, ask root to remove it",
                            c->cache_bad, c->cache_bad_own ? "yours" : "another user's", (unsigned) c->cache_bad_mode);
}

static int learn_host(struct launch_ctx *c, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        char cwd[PATH_MAX];
        int r;

        c->want_home = s->conf->mount_home && !s->no_home && !(s->no_mount & NO_MOUNT_HOME);
        c->want_tmp = s->conf->mount_tmp && !(s->no_mount & NO_MOUNT_TMP);
        c->want_cwd = !s->contain && !(s->no_mount & NO_MOUNT_CWD);
        if ((r = seccomp_prog_make(s, &c->seccomp, err)) < 0)
                return r;
        if ((r = image_open(s->image, s->writable, &c->img, err)) < 0 || (r = check_allowed(c, err)) < 0)
                return r;
        if (s->image_temporary)
                unlink_with_folder(s->image);
        cache_check(c);
        if ((r = plan_home(c, err)) < 0 || (r = plan_tmp(c, err)) < 0 || (r = plan_binds(c, err)) < 0 ||
            (r = overlays_clone(c, err)) < 0)
                return r;
        if (getcwd(cwd, sizeof cwd)) {
                c->cwd = strdup(cwd);
                if (c->want_cwd)
                        host_path_open(cwd, false, "cwd", &c->cwdp, err);
        }
        if (!(s->no_mount & NO_MOUNT_HOSTS) && (r = host_path_open("/etc/hosts", false, "", &c->hosts, err)) < 0)
                return r;
        if (!(s->no_mount & NO_MOUNT_RESOLV) &&
            (r = host_path_open("/etc/resolv.conf", false, "", &c->resolv, err)) < 0)
                return r;
        return plan_net_files(c, err);
}

/* --pwd must exist (as Apptainer); else the host cwd when visible (never under --contain,
 * which starts in $HOME, as Apptainer), else $HOME, else /. */
static int enter_workdir(const struct launch_ctx *c, struct hutch_error *err)
{
        if (c->spec->pwd) {
                if (chdir(c->spec->pwd) < 0)
                        return hutch_err_sys(err, -errno, "cannot change to --pwd '%s' in the container", c->spec->pwd);
                return 0;
        }
        if (!c->spec->contain && c->cwd && chdir(c->cwd) == 0)
                return 0;
        if (!c->home_dst || chdir(c->home_dst) < 0)
                (void) !chdir("/");
        return 0;
}

/* Exec a prepared command: workdir, no_new_privs, its environment, the exec. */
static int payload_exec_cmd(struct launch_ctx *c, const struct payload_cmd *cmd, struct hutch_error *err)
{
        int r;
        if (!cmd->argv[0])
                return hutch_err(err, -EINVAL, "no command given");
        if ((r = enter_workdir(c, err)) < 0)
                return r;
        log_debug("exec %s", cmd->argv[0]);
        if (c->spec->no_umask)
                umask(022);
        if ((r = security_apply(c, err)) < 0)
                return r;
        environ = cmd->envp;
        execvp(cmd->argv[0], cmd->argv);
        r = -errno;
        if (r == -ENOEXEC) /* a script without #!: run it with the image's shell, as Apptainer does */
                execv("/bin/sh", cmd->sh_argv);
        /* ENOENT for a file that is there: its #! names what the image lacks (an OCI image
         * without /bin/sh has a runscript all the same) */
        char head[256] = "";
        FILE *f = r == -ENOENT && strchr(cmd->argv[0], '/') ? fopen(cmd->argv[0], "re") : NULL;
        if (f && fgets(head, sizeof head, f) && startswith(head, "#!")) {
                fclose(f);
                char *interp = head + 2 + strspn(head + 2, " \t");
                interp[strcspn(interp, " \t\n")] = 0;
                return hutch_err(err, r, "cannot run '%s' in the container: its interpreter '%s' is not in the image",
                                 cmd->argv[0], interp);
        }
        if (f)
                fclose(f);
        return hutch_err_sys(err, r, "cannot run '%s' in the container", cmd->argv[0]);
}

/* An instance without a startscript runs nothing and stays up (PID 1 stays). An image
 * without a test script passes; an app without a runscript or test, or an image with neither
 * a runscript nor a /bin/sh under run, fails, status 1 (as Apptainer's action script words
 * and ends them). */
static _Noreturn void payload_none(const struct launch_ctx *c)
{
        const struct launch_spec *s = c->spec;
        if (s->app && s->action == LAUNCH_RUN) {
                log_msg(LOG_LEVEL_ERROR, "no runscript for contained app: %s", s->app);
                _exit(1);
        }
        if (s->app && s->action == LAUNCH_TEST) {
                log_msg(LOG_LEVEL_ERROR, "No tests for contained app: %s", s->app);
                _exit(1);
        }
        if (s->action == LAUNCH_RUN) {
                log_msg(LOG_LEVEL_ERROR, "No runscript and no /bin/sh executable found in container, aborting");
                _exit(1);
        }
        if (s->action == LAUNCH_TEST)
                log_info("No test script found in container, exiting");
        else if (s->action == LAUNCH_START)
                log_info("No instance start script found in container");
        _exit(0);
}

int payload_exec(struct launch_ctx *c, struct hutch_error *err)
{
        struct payload_cmd cmd = {0};
        int r = payload_prepare(c, &cmd, err);
        if (r == -ENOENT)
                payload_none(c);
        if (r >= 0)
                r = payload_exec_cmd(c, &cmd, err);
        payload_cmd_free(&cmd);
        return r;
}

/* hutch-init (runtime/pid1.c), installed beside hutch's other programs, opened before
 * the launcher leaves the host's namespaces (the init execs it by fd after pivot_root): the
 * init's work is a loop of system calls, and as an exec'd program of a few KiB it keeps
 * nothing of hutch's memory (a forked init would hold a copy of an instance's supervisor's
 * heap). */
static int init_open(struct launch_ctx *c, struct hutch_error *err)
{
        char path[PATH_MAX];
        if (!libexec_program("hutch-init", path, sizeof path))
                return hutch_err(err, -ENOENT,
                                 "cannot find hutch-init, the container's init (beside hutch or in "
                                 "../libexec/hutch from it): is hutch installed whole?");
        c->init_fd = open(path, O_PATH | O_CLOEXEC);
        if (c->init_fd < 0)
                return hutch_err_sys(err, -errno, "cannot open the container's init '%s'", path);
        return 0;
}

/* The payload, forked by the init, with the command the init prepared: a failure before
 * its exec goes to the launcher on sync_fd. */
static _Noreturn void payload_main(struct launch_ctx *c, const struct payload_cmd *cmd, int prepared, int sync_fd,
                                   struct hutch_error *err)
{
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_UNBLOCK, &all, NULL);
        if (prepared == -ENOENT)
                payload_none(c);
        if (prepared >= 0)
                payload_exec_cmd(c, cmd, err);
        process_msg_fail(sync_fd, err);
        _exit(255);
}

/* PID 1 of a --pid namespace: start the payload and become the init, hutch-init. In an
 * instance, a payload that exits 0 leaves PID 1 running (Apptainer's instances outlive
 * their startscript); a terminating signal ends it. If the exec is refused (a security
 * module), it ends the payload and fails. */
static _Noreturn void run_init(struct launch_ctx *c, int sync_fd)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct payload_cmd cmd = {0};
        sigset_t all;

        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, NULL);
        int prepared = payload_prepare(c, &cmd, &err);
        pid_t payload = fork();
        if (payload == 0)
                payload_main(c, &cmd, prepared, sync_fd, &err);
        payload_cmd_free(&cmd);
        if (payload < 0) {
                hutch_err_sys(&err, -errno, "cannot start the payload");
                process_msg_fail(sync_fd, &err);
                _exit(255);
        }
        /* sync_fd is closed by the exec (close-on-exec): the launcher's last word */
        char pid[16];
        snprintf(pid, sizeof pid, "%d", (int) payload);
        char *argv[] = {"hutch-init", pid, c->io ? "1" : "0", NULL}, *envp[] = {NULL};
        syscall(SYS_execveat, c->init_fd, "", argv, envp, AT_EMPTY_PATH);
        hutch_err_sys(&err, -errno, "cannot exec the container's init (hutch-init)");
        process_msg_fail(sync_fd, &err);
        kill(payload, SIGKILL);
        _exit(255);
}

static bool has_netns(const struct launch_spec *s)
{
        return s->net && s->net->enabled && s->net->type != NET_TYPE_HOST;
}

/* With every signal blocked: pass each one on to child (not the terminal stops) until it
 * exits; its status as an exit code (128+N for signal N). */
static int forward_until_exit(const struct pidref *child, const sigset_t *all)
{
        int status = 0;
        for (;;) {
                siginfo_t si;
                int sig = sigwaitinfo(all, &si);
                if (sig == SIGCHLD) {
                        int r = pidref_wait(child, WNOHANG, &status);
                        if (r < 0)
                                return 255; /* its status cannot be known: hutch's own failure */
                        if (r > 0)
                                break;
                        continue;
                }
                if (sig > 0 && sig != SIGTSTP && sig != SIGTTIN && sig != SIGTTOU)
                        (void) pidref_kill(child, sig);
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The parent outside a --pid namespace (or of a joined process), with every signal blocked
 * since before the child existed: forward signals, return the child's status. */
int child_wait(const struct pidref *child, int sync_fd, const sigset_t *old, int *ret_status, struct hutch_error *err)
{
        sigset_t all;
        sigfillset(&all);
        /* a failure before exec arrives as FAILED; EOF means exec happened */
        struct process_msg m;
        bool failed = process_msg_recv(sync_fd, 0, &m, NULL) == 1 && m.type == PROCESS_MSG_FAILED;
        close(sync_fd);
        if (failed)
                *err = m.err;
        int code = forward_until_exit(child, &all);
        sigprocmask(SIG_SETMASK, old, NULL);
        if (failed)
                return err->code < 0 ? err->code : -EIO;
        *ret_status = code;
        return 0;
}

/* An instance's launcher, once it forked the init (our parent's child, FORK_SIBLING): wait
 * for the payload's exec (EOF) or a failure before it, then hand the init over to the
 * caller, with the container's address, and leave. */
static int init_hand_over(struct launch_ctx *c, struct pidref *init, int sync_fd, const sigset_t *old,
                          struct hutch_error *err)
{
        struct process_msg m;
        bool failed = process_msg_recv(sync_fd, 0, &m, NULL) == 1 && m.type == PROCESS_MSG_FAILED;
        close(sync_fd);
        sigprocmask(SIG_SETMASK, old, NULL);
        if (failed) {
                *err = m.err;
                return err->code < 0 ? err->code : -EIO;
        }
        if (has_netns(c->spec))
                net_address_get(c->io->net_addr, sizeof c->io->net_addr);
        c->io->init = *init;
        *init = PIDREF_NULL;
        return 0;
}

/* A batch container's image server is started first thing (image_serve_process), so that
 * its start-up overlaps everything up to the mount, which is then handed to it; it reports
 * a crash on our stderr, the user's. An instance's is started by its supervisor, before
 * the launcher: its socket comes in io, and is ours from here on. */
static int start_server(struct launch_ctx *c, struct hutch_error *err)
{
        struct stat st;
        int fs[2];
        if (c->io) {
                c->serve_sock = c->io->serve_sock;
                c->io->serve_sock = -EBADF;
                return 0;
        }
        if (stat(c->spec->image, &st) < 0 || S_ISDIR(st.st_mode))
                return 0; /* a folder needs none; a missing image fails below, with its message */
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fs) < 0)
                return hutch_err_sys(err, -errno, "cannot create the FUSE server's socket");
        int r = image_serve_process(fs[0], c->owner_pidfd, STDERR_FILENO, c->spec->conf->file_cache_size, NULL, err);
        if (r < 0) {
                close(fs[1]);
                return r;
        }
        c->serve_sock = fs[1];
        return 0;
}

struct init_args {
        struct launch_ctx *c;
        int *sync;           /* the socketpair to report on: [1] ours */
        const sigset_t *old; /* the signal mask from before the launcher blocked every signal */
        bool enter_cg;       /* born outside c->cg (cgroup v1, or no clone3 into it): enter it */
};

/* The init-to-be, PID 1 of the new namespace: a fork of the launcher until its exec. */
static _Noreturn void init_main(struct init_args *a)
{
        struct launch_ctx *c = a->c;
        struct hutch_error err = HUTCH_ERROR_INIT;
        int r;
        sigprocmask(SIG_SETMASK, a->old, NULL);
        close(a->sync[0]);
        if ((a->enter_cg && (r = cgroup_enter(c->cg, 0, &err)) < 0) || (r = rootfs_assemble(c, &err)) < 0 ||
            (r = rootfs_pivot(c, &err)) < 0) {
                process_msg_fail(a->sync[1], &err);
                _exit(255);
        }
        if (c->spec->no_init || !c->spec->pid_ns) {
                payload_exec(c, &err);
                process_msg_fail(a->sync[1], &err);
                _exit(255);
        }
        run_init(c, a->sync[1]);
}

static int launch_in_ctx(struct launch_ctx *c, int *ret_status, struct hutch_error *err)
{
        const struct launch_spec *s = c->spec;
        int flags = CLONE_NEWNS | (s->ipc_ns ? CLONE_NEWIPC : 0) | (s->uts_ns || s->hostname ? CLONE_NEWUTS : 0) |
                    (has_netns(s) ? CLONE_NEWNET : 0);
        /* the parent of the --pid init, which it checks for; the batch image server's owner */
        c->owner_pidfd = c->io ? pidfd_open_pid(getppid()) : pidfd_open_self();
        if (c->owner_pidfd < 0)
                return hutch_err_sys(err, c->owner_pidfd, "pidfd_open");
        int r;
        if (s->pid_ns && !s->no_init && (r = init_open(c, err)) < 0)
                return r;
        if ((r = start_server(c, err)) < 0)
                return r;
        /* Host paths are opened after unshare(CLONE_NEWNS): a bind mount's source must be a
         * mount of the caller's own namespace, so fds from before it fail with EINVAL. */
        r = learn_user(c, err);
        if (r < 0)
                return r;
        /* with the caller's own credentials: inside the user namespace CAP_DAC_OVERRIDE
         * would let a mode-0000 image of the caller's own pass */
        if (access(s->image, R_OK) < 0)
                return hutch_err_sys(err, -errno, "cannot read image '%s'", s->image);
        if ((r = overlays_open(c, err)) < 0)
                return r;
        /* the network helper stays in the host's namespaces: started before we leave them */
        if ((r = net_helper_start(s->net, &c->net, err)) < 0)
                return r;
        cache_probe(c);
        if ((r = userns_enter(&c->ids, flags, err)) < 0 || (r = learn_host(c, err)) < 0)
                return r;
        if (has_netns(s) && ((r = net_loopback_up(err)) < 0 || (r = net_helper_wire(&c->net, err)) < 0))
                return r;
        if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
                return hutch_err_sys(err, -errno, "cannot set hostname '%s'", s->hostname);
        if ((r = rootfs_stage(c, err)) < 0)
                return r;
        if (c->serve_sock >= 0) {
                close(c->serve_sock);
                c->serve_sock = -EBADF;
        }
        /* this process becomes the payload, unless a user's ext3 overlay is served by
         * hutch-ext3: then it forks the payload and, once it has ended, waits for the
         * server to write the image back, so that the image is clean when the caller goes on */
        if (!s->pid_ns && !c->ovl_fuse) {
                if ((c->cg && (r = cgroup_enter(c->cg, 0, err)) < 0) || (r = rootfs_assemble(c, err)) < 0 ||
                    (r = rootfs_pivot(c, err)) < 0)
                        return r;
                /* the payload's end undoes the network */
                if ((r = net_helper_watch(&c->net, getpid(), err)) < 0)
                        return r;
                return payload_exec(c, err);
        }
        /* only now: the first fork after unshare(CLONE_NEWPID) becomes the namespace's PID 1,
         * and that must be our init, not the FUSE server's helper */
        if (s->pid_ns && unshare(CLONE_NEWPID) < 0)
                return hutch_err_sys(err, -errno, "cannot create a PID namespace");
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return hutch_err_sys(err, -errno, "cannot create sync socket");
        /* an instance's init is the supervisor's child (a sibling of ours), so this process
         * need not stay; it ends with its parent (the supervisor's end, or ours in batch) */
        sigset_t all, old;
        sigfillset(&all);
        struct init_args ia = {.c = c, .sync = sp, .old = &old, .enter_cg = c->cg && c->cg_fd < 0};
        struct pidref init = PIDREF_NULL;
        unsigned fork_flags = FORK_DEATHSIG | (c->io ? FORK_SIBLING : 0);
        /* before the child exists: an init that ends at once must leave its SIGCHLD
         * pending for child_wait */
        sigprocmask(SIG_BLOCK, &all, &old);
        r = ia.enter_cg || !c->cg ? -EOPNOTSUPP : process_fork_into_cgroup(fork_flags, c->cg_fd, &init);
        if (r == -EOPNOTSUPP) { /* no cgroup, v1, or a kernel without clone3 into one */
                ia.enter_cg = c->cg != NULL;
                r = process_fork(fork_flags, &init);
        }
        if (r == 0)
                init_main(&ia);
        close(sp[1]);
        if (r < 0) {
                sigprocmask(SIG_SETMASK, &old, NULL);
                close(sp[0]);
                return hutch_err_sys(err, r, "cannot fork the container's first process");
        }
        /* the init's end undoes the network (an init already gone: the helper sees us close
         * its socket instead, and undoes it then) */
        overlays_fuse_arm(c, init.pid);
        struct hutch_error werr = HUTCH_ERROR_INIT;
        if (net_helper_watch(&c->net, init.pid, &werr) < 0)
                log_verbose("%s", werr.msg);
        if (c->io)
                return init_hand_over(c, &init, sp[0], &old, err);
        r = child_wait(&init, sp[0], &old, ret_status, err);
        pidref_done(&init);
        overlays_fuse_wait(c);
        return r;
}

static int launch_plain(const struct launch_spec *spec, struct launch_instance_io *io, const struct cgroup *cg,
                        int cg_fd, int *ret_status, struct hutch_error *err)
{
        struct launch_ctx c = LAUNCH_CTX_INIT(spec, io);
        c.cg = cg;
        c.cg_fd = cg_fd;
        int r = launch_in_ctx(&c, ret_status, err);
        ctx_free(&c);
        return r;
}

static void report_oom(const struct cgroup_limits *l)
{
        if (l->memory > 0)
                log_msg(LOG_LEVEL_ERROR,
                        "the container was killed by the kernel's OOM killer: it reached its memory "
                        "limit of %lld MiB (--memory)",
                        (long long) (l->memory >> 20));
        else
                log_msg(LOG_LEVEL_ERROR, "the container was killed by the kernel's OOM killer");
}

/* With limits: this process creates the cgroup and stays outside it, a fork goes on as the
 * launcher, whose container enters it (the launcher itself as it execs into the payload, or
 * the init it forks); signals are passed on; at the end the cgroup is emptied and removed. */
static int launch_limited(const struct launch_spec *spec, int *ret_status, struct hutch_error *err)
{
        struct cgroup cg = CGROUP_NULL;
        char name[64];
        int sp[2], status = 0;
        snprintf(name, sizeof name, "hutch-%d", (int) getpid());
        int r = cgroup_create(spec->limits, spec->cgroup_parent, name, &cg, err);
        if (r < 0)
                return r;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
                cgroup_destroy(&cg);
                return hutch_err_sys(err, -errno, "cannot create sync socket");
        }
        int cg_fd = cgroup_open_for_clone(&cg); /* -EOPNOTSUPP for v1: entered by a write */
        sigset_t all, old;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, &old);
        struct pidref child = PIDREF_NULL;
        r = process_fork(FORK_DEATHSIG, &child);
        if (r == 0) {
                sigprocmask(SIG_SETMASK, &old, NULL);
                close(sp[0]);
                r = launch_plain(spec, NULL, &cg, cg_fd < 0 ? -EBADF : cg_fd, &status, err);
                if (r < 0) {
                        process_msg_fail(sp[1], err);
                        _exit(255);
                }
                _exit(status);
        }
        close(sp[1]);
        if (cg_fd >= 0)
                close(cg_fd);
        if (r < 0) {
                r = hutch_err_sys(err, r, "cannot fork");
                close(sp[0]);
                sigprocmask(SIG_SETMASK, &old, NULL);
                cgroup_destroy(&cg);
                return r;
        }
        int code = forward_until_exit(&child, &all);
        pidref_done(&child);
        sigprocmask(SIG_SETMASK, &old, NULL);
        struct process_msg m;
        bool failed = process_msg_recv(sp[0], MSG_DONTWAIT, &m, NULL) == 1 && m.type == PROCESS_MSG_FAILED;
        close(sp[0]);
        bool oom = cgroup_oom_killed(&cg);
        cgroup_destroy(&cg);
        if (failed) {
                *err = m.err;
                return err->code < 0 ? err->code : -EIO;
        }
        if (oom)
                report_oom(spec->limits);
        *ret_status = code;
        return 0;
}

int runtime_launch(const struct launch_spec *spec, struct launch_instance_io *io, int *ret_status,
                   struct hutch_error *err)
{
        if (spec->limits && cgroup_limits_any(spec->limits))
                return launch_limited(spec, ret_status, err);
        return launch_plain(spec, io, io ? io->cgroup : NULL, io ? io->cgroup_fd : -EBADF, ret_status, err);
}

/* As forward_until_exit, and once tie_fd (a pidfd) polls readable, its process has ended:
 * the child is killed (SIGKILL, as PR_SET_DEATHSIG ends a batch run's helpers) and waited
 * for. The signals are read from a signalfd, which has those already pending too. */
static int forward_tied(const struct pidref *child, const sigset_t *all, int tie_fd)
{
        _cleanup_close_ int sfd = signalfd(-1, all, SFD_CLOEXEC);
        if (sfd < 0) {
                log_warning("cannot watch the caller (%s): the container outlives it", strerror(errno));
                return forward_until_exit(child, all);
        }
        int status = 0;
        for (;;) {
                struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = tie_fd, .events = POLLIN}};
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        log_warning("cannot watch the caller (%s): the container outlives it", strerror(errno));
                        return forward_until_exit(child, all);
                }
                if (p[1].revents) {
                        (void) pidref_kill(child, SIGKILL);
                        tie_fd = -1; /* poll leaves a negative fd out */
                }
                struct signalfd_siginfo si;
                if (!(p[0].revents & POLLIN) || read(sfd, &si, sizeof si) != (ssize_t) sizeof si)
                        continue;
                int sig = (int) si.ssi_signo;
                if (sig == SIGCHLD) {
                        int r = pidref_wait(child, WNOHANG, &status);
                        if (r < 0)
                                return 255;
                        if (r > 0)
                                break;
                        continue;
                }
                if (sig != SIGTSTP && sig != SIGTTIN && sig != SIGTTOU)
                        (void) pidref_kill(child, sig);
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int runtime_forward_until_exit(const struct pidref *child, int tie_fd)
{
        sigset_t all;
        sigfillset(&all);
        return tie_fd >= 0 ? forward_tied(child, &all, tie_fd) : forward_until_exit(child, &all);
}
