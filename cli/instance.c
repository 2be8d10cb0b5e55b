/* `hutch instance start|run|list|stop|logs`: parse, call instanced/, print. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <grp.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "exit.h"
#include "util/log.h"
#include "util/process.h"
#include "util/util.h"

void cli_instance_env(const struct cli *c, struct instance_env *ret)
{
        const char *home = cli_getenv(c, "HOME");
        if (!home || home[0] != '/') {
                struct passwd *pw = getpwuid(getuid());
                home = pw ? pw->pw_dir : NULL;
        }
        *ret = (struct instance_env){
                .uid = getuid(), .xdg_runtime_dir = cli_getenv(c, "XDG_RUNTIME_DIR"), .home = home};
}

/* A user named by --user: a name or a uid, with its passwd entry. */
static struct passwd *user_lookup(const char *user, struct hutch_error *err)
{
        uint64_t id;
        struct passwd *pw = getpwnam(user);
        if (!pw && parse_u64_range(user, 0, UINT32_MAX - 1, &id) >= 0)
                pw = getpwuid((uid_t) id);
        if (!pw)
                hutch_err(err, -ENOENT, "no user named '%s' (or with that uid) on this host", user);
        return pw;
}

/* `instance stop|logs|stats --user U`: the instances of U. Only root may name another
 * user, and root then becomes that user for the rest of the command (U's groups, gid and
 * uid, not dumpable): U's state and logs are found and opened with U's rights, and U's
 * supervisor is signalled through a pidfd checked against its start time, all exactly as
 * U's own command does it, so nothing U can write is read or followed with root's rights.
 * *ret_home owns env->home. */
static int as_user(const struct cli *c, const char *user, struct instance_env *env, char **ret_home,
                   struct hutch_error *err)
{
        struct passwd *pw = user ? user_lookup(user, err) : NULL;
        if (user && !pw)
                return -ENOENT;
        if (!user || pw->pw_uid == getuid()) {
                cli_instance_env(c, env);
                return 0;
        }
        if (getuid() != 0)
                return hutch_err(err, -EPERM,
                                 "only root can act on another user's instances (--user %s, you are uid %u)", user,
                                 (unsigned) getuid());
        char *home = strdup(pw->pw_dir);
        uid_t uid = pw->pw_uid;
        if (!home)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
            setresuid(uid, uid, uid) < 0) {
                free(home);
                return hutch_err_sys(err, -errno, "cannot act as user '%s'", user);
        }
        /* a changed uid makes the process non-dumpable already (prctl(2)): said here too */
        (void) prctl(PR_SET_DUMPABLE, 0);
        *env = (struct instance_env){.uid = uid, .home = home};
        *ret_home = home;
        return 0;
}

/* Sorted by name: looked up with bsearch. */
static const struct signame {
        const char *name;
        int sig;
} signals[] = {
        {"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"CONT", SIGCONT},   {"HUP", SIGHUP},   {"INT", SIGINT},
        {"KILL", SIGKILL}, {"PWR", SIGPWR},   {"QUIT", SIGQUIT},   {"STOP", SIGSTOP}, {"TERM", SIGTERM},
        {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"WINCH", SIGWINCH},
};

static int signame_cmp(const void *k, const void *e)
{
        return strcasecmp(k, ((const struct signame *) e)->name);
}

static int signal_parse(const char *s)
{
        uint64_t n;
        int r = parse_u64_range(s, 1, 64, &n);
        if (r != -EINVAL)
                return r < 0 ? r : (int) n;
        if (!strncasecmp(s, "SIG", 3))
                s += 3;
        const struct signame *f = bsearch(s, signals, ELEMENTSOF(signals), sizeof signals[0], signame_cmp);
        return f ? f->sig : -EINVAL;
}

/* A log as it was before a start (st_size 0: none yet), so that a failed start shows its
 * own lines only: logs are appended to, an earlier failure's lines are still there. */
static struct stat file_state(const char *path)
{
        struct stat st;
        if (!path || stat(path, &st) < 0 || !S_ISREG(st.st_mode))
                memset(&st, 0, sizeof st);
        return st;
}

/* The last lines (at most the last 64 KiB) a log has had since it was as before, for a
 * failed start. A log rotated since (another file now) is read whole, up to that. */
static void print_file_tail(const char *path, const struct stat *before, long lines, FILE *to)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        static char buf[65536];
        struct stat now;
        if (fd < 0 || fstat(fd, &now) < 0)
                return;
        off_t since = now.st_ino == before->st_ino && now.st_dev == before->st_dev ? before->st_size : 0;
        off_t end = lseek(fd, 0, SEEK_END);
        off_t from = end > (off_t) sizeof buf ? end - (off_t) sizeof buf : 0;
        if (since <= end && since > from)
                from = since;
        ssize_t n = end < 0 ? -1 : pread(fd, buf, (size_t) (end - from), from);
        if (n <= 0)
                return;
        size_t i = (size_t) n;
        if (buf[i - 1] == '\n')
                i--;
        for (long seen = 0; i > 0; i--)
                if (buf[i - 1] == '\n' && ++seen == lines)
                        break;
        fflush(to);
        (void) !write(fileno(to), buf + i, (size_t) n - i);
}

/* The batch job we run in, and with --tie-to-job (the default inside one) the process whose
 * end is the job's: our session's leader, which Slurm's slurmstepd, PBS's mom and LSF's res
 * make of the job script or task (each runs it in a session of its own); our parent when
 * we lead the session ourselves (srun hutch ...: the step daemon). */
static int job_tie(const struct cli *c, int tie, struct instance_spec *is, struct hutch_error *err)
{
        static const char *const vars[] = {"SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID"};
        for (size_t i = 0; i < ELEMENTSOF(vars) && !is->job_id; i++) {
                const char *v = cli_getenv(c, vars[i]);
                is->job_id = v && *v ? v : NULL;
        }
        if (tie < 0)
                tie = is->job_id != NULL;
        if (!tie)
                return 0;
        if (!is->job_id)
                return hutch_err(err, -EINVAL,
                                 "--tie-to-job: not inside a batch job (none of SLURM_JOB_ID, PBS_JOBID, LSB_JOBID "
                                 "is set)");
        pid_t w = getsid(0);
        if (w <= 1 || w == getpid())
                w = getppid();
        int r = proc_start_time(w, &is->job_pid_start);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot tie the instance to batch job %s", is->job_id);
        is->job_pid = w;
        return 0;
}

/* `hutch instance supervise --sync-fd=N [--tie=PID:START] -- start|run ARGS`: the
 * supervisor, exec'd by `instance start` (or by a systemd unit), parses the start's own
 * command line again. */
struct supervise_opts {
        int sync_fd;
        const char *unit; /* --unit: the systemd unit it runs as */
        pid_t tie_pid;
        unsigned long long tie_start;
};

/* The supervisor's arguments after --sync-fd: the tie, then the start's own command line. */
static int supervisor_args(const struct instance_spec *is, const char *sub, int argc, char **argv, char ***ret)
{
        _cleanup_strv_ char **v = NULL;
        char tie[64];
        if (is->job_pid > 0) {
                snprintf(tie, sizeof tie, "--tie=%d:%llu", (int) is->job_pid, is->job_pid_start);
                if (strv_extend(&v, tie) < 0)
                        return -ENOMEM;
        }
        if (strv_extend(&v, "--") < 0 || strv_extend(&v, sub) < 0)
                return -ENOMEM;
        for (int i = 1; i < argc; i++)
                if (strv_extend(&v, argv[i]) < 0)
                        return -ENOMEM;
        *ret = steal_pointer(&v);
        return 0;
}

/* --pid-file (as Apptainer's): the instance's pid as `instance list` shows it, its init,
 * PID 1 inside (a Type=forking unit's PIDFile= then tracks that process, in the unit's
 * cgroup with the supervisor). */
static int pid_file_write(const struct instance_spec *is, const char *path)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct instance_state st = {0};
        char line[32];
        if (instance_find(&is->env, is->name, &st, &err) < 0)
                return cli_fail(&err);
        int n = snprintf(line, sizeof line, "%d\n", (int) st.pid);
        int r = write_file_at(AT_FDCWD, path, line, (size_t) n, 0644);
        if (r < 0) {
                /* a unit that cannot find its process would never see it end: none is left */
                struct hutch_error ignored = HUTCH_ERROR_INIT;
                hutch_err_sys(&err, r, "cannot write the pid file '%s'", path);
                (void) instance_stop(&is->env, &st, SIGKILL, 0, true, &ignored);
        }
        instance_state_clear(&st);
        return r < 0 ? cli_fail(&err) : 0;
}

#define START_FAIL_LOG_LINES 20

static int cmd_start(struct cli *c, const char *sub, int argc, char **argv, const struct supervise_opts *sv)
{
        struct launch_args a = {.instance = true, .tie_to_job = -1};
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct instance_spec is = {0};
        const char *verb = !strcmp(sub, "run") ? "instance run" : "instance start";
        _cleanup_strv_ char **orig = NULL, **sargs = NULL;
        _cleanup_free_ char *log_out = NULL, *log_err = NULL; /* declared before any goto out */
        int r, status;

        /* the parse may reorder or rewrite argv: the supervisor gets it as given */
        orig = strv_copy(argv);
        if (!orig)
                return cli_fail(&(struct hutch_error){.code = -ENOMEM, .msg = "out of memory"});
        a.spec.action = !strcmp(sub, "run") ? LAUNCH_RUN : LAUNCH_START;
        if ((r = launch_args_parse(c, &a, verb, argc, argv)) >= 0)
                goto out;
        is.name = a.rest[0];
        if (!is.name) {
                r = cli_args_error(verb, "missing instance NAME after IMAGE");
                goto out;
        }
        if (instance_name_check(is.name, &err) < 0 ||
            (a.restart && restart_policy_parse(a.restart, &is.restart, &is.max_restarts, &err) < 0) ||
            instance_ready_parse(a.ready, a.ready_timeout, &is.ready, &err) < 0) {
                r = cli_fail(&err);
                goto out;
        }
        a.spec.argv = a.rest + 1;
        if (launch_spec_instance_name(&a.spec, is.name) < 0) {
                r = cli_usage_error(verb, "out of memory");
                goto out;
        }
        if (startswith(a.spec.image, "instance://")) {
                r = cli_usage_error(verb, "IMAGE cannot be an instance");
                goto out;
        }
        /* the supervisor, in a session of its own, cannot tell the job's process: it is
         * given the one the CLI found */
        if ((r = job_tie(c, sv ? 0 : a.tie_to_job, &is, &err)) < 0) {
                r = cli_fail(&err);
                goto out;
        }
        if (sv) {
                is.job_pid = sv->tie_pid;
                is.job_pid_start = sv->tie_start;
                is.unit = sv->unit;
                is.notify_socket = sv->unit ? cli_getenv(c, "NOTIFY_SOCKET") : NULL;
        } else if (a.pid_file && a.systemd && strcmp(a.systemd, "no")) {
                r = cli_usage_error(verb,
                                    "--pid-file is for a unit written by hand, which keeps the instance "
                                    "itself: not with --systemd %s",
                                    a.systemd);
                goto out;
        } else if (a.pid_file) {
                /* the unit around this command is the keeper (Type=forking, PIDFile=) */
                is.systemd = INSTANCE_SYSTEMD_NO;
        } else if (instance_systemd_parse(a.systemd ? a.systemd : c->conf.systemd, &is.systemd, &err) < 0) {
                if (!a.systemd)
                        cli_error_context("hutch.conf 'systemd'");
                r = cli_fail(&err);
                cli_error_context(NULL);
                goto out;
        }
        is.launch = &a.spec;
        is.log_max_size = c->conf.instance_log_max_size;
        is.settle_ms = (unsigned) c->conf.instance_ready_timeout;
        is.max_instances = (unsigned) c->conf.max_instances;
        cli_instance_env(c, &is.env);
        if (sv) {
                r = instance_supervise(&is, sv->sync_fd, &err);
                r = r < 0 ? EXIT_HUTCH_FAILURE : r;
                goto out;
        }
        if (supervisor_args(&is, sub, argc, orig, &sargs) < 0) {
                r = cli_fail(&(struct hutch_error){.code = -ENOMEM, .msg = "out of memory"});
                goto out;
        }
        is.supervisor_path = "hutch";
        is.supervisor_args = sargs;
        struct stat log_before =
                file_state(instance_log_paths(&is.env, is.name, &log_out, &log_err) == 0 ? log_err : NULL);
        r = instance_start(&is, &status, &err);
        if (r < 0) {
                /* the container's own words first, as it wrote them: the end of what this
                 * start added to its error log */
                if (status >= 0 && log_err)
                        print_file_tail(log_err, &log_before, START_FAIL_LOG_LINES, stderr);
                r = cli_fail(&err);
                goto out;
        }
        if (a.pid_file && (r = pid_file_write(&is, a.pid_file)) != 0)
                goto out;
        log_info("instance started successfully");
        r = 0;
out:
        launch_args_free(&a);
        return r;
}

/* --install: into the user's unit folder, then the manager reloads and enables it. */
static int unit_install(struct cli *c, const char *name, const char *text)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        char unit[INSTANCE_NAME_MAX * 4 + 32];
        const char *cfg = cli_getenv(c, "XDG_CONFIG_HOME"), *home = cli_getenv(c, "HOME");
        _cleanup_free_ char *dir = NULL, *path = NULL;
        instance_unit_name(name, unit, sizeof unit);
        if (cfg && cfg[0] == '/')
                dir = strjoin(cfg, "/systemd/user", NULL);
        else if (home && home[0] == '/')
                dir = strjoin(home, "/.config/systemd/user", NULL);
        else
                return cli_fail(&(struct hutch_error){.code = -ENOENT, .msg = "--install: HOME is not set"});
        path = dir ? strjoin(dir, "/", unit) : NULL;
        if (!path)
                return cli_fail(&(struct hutch_error){.code = -ENOMEM, .msg = "out of memory"});
        int r = mkdir_p_at(AT_FDCWD, dir, 0755);
        if (r >= 0)
                r = write_file_at(AT_FDCWD, path, text, strlen(text), 0644);
        if (r < 0) {
                hutch_err_sys(&err, r, "cannot write the unit file '%s'", path);
                return cli_fail(&err);
        }
        char *reload[] = {"systemctl", "--user", "daemon-reload", NULL};
        char *enable[] = {"systemctl", "--user", "--quiet", "enable", unit, NULL};
        if ((r = spawn_wait(reload, true)) != 0 || (r = spawn_wait(enable, true)) != 0) {
                hutch_err(&err, -EIO,
                          "wrote '%s', but `systemctl --user %s` failed (status %d): is your systemd user manager "
                          "running?",
                          path, r == 0 ? "enable" : "daemon-reload", r);
                return cli_fail(&err);
        }
        printf("%s\n", path);
        log_info("enabled %s: systemctl --user start %s", unit, unit);
        return 0;
}

/* `instance unit [--restart P] [--wanted-by T] [--install] [start options] IMAGE NAME
 * [ARGS]`: the unit file of an instance (podman generate systemd's idea), its ExecStart=
 * the same supervisor `instance start` runs. */
static int cmd_unit(struct cli *c, int argc, char **argv)
{
        const char *restart = "no", *wanted = NULL;
        bool install = false;
        int i = 1;
        for (; i < argc; i++) {
                const char *v = NULL;
                if (!strcmp(argv[i], "--install"))
                        install = true;
                else if ((!strcmp(argv[i], "--restart") || !strcmp(argv[i], "--wanted-by")) && i + 1 < argc)
                        v = argv[i + 1];
                else if (startswith(argv[i], "--restart=") || startswith(argv[i], "--wanted-by="))
                        v = strchr(argv[i], '=') + 1;
                else
                        break;
                if (v && startswith(argv[i], "--restart"))
                        restart = v;
                else if (v)
                        wanted = v;
                if (v && !strchr(argv[i], '='))
                        i++;
        }
        if (strcmp(restart, "no") && strcmp(restart, "on-failure") && strcmp(restart, "always"))
                return cli_usage_error("instance unit", "--restart takes no, on-failure or always, not '%s'", restart);
        if (wanted && (!*wanted || strpbrk(wanted, " \t\n/")))
                return cli_usage_error("instance unit", "--wanted-by takes a unit name, not '%s'", wanted);
        /* the rest is a start's command line: parsed here to check it, and for the limits */
        _cleanup_strv_ char **args = strv_copy(argv + i), **sargv = NULL;
        struct launch_args a = {.instance = true, .tie_to_job = 0};
        struct hutch_error err = HUTCH_ERROR_INIT;
        if (!args || strv_extend(&sargv, "unit") < 0)
                return cli_fail(&(struct hutch_error){.code = -ENOMEM, .msg = "out of memory"});
        for (char **p = args; *p; p++)
                if (strv_extend(&sargv, *p) < 0)
                        return cli_fail(&(struct hutch_error){.code = -ENOMEM, .msg = "out of memory"});
        int r = launch_args_parse(c, &a, "instance unit", (int) strv_length(sargv), sargv);
        if (r >= 0)
                goto out;
        if (!a.rest[0]) {
                r = cli_args_error("instance unit", "missing instance NAME after IMAGE");
                goto out;
        }
        struct instance_ready ready;
        if (instance_name_check(a.rest[0], &err) < 0 ||
            instance_ready_parse(a.ready, a.ready_timeout, &ready, &err) < 0) {
                r = cli_fail(&err);
                goto out;
        }
        char self[PATH_MAX], cwd[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0 || !getcwd(cwd, sizeof cwd)) {
                r = cli_fail(&(struct hutch_error){.code = -EIO, .msg = "cannot tell where hutch or this folder is"});
                goto out;
        }
        self[n] = 0;
        struct instance_unit u = {.hutch = self,
                                  .name = a.rest[0],
                                  .args = args,
                                  .cwd = cwd,
                                  .restart = restart,
                                  .wanted_by = wanted,
                                  .limits = a.spec.limits};
        _cleanup_free_ char *text = NULL;
        if (instance_unit_file(&u, &text) < 0) {
                r = cli_fail(&(struct hutch_error){.code = -ENOMEM, .msg = "out of memory"});
                goto out;
        }
        if (install)
                r = unit_install(c, a.rest[0], text);
        else {
                fputs(text, stdout);
                r = 0;
        }
out:
        launch_args_free(&a);
        return r;
}

static int parse_tie(const char *s, struct supervise_opts *o)
{
        char *end;
        errno = 0;
        long pid = strtol(s, &end, 10);
        if (errno || end == s || *end != ':' || pid <= 0 || pid > INT32_MAX)
                return -EINVAL;
        s = end + 1;
        unsigned long long t = strtoull(s, &end, 10);
        if (errno || end == s || *end)
                return -EINVAL;
        o->tie_pid = (pid_t) pid;
        o->tie_start = t;
        return 0;
}

/* A supervisor whose own command line is wrong was not started by hutch: its starter (if
 * any) hears why on the sync fd. */
static int supervise_usage(const struct supervise_opts *o, const char *arg)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        if (arg)
                hutch_err(&err, -EINVAL, "'instance supervise' does not take '%s'", arg);
        else
                hutch_err(&err, -EINVAL, "'instance supervise' needs '-- start ARGS'");
        if (o->sync_fd >= 0)
                instance_sync_fail(o->sync_fd, &err);
        return cli_usage_error("instance supervise", "%s", err.msg);
}

static int cmd_supervise(struct cli *c, int argc, char **argv)
{
        struct supervise_opts o = {.sync_fd = -1};
        int i = 1;
        for (; i < argc && strcmp(argv[i], "--"); i++) {
                uint64_t fd;
                if (startswith(argv[i], "--sync-fd=") && parse_u64_range(argv[i] + 10, 0, INT32_MAX, &fd) >= 0)
                        o.sync_fd = (int) fd;
                else if (startswith(argv[i], "--unit=") && argv[i][7])
                        o.unit = argv[i] + 7;
                else if (!(startswith(argv[i], "--tie=") && parse_tie(argv[i] + 6, &o) >= 0))
                        return supervise_usage(&o, argv[i]);
        }
        if (o.sync_fd >= 0 && fcntl(o.sync_fd, F_GETFD) < 0)
                return cli_usage_error("instance supervise", "--sync-fd=%d is not open", o.sync_fd);
        if (i + 1 >= argc || (strcmp(argv[i + 1], "start") && strcmp(argv[i + 1], "run")))
                return supervise_usage(&o, NULL);
        return cmd_start(c, argv[i + 1], argc - i - 1, argv + i + 1, &o);
}

static void format_time(long long t, char *buf, size_t size)
{
        time_t tt = (time_t) t;
        struct tm tm;
        if (!localtime_r(&tt, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm))
                snprintf(buf, size, "-");
}

/* The name of uid, else the number (in a static buffer: valid until the next call). */
static const char *user_name(uid_t uid)
{
        static char buf[32];
        struct passwd *pw = getpwuid(uid);
        if (pw)
                return pw->pw_name;
        snprintf(buf, sizeof buf, "%u", (unsigned) uid);
        return buf;
}

/* The state's "ip" (a comma list, one address per network) as a JSON array. */
static json_object *ip_array(const char *ips)
{
        json_object *a = json_object_new_array();
        for (const char *p = ips; p && *p;) {
                size_t k = strcspn(p, ",");
                if (k)
                        json_object_array_add(a, json_object_new_string_len(p, (int) k));
                p += k + (p[k] == ',');
        }
        return a;
}

static void print_json(const struct instance_state *v, size_t n)
{
        json_object *root = json_object_new_object(), *arr = json_object_new_array();
        for (size_t i = 0; i < n; i++) {
                json_object *o = json_object_new_object();
                char t[64];
                format_time(v[i].started, t, sizeof t);
                json_object_object_add(o, "instance", json_object_new_string(v[i].name));
                json_object_object_add(o, "pid", json_object_new_int(v[i].pid));
                json_object_object_add(o, "img", json_object_new_string(v[i].image ? v[i].image : ""));
                /* "ip": the first network's address (Apptainer's key); "ips": every network's */
                json_object_object_add(
                        o, "ip",
                        json_object_new_string_len(v[i].ip ? v[i].ip : "", v[i].ip ? (int) strcspn(v[i].ip, ",") : 0));
                json_object_object_add(o, "ips", ip_array(v[i].ip));
                json_object_object_add(o, "ports", json_object_new_string(v[i].ports ? v[i].ports : ""));
                json_object_object_add(o, "logErrPath", json_object_new_string(v[i].log_err ? v[i].log_err : ""));
                json_object_object_add(o, "logOutPath", json_object_new_string(v[i].log_out ? v[i].log_out : ""));
                json_object_object_add(o, "uid", json_object_new_int64(v[i].uid));
                json_object_object_add(o, "started", json_object_new_string(t));
                json_object_object_add(o, "restarts", json_object_new_int64(v[i].restarts));
                json_object_object_add(o, "restartPolicy", json_object_new_string(v[i].restart ? v[i].restart : "no"));
                json_object_object_add(o, "jobId", json_object_new_string(v[i].job ? v[i].job : ""));
                json_object_object_add(o, "tiedToJob", json_object_new_boolean(v[i].job_pid > 0));
                json_object_object_add(o, "keeper",
                                       json_object_new_string(v[i].keeper && *v[i].keeper ? v[i].keeper : "hutch"));
                json_object_object_add(o, "unit", json_object_new_string(v[i].unit ? v[i].unit : ""));
                json_object_object_add(o, "user", json_object_new_string(user_name(v[i].uid)));
                json_object_object_add(o, "limits", json_object_new_string(v[i].limits ? v[i].limits : ""));
                json_object_object_add(o, "imageDigest", json_object_new_string(v[i].digest ? v[i].digest : ""));
                json_object_array_add(arr, o);
        }
        json_object_object_add(root, "instances", arr);
        /* tab-indented, as Apptainer's (Go's MarshalIndent with "\t", which writes an empty
         * list as [], where json-c breaks the line) */
        if (n == 0)
                puts("{\n\t\"instances\": []\n}");
        else
                puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_PRETTY_TAB |
                                                                  JSON_C_TO_STRING_SPACED |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(root);
}

/* A path as one table cell: control bytes as \xNN. */
static char *cell(const char *s)
{
        char *r = malloc(strlen(s ? s : "") * 4 + 1), *q = r;
        for (const unsigned char *p = (const unsigned char *) (s ? s : ""); r && *p; p++)
                q += *p < 0x20 || *p == 0x7f ? sprintf(q, "\\x%02x", *p) : (*q = (char) *p, 1);
        if (r)
                *q = 0;
        return r;
}

/* With admin (list --all, --user): a USER column first, LIMITS and DIGEST (shortened) last. */
static void print_table(const struct instance_state *v, size_t n, bool logs, bool admin)
{
        if (logs) {
                printf("%-16s %-8s %s\n", "INSTANCE NAME", "PID", "LOGS");
                for (size_t i = 0; i < n; i++) {
                        _cleanup_free_ char *e = cell(v[i].log_err), *o = cell(v[i].log_out);
                        printf("%-16s %-8d %s\n%-16s %-8s %s\n", v[i].name, (int) v[i].pid, e ? e : "", "", "",
                               o ? o : "");
                }
                return;
        }
        /* a JOB column when an instance runs in a batch job (its id; "(tied)" when it ends with it) */
        bool jobs = false, ports = false;
        for (size_t i = 0; i < n; i++) {
                jobs |= v[i].job && *v[i].job;
                ports |= v[i].ports && *v[i].ports;
        }
        if (admin)
                printf("%-12s ", "USER");
        printf("%-16s %-8s %-15s %-40s %-19s %-7s %-8s%s%s%s\n", "INSTANCE NAME", "PID", "IP", "IMAGE", "STARTED",
               "KEEPER", "RESTARTS", jobs ? " JOB" : "", ports ? " PORTS" : "",
               admin ? " LIMITS                   DIGEST" : "");
        for (size_t i = 0; i < n; i++) {
                if (admin)
                        printf("%-12s ", user_name(v[i].uid));
                char t[64];
                format_time(v[i].started, t, sizeof t);
                _cleanup_free_ char *img = cell(v[i].image), *job = cell(v[i].job && *v[i].job ? v[i].job : "-");
                const char *ip = v[i].ip ? v[i].ip : "";
                _cleanup_free_ char *pc = ports ? cell(v[i].ports && *v[i].ports ? v[i].ports : "-") : NULL;
                /* who keeps the supervisor: hutch itself, or the user's systemd manager */
                const char *keeper = v[i].keeper && *v[i].keeper ? v[i].keeper : "hutch";
                if (jobs)
                        printf("%-16s %-8d %-15s %-40s %-19s %-7s %-8u %s%s", v[i].name, (int) v[i].pid, ip,
                               img ? img : "", t, keeper, v[i].restarts, job ? job : "",
                               v[i].job_pid > 0 ? " (tied)" : "");
                else
                        printf("%-16s %-8d %-15s %-40s %-19s %-7s %-*u", v[i].name, (int) v[i].pid, ip, img ? img : "",
                               t, keeper, ports ? 8 : 0, v[i].restarts);
                printf("%s%s", pc ? " " : "", pc ? pc : "");
                if (admin) {
                        _cleanup_free_ char *lim = cell(v[i].limits && *v[i].limits ? v[i].limits : "-");
                        char dig[20];
                        /* "sha256:" and 12 hex digits, as image ids are shown; --json has it whole */
                        snprintf(dig, sizeof dig, "%s", v[i].digest && *v[i].digest ? v[i].digest : "-");
                        printf(" %-24s %s", lim ? lim : "", dig);
                }
                printf("\n");
        }
}

static const struct option list_options[] = {
        {"json", no_argument, NULL, 'j'},       {"logs", no_argument, NULL, 'l'}, {"all", no_argument, NULL, 'a'},
        {"user", required_argument, NULL, 'u'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
};

/* A subcommand takes one NAME (or pattern): more is refused, as Apptainer's parser refuses
 * it, rather than acting on the first and dropping the rest. */
static int names_too_many(const char *sub, int argc, char **argv)
{
        return cli_args_error("instance", "%s takes one instance name or pattern, not %d ('%s', '%s'...)", sub,
                              argc - optind, argv[optind], argv[optind + 1]);
}

static int cmd_list(struct cli *c, int argc, char **argv)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        bool json = false, logs = false, all = false;
        const char *user = NULL;
        int o;
        optind = 1;
        opterr = 0;
        while ((o = getopt_long(argc, argv, "+jlau:h", list_options, NULL)) != -1)
                switch (o) {
                case 'j': json = true; break;
                case 'l': logs = true; break;
                case 'a': all = true; break;
                case 'u': user = optarg; break;
                case 'h': cli_help_print("instance"); return 0;
                default: return cli_args_error("instance", "unknown option '%s'", argv[optind - 1]);
                }
        if (json && logs) /* one or the other, as Apptainer's */
                return cli_usage_error("instance", "list: --json and --logs are not for one listing: more than one "
                                                   "flags have been set");
        if (argc - optind > 1)
                return names_too_many("list", argc, argv);
        const char *glob = optind < argc ? argv[optind] : NULL;
        struct instance_state *v = NULL;
        size_t n = 0;
        _cleanup_strv_ char **gone = NULL;
        int r;
        if (all || user) {
                uid_t uid = 0;
                if (user) {
                        struct passwd *pw = getpwnam(user);
                        uint64_t id = 0;
                        if (!pw && parse_u64_range(user, 0, UINT32_MAX - 1, &id) < 0) {
                                hutch_err(&err, -ENOENT, "no user named '%s'", user);
                                return cli_fail(&err);
                        }
                        uid = pw ? pw->pw_uid : (uid_t) id;
                        if (uid != getuid() && getuid() != 0) {
                                hutch_err(&err, -EPERM,
                                          "only root can list another user's instances (--user %s, you are uid %u)",
                                          user, (unsigned) getuid());
                                return cli_fail(&err);
                        }
                }
                r = instance_list_all(glob, user != NULL, uid, &v, &n, &err);
        } else {
                struct instance_env env;
                cli_instance_env(c, &env);
                r = instance_list(&env, glob, &v, &n, &gone, &err);
                /* the cgroups of supervisors killed before they could remove them */
                cgroup_orphans_clean(c->conf.cgroup_parent);
        }
        if (r < 0)
                return cli_fail(&err);
        for (char **g = gone; g && *g; g++)
                log_warning("instance '%s' is no longer running; its state was removed", *g);
        if (json)
                print_json(v, n);
        else
                print_table(v, n, logs, all || user);
        instance_state_free_array(v, n);
        return 0;
}

static const struct option stop_options[] = {
        {"all", no_argument, NULL, 'a'},
        {"signal", required_argument, NULL, 's'},
        {"timeout", required_argument, NULL, 't'},
        {"force", no_argument, NULL, 'F'},
        {"user", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

/* Root about to stop user's instances: a connection to the control socket of each of that
 * user's live supervisors (found from /proc, as `list --all` does), made while still root,
 * so that the supervisor hears root ask (SO_PEERCRED is taken at connect). Nothing of the
 * user's file system is followed. */
static bool controls_ahead(const char *user, struct instance_control **ret, size_t *ret_n)
{
        struct hutch_error ignored = HUTCH_ERROR_INIT;
        struct passwd *pw = user && getuid() == 0 ? user_lookup(user, &ignored) : NULL;
        struct instance_state *v = NULL;
        size_t n = 0;
        *ret = NULL;
        *ret_n = 0;
        if (!pw || pw->pw_uid == 0)
                return false;
        if (instance_list_all(NULL, true, pw->pw_uid, &v, &n, &ignored) < 0)
                return true;
        struct instance_control *ctl = n ? calloc(n, sizeof *ctl) : NULL;
        for (size_t i = 0; ctl && i < n; i++) {
                int fd = instance_control_connect(v[i].supervisor, v[i].supervisor_start, v[i].uid);
                if (fd >= 0)
                        ctl[(*ret_n)++] = (struct instance_control){v[i].supervisor, v[i].supervisor_start, fd};
        }
        instance_state_free_array(v, n);
        *ret = ctl;
        return true;
}

static void controls_free(struct instance_control *ctl, size_t n)
{
        for (size_t i = 0; i < n; i++)
                close(ctl[i].fd);
        free(ctl);
}

static int cmd_stop(struct cli *c, int argc, char **argv)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        bool all = false, force = false;
        const char *user = NULL;
        int sig = SIGINT, timeout_ms = 10000, o; /* as Apptainer's stop */
        optind = 1;
        opterr = 0;
        while ((o = getopt_long(argc, argv, "+as:t:Fu:h", stop_options, NULL)) != -1) {
                switch (o) {
                case 'a': all = true; break;
                case 'u': user = optarg; break;
                case 'F': force = true; break;
                case 's':
                        if ((sig = signal_parse(optarg)) < 0)
                                return cli_usage_error("instance", "unknown signal '%s'", optarg);
                        break;
                case 't': {
                        double t;
                        if (parse_double_range(optarg, 0, 86400, &t) < 0)
                                return cli_usage_error("instance", "--timeout wants seconds, not '%s'", optarg);
                        timeout_ms = (int) (t * 1000);
                        break;
                }
                case 'h': cli_help_print("instance"); return 0;
                default: return cli_args_error("instance", "unknown option '%s'", argv[optind - 1]);
                }
        }
        if (argc - optind > 1)
                return names_too_many("stop", argc, argv);
        const char *glob = optind < argc ? argv[optind] : NULL;
        if (!glob && !all)
                return cli_usage_error("instance", "name an instance (or a pattern), or give --all");
        struct instance_env env;
        _cleanup_free_ char *home = NULL;
        struct instance_control *ctl;
        size_t n_ctl;
        bool ahead = controls_ahead(user, &ctl, &n_ctl);
        int r = as_user(c, user, &env, &home, &err);
        env.controls = ctl;
        env.n_controls = n_ctl;
        env.controls_only = ahead;
        struct instance_state *v = NULL;
        size_t n = 0;
        if (r < 0 || instance_list(&env, all ? NULL : glob, &v, &n, NULL, &err) < 0) {
                controls_free(ctl, n_ctl);
                return cli_fail(&err);
        }
        if (n == 0) {
                instance_state_free_array(v, n);
                controls_free(ctl, n_ctl);
                /* none at all: Apptainer's error too */
                if (all)
                        hutch_err(&err, -ENOENT, "no instance found");
                else
                        hutch_err(&err, -ENOENT, "no instance found matching '%s'", glob);
                return cli_fail(&err);
        }
        for (size_t i = 0; i < n; i++) {
                log_info("Stopping %s instance of %s (PID=%d)", v[i].name, v[i].image, (int) v[i].pid);
                if (instance_stop(&env, &v[i], sig, timeout_ms, force, &err) < 0)
                        r = cli_fail(&err);
        }
        instance_state_free_array(v, n);
        controls_free(ctl, n_ctl);
        return r;
}

/* The last n lines of path, reaching into its rotated predecessor when needed. */
static void print_tail(const char *path, long n, FILE *to)
{
        _cleanup_free_ char *cur = NULL, *old = NULL, *oldp = strjoin(path, ".1", NULL);
        size_t lc = 0, lo = 0;
        if (read_full_at(AT_FDCWD, path, 64 << 20, &cur, &lc) < 0)
                lc = 0;
        if (!oldp || read_full_at(AT_FDCWD, oldp, 64 << 20, &old, &lo) < 0)
                lo = 0;
        _cleanup_free_ char *all = malloc(lo + lc + 1);
        if (!all)
                return;
        memcpy(all, old ? old : "", lo);
        memcpy(all + lo, cur ? cur : "", lc);
        size_t len = lo + lc, i = len;
        if (i > 0 && all[i - 1] == '\n')
                i--;
        for (long seen = 0; i > 0; i--)
                if (all[i - 1] == '\n' && ++seen == n)
                        break;
        if (n == 0)
                i = len;
        fflush(to);
        (void) !write(fileno(to), all + i, len - i);
}

struct follow {
        const char *path;
        FILE *to;
        int fd;
        ino_t ino;
};

static void follow_pump(struct follow *f)
{
        char buf[8192];
        ssize_t k;
        struct stat st;
        for (;;) {
                if (f->fd >= 0)
                        while ((k = read(f->fd, buf, sizeof buf)) > 0)
                                (void) !write(fileno(f->to), buf, k);
                /* rotated: the path names a new file now; finish the old one and switch */
                if (stat(f->path, &st) < 0 || (f->fd >= 0 && st.st_ino == f->ino))
                        return;
                if (f->fd >= 0)
                        close(f->fd);
                f->fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                f->ino = st.st_ino;
        }
}

static int follow_logs(const struct instance_env *env, const char *name, struct follow *fs, size_t nf)
{
        _cleanup_close_ int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        _cleanup_free_ char *dir = strdup(fs[0].path);
        if (in < 0 || !dir)
                return -errno;
        *strrchr(dir, '/') = 0;
        inotify_add_watch(in, dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO);
        for (size_t i = 0; i < nf; i++) {
                struct stat st;
                if (fs[i].fd >= 0 && fstat(fs[i].fd, &st) == 0)
                        fs[i].ino = st.st_ino;
        }
        for (;;) {
                for (size_t i = 0; i < nf; i++)
                        follow_pump(&fs[i]);
                struct instance_state st = {0};
                struct hutch_error e = HUTCH_ERROR_INIT;
                if (instance_find(env, name, &st, &e) < 0)
                        return 0; /* the instance is gone: everything it wrote is out */
                instance_state_clear(&st);
                struct pollfd p = {.fd = in, .events = POLLIN};
                if (poll(&p, 1, 1000) > 0) {
                        char ev[4096];
                        while (read(in, ev, sizeof ev) > 0)
                                ;
                }
        }
}

static const struct option logs_options[] = {
        {"follow", no_argument, NULL, 'f'},
        {"tail", required_argument, NULL, 'n'},
        {"err", no_argument, NULL, 'e'},
        {"out", no_argument, NULL, 'o'},
        {"user", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

static int cmd_logs(struct cli *c, int argc, char **argv)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        bool follow = false, want_out = true, want_err = true;
        long tail = -1;
        const char *user = NULL;
        int o;
        optind = 1;
        opterr = 0;
        while ((o = getopt_long(argc, argv, "+fn:eou:h", logs_options, NULL)) != -1) {
                int64_t n;
                switch (o) {
                case 'f': follow = true; break;
                case 'u': user = optarg; break;
                case 'n':
                        if (parse_i64_range(optarg, 0, INT64_MAX, &n) < 0 || (tail = (long) n) < 0)
                                return cli_usage_error("instance", "--tail wants a number of lines, not '%s'", optarg);
                        break;
                case 'e': want_out = false; break;
                case 'o': want_err = false; break;
                case 'h': cli_help_print("instance"); return 0;
                default: return cli_args_error("instance", "unknown option '%s'", argv[optind - 1]);
                }
        }
        if (!want_out && !want_err)
                want_out = want_err = true;
        const char *name = optind < argc ? argv[optind] : NULL;
        if (!name)
                return cli_args_error("instance", "missing instance NAME");
        if (instance_name_check(name, &err) < 0)
                return cli_fail(&err);
        struct instance_env env;
        _cleanup_free_ char *home = NULL;
        if (as_user(c, user, &env, &home, &err) < 0)
                return cli_fail(&err);
        _cleanup_free_ char *out = NULL, *errp = NULL;
        if (instance_log_paths(&env, name, &out, &errp) < 0) {
                hutch_err(&err, -ENOENT, "cannot tell where logs are: HOME is not set");
                return cli_fail(&err);
        }
        if ((!want_out || access(out, F_OK) < 0) && (!want_err || access(errp, F_OK) < 0)) {
                hutch_err(&err, -ENOENT, "no logs of an instance named '%s'", name);
                return cli_fail(&err);
        }
        struct follow fs[2];
        size_t nf = 0;
        if (want_out)
                fs[nf++] = (struct follow){.path = out, .to = stdout, .fd = -EBADF};
        if (want_err)
                fs[nf++] = (struct follow){.path = errp, .to = stderr, .fd = -EBADF};
        for (size_t i = 0; i < nf; i++) {
                struct stat st;
                fs[i].fd = open(fs[i].path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                /* the file read is the one the path names: no rotation to catch up with */
                if (fs[i].fd >= 0 && fstat(fs[i].fd, &st) == 0)
                        fs[i].ino = st.st_ino;
                if (tail >= 0) {
                        print_tail(fs[i].path, tail, fs[i].to);
                        if (fs[i].fd >= 0)
                                lseek(fs[i].fd, 0, SEEK_END);
                } else if (fs[i].fd >= 0)
                        follow_pump(&fs[i]);
        }
        int r = follow ? follow_logs(&env, name, fs, nf) : 0;
        for (size_t i = 0; i < nf; i++)
                if (fs[i].fd >= 0)
                        close(fs[i].fd);
        return r < 0 ? EXIT_HUTCH_FAILURE : 0;
}

static const struct option stats_options[] = {
        {"json", no_argument, NULL, 'j'},
        {"no-stream", no_argument, NULL, 'n'},
        {"user", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

static double now_s(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmd_stats(struct cli *c, int argc, char **argv)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        bool json = false, stream = true;
        const char *user = NULL;
        int o;
        optind = 1;
        opterr = 0;
        while ((o = getopt_long(argc, argv, "+jnu:h", stats_options, NULL)) != -1)
                switch (o) {
                case 'j': json = true; break;
                case 'u': user = optarg; break;
                case 'n': stream = false; break;
                case 'h': cli_help_print("instance"); return 0;
                default: return cli_args_error("instance", "unknown option '%s'", argv[optind - 1]);
                }
        const char *name = optind < argc ? argv[optind] : NULL;
        if (!name)
                return cli_args_error("instance", "missing instance NAME");
        struct instance_env env;
        struct instance_state st = {0};
        struct cgroup cg = CGROUP_NULL;
        _cleanup_free_ char *home = NULL;
        if (as_user(c, user, &env, &home, &err) < 0)
                return cli_fail(&err);
        if (instance_find(&env, name, &st, &err) < 0)
                return cli_fail(&err);
        int r = st.cgroup && *st.cgroup ? cgroup_from_string(st.cgroup, &cg) : -ENOENT;
        instance_state_clear(&st);
        if (r < 0) {
                hutch_err(&err, -ENOENT,
                          "instance '%s' has no cgroup to read usage from (none could be made for it: cgroups are "
                          "not delegated to uid %u); start it with --cgroup-parent naming a cgroup v2 subtree "
                          "delegated to you (ask your admin for one), or as root",
                          name, (unsigned) getuid());
                return cli_fail(&err);
        }
        struct cgroup_stats a, b;
        double ta = now_s(), tb;
        r = cgroup_stats_read(&cg, &a);
        if (r < 0) {
                hutch_err_sys(&err, r,
                              "cannot read the usage of instance '%s' from its cgroup %s as uid %u: run `instance "
                              "stats` as the user who started it (or root), or ask your admin to make the cgroup "
                              "readable",
                              name, cg.dirs[0], (unsigned) getuid());
                cgroup_release(&cg);
                return cli_fail(&err);
        }
        for (bool first = true; r >= 0; first = false) {
                struct timespec pause = {stream ? 1 : 0, stream ? 0 : 500000000L};
                nanosleep(&pause, NULL);
                tb = now_s();
                if ((r = cgroup_stats_read(&cg, &b)) < 0 || access(cg.dirs[0], F_OK) < 0)
                        break;
                double cpu = (b.cpu_usage_ns - a.cpu_usage_ns) / 1e9 / (tb - ta) * 100;
                char mu[32], ml[32], rd[32], wr[32];
                size_format(b.memory_current, mu, sizeof mu);
                size_format(b.memory_limit, ml, sizeof ml);
                size_format(b.io_read_bytes, rd, sizeof rd);
                size_format(b.io_write_bytes, wr, sizeof wr);
                if (json)
                        printf("{\"instance\": \"%s\", \"cpu_percent\": %.2f, \"memory_usage\": %llu, "
                               "\"memory_limit\": %llu, \"pids\": %llu, \"pids_limit\": %llu, "
                               "\"block_read\": %llu, \"block_write\": %llu}\n",
                               name, cpu, (unsigned long long) b.memory_current, (unsigned long long) b.memory_limit,
                               (unsigned long long) b.pids_current, (unsigned long long) b.pids_limit,
                               (unsigned long long) b.io_read_bytes, (unsigned long long) b.io_write_bytes);
                else {
                        if (first || stream)
                                printf("%-16s %8s %22s %8s %18s\n", "INSTANCE NAME", "CPU %", "MEM USAGE / LIMIT",
                                       "PIDS", "BLOCK I/O");
                        char mem[80], io[80];
                        snprintf(mem, sizeof mem, "%s / %s", mu, b.memory_limit ? ml : "-");
                        snprintf(io, sizeof io, "%s / %s", rd, wr);
                        printf("%-16s %7.2f%% %22s %8llu %18s\n", name, cpu, mem, (unsigned long long) b.pids_current,
                               io);
                }
                fflush(stdout);
                if (!stream)
                        break;
                a = b;
                ta = tb;
        }
        cgroup_release(&cg);
        return 0;
}

int verb_instance(struct cli *c, int argc, char **argv)
{
        const char *sub = argc > 1 ? argv[1] : NULL;
        if (!sub || !strcmp(sub, "help") || !strcmp(sub, "--help") || !strcmp(sub, "-h")) {
                cli_help_print("instance");
                return sub ? 0 : EXIT_USAGE;
        }
        if (!strcmp(sub, "start") || !strcmp(sub, "run"))
                return cmd_start(c, sub, argc - 1, argv + 1, NULL);
        if (!strcmp(sub, "unit"))
                return cmd_unit(c, argc - 1, argv + 1);
        if (!strcmp(sub, "supervise")) /* not for users: what `instance start` execs */
                return cmd_supervise(c, argc - 1, argv + 1);
        if (!strcmp(sub, "list"))
                return cmd_list(c, argc - 1, argv + 1);
        if (!strcmp(sub, "stop"))
                return cmd_stop(c, argc - 1, argv + 1);
        if (!strcmp(sub, "logs"))
                return cmd_logs(c, argc - 1, argv + 1);
        if (!strcmp(sub, "stats"))
                return cmd_stats(c, argc - 1, argv + 1);
        return cli_args_error("instance", "unknown instance command '%s'", sub);
}
