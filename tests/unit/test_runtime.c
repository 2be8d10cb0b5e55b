/* runtime: the pure parts (subordinate id lookup, the env wrapper's shell text). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "runtime/runtime-internal.h"
#include "runtime/runtime.h"
#include "util/util.h"

static void test_subid(void **state)
{
        (void) state;
        const char *text = "# comment\nalice:100000:65536\n1001:200000:1000\nbob:bad:1\ncarol:300000:0\n";
        unsigned long s = 0, n = 0;
        assert_int_equal(subid_find(text, "alice", 1000, &s, &n), 0);
        assert_int_equal(s, 100000);
        assert_int_equal(n, 65536);
        assert_int_equal(subid_find(text, "dave", 1001, &s, &n), 0);
        assert_int_equal(s, 200000);
        assert_int_equal(subid_find(text, "bob", 5, &s, &n), -ENOENT);
        assert_int_equal(subid_find(text, "carol", 6, &s, &n), -ENOENT);
        assert_int_equal(subid_find("", "alice", 1, &s, &n), -ENOENT);
}

/* Run the wrapper with /bin/sh as the runtime does, the payload printing $V; its output. */
static char *run_wrapper(const char *script)
{
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                dup2(p[1], 1);
                close(p[0]);
                /* the image env scripts the wrapper sources are absent here */
                execl("/bin/sh", "/bin/sh", "-c", script, "hutch", "/bin/sh", "-c", "printf %s \"$V\"", (char *) NULL);
                _exit(127);
        }
        close(p[1]);
        char buf[4096];
        size_t len = 0;
        ssize_t n;
        while ((n = read(p[0], buf + len, sizeof buf - 1 - len)) > 0)
                len += n;
        buf[len] = 0;
        close(p[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        return strdup(buf);
}

static void test_env_script(void **state)
{
        static const char *const values[] = {
                "plain", "it's", "\"dq\"", "$(echo SUB)", "`echo BT`", "a\nb", "$HOME \\ ; echo X", "'", "",
        };
        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                _cleanup_free_ char *entry = strjoin("V=", values[i], NULL), *script = NULL;
                char *forced[] = {entry, NULL};
                assert_int_equal(payload_env_script(forced, &script), 0);
                _cleanup_free_ char *out = run_wrapper(script);
                assert_string_equal(out, values[i]);
        }
        static const char *const bad[] = {"A;echo X;B=1", "A B=1", "1A=1", "=1", "A-B=1", "$(x)=1", "NOEQUALS"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *script = NULL;
                char *forced[] = {(char *) bad[i], NULL};
                assert_int_equal(payload_env_script(forced, &script), -EINVAL);
                assert_null(script);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_subid), cmocka_unit_test(test_env_script)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
