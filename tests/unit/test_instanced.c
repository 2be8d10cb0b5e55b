/* instanced: names, restart policies, the state file format and where state lives. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "instanced/instanced-internal.h"
#include "instanced/instanced.h"
#include "util/util.h"

static void test_names(void **state)
{
        (void) state;
        static const char *const good[] = {"a",
                                           "web",
                                           "Web1",
                                           "db.main",
                                           "x_y-z",
                                           "0",
                                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
        static const char *const bad[] = {"",    "-a",
                                          ".a",  "_a",
                                          "a/b", "a b",
                                          "..",  "a\n",
                                          "é",   "a:b",
                                          "a*",  "a\\b",
                                          "a$",  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
        struct hutch_error err = HUTCH_ERROR_INIT;
        for (size_t i = 0; i < sizeof good / sizeof *good; i++)
                assert_true(instance_name_is_valid(good[i]));
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                assert_false(instance_name_is_valid(bad[i]));
        assert_false(instance_name_is_valid(NULL));
        assert_int_equal(instance_name_check("a/b", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "'a/b'"));
}

static void test_restart(void **state)
{
        (void) state;
        struct hutch_error err = HUTCH_ERROR_INIT;
        enum restart_policy p;
        unsigned n;
        assert_int_equal(restart_policy_parse("no", &p, &n, &err), 0);
        assert_int_equal(p, RESTART_NO);
        assert_int_equal(restart_policy_parse("always", &p, &n, &err), 0);
        assert_int_equal(p, RESTART_ALWAYS);
        assert_int_equal(restart_policy_parse("on-failure", &p, &n, &err), 0);
        assert_true(p == RESTART_ON_FAILURE && n == 0);
        assert_int_equal(restart_policy_parse("on-failure:5", &p, &n, &err), 0);
        assert_true(p == RESTART_ON_FAILURE && n == 5);
        const char *bad[] = {"",
                             "yes",
                             "on-failure:",
                             "on-failure:0",
                             "on-failure:-1",
                             "on-failure:x",
                             "on-failure:5x",
                             "always:3",
                             "On-failure"};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                assert_int_equal(restart_policy_parse(bad[i], &p, &n, &err), -EINVAL);
}

static void test_ready(void **state)
{
        (void) state;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct instance_ready r;
        assert_int_equal(instance_ready_parse(NULL, NULL, &r, &err), 0);
        assert_int_equal(r.kind, INSTANCE_READY_NONE);
        assert_int_equal(instance_ready_parse("notify", NULL, &r, &err), 0);
        assert_true(r.kind == INSTANCE_READY_NOTIFY && r.timeout_ms == INSTANCE_READY_TIMEOUT_DEFAULT_MS);
        assert_int_equal(instance_ready_parse("tcp:8080", "2.5", &r, &err), 0);
        assert_true(r.kind == INSTANCE_READY_TCP && r.port == 8080 && r.timeout_ms == 2500);
        assert_int_equal(instance_ready_parse("tcp:65535", "240", &r, &err), 0);
        assert_true(r.port == 65535 && r.timeout_ms == 240000);
        assert_int_equal(instance_ready_parse("exec:pg_isready -q", NULL, &r, &err), 0);
        assert_true(r.kind == INSTANCE_READY_EXEC && !strcmp(r.cmd, "pg_isready -q"));
        const char *bad[][2] = {{"bogus", NULL},   {"tcp:0", NULL},   {"tcp:65536", NULL}, {"tcp:", NULL},
                                {"tcp:-1", NULL},  {"tcp:80x", NULL}, {"exec:", NULL},     {"exec:  ", NULL},
                                {"Notify", NULL},  {"notify", "-1"},  {"notify", "0"},     {"notify", "241"},
                                {"notify", "nan"}, {"notify", "inf"}, {"notify", "1s"},    {"notify", ""},
                                {NULL, "5"},       {"tcp: 80", NULL}};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                assert_int_equal(instance_ready_parse(bad[i][0], bad[i][1], &r, &err), -EINVAL);
}

static void test_state_roundtrip(void **state)
{
        (void) state;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct instance_state st = {.name = strdup("web"),
                                    .pid = 1234,
                                    .pid_start = 987654321ULL,
                                    .supervisor = 1200,
                                    .supervisor_start = 987654000ULL,
                                    .uid = 1000,
                                    .image = strdup("/data/images/jupyter with space.sif"),
                                    .started = 1790000000LL,
                                    .restarts = 3,
                                    .restart = strdup("on-failure:5"),
                                    .log_out = strdup("/home/u/.hutch/logs/h/web.out"),
                                    .log_err = strdup("/home/u/.hutch/logs/h/web.err"),
                                    .home = strdup("/home/with space\nand newline")};
        char *text = NULL;
        assert_int_equal(instance_state_format(&st, &text), 0);
        struct instance_state back;
        assert_int_equal(instance_state_parse(text, &back, &err), 0);
        assert_string_equal(back.name, "web");
        assert_int_equal(back.pid, 1234);
        assert_true(back.pid_start == 987654321ULL && back.supervisor_start == 987654000ULL);
        assert_int_equal(back.supervisor, 1200);
        assert_int_equal(back.uid, 1000);
        assert_string_equal(back.image, st.image);
        assert_true(back.started == 1790000000LL);
        assert_int_equal(back.restarts, 3);
        assert_string_equal(back.restart, "on-failure:5");
        assert_string_equal(back.log_err, st.log_err);
        assert_string_equal(back.job, "");
        assert_int_equal(back.job_pid, 0);
        assert_string_equal(back.home, st.home);
        free(text);
        instance_state_clear(&back);
        st.job = strdup("4242");
        st.job_pid = 777;
        assert_int_equal(instance_state_format(&st, &text), 0);
        assert_int_equal(instance_state_parse(text, &back, &err), 0);
        assert_string_equal(back.job, "4242");
        assert_int_equal(back.job_pid, 777);
        assert_string_equal(back.keeper, "");
        free(text);
        instance_state_clear(&back);
        st.keeper = strdup("systemd");
        st.unit = strdup("hutch-db\\x2d1.service");
        assert_int_equal(instance_state_format(&st, &text), 0);
        assert_int_equal(instance_state_parse(text, &back, &err), 0);
        assert_string_equal(back.keeper, "systemd");
        assert_string_equal(back.unit, st.unit);
        assert_string_equal(back.limits, "");
        assert_string_equal(back.digest, "");
        free(text);
        instance_state_clear(&back);
        st.limits = strdup("memory=1G,cpus=0.5");
        st.digest = strdup("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_int_equal(instance_state_format(&st, &text), 0);
        assert_int_equal(instance_state_parse(text, &back, &err), 0);
        assert_string_equal(back.limits, st.limits);
        assert_string_equal(back.digest, st.digest);
        free(text);
        instance_state_clear(&back);
        /* any byte of a path is representable, and none forges a line */
        free(st.image);
        st.image = strdup("/x\npid=1\t%41%\r\x7f\x01\xc3\xa9=");
        assert_int_equal(instance_state_format(&st, &text), 0);
        assert_null(strstr(text, "\npid=1\t"));
        assert_int_equal(instance_state_parse(text, &back, &err), 0);
        assert_string_equal(back.image, st.image);
        assert_int_equal(back.pid, 1234);
        free(text);
        instance_state_clear(&back);
        instance_state_clear(&st);
}

static void test_state_parse_bad(void **state)
{
        (void) state;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct instance_state st;
        /* unknown keys are a newer writer's: ignored */
        assert_int_equal(instance_state_parse("name=a\npid=2\nsupervisor=1\nfuture_key=x\n", &st, &err), 0);
        instance_state_clear(&st);
        const char *bad[] = {
                "",
                "pid=2\nsupervisor=1\n",
                "name=a\nsupervisor=1\n",
                "name=a\npid=2\n",
                "name=../x\npid=2\nsupervisor=1\n",
                "name=a\npid=-2\nsupervisor=1\n",
                "name=a\npid=0\nsupervisor=1\n",
                "name=a\npid=2x\nsupervisor=1\n",
                "name=a\npid=99999999999999999999\nsupervisor=1\n",
                "name=a\npid=2\nsupervisor=1\nrestarts=5000000000\n",
                /* read as negative, it would be written as a value that does not read back */
                "name=a\npid=2\nsupervisor=1\nstarted=9223372036854775808\n",
                "name=a\npid=2\nsupervisor=1\ngarbage line\n",
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                assert_true(instance_state_parse(bad[i], &st, &err) < 0);
}

static void test_paths(void **state)
{
        (void) state;
        char *p = NULL, *o = NULL, *e = NULL, host[256], **v = NULL;
        gethostname(host, sizeof host);
        char base[] = "/tmp/run-user.XXXXXX", xdg[] = "/tmp/xdg.XXXXXX", run[600];
        assert_non_null(mkdtemp(base));
        assert_non_null(mkdtemp(xdg));
        struct instance_env env = {.uid = getuid(), .xdg_runtime_dir = NULL, .home = "/home/u", .runtime_base = base};
        assert_int_equal(instance_state_root(&env, &p), 0);
        char want[600];
        snprintf(want, sizeof want, "/home/u/.hutch/instances/%s", host);
        assert_string_equal(p, want);
        free(p);
        /* XDG_RUNTIME_DIR, set or not, does not move new instances: it is only looked in */
        env.xdg_runtime_dir = xdg;
        assert_int_equal(instance_state_root(&env, &p), 0);
        assert_string_equal(p, want);
        free(p);
        assert_int_equal(instance_state_roots(&env, &v), 0);
        assert_int_equal(strv_length(v), 2);
        assert_string_equal(v[0], want);
        snprintf(run, sizeof run, "%s/hutch/instances", xdg);
        assert_string_equal(v[1], run);
        strv_free(v);
        /* the user's runtime folder, where it exists, whatever the environment says */
        snprintf(run, sizeof run, "%s/%u", base, (unsigned) getuid());
        assert_int_equal(mkdir(run, 0700), 0);
        env.xdg_runtime_dir = NULL;
        assert_int_equal(instance_state_root(&env, &p), 0);
        strcat(run, "/hutch/instances");
        assert_string_equal(p, run);
        free(p);
        assert_int_equal(instance_state_roots(&env, &v), 0);
        assert_int_equal(strv_length(v), 2);
        assert_string_equal(v[0], run);
        assert_string_equal(v[1], want);
        strv_free(v);
        *strrchr(run, '/') = 0;
        *strrchr(run, '/') = 0;
        rmdir(run);
        rmdir(base);
        rmdir(xdg);
        assert_int_equal(instance_log_paths(&env, "web", &o, &e), 0);
        snprintf(want, sizeof want, "/home/u/.hutch/logs/%s/web.err", host);
        assert_string_equal(e, want);
        free(o);
        free(e);
        env.home = NULL;
        assert_int_equal(instance_state_root(&env, &p), -ENOENT);
}

/* NAME <-> hutch-NAME.service as systemd-escape does it; limits as unit properties */
static void test_units(void **state)
{
        (void) state;
        char buf[300], back[80];
        assert_int_equal(instance_unit_name("web", buf, sizeof buf), 0);
        assert_string_equal(buf, "hutch-web.service");
        assert_int_equal(instance_unit_name("db-1.x_y", buf, sizeof buf), 0);
        assert_string_equal(buf, "hutch-db\\x2d1.x_y.service");
        assert_int_equal(instance_unit_name_parse(buf, back, sizeof back), 0);
        assert_string_equal(back, "db-1.x_y");
        assert_int_equal(instance_unit_name("-bad", buf, sizeof buf), -EINVAL);
        assert_int_equal(instance_unit_name("web", buf, 12), -ENAMETOOLONG);
        assert_int_equal(instance_unit_name_parse("hutch-.service", back, sizeof back), -EINVAL);
        assert_int_equal(instance_unit_name_parse("other-web.service", back, sizeof back), -EINVAL);
        assert_int_equal(instance_unit_name_parse("hutch-a\\x2.service", back, sizeof back), -EINVAL);
        assert_int_equal(instance_unit_name_parse("hutch-a\\x2fb.service", back, sizeof back), -EINVAL);
        assert_int_equal(instance_unit_name_parse("hutch-web.scope", back, sizeof back), -EINVAL);
        /* --in-unit: only a hutch-run-*.service whose cgroup holds this process (it is not) */
        assert_false(instance_batch_unit_is_own("hutch-run-1-0.service"));
        assert_false(instance_batch_unit_is_own("other.service"));
        assert_false(instance_batch_unit_is_own("hutch-run-1-0.scope"));
        assert_false(instance_batch_unit_is_own("hutch-run-/../x.service"));
        assert_false(instance_batch_unit_is_own(""));

        struct hutch_error err = HUTCH_ERROR_INIT;
        enum instance_systemd m;
        assert_int_equal(instance_systemd_parse(NULL, &m, &err), 0);
        assert_int_equal(m, INSTANCE_SYSTEMD_AUTO);
        assert_int_equal(instance_systemd_parse("yes", &m, &err), 0);
        assert_int_equal(m, INSTANCE_SYSTEMD_YES);
        assert_int_equal(instance_systemd_parse("maybe", &m, &err), -EINVAL);

        struct cgroup_limits l;
        cgroup_limits_init(&l);
        assert_int_equal(cgroup_limit_flag(&l, "memory", "1G", &err), 0);
        assert_int_equal(cgroup_limit_flag(&l, "cpus", "0.5", &err), 0);
        assert_int_equal(cgroup_limit_flag(&l, "pids-limit", "100", &err), 0);
        assert_int_equal(cgroup_limit_flag(&l, "cpuset-cpus", "0-1", &err), 0);
        char **v = NULL;
        assert_int_equal(instance_unit_limit_props(&l, &v), 0);
        assert_non_null(v);
        assert_true(strv_contains(v, "MemoryMax=t:1073741824"));
        assert_true(strv_contains(v, "CPUQuotaPerSecUSec=t:500000"));
        assert_true(strv_contains(v, "TasksMax=t:100"));
        assert_true(strv_contains(v, "AllowedCPUs=cpus:0-1"));
        assert_string_equal(v[0], "-p");
        strv_free(v);
        cgroup_limits_free(&l);
}

/* the journal's native protocol: KEY=VALUE lines, the binary form for a value with a newline */
static void test_audit(void **state)
{
        (void) state;
        struct instance_audit a = {.event = "exit",
                                   .instance = "web",
                                   .user = "alice",
                                   .image = "/x/a\nb.sif",
                                   .unit = "hutch-web.service",
                                   .uid = 1000,
                                   .pid = 42,
                                   .exit_status = 137};
        char *buf = NULL;
        size_t len = 0;
        assert_int_equal(instance_audit_format(&a, &buf, &len), 0);
        assert_non_null(memmem(buf, len, "\nHUTCH_INSTANCE=web\n", 20));
        assert_non_null(memmem(buf, len, "\nHUTCH_USER=alice\n", 18));
        assert_non_null(memmem(buf, len, "\nHUTCH_EXIT_STATUS=137\n", 23));
        assert_non_null(memmem(buf, len, "\nHUTCH_KEEPER=hutch\n", 20));
        assert_non_null(memmem(buf, len, "\nHUTCH_UNIT=hutch-web.service\n", 30));
        assert_non_null(memmem(buf, len, "\nHUTCH_IMAGE\n\x0a\0\0\0\0\0\0\0/x/a\nb.sif\n", 29));
        assert_true(startswith(buf, "MESSAGE=instance web of alice: exit (status 137)\n"));
        assert_null(memmem(buf, len, "HUTCH_IMAGE_DIGEST", 18)); /* none known: no field */
        assert_null(memmem(buf, len, "HUTCH_LIMITS", 12));
        assert_null(memmem(buf, len, "HUTCH_REQUESTED_BY", 18)); /* uid 0 is not "nobody asked" */
        free(buf);
        a.requested = true; /* root asked */
        assert_int_equal(instance_audit_format(&a, &buf, &len), 0);
        assert_non_null(memmem(buf, len, "\nHUTCH_REQUESTED_BY=0\n", 22));
        free(buf);
        a.requested = false;
        a.image_digest = "sha256:00ff";
        a.limits = "memory=1G";
        assert_int_equal(instance_audit_format(&a, &buf, &len), 0);
        assert_non_null(memmem(buf, len, "\nHUTCH_IMAGE_DIGEST=sha256:00ff\n", 32));
        assert_non_null(memmem(buf, len, "\nHUTCH_LIMITS=memory=1G\n", 24));
        free(buf);
        a.exit_status = -1;
        assert_int_equal(instance_audit_format(&a, &buf, &len), 0);
        assert_null(memmem(buf, len, "HUTCH_EXIT_STATUS", 17));
        assert_null(memmem(buf, len, "HUTCH_VERB", 10));
        free(buf);
        /* a batch run's (hutch.conf 'audit batch runs'): its verb, no instance or keeper */
        struct instance_audit b = {.event = "end",
                                   .verb = "exec",
                                   .user = "alice",
                                   .image = "/x/a.sif",
                                   .uid = 1000,
                                   .pid = 7,
                                   .exit_status = 3};
        assert_int_equal(instance_audit_format(&b, &buf, &len), 0);
        assert_true(startswith(buf, "MESSAGE=exec of alice: end (status 3)\n"));
        assert_non_null(memmem(buf, len, "\nHUTCH_VERB=exec\n", 17));
        assert_non_null(memmem(buf, len, "\nHUTCH_EXIT_STATUS=3\n", 21));
        assert_null(memmem(buf, len, "HUTCH_INSTANCE", 14));
        assert_null(memmem(buf, len, "HUTCH_KEEPER", 12));
        free(buf);
}

/* what `exec instance://` inherits from the start: its seccomp profile and privilege flags,
 * unless the joining command gives its own */
static void test_security(void **state)
{
        (void) state;
        char *f = NULL;
        struct launch_spec a = {.seccomp_json = "{}", .keep_privs = true, .add_caps = 0x200000, .drop_caps = 0x1};
        assert_int_equal(instance_security_format(&a, &f), 0);
        assert_string_equal(f, "seccomp=file keep-privs add-caps=200000 drop-caps=1");
        struct launch_spec j = {0};
        assert_int_equal(instance_security_apply(f, "{\"defaultAction\": \"SCMP_ACT_ALLOW\"}", &j), 0);
        assert_non_null(j.seccomp_json);
        assert_true(j.keep_privs && j.add_caps == 0x200000 && j.drop_caps == 0x1 && !j.no_privs);
        /* the profile kept beside the state is gone: an error, never a join without it */
        struct launch_spec k = {0};
        assert_int_equal(instance_security_apply(f, NULL, &k), -ENOENT);
        free(f);
        /* the command's own settings win */
        struct launch_spec d = {.seccomp_default = true, .no_privs = true};
        assert_int_equal(instance_security_format(&d, &f), 0);
        assert_string_equal(f, "seccomp=default no-privs");
        struct launch_spec own = {.seccomp_json = "mine", .drop_caps = 0x4};
        assert_int_equal(instance_security_apply(f, NULL, &own), 0);
        assert_string_equal(own.seccomp_json, "mine");
        assert_false(own.seccomp_default || own.no_privs);
        assert_true(own.drop_caps == 0x4);
        free(f);
        /* none; unknown words skipped; a bad number refused */
        struct launch_spec none = {0};
        assert_int_equal(instance_security_format(&none, &f), 0);
        assert_string_equal(f, "");
        free(f);
        assert_int_equal(instance_security_apply("future-word seccomp=default", NULL, &none), 0);
        assert_true(none.seccomp_default);
        assert_int_equal(instance_security_apply("add-caps=zz", NULL, &none), -EINVAL);
        assert_int_equal(instance_security_apply(NULL, NULL, &none), 0);
}

/* instance_claim: a start refused after its state folder was made and locked (hutch.conf
 * 'max instances') leaves no folder; a live instance's folder is never touched by a second
 * start of its name. */
static void test_claim(void **state)
{
        (void) state;
        char home[] = "/tmp/claim-home.XXXXXX", base[] = "/tmp/claim-run.XXXXXX", host[256], path[800];
        assert_non_null(mkdtemp(home));
        assert_non_null(mkdtemp(base));
        gethostname(host, sizeof host);
        struct instance_env env = {.uid = getuid(), .home = home, .runtime_base = base};
        struct hutch_error err = HUTCH_ERROR_INIT;
        int root = -EBADF, dir = -EBADF, lock = -EBADF, root2 = -EBADF, dir2 = -EBADF, lock2 = -EBADF;
        struct stat st;
        assert_int_equal(instance_claim(&env, "first", 0, &root, &dir, &lock, &err), 0);
        assert_int_equal(instance_claim(&env, "second", 1, &root2, &dir2, &lock2, &err), -EUSERS);
        assert_non_null(strstr(err.msg, "max instances"));
        snprintf(path, sizeof path, "%s/.hutch/instances/%s/second", home, host);
        assert_int_equal(stat(path, &st), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(root2, -EBADF);
        assert_true(instance_claim(&env, "first", 0, &root2, &dir2, &lock2, &err) < 0);
        snprintf(path, sizeof path, "%s/.hutch/instances/%s/first/lock", home, host);
        assert_int_equal(stat(path, &st), 0);
        instance_dir_remove(root, dir, "first");
        close(root);
        close(dir);
        close(lock);
        *strrchr(path, '/') = 0;         /* .../HOST/first, removed above */
        for (int up = 0; up < 3; up++) { /* the folders the claim made: HOST, instances, .hutch */
                *strrchr(path, '/') = 0;
                assert_int_equal(rmdir(path), 0);
        }
        assert_int_equal(rmdir(home), 0);
        assert_int_equal(rmdir(base), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),           cmocka_unit_test(test_restart),
                cmocka_unit_test(test_state_roundtrip), cmocka_unit_test(test_state_parse_bad),
                cmocka_unit_test(test_paths),           cmocka_unit_test(test_units),
                cmocka_unit_test(test_audit),           cmocka_unit_test(test_ready),
                cmocka_unit_test(test_security),        cmocka_unit_test(test_claim),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
