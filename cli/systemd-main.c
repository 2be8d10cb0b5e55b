/* hutch-systemd: the one program of hutch that links libsystemd (sd-bus), so that hutch
 * itself stays free of it. Started by `instance start` (instanced/systemd.c), never by users:
 *
 *   hutch-systemd start UNIT [-p Name=type:value]... -- SUPERVISOR ARGV...
 *
 * asks the caller's systemd user manager, over its private socket as systemctl --user does,
 * for the transient service UNIT running the supervisor (Type=notify, Delegate=yes,
 * KillMode=mixed, the limits as properties, the caller's environment and folder, fd 3 as its
 * stdin: the supervisor's socket to the CLI), and waits until the start job is over: exit 0
 * once the unit is active (the supervisor's READY=1), 3 when no manager can be reached, 1
 * otherwise, with one line on fd 4 saying why. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#define EXIT_NO_MANAGER 3
#define SYNC_FD 3
#define ERR_FD 4
#define START_TIMEOUT_US (5 * 60 * 1000000ULL)

extern char **environ;

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

/* The caller's environment for the supervisor, but not what addressed the caller's own
 * manager or unit. */
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
                bool skip = false;
                for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
                        skip |= !strncmp(*e, drop[i], strlen(drop[i]));
                /* systemd refuses what is not a valid assignment: left out */
                if (!skip && strchr(*e, '=') && (r = sd_bus_message_append(m, "s", *e)) < 0)
                        return r;
        }
        for (int i = 0; i < 3; i++)
                if ((r = sd_bus_message_close_container(m)) < 0)
                        return r;
        return 0;
}

static int build_start(sd_bus *bus, sd_bus_message **ret, const char *unit, char **props, size_t n_props, char **argv)
{
        sd_bus_message *m = NULL;
        char cwd[PATH_MAX];
        int r = sd_bus_message_new_method_call(bus, &m, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                               "org.freedesktop.systemd1.Manager", "StartTransientUnit");
        if (r < 0)
                return r;
        if (!getcwd(cwd, sizeof cwd))
                snprintf(cwd, sizeof cwd, "/");
        if ((r = sd_bus_message_append(m, "ss", unit, "fail")) < 0 ||
            (r = sd_bus_message_open_container(m, 'a', "(sv)")) < 0)
                goto out;
        r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)", "Description", "s",
                                  "hutch instance", "Type", "s", "notify", "NotifyAccess", "s", "main", "Delegate", "b",
                                  1, "KillMode", "s", "mixed", "CollectMode", "s", "inactive-or-failed",
                                  "WorkingDirectory", "s", cwd, "StandardInputFileDescriptor", "h", SYNC_FD,
                                  "StandardOutput", "s", "journal", "StandardError", "s", "journal", "TimeoutStartUSec",
                                  "t", (uint64_t) START_TIMEOUT_US, "SendSIGHUP", "b", 0);
        if (r < 0)
                goto out;
        if ((r = append_exec(m, argv)) < 0 || (r = append_env(m)) < 0)
                goto out;
        for (size_t i = 0; i < n_props; i++)
                if ((r = append_prop(m, props[i])) < 0)
                        goto out;
        if ((r = sd_bus_message_close_container(m)) < 0 || (r = sd_bus_message_append(m, "a(sa(sv))", 0)) < 0)
                goto out;
        *ret = m;
        return 0;
out:
        sd_bus_message_unref(m);
        return r;
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
        /* the manager refuses with "busy" or a timeout when many units start at once
         * (Apptainer's #3607): tried again, never given up silently */
        for (int tries = 0;; tries++) {
                sd_bus_error_free(&e);
                r = sd_bus_call(bus, m, 0, &e, &reply);
                if (r >= 0 || tries >= 20 || (r != -EBUSY && r != -ETIMEDOUT && r != -EAGAIN))
                        break;
                usleep(50000 * (tries + 1));
        }
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

int main(int argc, char **argv)
{
        if (argc >= 3 && !strcmp(argv[1], "start"))
                return cmd_start(argc, argv);
        fprintf(stderr, "hutch-systemd is started by hutch itself (instance start --systemd)\n");
        return 2;
}
