/* Shared internals of runtime/: the stages of a launch and the state they pass on. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "image/image.h"
#include "runtime.h"
#include "util/process.h"

struct idmap_plan {
        uid_t uid, inside_uid;
        gid_t gid, inside_gid;
        bool userns; /* false when really root */
        bool subids; /* fakeroot with a subordinate range */
        unsigned long uid_start, uid_count, gid_start, gid_count;
};

/* subids: with fakeroot, use the range /etc/subuid and /etc/subgid grant (when newuidmap and
 * newgidmap are there); false: 0 inside is the caller alone (--ignore-subuid) */
int idmap_plan_make(uid_t uid, gid_t gid, const char *user, bool fakeroot, bool subids, struct idmap_plan *ret);
int userns_enter(const struct idmap_plan *m, int extra_flags, struct hutch_error *err);

/* A host path captured before any mount hides it. */
struct host_path {
        char *path; /* as given (absolute, normalised) */
        int fd;     /* detached mount tree (open_tree OPEN_TREE_CLONE), attached once */
        bool is_dir;
};

/* Everything the launcher learns on the host before it enters namespaces. */
/* A compiled seccomp filter (struct sock_filter[len]), made on the host. */
struct seccomp_prog {
        void *filter;
        unsigned short len;
};
int seccomp_prog_make(const struct launch_spec *s, struct seccomp_prog *ret, struct hutch_error *err);
void seccomp_prog_free(struct seccomp_prog *p);

/* One bind of the plan: its source opened on the host, its normalised destination. */
struct plan_bind {
        struct host_path src;
        char *dst;
        bool ro;
};

struct launch_ctx {
        const struct launch_spec *spec;
        /* an instance's (runtime.h), NULL in batch: the one thing launch.c asks to tell them
         * apart */
        struct launch_instance_io *io;
        struct seccomp_prog seccomp;
        struct image img;
        struct idmap_plan ids;
        char *user, *host_home, *shell, *gecos;
        char *group;    /* the caller's primary group's host name (NULL: none, or root inside) */
        char *home_dst; /* HOME inside */
        char *cwd;      /* host cwd */
        struct host_path home, cwdp, tmp, vartmp, hosts, resolv;
        struct plan_bind *binds; /* conf bind paths, then the user's, then hutch's own */
        size_t n_binds;
        /* the parent of the --pid init (ourselves; in an instance the supervisor, as the init
         * is forked as our sibling): the init checks it is alive after PR_SET_PDEATHSIG */
        int owner_pidfd;
        /* where the image's FUSE mount goes to be served (image_mount_opts): to the
         * server the supervisor started in an instance (io's, ours now), else to one
         * started first thing;
         * closed once the rootfs is staged, so that no container process holds it */
        int serve_sock;
        /* the container's cgroup (batch with limits, or the instance's), NULL: none. Its
         * first process is born in it (cg_fd, cgroup v2) or enters it first thing (v1);
         * hutch's own helpers started before (the image and overlay servers, hutch-net)
         * stay where the caller is, so a payload at its memory limit never starves the FUSE
         * servers it reads through. */
        const struct cgroup *cg;
        int cg_fd;
        struct net_helper net; /* hutch-net, for pasta, slirp4netns and bridge */
        int init_fd;           /* hutch-init, O_PATH, with --pid (run_init execs it) */
        /* /etc/hosts and /etc/resolv.conf written for --add-host, --hostname with --net and
         * --dns, bound instead of the host's; NULL: the host's */
        char *hosts_text, *resolv_text;
        /* the decompressed-file cache folder the image server refused (not the caller's
         * alone), found with the caller's own ids before the user namespace; NULL: none */
        char *cache_bad;
        bool cache_bad_own; /* the caller's, with a mode that lets others in */
        mode_t cache_bad_mode;
        /* which of the user's folders the container gets (hutch.conf, --no-home, --no-mount,
         * --contain): decided once, in learn_host, and read by the plan and the mounts */
        bool want_home, want_tmp, want_cwd;
        bool mounted_cwd;
        bool has_env_scripts;
        struct overlay *ovl; /* --overlay, opened (and locked) on the host */
        size_t n_ovl;
        int *ovl_tree;      /* each one's tree, cloned once the mount namespace is ours */
        bool root_writable; /* an overlay's upper layer or --writable-tmpfs */
        bool ovl_fuse;      /* ext3 overlays as a user: hutch-ext3 */
        int ext3_fd;        /* hutch-ext3, opened on the host (O_PATH) */
        int fuse_sock;      /* to the hutch-fuse watcher */
        pid_t fuse_pid;     /* the watcher, our child */
        bool fuse_armed;    /* it was told the container's end process */
};

/* ids, capabilities, no_new_privs, then the seccomp filter: the last steps before the
 * exec. Allocates nothing. */
int security_apply(const struct launch_ctx *c, struct hutch_error *err);

/* The staging tmpfs, in the container's private mount namespace: every host path the
 * container needs is an fd taken before it covers this folder. */
#define STAGE_DIR "/tmp"

/* Staging tmpfs and the image mount (handed to the FUSE server started before). */
int rootfs_stage(struct launch_ctx *c, struct hutch_error *err);
/* /proc, /sys, /dev, home, tmp, cwd, binds, passwd/group; then the root goes read-only. */
int rootfs_assemble(struct launch_ctx *c, struct hutch_error *err);
int rootfs_pivot(struct launch_ctx *c, struct hutch_error *err);
/* --overlay (runtime/overlay.c): open and lock the layers on the host, with the caller's
 * credentials; then, in the private mount namespace, mount root as the overlay of image
 * and them (and --writable-tmpfs's staging upper layer). */
int overlays_open(struct launch_ctx *c, struct hutch_error *err);
int overlays_clone(struct launch_ctx *c, struct hutch_error *err);
int overlays_stage(struct launch_ctx *c, const char *image, const char *root, struct hutch_error *err);
#define OVL_DIR STAGE_DIR "/ovl"
/* ext3 overlays as a user (runtime/overlay-fuse.c): each image served by hutch-ext3 on a
 * FUSE mount at OVL_DIR/N, under a watcher process (hutch-fuse) outside the container's
 * PID namespace that ends the servers, cleanly, once the container has ended. check:
 * hutch-ext3 is installed beside hutch and opened (it is exec'd by fd from the container's
 * mount namespace), sets c->ovl_fuse. start: the watcher forked, its
 * servers started beside the launcher's other work; ready: the images mounted, or one line
 * and nothing left. arm: the process whose end is the container's (the payload
 * or the init); until it is named, the launcher's end (an EOF) ends the servers too. */
int overlays_fuse_check(struct launch_ctx *c, const struct overlay *o, struct hutch_error *err);
int overlays_fuse_start(struct launch_ctx *c, struct hutch_error *err);
int overlays_fuse_ready(struct launch_ctx *c, struct hutch_error *err);
void overlays_fuse_arm(struct launch_ctx *c, pid_t end);
/* After the container's end: returns once the watcher has ended its helpers, each image
 * written back and closed (a batch run returns only then). */
void overlays_fuse_wait(struct launch_ctx *c);
/* ctx_free's part: before the watcher was armed, waits as overlays_fuse_wait (the EOF ends
 * the helpers); after, lets it go on (an instance's). */
void overlays_fuse_close(struct launch_ctx *c);

#define LAUNCH_CTX_INIT(s, i)                                                                                       \
        {                                                                                                           \
                .spec = (s), .io = (i), .img = IMAGE_NULL, .owner_pidfd = -EBADF, .serve_sock = -EBADF,             \
                .init_fd = -EBADF, .ext3_fd = -EBADF, .fuse_sock = -EBADF, .home.fd = -EBADF, .cwdp.fd = -EBADF,    \
                .tmp.fd = -EBADF, .vartmp.fd = -EBADF, .hosts.fd = -EBADF, .resolv.fd = -EBADF, .net.sock = -EBADF, \
                .cg_fd = -EBADF                                                                                     \
        }
void ctx_free(struct launch_ctx *c);
/* Parent side of a fork into a PID namespace: a struct hutch_error on sync_fd means the
 * child failed before exec, EOF that it exec'd; then forward signals until it exits. The
 * caller blocks every signal before the child exists (a child that exits before the block
 * would leave no SIGCHLD to wait for: SIG_DFL discards it); old: the mask to restore. */
int child_wait(const struct pidref *child, int sync_fd, const sigset_t *old, int *ret_status, struct hutch_error *err);

/* Read the regular file that pathfd (O_PATH) names, at most max bytes (a multiple of 1 MiB,
 * for the message). A FIFO, device or folder is refused without being opened for reading
 * (a FIFO's open blocks, a device's may act): -EINVAL; larger than max: -EFBIG. what names
 * the file in err. */
int regular_file_read(int pathfd, const char *what, size_t max, char **ret, size_t *ret_len, struct hutch_error *err);

/* After pivot (or after joining an instance): build argv/env, chdir, exec. Returns only
 * on failure. */
int payload_exec(struct launch_ctx *c, struct hutch_error *err);

/* The payload's command: argv and envp, and for a script without #! the same run by
 * /bin/sh (sh_argv: its own array, the strings argv's). */
struct payload_cmd {
        char **argv, **envp, **sh_argv;
};
/* Build the payload's command; after pivot. -ENOENT: there is nothing to run (no start or
 * test script), unreported. */
int payload_prepare(struct launch_ctx *c, struct payload_cmd *ret, struct hutch_error *err);
void payload_cmd_free(struct payload_cmd *cmd);
/* The shell text of the wrapper that sources the image's env scripts and sets the forced
 * variables ("KEY=VALUE", KEY a POSIX name: -EINVAL otherwise). */
int payload_env_script(char *const *forced, const char *app, bool eval, bool devnull, char **ret);

/* gpu.c: --nv, --rocm */
enum gpu_kind { GPU_NV, GPU_ROCM };
/* The host's driver files of that vendor as read-only binds (devices read-write, under
 * --contain only): none, with a warning, when no file of that driver alone is found. */
int gpu_files(enum gpu_kind kind, const struct launch_spec *s, struct bind_spec **ret, size_t *ret_n,
              struct hutch_error *err);
/* `ldconfig -p` text: each library whose name starts with one in libs, of the ABI whose tag
 * (the parenthesised flags' "x86-64"...; NULL: any) is given, as a bind to
 * /.singularity.d/libs/NAME; the first of a name wins. Appends to *v, *n; -ENOMEM. */
int gpu_ldconfig_parse(const char *text, const char *const *libs, const char *abi, struct bind_spec **v, size_t *n);
