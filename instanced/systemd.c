/* Instances kept by the user's systemd manager: the unit name of an instance, the limits as
 * unit properties, and `instance start` through hutch-systemd (the program that links
 * libsystemd, so that hutch itself does not): StartTransientUnit of hutch-NAME.service whose
 * ExecStart= is the same supervisor `instance start` execs otherwise, its sync socket
 * passed as the unit's stdin. The supervisor writes READY=1, STATUS= and STOPPING=1 to the
 * unit's NOTIFY_SOCKET itself (a datagram: no library needed). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "instanced-internal.h"
#include "util/cleanup.h"
#include "util/process.h"
#include "util/util.h"

#define UNIT_PREFIX "hutch-"
#define UNIT_SUFFIX ".service"

/* As systemd-escape: '-' (and any byte outside [A-Za-z0-9:_.], a leading '.') is \xNN. */
int instance_unit_name(const char *name, char *buf, size_t size)
{
        size_t k = 0;
        if (!instance_name_is_valid(name))
                return -EINVAL;
        int n = snprintf(buf, size, UNIT_PREFIX);
        k = (size_t) n;
        for (const char *p = name; *p; p++) {
                unsigned char ch = (unsigned char) *p;
                bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                             ch == ':' || ch == '_' || (ch == '.' && p != name);
                if (k + 5 >= size)
                        return -ENAMETOOLONG;
                k += plain ? (size_t) snprintf(buf + k, size - k, "%c", ch)
                           : (size_t) snprintf(buf + k, size - k, "\\x%02x", ch);
        }
        if (k + sizeof UNIT_SUFFIX > size)
                return -ENAMETOOLONG;
        memcpy(buf + k, UNIT_SUFFIX, sizeof UNIT_SUFFIX);
        return 0;
}

static int hexval(char c)
{
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
}

int instance_unit_name_parse(const char *unit, char *buf, size_t size)
{
        size_t n = strlen(unit), k = 0;
        if (!startswith(unit, UNIT_PREFIX) || n <= strlen(UNIT_PREFIX UNIT_SUFFIX) ||
            strcmp(unit + n - strlen(UNIT_SUFFIX), UNIT_SUFFIX))
                return -EINVAL;
        const char *p = unit + strlen(UNIT_PREFIX), *end = unit + n - strlen(UNIT_SUFFIX);
        while (p < end) {
                char ch = *p++;
                if (ch == '\\') {
                        int hi, lo;
                        if (end - p < 3 || p[0] != 'x' || (hi = hexval(p[1])) < 0 || (lo = hexval(p[2])) < 0)
                                return -EINVAL;
                        ch = (char) (hi << 4 | lo);
                        p += 3;
                }
                if (k + 1 >= size)
                        return -ENAMETOOLONG;
                buf[k++] = ch;
        }
        buf[k] = 0;
        return instance_name_is_valid(buf) ? 0 : -EINVAL;
}

int instance_systemd_parse(const char *s, enum instance_systemd *ret, struct hutch_error *err)
{
        if (!s || !strcmp(s, "auto"))
                *ret = INSTANCE_SYSTEMD_AUTO;
        else if (!strcmp(s, "yes") || !strcmp(s, "true"))
                *ret = INSTANCE_SYSTEMD_YES;
        else if (!strcmp(s, "no") || !strcmp(s, "false"))
                *ret = INSTANCE_SYSTEMD_NO;
        else
                return hutch_err(err, -EINVAL, "--systemd takes auto, yes or no, not '%s'", s);
        return 0;
}

static int prop_push(char ***v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int prop_push(char ***v, const char *fmt, ...)
{
        char *s = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        if (strv_extend(v, "-p") < 0)
                return free(s), -ENOMEM;
        return strv_push(v, s);
}

/* --memory and friends as the unit's resource-control properties, in hutch-systemd's
 * "-p Name=type:value" words (t: a number, cpus: a CPU list, dev: a device and a number). */
int instance_unit_limit_props(const struct cgroup_limits *l, char ***v)
{
        static const char *const dev_prop[] = {
                [CG_DEV_WEIGHT] = "IODeviceWeight",    [CG_DEV_RBPS] = "IOReadBandwidthMax",
                [CG_DEV_WBPS] = "IOWriteBandwidthMax", [CG_DEV_RIOPS] = "IOReadIOPSMax",
                [CG_DEV_WIOPS] = "IOWriteIOPSMax",
        };
        int r = 0;
        if (!l)
                return 0;
        if (l->memory >= 0)
                r = r ?: prop_push(v, "MemoryMax=t:%lld", (long long) l->memory);
        if (l->memory_reservation >= 0)
                r = r ?: prop_push(v, "MemoryLow=t:%lld", (long long) l->memory_reservation);
        /* Docker's swap is memory+swap; systemd's MemorySwapMax the swap alone */
        if (l->memory_swap == CG_UNLIMITED)
                r = r ?: prop_push(v, "MemorySwapMax=t:%llu", (unsigned long long) UINT64_MAX);
        else if (l->memory_swap >= 0 && l->memory >= 0)
                r = r
                            ?: prop_push(v, "MemorySwapMax=t:%lld",
                                         (long long) (l->memory_swap > l->memory ? l->memory_swap - l->memory : 0));
        if (l->cpu_quota >= 0) {
                uint64_t period = l->cpu_period ? l->cpu_period : 100000;
                r = r
                            ?: prop_push(v, "CPUQuotaPerSecUSec=t:%llu",
                                         (unsigned long long) ((uint64_t) l->cpu_quota * 1000000 / period));
        }
        if (l->cpu_shares)
                r = r ?: prop_push(v, "CPUWeight=t:%llu", (unsigned long long) cgroup_shares_to_weight(l->cpu_shares));
        if (l->cpuset_cpus)
                r = r ?: prop_push(v, "AllowedCPUs=cpus:%s", l->cpuset_cpus);
        if (l->pids == CG_UNLIMITED)
                r = r ?: prop_push(v, "TasksMax=t:%llu", (unsigned long long) UINT64_MAX);
        else if (l->pids >= 0)
                r = r ?: prop_push(v, "TasksMax=t:%lld", (long long) l->pids);
        if (l->blkio_weight)
                r = r
                            ?: prop_push(v, "IOWeight=t:%llu",
                                         (unsigned long long) cgroup_blkio_to_io_weight(l->blkio_weight));
        for (size_t i = 0; i < l->n_devs && !r; i++) {
                const struct cgroup_dev_limit *d = &l->devs[i];
                uint64_t val = d->kind == CG_DEV_WEIGHT ? cgroup_blkio_to_io_weight(d->value) : d->value;
                r = prop_push(v, "%s=dev:/dev/block/%u:%u:%llu", dev_prop[d->kind], d->major, d->minor,
                              (unsigned long long) val);
        }
        return r;
}

/* The manager's private socket, which systemctl --user uses too: a manager runs for us. */
static bool manager_reachable(const struct instance_env *env)
{
        char path[PATH_MAX];
        struct stat st;
        if (!env->xdg_runtime_dir || env->xdg_runtime_dir[0] != '/')
                return false;
        snprintf(path, sizeof path, "%s/systemd/private", env->xdg_runtime_dir);
        return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* hutch-systemd's exit codes (cli/systemd-main.c) */
#define SYSTEMD_NO_MANAGER 3

static int run_keeper(const char *prog, char **argv, int sync, int *ret_code, char *msg, size_t msg_size)
{
        int ep[2];
        if (pipe2(ep, O_CLOEXEC) < 0)
                return -errno;
        int fds[] = {sync, ep[1]};
        _cleanup_pidref_ struct pidref keeper = PIDREF_NULL;
        int r = spawn_child(prog, argv, fds, ELEMENTSOF(fds), &keeper);
        close(ep[1]);
        if (r < 0) {
                close(ep[0]);
                return r;
        }
        size_t k = 0;
        ssize_t n;
        while (k + 1 < msg_size && ((n = read(ep[0], msg + k, msg_size - 1 - k)) > 0 || (n < 0 && errno == EINTR)))
                k += n > 0 ? (size_t) n : 0;
        msg[k] = 0;
        msg[strcspn(msg, "\n")] = 0;
        close(ep[0]);
        int ws;
        if ((r = pidref_wait(&keeper, 0, &ws)) < 0)
                return r;
        *ret_code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
        return 0;
}

int instance_start_systemd(const struct instance_spec *spec, bool *ret_fallback, int *ret_status,
                           struct hutch_error *err)
{
        char prog[PATH_MAX], self[PATH_MAX], unit[INSTANCE_NAME_MAX * 4 + 32], msg[1024];
        bool yes = spec->systemd == INSTANCE_SYSTEMD_YES;
        *ret_fallback = false;
        /* inside a batch job, auto keeps the instance in the job's own processes (and
         * cgroup): a unit of the user's manager would escape the scheduler's accounting */
        if (!yes && spec->job_id)
                return *ret_fallback = true, 0;
        if (!manager_reachable(&spec->env)) {
                if (!yes)
                        return *ret_fallback = true, 0;
                return hutch_err(
                        err, -ENOENT,
                        "--systemd yes: no systemd user manager is reachable (no $XDG_RUNTIME_DIR/systemd/private"
                        "; `loginctl enable-linger` or a login session starts one)");
        }
        if (!libexec_program("hutch-systemd", prog, sizeof prog)) {
                if (!yes)
                        return *ret_fallback = true, 0;
                return hutch_err(err, -ENOENT,
                                 "--systemd yes needs hutch-systemd, which is not installed beside hutch");
        }
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0 || n >= (ssize_t) sizeof self - 1)
                return hutch_err_sys(err, n < 0 ? -errno : -ENAMETOOLONG, "cannot tell where hutch is");
        self[n] = 0;
        if (instance_unit_name(spec->name, unit, sizeof unit) < 0)
                return hutch_err(err, -EINVAL, "instance name '%s' makes no unit name", spec->name);

        _cleanup_strv_ char **argv = NULL, **sup = NULL;
        struct instance_spec s = *spec;
        s.supervisor_path = self;
        char unitarg[sizeof unit + 16];
        snprintf(unitarg, sizeof unitarg, "--unit=%s", unit);
        if (instance_supervisor_argv(&s, 0, &sup) < 0 || strv_extend(&argv, "hutch-systemd") < 0 ||
            strv_extend(&argv, "start") < 0 || strv_extend(&argv, unit) < 0 ||
            instance_unit_limit_props(spec->launch->limits, &argv) < 0 || strv_extend(&argv, "--") < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        /* the unit's own name for the supervisor, right after --sync-fd */
        for (size_t i = 0; sup[i]; i++)
                if (strv_extend(&argv, sup[i]) < 0 || (i == 3 && strv_extend(&argv, unitarg) < 0))
                        return hutch_err(err, -ENOMEM, "out of memory");

        int sp[2], code = 0;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
                return hutch_err_sys(err, -errno, "cannot create the supervisor socket");
        int r = run_keeper(prog, argv, sp[1], &code, msg, sizeof msg);
        close(sp[1]);
        if (r < 0) {
                close(sp[0]);
                return hutch_err_sys(err, r, "cannot run %s", prog);
        }
        if (code == SYSTEMD_NO_MANAGER && !yes) {
                close(sp[0]);
                return *ret_fallback = true, 0;
        }
        /* the supervisor's own word first (it told us before the manager saw it leave) */
        struct pollfd p = {.fd = sp[0], .events = POLLIN};
        if (code != 0 && poll(&p, 1, 0) <= 0) {
                close(sp[0]);
                return hutch_err(err, -EIO, "%s", msg[0] ? msg : "hutch-systemd failed");
        }
        r = instance_sync_wait(spec, sp[0], ret_status, err);
        close(sp[0]);
        return r;
}

bool instance_manager_reachable(const struct instance_env *env)
{
        return manager_reachable(env);
}

#define RUN_UNIT_PREFIX "hutch-run-"

int instance_batch_unit_exec(const struct instance_env *env, const struct cgroup_limits *l, char *const *args,
                             struct hutch_error *err)
{
        char prog[PATH_MAX], self[PATH_MAX], unit[64], marker[96], caller[96];
        if (!manager_reachable(env))
                return hutch_err(err, -ENOENT,
                                 "--systemd yes: no systemd user manager is reachable to apply the limits (no "
                                 "$XDG_RUNTIME_DIR/systemd/private; `loginctl enable-linger` or a login session "
                                 "starts one)");
        if (!libexec_program("hutch-systemd", prog, sizeof prog))
                return hutch_err(err, -ENOENT,
                                 "limits through the systemd user manager need hutch-systemd, which is not installed "
                                 "beside hutch");
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0 || n >= (ssize_t) sizeof self - 1)
                return hutch_err_sys(err, n < 0 ? -errno : -ENAMETOOLONG, "cannot tell where hutch is");
        self[n] = 0;
        uint32_t rnd;
        if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t) sizeof rnd)
                rnd = (uint32_t) time(NULL) ^ (uint32_t) getpid() << 16;
        snprintf(unit, sizeof unit, RUN_UNIT_PREFIX "%d-%08x.service", (int) getpid(), (unsigned) rnd);
        snprintf(marker, sizeof marker, "--in-unit=%s", unit);
        /* who waits for the unit: this process, as hutch-systemd run (an exec keeps the pid
         * and start time), and the PID namespace its pid means something in; the run ends
         * when it does, even by SIGKILL (the manager would keep a unit nobody waits for) */
        unsigned long long start;
        struct stat ns;
        int r = proc_start_time(getpid(), &start);
        if (r >= 0 && stat("/proc/self/ns/pid", &ns) < 0)
                r = -errno;
        if (r < 0)
                return hutch_err_sys(err, r, "cannot tell this process's identity from /proc");
        snprintf(caller, sizeof caller, "--caller=%d:%llu:%llu", (int) getpid(), start, (unsigned long long) ns.st_ino);
        _cleanup_strv_ char **argv = NULL;
        if (strv_extend(&argv, "hutch-systemd") < 0 || strv_extend(&argv, "run") < 0 || strv_extend(&argv, unit) < 0 ||
            instance_unit_limit_props(l, &argv) < 0 || strv_extend(&argv, "--") < 0 || strv_extend(&argv, self) < 0 ||
            strv_extend(&argv, marker) < 0 || strv_extend(&argv, caller) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (char *const *a = args; a && *a; a++)
                if (strv_extend(&argv, *a) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        execv(prog, argv);
        return hutch_err_sys(err, -errno, "cannot run %s", prog);
}

bool instance_batch_unit_is_own(const char *unit)
{
        size_t n = strlen(unit);
        if (!startswith(unit, RUN_UNIT_PREFIX) || n < sizeof UNIT_SUFFIX ||
            strcmp(unit + n - strlen(UNIT_SUFFIX), UNIT_SUFFIX) || strchr(unit, '/'))
                return false;
        _cleanup_free_ char *text = NULL;
        if (read_full_at(AT_FDCWD, "/proc/self/cgroup", 1 << 16, &text, NULL) < 0)
                return false;
        /* cgroup v2's line "0::/user.slice/.../app.slice/UNIT" */
        for (char *line = text; line && *line;) {
                char *end = strchr(line, '\n');
                if (end)
                        *end = 0;
                size_t k = strlen(line);
                if (startswith(line, "0::") && k > n && line[k - n - 1] == '/' && !strcmp(line + k - n, unit))
                        return true;
                line = end ? end + 1 : NULL;
        }
        return false;
}

/* sd_notify's protocol by hand: one datagram to $NOTIFY_SOCKET (a path, or '@' for the
 * abstract namespace). While many units start at once the manager's receive queue is full
 * (net.unix.max_dgram_qlen): the socket is connected, so that poll() waits for room in that
 * queue, and the message is sent again for up to 10 s, never dropped at the first EAGAIN. */
int instance_notify(const char *socket_path, const char *msg)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t len;
        if (!socket_path || (socket_path[0] != '/' && socket_path[0] != '@') ||
            (len = strlen(socket_path)) >= sizeof sa.sun_path)
                return -EINVAL;
        memcpy(sa.sun_path, socket_path, len);
        if (sa.sun_path[0] == '@')
                sa.sun_path[0] = 0;
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        int r = 0;
        if (connect(fd, (struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        for (int tries = 0; tries < 500; tries++) {
                if (send(fd, msg, strlen(msg), MSG_NOSIGNAL) >= 0) {
                        r = 0;
                        break;
                }
                r = -errno;
                if (r != -EAGAIN && r != -ENOBUFS && r != -EINTR)
                        break;
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                if (poll(&p, 1, 20) == 1)
                        continue;
                usleep(1000);
        }
        close(fd);
        return r;
}

/* One word of ExecStart=: bare when plain, else double-quoted with C escapes; '%' and '$'
 * doubled everywhere (systemd's specifiers and variable expansion). */
static int word_append(char **s, const char *w)
{
        size_t n = strlen(w);
        _cleanup_free_ char *q = malloc(n * 4 + 3);
        if (!q)
                return -ENOMEM;
        bool plain = n > 0;
        for (const char *p = w; *p; p++)
                plain &= (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                         strchr("_./:=,@+-", *p);
        char *t = q;
        if (!plain)
                *t++ = '"';
        for (const unsigned char *p = (const unsigned char *) w; *p; p++) {
                if (*p == '"' || *p == '\\')
                        *t++ = '\\', *t++ = (char) *p;
                else if (*p == '%' || *p == '$')
                        *t++ = (char) *p, *t++ = (char) *p;
                else if (*p < 0x20 || *p == 0x7f)
                        t += sprintf(t, "\\x%02x", *p);
                else
                        *t++ = (char) *p;
        }
        if (!plain)
                *t++ = '"';
        *t = 0;
        char *joined = strjoin(*s, **s ? " " : "", q);
        if (!joined)
                return -ENOMEM;
        free(*s);
        *s = joined;
        return 0;
}

/* "-p" "Name=t:V" words → "Name=V" lines of a unit file. */
static int props_as_lines(char **props, char **s)
{
        for (char **p = props; p && *p; p++) {
                if (!strcmp(*p, "-p"))
                        continue;
                const char *eq = strchr(*p, '='), *colon = eq ? strchr(eq, ':') : NULL;
                if (!colon)
                        return -EINVAL;
                _cleanup_free_ char *line = NULL;
                if (startswith(eq + 1, "dev:")) {
                        const char *last = strrchr(colon + 1, ':');
                        if (asprintf(&line, "%.*s=%.*s %s\n", (int) (eq - *p), *p, (int) (last - colon - 1), colon + 1,
                                     last + 1) < 0)
                                return -ENOMEM;
                } else if (startswith(*p, "CPUQuotaPerSecUSec=")) {
                        /* a unit file says it in percent of one CPU */
                        unsigned long long us = strtoull(colon + 1, NULL, 10);
                        if (asprintf(&line, "CPUQuota=%llu.%02llu%%\n", us / 10000, us / 100 % 100) < 0)
                                return -ENOMEM;
                } else if (asprintf(&line, "%.*s=%s\n", (int) (eq - *p), *p, colon + 1) < 0)
                        return -ENOMEM;
                char *joined = strjoin(*s, line, NULL);
                if (!joined)
                        return -ENOMEM;
                free(*s);
                *s = joined;
        }
        return 0;
}

int instance_unit_file(const struct instance_unit *u, char **ret)
{
        char unit[INSTANCE_NAME_MAX * 4 + 32];
        _cleanup_free_ char *exec = strdup(""), *limits = strdup("");
        _cleanup_strv_ char **props = NULL;
        if (!exec || !limits)
                return -ENOMEM;
        if (instance_unit_name(u->name, unit, sizeof unit) < 0)
                return -EINVAL;
        char unitarg[sizeof unit + 16];
        snprintf(unitarg, sizeof unitarg, "--unit=%s", unit);
        int r = word_append(&exec, u->hutch);
        const char *fixed[] = {"instance", "supervise", unitarg, "--", "start"};
        for (size_t i = 0; i < ELEMENTSOF(fixed) && r >= 0; i++)
                r = word_append(&exec, fixed[i]);
        for (char *const *a = u->args; a && *a && r >= 0; a++)
                r = word_append(&exec, *a);
        if (r >= 0)
                r = instance_unit_limit_props(u->limits, &props);
        if (r >= 0)
                r = props_as_lines(props, &limits);
        if (r < 0)
                return r;
        if (asprintf(ret,
                     "# %s: hutch instance %s, written by `hutch instance unit`.\n"
                     "# systemctl --user start|stop|status %s; journalctl --user -u %s\n"
                     "[Unit]\n"
                     "Description=hutch instance %s\n"
                     "\n"
                     "[Service]\n"
                     "Type=notify\n"
                     "NotifyAccess=main\n"
                     "ExecStart=%s\n"
                     "WorkingDirectory=%s\n"
                     "Delegate=yes\n"
                     "KillMode=mixed\n"
                     "Restart=%s\n"
                     "RestartSec=1\n"
                     "TimeoutStartSec=300\n"
                     "%s"
                     "\n"
                     "[Install]\n"
                     "WantedBy=%s\n",
                     unit, u->name, unit, unit, u->name, exec, u->cwd ? u->cwd : "~", u->restart ? u->restart : "no",
                     limits, u->wanted_by ? u->wanted_by : "default.target") < 0)
                return -ENOMEM;
        return 0;
}
