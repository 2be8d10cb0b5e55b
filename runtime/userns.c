/* User namespace and id maps. Rootless without --fakeroot: the caller's own uid/gid mapped
 * to itself (single-id map written by the launcher, as Charliecloud and bubblewrap do).
 * --fakeroot: 0 inside; the full subordinate range through newuidmap/newgidmap run by a
 * helper in the parent namespace when /etc/subuid grants one (gid map first), else a
 * single mapping of 0 to the caller. */
#include <errno.h>
#include <pwd.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime-internal.h"
#include "util/log.h"
#include "util/util.h"

int subid_find(const char *text, const char *name, uid_t id, unsigned long *ret_start, unsigned long *ret_count)
{
        char idstr[32];
        snprintf(idstr, sizeof idstr, "%u", (unsigned) id);
        while (text && *text) {
                size_t n = strcspn(text, "\n");
                char line[512];
                if (n < sizeof line && text[0] != '#') {
                        memcpy(line, text, n);
                        line[n] = 0;
                        char *a = strtok(line, ":"), *b = strtok(NULL, ":"), *c = strtok(NULL, ":");
                        if (a && b && c && ((name && !strcmp(a, name)) || !strcmp(a, idstr))) {
                                char *e1, *e2;
                                unsigned long s = strtoul(b, &e1, 10), k = strtoul(c, &e2, 10);
                                if (!*e1 && !*e2 && k > 0) {
                                        *ret_start = s;
                                        *ret_count = k;
                                        return 0;
                                }
                        }
                }
                text += n + (text[n] == '\n');
        }
        return -ENOENT;
}

static int write_proc(const char *file, const char *data, struct hutch_error *err)
{
        int r = write_file_at(AT_FDCWD, file, data, strlen(data), 0);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot write %s", file);
        return 0;
}

static int run_idmap_tool(const char *tool, pid_t pid, unsigned inside_self, unsigned self, unsigned long start,
                          unsigned long count)
{
        char p[16], a[16], b[16], c[16], d[16], e[16];
        snprintf(p, sizeof p, "%d", (int) pid);
        snprintf(a, sizeof a, "%u", inside_self);
        snprintf(b, sizeof b, "%u", self);
        snprintf(c, sizeof c, "%u", inside_self == 0 ? 1u : 0u);
        snprintf(d, sizeof d, "%lu", start);
        snprintf(e, sizeof e, "%lu", count);
        pid_t child = fork();
        if (child < 0)
                return -errno;
        if (child == 0) {
                execlp(tool, tool, p, a, b, "1", c, d, e, (char *) NULL);
                _exit(127);
        }
        int status;
        while (waitpid(child, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPERM;
}

/* The helper for subordinate ranges: waits for the launcher to have unshared, maps it from
 * outside, and reports with its exit status. PDEATHSIG and the getppid() check keep it from
 * outliving the launcher. */
static int subid_helper(const struct idmap_plan *m, pid_t target, int go_fd)
{
        char c;
        if (read(go_fd, &c, 1) != 1)
                _exit(1);
        if (run_idmap_tool("newgidmap", target, 0, m->gid, m->gid_start, m->gid_count) < 0)
                _exit(2);
        if (run_idmap_tool("newuidmap", target, 0, m->uid, m->uid_start, m->uid_count) < 0)
                _exit(3);
        _exit(0);
}

/* A subordinate id file that is missing, unreadable or not a regular file means no ranges. */
static int subid_file_read(const char *path, char **ret)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_close_ int fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = regular_file_read(fd, path, 1 << 20, ret, NULL, &err);
        if (r < 0 && r != -ENOENT)
                log_verbose("%s, ignoring", err.msg);
        return r;
}

int idmap_plan_make(uid_t uid, gid_t gid, const char *user, bool fakeroot, bool subids, struct idmap_plan *ret)
{
        struct idmap_plan m = {
                .uid = uid, .gid = gid, .inside_uid = fakeroot ? 0 : uid, .inside_gid = fakeroot ? 0 : gid};
        m.userns = uid != 0;
        if (m.userns && fakeroot && subids) {
                _cleanup_free_ char *su = NULL, *sg = NULL;
                if (subid_file_read("/etc/subuid", &su) >= 0 && subid_file_read("/etc/subgid", &sg) >= 0 &&
                    subid_find(su, user, uid, &m.uid_start, &m.uid_count) >= 0 &&
                    subid_find(sg, user, (uid_t) gid, &m.gid_start, &m.gid_count) >= 0 &&
                    access("/usr/bin/newuidmap", X_OK) == 0 && access("/usr/bin/newgidmap", X_OK) == 0)
                        m.subids = true;
        }
        *ret = m;
        return 0;
}

int userns_enter(const struct idmap_plan *m, int extra_flags, struct hutch_error *err)
{
        char buf[64];
        int r;

        if (!m->userns) {
                if (unshare(extra_flags) < 0)
                        return hutch_err_sys(err, -errno, "cannot create namespaces");
                return 0;
        }
        if (m->subids) {
                int go[2];
                pid_t self = getpid();
                if (pipe2(go, O_CLOEXEC) < 0)
                        return hutch_err_sys(err, -errno, "cannot create pipe");
                pid_t helper = fork();
                if (helper < 0)
                        return hutch_err_sys(err, -errno, "cannot fork id-map helper");
                if (helper == 0) {
                        close(go[1]);
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        if (getppid() != self)
                                _exit(1);
                        subid_helper(m, self, go[0]);
                }
                close(go[0]);
                int ur = unshare(CLONE_NEWUSER);
                int saved = errno;
                (void) !write(go[1], "x", 1);
                close(go[1]);
                int status;
                while (waitpid(helper, &status, 0) < 0 && errno == EINTR)
                        ;
                if (ur < 0)
                        return hutch_err_sys(err, -saved, "cannot create a user namespace");
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        return hutch_err(
                                err, -EPERM,
                                "newuidmap/newgidmap failed to map the subordinate ids of /etc/subuid and /etc/subgid");
                log_debug("mapped subordinate ids %lu+%lu through newuidmap", m->uid_start, m->uid_count);
        } else {
                if (unshare(CLONE_NEWUSER) < 0)
                        return hutch_err_sys(
                                err, -errno,
                                "cannot create a user namespace (are unprivileged user namespaces enabled?)");
                r = write_proc("/proc/self/setgroups", "deny", err);
                if (r < 0)
                        return r;
                snprintf(buf, sizeof buf, "%u %u 1\n", (unsigned) m->inside_uid, (unsigned) m->uid);
                if ((r = write_proc("/proc/self/uid_map", buf, err)) < 0)
                        return r;
                snprintf(buf, sizeof buf, "%u %u 1\n", (unsigned) m->inside_gid, (unsigned) m->gid);
                if ((r = write_proc("/proc/self/gid_map", buf, err)) < 0)
                        return r;
        }
        if (extra_flags && unshare(extra_flags) < 0)
                return hutch_err_sys(err, -errno, "cannot create namespaces");
        /* after the map, become the inside ids so files we create are ours */
        if (setresgid(m->inside_gid, m->inside_gid, m->inside_gid) < 0 ||
            setresuid(m->inside_uid, m->inside_uid, m->inside_uid) < 0)
                return hutch_err_sys(err, -errno, "cannot switch to the mapped ids");
        return 0;
}

int runtime_fakeroot_enter(bool *ret_subids, struct hutch_error *err)
{
        struct idmap_plan m;
        struct passwd *pw = getpwuid(getuid());
        char num[32];
        snprintf(num, sizeof num, "%u", (unsigned) getuid());
        int r = idmap_plan_make(getuid(), getgid(), pw ? pw->pw_name : num, true, true, &m);
        if (r >= 0)
                r = userns_enter(&m, 0, err);
        if (r < 0)
                return r;
        *ret_subids = m.subids;
        return 0;
}
