/* hutch-systemd: the one program of hutch that links libsystemd (sd-bus), so that hutch
 * itself stays free of it. Started by hutch itself, never by users:
 *
 *   hutch-systemd start UNIT [-p Name=type:value]... -- SUPERVISOR ARGV...
 *
 * (spawned by `instance start`, instanced/systemd.c) asks the caller's systemd user manager,
 * over its private socket as systemctl --user does, for the transient service UNIT running
 * the supervisor (Type=notify, Delegate=yes, KillMode=mixed, the limits as properties, the
 * caller's environment and folder, fd 3 as its stdin: the supervisor's socket to the CLI),
 * and waits until the start job is over: exit 0 once the unit is active (the supervisor's
 * READY=1), 3 when no manager can be reached, 1 otherwise, with one line on fd 4 saying why.
 *
 *   hutch-systemd run UNIT [-p Name=type:value]... -- HUTCH ARGV...
 *
 * (exec'd by `hutch exec|run|shell|test` with limits it cannot apply itself) runs the batch
 * command as the transient service UNIT the manager forks, as `systemd-run --user --pipe
 * --wait` does: the caller's stdin, stdout and stderr, environment and folder, the limits as
 * properties, Delegate=yes; it forwards SIGINT, SIGTERM and SIGHUP to the unit's main
 * process, waits for the unit to end and exits with the payload's status (128+N when killed
 * by signal N), 255 with one "hutch: error:" line on stderr when the unit cannot run.
 * When stdin and stdout are a terminal, the unit gets a new pseudo-terminal instead, as
 * `systemd-run --pty` does: systemd makes a terminal it is given as stdin the service's
 * controlling terminal (and resets it, flushing what was typed before), so that an
 * interactive shell has job control and Ctrl-C, Ctrl-Z reach its foreground job; the
 * caller's own terminal, the controlling one of the caller's session, could not be. The
 * caller's terminal is put in raw mode and relayed to and from it, its size passed on. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <systemd/sd-bus.h>
#include <termios.h>
#include <unistd.h>

#define EXIT_NO_MANAGER 3
#define SYNC_FD 3
#define ERR_FD 4
#define START_TIMEOUT_US (5 * 60 * 1000000ULL)

extern char **environ;

/* StartTransientUnit, tried again while the manager says it is busy (many units starting
 * at once, Apptainer's #3607). A timeout is not tried again: the manager may have made the
 * unit all the same, and a second request would fail on it while the first ran with nobody
 * waiting for it; the unit is stopped instead, and the start fails. */
static int start_unit_call(sd_bus *bus, sd_bus_message *m, const char *unit, sd_bus_error *e, sd_bus_message **reply)
{
        int r;
        for (int tries = 0;; tries++) {
                sd_bus_error_free(e);
                r = sd_bus_call(bus, m, 0, e, reply);
                if (r >= 0 || tries >= 20 || (r != -EBUSY && r != -EAGAIN))
                        break;
                usleep(50000 * (tries + 1));
        }
        if (r == -ETIMEDOUT)
                (void) sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                          "org.freedesktop.systemd1.Manager", "StopUnit", NULL, NULL, "ss", unit,
                                          "replace");
        return r;
}

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
        char line[1024];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(line, sizeof line - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return code;
        if (n > (int) sizeof line - 2)
                n = sizeof line - 2;
        line[n++] = '\n';
        (void) !write(ERR_FD, line, n);
        return code;
}

struct job {
        const char *path; /* the start job's object path, once known */
        char result[64];
        bool done;
};

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct job *j = userdata;
        uint32_t id;
        const char *path, *unit, *result;
        (void) ret_error;
        if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
                return 0;
        if (j->path && !strcmp(path, j->path)) {
                snprintf(j->result, sizeof j->result, "%s", result);
                j->done = true;
        }
        return 0;
}

/* AllowedCPUs= wants a bitmask: "0-3,6" → bytes, CPU n as bit n%8 of byte n/8. */
static int cpus_mask(const char *list, uint8_t *mask, size_t size, size_t *ret_len)
{
        size_t len = 0;
        for (const char *p = list; *p;) {
                char *e;
                unsigned long a = strtoul(p, &e, 10), b = a;
                if (e == p)
                        return -EINVAL;
                if (*e == '-') {
                        p = e + 1;
                        b = strtoul(p, &e, 10);
                        if (e == p || b < a)
                                return -EINVAL;
                }
                if (b / 8 >= size)
                        return -ERANGE;
                for (unsigned long c = a; c <= b; c++)
                        mask[c / 8] |= (uint8_t) (1u << (c % 8));
                if (b / 8 + 1 > len)
                        len = b / 8 + 1;
                p = *e == ',' ? e + 1 : e;
                if (*e && *e != ',')
                        return -EINVAL;
        }
        *ret_len = len;
        return 0;
}

/* One "Name=type:value" from instance_unit_limit_props. */
static int append_prop(sd_bus_message *m, const char *spec)
{
        char name[64], *eq = strchr(spec, '='), *colon = eq ? strchr(eq, ':') : NULL;
        if (!eq || !colon || (size_t) (eq - spec) >= sizeof name)
                return -EINVAL;
        memcpy(name, spec, eq - spec);
        name[eq - spec] = 0;
        const char *type = eq + 1, *val = colon + 1;
        if (!strncmp(type, "t:", 2))
                return sd_bus_message_append(m, "(sv)", name, "t", (uint64_t) strtoull(val, NULL, 10));
        if (!strncmp(type, "cpus:", 5)) {
                uint8_t mask[128] = {0};
                size_t len;
                int r = cpus_mask(val, mask, sizeof mask, &len);
                if (r < 0)
                        return r;
                if ((r = sd_bus_message_open_container(m, 'r', "sv")) < 0 ||
                    (r = sd_bus_message_append(m, "s", name)) < 0 ||
                    (r = sd_bus_message_open_container(m, 'v', "ay")) < 0 ||
                    (r = sd_bus_message_append_array(m, 'y', mask, len)) < 0 ||
                    (r = sd_bus_message_close_container(m)) < 0)
                        return r;
                return sd_bus_message_close_container(m);
        }
        if (!strncmp(type, "dev:", 4)) {
                /* dev:/dev/block/MAJ:MIN:VALUE */
                char path[PATH_MAX];
                const char *last = strrchr(val, ':');
                if (!last || (size_t) (last - val) >= sizeof path)
                        return -EINVAL;
                memcpy(path, val, last - val);
                path[last - val] = 0;
                bool weight = !strcmp(name, "IODeviceWeight");
                return sd_bus_message_append(m, "(sv)", name, weight ? "a(st)" : "a(st)", 1, path,
                                             (uint64_t) strtoull(last + 1, NULL, 10));
        }
        return -EINVAL;
}

static int append_exec(sd_bus_message *m, char **argv)
{
        int r;
        if ((r = sd_bus_message_open_container(m, 'r', "sv")) < 0 ||
            (r = sd_bus_message_append(m, "s", "ExecStart")) < 0 ||
            (r = sd_bus_message_open_container(m, 'v', "a(sasb)")) < 0 ||
            (r = sd_bus_message_open_container(m, 'a', "(sasb)")) < 0 ||
            (r = sd_bus_message_open_container(m, 'r', "sasb")) < 0 ||
            (r = sd_bus_message_append(m, "s", argv[0])) < 0 || (r = sd_bus_message_append_strv(m, argv)) < 0 ||
            (r = sd_bus_message_append(m, "b", 0)) < 0)
                return r;
        for (int i = 0; i < 4; i++)
                if ((r = sd_bus_message_close_container(m)) < 0)
                        return r;
        return 0;
}

/* What systemd takes as an assignment (env_assignment_is_valid): a name of letters, digits
 * and '_' not starting with a digit here (bash's exported functions, BASH_FUNC_f%%, are
 * not), a value of valid UTF-8 without control characters but tab and newline. One
 * invalid entry would make the manager refuse the whole unit. */
static bool env_is_valid(const char *e)
{
        const unsigned char *p = (const unsigned char *) e;
        if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
                return false;
        while (*p && *p != '=')
                if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) ||
                    !*++p)
                        return false;
        for (p++; *p;) {
                int more = *p < 0x80             ? 0
                           : (*p & 0xe0) == 0xc0 ? 1
                           : (*p & 0xf0) == 0xe0 ? 2
                           : (*p & 0xf8) == 0xf0 ? 3
                                                 : -1;
                if (more < 0 || (*p < 0x20 && *p != '\t' && *p != '\n') || *p == 0x7f)
                        return false;
                for (p++; more > 0; more--, p++)
                        if ((*p & 0xc0) != 0x80)
                                return false;
        }
        return true;
}

/* The caller's environment for the unit, but not what addressed the caller's own manager
 * or unit. */
static int append_env(sd_bus_message *m)
{
        static const char *const drop[] = {"NOTIFY_SOCKET=", "LISTEN_PID=",     "LISTEN_FDS=", "LISTEN_FDNAMES=",
                                           "INVOCATION_ID=", "JOURNAL_STREAM=", "MAINPID="};
        int r;
        if ((r = sd_bus_message_open_container(m, 'r', "sv")) < 0 ||
            (r = sd_bus_message_append(m, "s", "Environment")) < 0 ||
            (r = sd_bus_message_open_container(m, 'v', "as")) < 0 ||
            (r = sd_bus_message_open_container(m, 'a', "s")) < 0)
                return r;
        for (char **e = environ; *e; e++) {
                bool skip = !env_is_valid(*e);
                for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
                        skip |= !strncmp(*e, drop[i], strlen(drop[i]));
                if (!skip && (r = sd_bus_message_append(m, "s", *e)) < 0)
                        return r;
        }
        for (int i = 0; i < 3; i++)
                if ((r = sd_bus_message_close_container(m)) < 0)
                        return r;
        return 0;
}

static int open_start(sd_bus *bus, sd_bus_message **ret, const char *unit)
{
        sd_bus_message *m = NULL;
        int r = sd_bus_message_new_method_call(bus, &m, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                               "org.freedesktop.systemd1.Manager", "StartTransientUnit");
        if (r >= 0 && (r = sd_bus_message_append(m, "ss", unit, "fail")) >= 0 &&
            (r = sd_bus_message_open_container(m, 'a', "(sv)")) >= 0) {
                *ret = m;
                return 0;
        }
        sd_bus_message_unref(m);
        return r;
}

/* ExecStart=, Environment=, the limits, and the end of the request. */
static int close_start(sd_bus_message *m, char **props, size_t n_props, char **argv)
{
        int r;
        if ((r = append_exec(m, argv)) < 0 || (r = append_env(m)) < 0)
                return r;
        for (size_t i = 0; i < n_props; i++)
                if ((r = append_prop(m, props[i])) < 0)
                        return r;
        if ((r = sd_bus_message_close_container(m)) < 0)
                return r;
        return sd_bus_message_append(m, "a(sa(sv))", 0);
}

static void cwd_of(char *cwd, size_t size)
{
        if (!getcwd(cwd, size))
                snprintf(cwd, size, "/");
}

static int build_start(sd_bus *bus, sd_bus_message **ret, const char *unit, char **props, size_t n_props, char **argv)
{
        sd_bus_message *m = NULL;
        char cwd[PATH_MAX];
        cwd_of(cwd, sizeof cwd);
        int r = open_start(bus, &m, unit);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)", "Description", "s",
                                  "hutch instance", "Type", "s", "notify", "NotifyAccess", "s", "main", "Delegate", "b",
                                  1, "KillMode", "s", "mixed", "CollectMode", "s", "inactive-or-failed",
                                  "WorkingDirectory", "s", cwd, "StandardInputFileDescriptor", "h", SYNC_FD,
                                  "StandardOutput", "s", "journal", "StandardError", "s", "journal", "TimeoutStartUSec",
                                  "t", (uint64_t) START_TIMEOUT_US, "SendSIGHUP", "b", 0);
        if (r >= 0)
                r = close_start(m, props, n_props, argv);
        if (r < 0) {
                sd_bus_message_unref(m);
                return r;
        }
        *ret = m;
        return 0;
}

static int connect_manager(sd_bus **ret)
{
        const char *rt = getenv("XDG_RUNTIME_DIR");
        char addr[PATH_MAX + 16];
        sd_bus *bus = NULL;
        if (!rt || rt[0] != '/')
                return -ENXIO;
        snprintf(addr, sizeof addr, "unix:path=%s/systemd/private", rt);
        int r = 0;
        /* many starts at once fill the socket's backlog: a non-blocking connect then says
         * EAGAIN, which is tried again (for a few seconds), never taken for "no manager" */
        for (int tries = 0; tries < 100; tries++) {
                if ((r = sd_bus_new(&bus)) < 0)
                        return r;
                if ((r = sd_bus_set_address(bus, addr)) >= 0 && (r = sd_bus_start(bus)) >= 0) {
                        *ret = bus;
                        return 0;
                }
                bus = sd_bus_unref(bus);
                if (r != -EAGAIN && r != -EINTR)
                        break;
                usleep(20000 + 1000 * (getpid() % 20));
        }
        return r;
}

static int cmd_start(int argc, char **argv)
{
        const char *unit = argv[2];
        char *props[64];
        size_t n_props = 0;
        int i = 3;
        for (; i < argc && strcmp(argv[i], "--"); i++) {
                if (strcmp(argv[i], "-p") || i + 1 >= argc || n_props >= 64)
                        return fail(1, "hutch-systemd: bad argument '%s'", argv[i]);
                props[n_props++] = argv[++i];
        }
        if (i + 1 >= argc)
                return fail(1, "hutch-systemd: no command after --");
        sd_bus *bus = NULL;
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        struct job j = {0};
        int r = connect_manager(&bus);
        if (r < 0)
                return fail(EXIT_NO_MANAGER, "cannot reach the systemd user manager: %s", strerror(-r));
        /* JobRemoved reaches a direct connection only once subscribed */
        r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", "Subscribe", &e, NULL, NULL);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, NULL, "/org/freedesktop/systemd1",
                                        "org.freedesktop.systemd1.Manager", "JobRemoved", on_job_removed, &j);
        if (r < 0) {
                r = fail(EXIT_NO_MANAGER, "the systemd user manager does not answer: %s",
                         e.message ? e.message : strerror(-r));
                goto out;
        }
        /* a failed unit of an earlier instance of the name, not yet collected */
        (void) sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                  "org.freedesktop.systemd1.Manager", "ResetFailedUnit", NULL, NULL, "s", unit);
        if ((r = build_start(bus, &m, unit, props, n_props, argv + i + 1)) < 0) {
                r = fail(1, "cannot build the request for unit %s: %s", unit, strerror(-r));
                goto out;
        }
        r = start_unit_call(bus, m, unit, &e, &reply);
        if (r < 0) {
                r = fail(1, "systemd could not start unit %s: %s", unit, e.message ? e.message : strerror(-r));
                goto out;
        }
        if ((r = sd_bus_message_read(reply, "o", &j.path)) < 0) {
                r = fail(1, "systemd's answer for unit %s is not understood", unit);
                goto out;
        }
        while (!j.done) {
                if ((r = sd_bus_process(bus, NULL)) < 0)
                        break;
                if (r == 0 && (r = sd_bus_wait(bus, UINT64_MAX)) < 0)
                        break;
        }
        if (!j.done)
                r = fail(1, "lost the systemd user manager while unit %s started: %s", unit, strerror(-r));
        else if (strcmp(j.result, "done"))
                r = fail(1, "unit %s did not start (%s): see journalctl --user -u %s", unit, j.result, unit);
        else
                r = 0;
out:
        sd_bus_error_free(&e);
        sd_bus_message_unref(m);
        sd_bus_message_unref(reply);
        sd_bus_flush_close_unref(bus);
        return r;
}

/* ---- run: one batch command as a transient service, waited for */

#define EXIT_HUTCH_FAILURE 255

static int run_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_fail(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fputs("hutch: error: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        return EXIT_HUTCH_FAILURE;
}

struct run {
        const char *unit;
        struct job job;
        char active[32], result[64];
        int main_code, main_status; /* ExecMainCode (CLD_EXITED, CLD_KILLED, ...), its status */
        bool removed;
        int events;         /* the unit's memory.events, once it runs: -1 without */
        uint64_t oom_kills; /* its oom_kill, read whenever the kernel says it changed */
};

/* PropertiesChanged of the unit: its state and, once the main process ended, how. They are
 * read from the signal itself, as the unit may be collected (CollectMode=) before a Get. */
static int on_unit_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct run *u = userdata;
        const char *iface, *name, *v;
        int32_t n;
        (void) ret_error;
        if (sd_bus_message_read(m, "s", &iface) < 0 || sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
                return 0;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                if (sd_bus_message_read(m, "s", &name) < 0)
                        return 0;
                if (!strcmp(name, "ActiveState") && sd_bus_message_read(m, "v", "s", &v) >= 0)
                        snprintf(u->active, sizeof u->active, "%s", v);
                else if (!strcmp(name, "Result") && sd_bus_message_read(m, "v", "s", &v) >= 0)
                        snprintf(u->result, sizeof u->result, "%s", v);
                else if (!strcmp(name, "ExecMainCode") && sd_bus_message_read(m, "v", "i", &n) >= 0)
                        u->main_code = n;
                else if (!strcmp(name, "ExecMainStatus") && sd_bus_message_read(m, "v", "i", &n) >= 0)
                        u->main_status = n;
                else if (sd_bus_message_skip(m, "v") < 0)
                        return 0;
                if (sd_bus_message_exit_container(m) < 0)
                        return 0;
        }
        return 0;
}

static int on_unit_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct run *u = userdata;
        const char *id, *path;
        (void) ret_error;
        if (sd_bus_message_read(m, "so", &id, &path) >= 0 && !strcmp(id, u->unit))
                u->removed = true;
        return 0;
}

/* Over once the unit is inactive (or failed, or gone) after its start job: a command that
 * ends at once may fail the job of Type=exec, and its status still counts. */
static bool run_is_over(const struct run *u)
{
        if (!u->job.done)
                return false;
        if (u->removed)
                return true;
        bool ended = !strcmp(u->active, "inactive") || !strcmp(u->active, "failed");
        return ended && (u->main_code > 0 || strcmp(u->job.result, "done"));
}

/* The caller's stdin, stdout and stderr go to the unit: a closed one is /dev/null there. */
static void stdio_fill(void)
{
        for (int fd = 0; fd < 3; fd++)
                if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR | O_CLOEXEC) != fd)
                        _exit(EXIT_HUTCH_FAILURE);
}

static int run_request(sd_bus *bus, sd_bus_message **ret, const char *unit, const int stdio[3], char **props,
                       size_t n_props, char **argv)
{
        sd_bus_message *m = NULL;
        char cwd[PATH_MAX];
        cwd_of(cwd, sizeof cwd);
        int r = open_start(bus, &m, unit);
        if (r < 0)
                return r;
        /* Type=exec: the start fails when hutch cannot be run; KillMode=mixed: a stop's
         * SIGTERM goes to the payload, which may end its own children first */
        r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)", "Description", "s", "hutch batch run",
                                  "Type", "s", "exec", "Delegate", "b", 1, "KillMode", "s", "mixed", "CollectMode", "s",
                                  "inactive-or-failed", "WorkingDirectory", "s", cwd, "StandardInputFileDescriptor",
                                  "h", stdio[0], "StandardOutputFileDescriptor", "h", stdio[1],
                                  "StandardErrorFileDescriptor", "h", stdio[2], "SendSIGHUP", "b", 0);
        /* the caller's umask, which a service would not have (systemd's default: 0022) */
        mode_t mask = umask(0);
        umask(mask);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "UMask", "u", (uint32_t) mask);
        if (r >= 0)
                r = close_start(m, props, n_props, argv);
        if (r < 0) {
                sd_bus_message_unref(m);
                return r;
        }
        *ret = m;
        return 0;
}

static void kill_unit(sd_bus *bus, const char *unit, const char *whom, int sig)
{
        (void) sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                  "org.freedesktop.systemd1.Manager", "KillUnit", NULL, NULL, "ssi", unit, whom, sig);
}

/* The unit's memory.events (cgroup v2), opened once the unit runs: its oom_kill count is
 * read while the cgroup lives (systemd's own Result=oom-kill does not come for every
 * kill in the unit: not for a payload's, in the VM tier's runs). The
 * unit's ControlGroup is a path in the cgroup2 hierarchy, mounted at /sys/fs/cgroup (or
 * /sys/fs/cgroup/unified on a hybrid host). */
static void events_open(sd_bus *bus, struct run *u, const char *path)
{
        char *cg = NULL, file[PATH_MAX];
        if (sd_bus_get_property_string(bus, "org.freedesktop.systemd1", path, "org.freedesktop.systemd1.Service",
                                       "ControlGroup", NULL, &cg) < 0 ||
            !cg || cg[0] != '/')
                goto out;
        static const char *const roots[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
        for (size_t i = 0; i < 2 && u->events < 0; i++) {
                snprintf(file, sizeof file, "%s%s/memory.events", roots[i], cg);
                u->events = open(file, O_RDONLY | O_CLOEXEC);
        }
out:
        free(cg);
}

static void events_read(struct run *u)
{
        char buf[512];
        ssize_t n = pread(u->events, buf, sizeof buf - 1, 0);
        if (n <= 0) {
                /* the cgroup is gone (ENODEV): its file would poll ready for good */
                close(u->events);
                u->events = -1;
                return;
        }
        buf[n] = 0;
        const char *k = strstr(buf, "oom_kill ");
        if (k && (k == buf || k[-1] == '\n'))
                u->oom_kills = strtoull(k + 9, NULL, 10);
}

/* The unit's pseudo-terminal when the caller has a terminal (see the top of this file). */
struct pty {
        int master, slave; /* -1 without */
        bool raw;          /* the caller's terminal is in raw mode, saved in *saved */
        struct termios saved;
};

static void pty_size(const struct pty *t)
{
        struct winsize ws;
        if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
                (void) ioctl(t->master, TIOCSWINSZ, &ws);
}

/* A pseudo-terminal of the caller's terminal's size (its modes are systemd's sane ones). */
static int pty_open(struct pty *t)
{
        t->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (t->master < 0 || grantpt(t->master) < 0 || unlockpt(t->master) < 0)
                return -errno;
        char *name = ptsname(t->master);
        if (!name || (t->slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
                return -errno;
        pty_size(t);
        return 0;
}

/* The caller's terminal raw, once the unit has the pty: keys go to the unit's terminal as
 * they are typed, which makes Ctrl-C and Ctrl-Z its signals. */
static void pty_raw(struct pty *t)
{
        struct termios tio;
        if (tcgetattr(STDIN_FILENO, &t->saved) < 0)
                return;
        tio = t->saved;
        cfmakeraw(&tio);
        t->raw = tcsetattr(STDIN_FILENO, TCSANOW, &tio) == 0;
        fcntl(t->master, F_SETFL, O_NONBLOCK);
}

static bool write_all(int fd, const char *b, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, b, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 && errno == EAGAIN) { /* the unit's terminal has not read what it has */
                        struct pollfd p = {.fd = fd, .events = POLLOUT};
                        (void) poll(&p, 1, 100);
                        continue;
                }
                if (w <= 0)
                        return false;
                b += w;
                n -= (size_t) w;
        }
        return true;
}

/* Output of the unit's terminal to stdout; false once it has no more (every slave closed:
 * EIO) or stdout is gone. */
static bool pty_out(struct pty *t)
{
        char b[4096];
        ssize_t n = read(t->master, b, sizeof b);
        if (n <= 0)
                return n < 0 && (errno == EAGAIN || errno == EINTR);
        return write_all(STDOUT_FILENO, b, (size_t) n);
}

/* The caller's keys to the unit's terminal; false at the end of stdin. */
static bool pty_in(struct pty *t)
{
        char b[1024];
        ssize_t n = read(STDIN_FILENO, b, sizeof b);
        if (n <= 0)
                return n < 0 && errno == EINTR;
        return write_all(t->master, b, (size_t) n);
}

/* What the unit wrote last relayed (its terminal answers EIO once every slave is closed,
 * EAGAIN while one is open: a process the unit left behind), the caller's terminal as it
 * was. */
static void pty_close(struct pty *t)
{
        if (t->master >= 0 && t->slave < 0)
                for (int i = 0; i < 4096; i++) {
                        char b[4096];
                        ssize_t n = read(t->master, b, sizeof b);
                        if (n <= 0 || !write_all(STDOUT_FILENO, b, (size_t) n))
                                break;
                }
        if (t->raw)
                (void) tcsetattr(STDIN_FILENO, TCSADRAIN, &t->saved);
        if (t->slave >= 0)
                close(t->slave);
        if (t->master >= 0)
                close(t->master);
        *t = (struct pty){.master = -1, .slave = -1};
}

/* Until the unit is over: bus messages, the signals to forward to the payload (SIGWINCH:
 * the terminal's new size to the unit's pty), and the pty relayed. */
static int run_wait(sd_bus *bus, struct run *u, const char *path, int sfd, struct pty *t)
{
        bool in_open = t->master >= 0, out_open = t->master >= 0;
        int pending = 0;
        bool opened = false;
        for (;;) {
                int r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                if (run_is_over(u))
                        return 0;
                if (u->job.done && !opened) {
                        opened = true;
                        events_open(bus, u, path);
                        if (u->events >= 0)
                                events_read(u);
                        continue;
                }
                if (pending && u->job.done) {
                        kill_unit(bus, u->unit, "main", pending);
                        pending = 0;
                        continue;
                }
                uint64_t usec;
                int timeout = -1;
                if (sd_bus_get_timeout(bus, &usec) > 0 && usec != UINT64_MAX) {
                        struct timespec ts;
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        uint64_t now = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
                        timeout = usec > now ? (int) ((usec - now + 999) / 1000) : 0;
                }
                struct pollfd p[5] = {{.fd = sd_bus_get_fd(bus), .events = (short) sd_bus_get_events(bus)},
                                      {.fd = sfd, .events = POLLIN},
                                      {.fd = u->events, .events = POLLPRI},
                                      {.fd = in_open ? STDIN_FILENO : -1, .events = POLLIN},
                                      {.fd = out_open ? t->master : -1, .events = POLLIN}};
                if (poll(p, 5, timeout) < 0 && errno != EINTR)
                        return -errno;
                if (p[2].revents & (POLLPRI | POLLERR))
                        events_read(u);
                struct signalfd_siginfo si;
                if (p[1].revents & POLLIN && read(sfd, &si, sizeof si) == (ssize_t) sizeof si) {
                        if (si.ssi_signo == SIGWINCH)
                                pty_size(t);
                        else
                                pending = (int) si.ssi_signo;
                }
                if (p[3].revents)
                        in_open = pty_in(t);
                if (p[4].revents)
                        out_open = pty_out(t);
        }
}

/* MemoryMax= among the -p words, for the OOM message. */
static uint64_t memory_max(char **props, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!strncmp(props[i], "MemoryMax=t:", 12))
                        return strtoull(props[i] + 12, NULL, 10);
        return 0;
}

static int run_status(const struct run *u, char **props, size_t n_props)
{
        if (u->main_code <= 0 && strcmp(u->job.result, "done"))
                return run_fail("systemd could not run unit %s (%s): see journalctl --user -u %s", u->unit,
                                u->job.result, u->unit);
        if (u->main_code <= 0)
                return run_fail("unit %s ended without telling how its command did", u->unit);
        if (!strcmp(u->result, "oom-kill") || u->oom_kills > 0) {
                uint64_t mem = memory_max(props, n_props);
                if (mem)
                        run_fail("the container was killed by the kernel's OOM killer: it reached its memory limit "
                                 "of %llu MiB (--memory)",
                                 (unsigned long long) (mem >> 20));
                else
                        run_fail("the container was killed by the kernel's OOM killer");
        }
        return u->main_code == CLD_EXITED ? u->main_status & 0xff : 128 + u->main_status;
}

static int cmd_run(int argc, char **argv)
{
        struct run u = {.unit = argv[2], .events = -1};
        char *props[64];
        size_t n_props = 0;
        int i = 3;
        for (; i < argc && strcmp(argv[i], "--"); i++) {
                if (strcmp(argv[i], "-p") || i + 1 >= argc || n_props >= 64)
                        return run_fail("hutch-systemd: bad argument '%s'", argv[i]);
                props[n_props++] = argv[++i];
        }
        if (i + 1 >= argc)
                return run_fail("hutch-systemd: no command after --");
        stdio_fill();
        struct pty t = {.master = -1, .slave = -1};
        int stdio[3] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO};
        if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
                int k = pty_open(&t);
                if (k < 0) {
                        pty_close(&t);
                        return run_fail("cannot make a terminal for the unit: %s", strerror(-k));
                }
                stdio[0] = stdio[1] = t.slave;
                if (isatty(STDERR_FILENO))
                        stdio[2] = t.slave;
        }
        /* from here a Ctrl-C is the payload's: held until the unit runs, then passed on */
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGHUP);
        if (t.master >= 0)
                sigaddset(&ss, SIGWINCH);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        int sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sfd < 0) {
                pty_close(&t);
                return run_fail("cannot watch signals: %s", strerror(errno));
        }

        sd_bus *bus = NULL;
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        char *path = NULL;
        int r = connect_manager(&bus);
        if (r < 0) {
                close(sfd);
                pty_close(&t);
                return run_fail("cannot reach the systemd user manager to apply the limits: %s", strerror(-r));
        }
        if ((r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", u.unit, &path)) < 0)
                goto out;
        r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", "Subscribe", &e, NULL, NULL);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, NULL, "/org/freedesktop/systemd1",
                                        "org.freedesktop.systemd1.Manager", "JobRemoved", on_job_removed, &u.job);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, NULL, "/org/freedesktop/systemd1",
                                        "org.freedesktop.systemd1.Manager", "UnitRemoved", on_unit_removed, &u);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, NULL, path, "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                        on_unit_changed, &u);
        if (r < 0) {
                r = run_fail("the systemd user manager does not answer: %s", e.message ? e.message : strerror(-r));
                goto out;
        }
        if ((r = run_request(bus, &m, u.unit, stdio, props, n_props, argv + i + 1)) < 0) {
                r = run_fail("cannot build the request for unit %s: %s", u.unit, strerror(-r));
                goto out;
        }
        r = start_unit_call(bus, m, u.unit, &e, &reply);
        if (r < 0) {
                r = run_fail("systemd could not start unit %s: %s", u.unit, e.message ? e.message : strerror(-r));
                goto out;
        }
        if ((r = sd_bus_message_read(reply, "o", &u.job.path)) < 0) {
                r = run_fail("systemd's answer for unit %s is not understood", u.unit);
                goto out;
        }
        if (t.master >= 0) { /* the manager has its own copy: the last one closed ends the relay */
                close(t.slave);
                t.slave = -1;
                pty_raw(&t);
        }
        r = run_wait(bus, &u, path, sfd, &t);
        pty_close(&t);
        if (r < 0) {
                /* nobody would wait for it: the unit is not left running */
                kill_unit(bus, u.unit, "all", SIGKILL);
                r = run_fail("lost the systemd user manager while unit %s ran: %s", u.unit, strerror(-r));
                goto out;
        }
        r = run_status(&u, props, n_props);
out:
        pty_close(&t); /* the terminal as it was before a message is printed */
        if (r < 0)
                r = run_fail("cannot talk to the systemd user manager: %s", strerror(-r));
        close(sfd);
        if (u.events >= 0)
                close(u.events);
        free(path);
        sd_bus_error_free(&e);
        sd_bus_message_unref(m);
        sd_bus_message_unref(reply);
        sd_bus_flush_close_unref(bus);
        return r;
}

int main(int argc, char **argv)
{
        if (argc >= 3 && !strcmp(argv[1], "start"))
                return cmd_start(argc, argv);
        if (argc >= 3 && !strcmp(argv[1], "run"))
                return cmd_run(argc, argv);
        fprintf(stderr, "hutch-systemd is started by hutch itself (instance start --systemd, exec with limits)\n");
        return 2;
}
