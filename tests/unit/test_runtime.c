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
#include "util/log.h"
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
                assert_int_equal(payload_env_script(forced, NULL, false, true, &script), 0);
                _cleanup_free_ char *out = run_wrapper(script);
                assert_string_equal(out, values[i]);
        }
        /* evaluated (the default): as the text between double quotes; none ends them early */
        static const char *const evaluated[][2] = {
                {"plain", "plain"},
                {"$(echo SUB)", "SUB"},
                {"`echo BT`", "BT"},
                {"${HUTCH_T_X}:b", "x1:b"},
                {"\\$HUTCH_T_X", "$HUTCH_T_X"},
                {"\"q\" it's", "\"q\" it's"},
                {"end\\", "end\\"},
                {"a\\\\b", "a\\b"},
                {"", ""},
                /* quotes inside $( ), ${ } and backquotes are the inner command's own */
                {"$(printf \"%s\" x)", "x"},
                {"${HUTCH_T_UNSET:-\"d\"}", "d"},
                {"$(echo \")\")", ")"},
                {"`echo \"q\"`", "q"},
                {"[$(echo 'a\"b')] \"x\"", "[a\"b] \"x\""},
        };
        setenv("HUTCH_T_X", "x1", 1);
        for (size_t i = 0; i < ELEMENTSOF(evaluated); i++) {
                _cleanup_free_ char *entry = strjoin("V=", evaluated[i][0], NULL), *script = NULL;
                char *forced[] = {entry, NULL};
                assert_int_equal(payload_env_script(forced, NULL, true, true, &script), 0);
                _cleanup_free_ char *out = run_wrapper(script);
                assert_string_equal(out, evaluated[i][1]);
        }
        /* what shell_dquote_escape() made of a value evaluates to the value itself */
        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                _cleanup_free_ char *esc = shell_dquote_escape(values[i]), *entry = strjoin("V=", esc, NULL),
                                    *script = NULL;
                char *forced[] = {entry, NULL};
                assert_int_equal(payload_env_script(forced, NULL, true, true, &script), 0);
                _cleanup_free_ char *out = run_wrapper(script);
                assert_string_equal(out, values[i]);
        }
        unsetenv("HUTCH_T_X");
        /* the caller's variables come back after the scripts where unset; a forced one wins */
        setenv("__hutch_host_keys", "V", 1);
        setenv("__HUTCH_HOST_V", "from $host 'q'", 1);
        {
                _cleanup_free_ char *script = NULL;
                char *forced[] = {NULL};
                assert_int_equal(payload_env_script(forced, NULL, true, true, &script), 0);
                _cleanup_free_ char *out = run_wrapper(script);
                assert_string_equal(out, "from $host 'q'");
        }
        {
                _cleanup_free_ char *script = NULL;
                char *forced[] = {"V=forced", NULL};
                assert_int_equal(payload_env_script(forced, NULL, true, true, &script), 0);
                _cleanup_free_ char *out = run_wrapper(script);
                assert_string_equal(out, "forced");
        }
        unsetenv("__hutch_host_keys");
        unsetenv("__HUTCH_HOST_V");
        static const char *const bad[] = {"A;echo X;B=1", "A B=1", "1A=1", "=1", "A-B=1", "$(x)=1", "NOEQUALS"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *script = NULL;
                char *forced[] = {(char *) bad[i], NULL};
                assert_int_equal(payload_env_script(forced, NULL, true, true, &script), -EINVAL);
                assert_null(script);
        }
}

static void test_caps_parse(void **state)
{
        (void) state;
        struct hutch_error e = HUTCH_ERROR_INIT;
        uint64_t m = 0;
        assert_int_equal(runtime_caps_parse("CAP_CHOWN,net_bind_service, Cap_Sys_Admin", &m, &e), 0);
        assert_true(m == ((1ull << 0) | (1ull << 10) | (1ull << 21)));
        assert_int_equal(runtime_caps_parse("checkpoint_restore", &m, &e), 0);
        assert_true(m & (1ull << 40));
        assert_int_equal(runtime_caps_parse("CAP_NOPE", &m, &e), -EINVAL);
        assert_non_null(strstr(e.msg, "CAP_NOPE"));
        m = 0;
        assert_int_equal(runtime_caps_parse("all", &m, &e), 0);
        assert_true(m == ~0ull);
}

/* Profiles compile to BPF or fail with one message naming the profile. */
static void test_seccomp_profile(void **state)
{
        (void) state;
        static const struct {
                const char *json, *msg; /* msg NULL: compiles */
        } cases[] = {
                {"{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"mkdir\", \"nosuch\"], "
                 "\"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 1}]}",
                 NULL},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"architectures\": [\"SCMP_ARCH_X86_64\"], \"syscalls\": "
                 "[{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\", \"args\": [{\"index\": 0, \"value\": "
                 "0, \"op\": \"SCMP_CMP_EQ\"}, {\"index\": 0, \"value\": 3, \"op\": \"SCMP_CMP_EQ\"}]}]}",
                 NULL},
                {"{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"name\": \"chmod\", \"action\": "
                 "\"SCMP_ACT_KILL_PROCESS\", \"includes\": {\"arches\": [\"s390x\"]}}]}",
                 NULL},
                {"{\"defaultAction\": ", "not valid JSON"},
                {"[]", "JSON object"},
                {"{\"syscalls\": []}", "defaultAction is missing"},
                {"{\"defaultAction\": 3}", "action name"},
                {"{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": {}}", "syscalls is a list"},
                {"{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"action\": \"SCMP_ACT_LOG\"}]}",
                 "names list"},
                {"{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": 70000}", "errnoRet is out of range"},
                {"{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"architectures\": [\"x86\"]}", "SCMP_ARCH_"},
                {"{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"read\"], \"action\": "
                 "\"SCMP_ACT_LOG\", \"args\": [{\"index\": 0, \"value\": 1, \"op\": \"SCMP_CMP_SIMILAR\"}]}]}",
                 "unknown operator"},
        };
        log_set_level(LOG_LEVEL_ERROR);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                struct launch_spec s = {.seccomp_json = cases[i].json, .seccomp_name = "p.json"};
                struct seccomp_prog p;
                struct hutch_error e = HUTCH_ERROR_INIT;
                int r = seccomp_prog_make(&s, &p, &e);
                if (!cases[i].msg) {
                        assert_int_equal(r, 0);
                        assert_true(p.len > 0 && p.filter);
                } else {
                        assert_true(r < 0);
                        assert_null(p.filter);
                        assert_non_null(strstr(e.msg, "p.json"));
                        assert_non_null(strstr(e.msg, cases[i].msg));
                }
                seccomp_prog_free(&p);
        }
        struct launch_spec d = {.seccomp_default = true};
        struct seccomp_prog p;
        struct hutch_error e = HUTCH_ERROR_INIT;
        assert_int_equal(seccomp_prog_make(&d, &p, &e), 0);
        assert_true(p.len > 50);
        seccomp_prog_free(&p);
        struct launch_spec none = {0};
        assert_int_equal(seccomp_prog_make(&none, &p, &e), 0);
        assert_null(p.filter);
}

static void test_ldconfig_parse(void **state)
{
        (void) state;
        static const char *const libs[] = {"libcuda.so", "libnvidia-ml.so", "libGL.so", NULL};
        const char *text = "1234 libs found in cache `/etc/ld.so.cache'\n"
                           "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1\n"
                           "\tlibcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1\n"
                           "\tlibcuda.so.1 (libc6,x86-64) => /opt/other/libcuda.so.1\n"
                           "\tlibcuda.so (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so\n"
                           "\tlibGL.so.1 (libc6,x86-64, OS ABI: Linux 3.2.0) => /usr/lib/x86_64-linux-gnu/libGL.so.1\n"
                           "\tlibnvidia-ml.so.1 (libc6) => /usr/lib/i386-linux-gnu/libnvidia-ml.so.1\n"
                           "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n"
                           "\tlibcuda.so.2 (libc6,x86-64) => relative/libcuda.so.2\n"
                           "\tlib/cuda.so (libc6,x86-64) => /x\n"
                           "\tlibcuda.so.3 (libc6,x86-64)\n"
                           "\tlibcuda.so.4 => /x (libc6,x86-64)\n"
                           "Cache generated by: ldconfig (GNU libc) stable release version 2.36";
        struct bind_spec *v = NULL;
        size_t n = 0;
        assert_int_equal(gpu_ldconfig_parse(text, libs, "x86-64", &v, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(v[0].src, "/usr/lib/x86_64-linux-gnu/libcuda.so.1");
        assert_string_equal(v[0].dst, "/.singularity.d/libs/libcuda.so.1");
        assert_true(v[0].ro);
        assert_string_equal(v[1].dst, "/.singularity.d/libs/libcuda.so");
        assert_string_equal(v[2].src, "/usr/lib/x86_64-linux-gnu/libGL.so.1");
        bind_spec_free_array(v, n);
        v = NULL;
        n = 0;
        assert_int_equal(gpu_ldconfig_parse(text, libs, NULL, &v, &n), 0);
        assert_int_equal(n, 4); /* any ABI: the i386 libnvidia-ml too */
        bind_spec_free_array(v, n);
        v = NULL;
        n = 0;
        assert_int_equal(gpu_ldconfig_parse("", libs, NULL, &v, &n), 0);
        assert_int_equal(n, 0);
        assert_null(v);
}

int main(void)
{
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_subid), cmocka_unit_test(test_env_script),
                                           cmocka_unit_test(test_caps_parse), cmocka_unit_test(test_seccomp_profile),
                                           cmocka_unit_test(test_ldconfig_parse)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
