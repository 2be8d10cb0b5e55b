/* util/process: the fork helpers (plain, tied to its parent, as a sibling, detached), the
 * vfork-style spawn, pidrefs and the message format of the channels between processes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/process.h"

/* dev.sh's valgrind run: valgrind knows neither pidfd_open(2) nor clone3(2), and runs a
 * CLONE_VM child as no kernel would; those tests skip there */
#define SKIP_UNDER_VALGRIND()                   \
        do {                                    \
                if (getenv("HUTCH_VALGRIND")) { \
                        skip();                 \
                        return;                 \
                }                               \
        } while (0)

/* a plain fork: the child runs on a copy (its writes are not ours), its status comes back,
 * and the pidref carries a pidfd that polls readable once it has exited */
static void test_fork_plain(void **state)
{
        (void) state;
        SKIP_UNDER_VALGRIND();
        static int shared_probe = 1;
        struct pidref p = PIDREF_NULL;
        int r = process_fork(0, &p);
        if (r == 0) {
                shared_probe = 2;
                _exit(shared_probe == 2 ? 7 : 1);
        }
        assert_int_equal(r, 1);
        assert_true(pidref_is_set(&p));
        assert_true(p.fd >= 0);
        struct pollfd pp = {.fd = p.fd, .events = POLLIN};
        assert_int_equal(poll(&pp, 1, 5000), 1);
        int ws = 0;
        assert_int_equal(waitpid(p.pid, &ws, 0), p.pid);
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 7);
        assert_int_equal(shared_probe, 1);
        /* gone: a signal through the pidfd reaches nobody, never a new owner of the pid */
        assert_int_equal(pidref_kill(&p, SIGKILL), -ESRCH);
        pidref_done(&p);
        assert_false(pidref_is_set(&p));
        assert_int_equal(p.fd, -EBADF);
}

/* pidref_kill signals the child it names */
static void test_kill(void **state)
{
        (void) state;
        struct pidref p = PIDREF_NULL;
        int r = process_fork(0, &p);
        if (r == 0) {
                pause();
                _exit(0);
        }
        assert_int_equal(r, 1);
        assert_int_equal(pidref_kill(&p, SIGTERM), 0);
        int ws = 0;
        assert_int_equal(waitpid(p.pid, &ws, 0), p.pid);
        assert_true(WIFSIGNALED(ws));
        assert_int_equal(WTERMSIG(ws), SIGTERM);
        pidref_done(&p);
        struct pidref none = PIDREF_NULL;
        assert_int_equal(pidref_kill(&none, 0), -ESRCH);
        assert_int_equal(pidref_set_pid(&none, 0), -EINVAL);
}

/* FORK_SIBLING: a child of a middle process is ours (CLONE_PARENT), outlives the middle
 * and is reaped by us; FORK_DEATHSIG ties it to us, not to the middle */
static void test_sibling(void **state)
{
        (void) state;
        SKIP_UNDER_VALGRIND();
        int fds[2], go[2];
        assert_int_equal(pipe(fds), 0);
        assert_int_equal(pipe(go), 0);
        pid_t me = getpid();
        pid_t middle = fork();
        if (middle == 0) {
                struct pidref s = PIDREF_NULL;
                int r = process_fork(FORK_SIBLING | FORK_DEATHSIG, &s);
                if (r == 0) {
                        /* wait for the middle to be gone, then say who our parent is */
                        char c;
                        (void) !read(go[0], &c, 1);
                        _exit(getppid() == me ? 9 : 1);
                }
                pid_t pid = s.pid;
                (void) !write(fds[1], &pid, sizeof pid);
                _exit(r == 1 ? 0 : 1);
        }
        pid_t sib = 0;
        assert_int_equal(read(fds[0], &sib, sizeof sib), (ssize_t) sizeof sib);
        int ws = 0;
        assert_int_equal(waitpid(middle, &ws, 0), middle);
        assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
        assert_int_equal(write(go[1], "x", 1), 1);
        assert_int_equal(waitpid(sib, &ws, 0), sib);
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 9);
        close(fds[0]);
        close(fds[1]);
        close(go[0]);
        close(go[1]);
}

/* FORK_DEATHSIG: the child is killed when its parent ends (the middle process here) */
static void test_deathsig(void **state)
{
        (void) state;
        SKIP_UNDER_VALGRIND();
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        /* we reap the orphaned grandchild: it comes back to us, not to init */
        assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        pid_t middle = fork();
        if (middle == 0) {
                struct pidref c = PIDREF_NULL;
                int r = process_fork(FORK_DEATHSIG, &c);
                if (r == 0) {
                        pause();
                        _exit(0);
                }
                (void) !write(fds[1], &c.pid, sizeof c.pid);
                _exit(0);
        }
        pid_t child = 0;
        assert_int_equal(read(fds[0], &child, sizeof child), (ssize_t) sizeof child);
        int ws = 0;
        assert_int_equal(waitpid(middle, &ws, 0), middle);
        assert_int_equal(waitpid(child, &ws, 0), child);
        /* killed, or (the middle gone before it asked) ended at once by the re-check */
        assert_true((WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL) || (WIFEXITED(ws) && WEXITSTATUS(ws) == 255));
        prctl(PR_SET_CHILD_SUBREAPER, 0);
        close(fds[0]);
        close(fds[1]);
}

/* fork_detached: the child has its own session, stdio on /dev/null, the given fd as fd 3
 * and no other; it reports over that fd (its exit is not ours to see once we exit, but
 * here we still reap it) */
static void test_fork_detached(void **state)
{
        (void) state;
        int sp[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
        int extra = open("/dev/null", O_RDONLY); /* not passed: must be closed in the child */
        assert_true(extra >= 0);
        pid_t p = fork_detached(&sp[1], 1);
        if (p == 0) {
                char self[64], null[64] = "";
                int ok = getsid(0) == getpid() && fcntl(extra, F_GETFD) < 0 && fcntl(4, F_GETFD) < 0;
                ssize_t n = readlink("/proc/self/fd/0", null, sizeof null - 1);
                ok = ok && n > 0 && !strncmp(null, "/dev/null", 9);
                snprintf(self, sizeof self, "%d", ok);
                (void) !send(3, self, strlen(self), 0);
                _exit(0);
        }
        assert_true(p > 0);
        char buf[8] = "";
        assert_int_equal(recv(sp[0], buf, sizeof buf, 0), 1);
        assert_string_equal(buf, "1");
        int ws;
        assert_int_equal(waitpid(p, &ws, 0), p);
        assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
        assert_int_equal(fork_detached(sp, 9), -EINVAL);
        close(extra);
        close(sp[0]);
        close(sp[1]);
}

/* spawn_child: a pidref (pid and pidfd) once the program has exec'd; an exec that fails is
 * an error, and nothing is left */
static void test_spawn_child(void **state)
{
        (void) state;
        SKIP_UNDER_VALGRIND();
        char *argv[] = {"true", NULL};
        struct pidref p = PIDREF_NULL;
        assert_int_equal(spawn_child("/bin/true", argv, NULL, 0, &p), 0);
        assert_true(pidref_is_set(&p));
        assert_true(p.fd >= 0);
        int ws = -1;
        assert_int_equal(pidref_wait(&p, 0, &ws), 1);
        assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
        pidref_done(&p);
        assert_int_equal(spawn_child("/nonexistent/x", argv, NULL, 0, &p), -ENOENT);
        assert_false(pidref_is_set(&p)); /* written only on success */
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

/* pidref_wait: WNOHANG on a running child is 0; the status comes back as waitpid's (an
 * exit code, a signal); a child reaped already, or none of ours, is -ECHILD; a pidref
 * without a pidfd waits by pid */
static void test_wait(void **state)
{
        (void) state;
        SKIP_UNDER_VALGRIND();
        struct pidref p = PIDREF_NULL;
        int ws = -1;
        int r = process_fork(0, &p);
        if (r == 0) {
                pause();
                _exit(0);
        }
        assert_int_equal(r, 1);
        assert_int_equal(pidref_wait(&p, WNOHANG, &ws), 0);
        assert_int_equal(ws, -1); /* untouched */
        assert_int_equal(pidref_kill(&p, SIGKILL), 0);
        assert_int_equal(pidref_wait(&p, 0, &ws), 1);
        assert_true(WIFSIGNALED(ws));
        assert_int_equal(WTERMSIG(ws), SIGKILL);
        assert_int_equal(pidref_wait(&p, WNOHANG, &ws), -ECHILD);
        pidref_done(&p);

        r = process_fork(0, &p);
        if (r == 0)
                _exit(42);
        assert_int_equal(r, 1);
        close(p.fd);
        p.fd = -EBADF;
        assert_int_equal(pidref_wait(&p, 0, &ws), 1);
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 42);
        pidref_done(&p);

        struct pidref parent = PIDREF_NULL;
        assert_int_equal(pidref_set_pid(&parent, getppid()), 0);
        assert_int_equal(pidref_wait(&parent, WNOHANG, &ws), -ECHILD);
        pidref_done(&parent);
        assert_int_equal(pidref_wait(&parent, 0, &ws), -ECHILD); /* unset */
}

/* process_msg: a message and a fd come through whole; FAILED carries the error and status
 * -1; a fd nobody asked for is closed; a message of another size is none; EOF is 0 and an
 * empty socket without waiting -EAGAIN */
static void test_msg(void **state)
{
        (void) state;
        int sp[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
        struct process_msg m = {.type = PROCESS_MSG_STARTED, .pid = 42}, got;
        snprintf(m.net_addr, sizeof m.net_addr, "10.0.0.2");
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC), rfd = -EBADF;
        assert_true(fd >= 0);
        assert_int_equal(process_msg_send(sp[1], &m, fd), 0);
        assert_int_equal(process_msg_recv(sp[0], 0, &got, &rfd), 1);
        assert_int_equal(got.type, PROCESS_MSG_STARTED);
        assert_int_equal(got.pid, 42);
        assert_string_equal(got.net_addr, "10.0.0.2");
        assert_true(rfd >= 0 && rfd != fd);
        assert_true(fcntl(rfd, F_GETFD) & FD_CLOEXEC);
        close(rfd);

        struct hutch_error e = {.code = -ENOENT};
        snprintf(e.msg, sizeof e.msg, "cannot open x");
        process_msg_fail(sp[1], &e);
        rfd = -EBADF;
        assert_int_equal(process_msg_recv(sp[0], 0, &got, &rfd), 1);
        assert_int_equal(got.type, PROCESS_MSG_FAILED);
        assert_int_equal(got.status, -1);
        assert_int_equal(got.err.code, -ENOENT);
        assert_string_equal(got.err.msg, "cannot open x");
        assert_int_equal(rfd, -EBADF);

        /* a fd sent to a receiver that wants none: closed, not leaked */
        int before = dup(0);
        close(before);
        assert_int_equal(process_msg_send(sp[1], &m, fd), 0);
        assert_int_equal(process_msg_recv(sp[0], 0, &got, NULL), 1);
        int after = dup(0);
        assert_int_equal(after, before);
        close(after);

        assert_int_equal(send(sp[1], "short", 5, 0), 5);
        assert_int_equal(process_msg_recv(sp[0], 0, &got, NULL), 0);
        /* a longer one (another version's) is none either, not its first sizeof bytes */
        char longer[sizeof m + 8];
        memset(longer, 0, sizeof longer);
        assert_int_equal(send(sp[1], longer, sizeof longer, 0), (ssize_t) sizeof longer);
        assert_int_equal(process_msg_recv(sp[0], 0, &got, NULL), 0);
        assert_int_equal(process_msg_recv(sp[0], MSG_DONTWAIT, &got, NULL), -EAGAIN);
        close(sp[1]);
        assert_int_equal(process_msg_recv(sp[0], 0, &got, NULL), 0);
        close(sp[0]);
        close(fd);
}

/* The line of /proc/PID/cgroup (pid 0: ours) for cgroup v2 ("0::PATH"): PATH, or "". */
static void cgroup_v2_of(pid_t pid, char *ret, size_t size)
{
        char path[64], line[1024];
        snprintf(path, sizeof path, pid ? "/proc/%d/cgroup" : "/proc/self/cgroup", (int) pid);
        *ret = 0;
        FILE *f = fopen(path, "re");
        while (f && fgets(line, sizeof line, f))
                if (!strncmp(line, "0::", 3)) {
                        line[strcspn(line, "\n")] = 0;
                        snprintf(ret, size, "%s", line + 3);
                }
        if (f)
                fclose(f);
}

/* process_fork_into_cgroup: the child is born in the cgroup v2 folder given, and it is
 * there before it runs a line of its own; a folder that is not cgroup v2's is
 * -EOPNOTSUPP, with no child. As root with a cgroup2 mount (a folder beneath our own
 * cgroup, removed after); skips otherwise. */
static void test_fork_into_cgroup(void **state)
{
        (void) state;
        SKIP_UNDER_VALGRIND();
        char mnt[256] = "", own[512], line[2048], dir[1400], want[1024];
        FILE *mi = fopen("/proc/self/mountinfo", "re");
        while (mi && fgets(line, sizeof line, mi)) {
                char m[256], fstype[64];
                const char *dash = strstr(line, " - ");
                if (dash && sscanf(dash, " - %63s", fstype) == 1 && !strcmp(fstype, "cgroup2") &&
                    sscanf(line, "%*s %*s %*s %*s %255s", m) == 1 && !*mnt)
                        snprintf(mnt, sizeof mnt, "%s", m);
        }
        if (mi)
                fclose(mi);
        cgroup_v2_of(0, own, sizeof own);
        if (geteuid() != 0 || !*mnt || own[0] != '/') {
                skip();
                return;
        }
        snprintf(want, sizeof want, "%s/hutch-test-fork-%d", strcmp(own, "/") ? own : "", (int) getpid());
        snprintf(dir, sizeof dir, "%s%s", mnt, want);
        if (mkdir(dir, 0755) < 0) { /* a cgroup2 we may not write (a container's) */
                skip();
                return;
        }
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        struct pidref p = PIDREF_NULL;
        int r = process_fork_into_cgroup(FORK_DEATHSIG, fd, &p);
        if (r == 0) {
                char mine[1024];
                cgroup_v2_of(0, mine, sizeof mine);
                _exit(strcmp(mine, want) ? 1 : 0);
        }
        close(fd);
        if (r == -EOPNOTSUPP) { /* Linux < 5.7 */
                rmdir(dir);
                skip();
                return;
        }
        assert_int_equal(r, 1);
        assert_true(p.fd >= 0);
        int ws = 0;
        assert_int_equal(pidref_wait(&p, 0, &ws), 1);
        pidref_done(&p);
        assert_int_equal(rmdir(dir), 0);
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 0);
        /* a folder that is no cgroup's: no child, and the caller can move one in instead */
        int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_int_equal(process_fork_into_cgroup(0, root, &p), -EOPNOTSUPP);
        assert_false(pidref_is_set(&p));
        close(root);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fork_plain),
                cmocka_unit_test(test_kill),
                cmocka_unit_test(test_sibling),
                cmocka_unit_test(test_deathsig),
                cmocka_unit_test(test_fork_detached),
                cmocka_unit_test(test_spawn_child),
                cmocka_unit_test(test_wait),
                cmocka_unit_test(test_msg),
                cmocka_unit_test(test_fork_into_cgroup),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
