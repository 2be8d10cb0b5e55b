/* conf: hutch.conf, bind and --mount specs, env files, --no-mount names. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "conf/conf.h"
#include "util/log.h"
#include "util/util.h"

static void test_conf_parse(void **state)
{
        (void) state;
        struct hutch_conf c;
        struct hutch_error e = HUTCH_ERROR_INIT;
        conf_defaults(&c);
        assert_true(c.mount_home);
        assert_int_equal(conf_parse_string(&c,
                                           "# comment\nmount home = no\nmount dev = minimal\nbind path = /a\n"
                                           "bind path = /b:/c:ro\nallow container sif = no\n",
                                           "t.conf", &e),
                         0);
        assert_false(c.mount_home);
        assert_int_equal(c.mount_dev, MOUNT_DEV_MINIMAL);
        assert_false(c.allow_sif);
        assert_true(c.allow_squashfs);
        assert_int_equal(strv_length(c.bind_paths), 2);
        assert_string_equal(c.bind_paths[1], "/b:/c:ro");
        assert_int_equal(c.n_warnings, 0);
        conf_free(&c);
}

static void test_conf_warnings(void **state)
{
        (void) state;
        struct hutch_conf c;
        struct hutch_error e = HUTCH_ERROR_INIT;
        conf_defaults(&c);
        log_set_level(LOG_LEVEL_ERROR);
        assert_int_equal(conf_parse_string(&c, "bogus key = 1\nmount tmp = perhaps\nmount home = no\n", "t", &e), 0);
        assert_int_equal(c.n_warnings, 2);
        assert_true(c.mount_tmp);   /* bad value: default kept */
        assert_false(c.mount_home); /* later lines still read */
        conf_free(&c);
}

static void test_conf_numbers(void **state)
{
        (void) state;
        struct hutch_conf c;
        struct hutch_error e = HUTCH_ERROR_INIT;
        conf_defaults(&c);
        log_set_level(LOG_LEVEL_ERROR);
        assert_int_equal(conf_parse_string(&c,
                                           "instance ready timeout = nan\nfile cache size = inf\n"
                                           "instance log max size = 0x10M\ninstance ready timeout = 99999999999\n"
                                           "file cache size = 1e3\n",
                                           "t", &e),
                         0);
        assert_int_equal(c.n_warnings, 5);
        assert_int_equal(c.instance_ready_timeout, 1000);
        assert_int_equal(c.file_cache_size, 128 << 20);
        assert_int_equal(c.instance_log_max_size, 10 << 20);
        assert_int_equal(conf_parse_string(&c, "instance ready timeout = 2500\n", "t", &e), 0);
        assert_int_equal(c.instance_ready_timeout, 2500);
        conf_free(&c);
}

static void test_conf_file(void **state)
{
        (void) state;
        struct hutch_conf c;
        struct hutch_error e = HUTCH_ERROR_INIT;
        char *t = NULL;
        conf_defaults(&c);
        assert_int_equal(conf_load(&c, "/dev/zero", &e), -EBADFD);
        assert_non_null(strstr(e.msg, "not a regular file"));
        assert_int_equal(conf_load(&c, "/", &e), -EISDIR);
        assert_non_null(strstr(e.msg, "is a folder"));
        assert_int_equal(conf_load(&c, "/nonexistent/hutch.conf", &e), -ENOENT);
        assert_int_equal(conf_file_read("/dev/full", 10, "env file", &t, &e), -EBADFD);
        assert_non_null(strstr(e.msg, "env file '/dev/full'"));
        /* /dev/null names none: empty */
        assert_int_equal(conf_file_read("/dev/null", 10, "env file", &t, &e), 0);
        assert_string_equal(t, "");
        free(t);
        conf_free(&c);
}

static void test_bind_spec(void **state)
{
        (void) state;
        struct bind_spec *b = NULL;
        size_t n = 0;
        struct hutch_error e = HUTCH_ERROR_INIT;
        assert_int_equal(bind_spec_parse("/a,/b:/c,/d:/e:ro,/f:/g:rw", &b, &n, &e), 0);
        assert_int_equal(n, 4);
        assert_string_equal(b[0].src, "/a");
        assert_string_equal(b[0].dst, "/a");
        assert_string_equal(b[1].dst, "/c");
        assert_false(b[1].ro);
        assert_true(b[2].ro);
        assert_false(b[3].ro);
        bind_spec_free_array(b, n);
}

static void test_bind_spec_errors(void **state)
{
        (void) state;
        static const char *const bad[] = {"/a:rel", "", "/a:/b:xx", "/a:/b:ro:extra", ":/b", "/a:", "relative"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct bind_spec *b = NULL;
                size_t n = 0;
                struct hutch_error e = HUTCH_ERROR_INIT;
                assert_true(bind_spec_parse(bad[i], &b, &n, &e) < 0);
                assert_true(e.msg[0] != 0);
                bind_spec_free_array(b, n);
        }
}

static void test_mount_spec(void **state)
{
        (void) state;
        struct bind_spec *b = NULL;
        size_t n = 0;
        struct hutch_error e = HUTCH_ERROR_INIT;
        assert_int_equal(mount_spec_parse("type=bind,source=/s,destination=/d,readonly", &b, &n, &e), 0);
        assert_int_equal(mount_spec_parse("type=bind,src=/s2,dst=/d2", &b, &n, &e), 0);
        assert_int_equal(n, 2);
        assert_true(b[0].ro);
        assert_false(b[1].ro);
        assert_string_equal(b[1].dst, "/d2");
        assert_true(mount_spec_parse("type=tmpfs,dst=/x", &b, &n, &e) < 0);
        assert_true(mount_spec_parse("type=bind,src=/s", &b, &n, &e) < 0);
        assert_true(mount_spec_parse("type=bind,src=/s,dst=/d,color=red", &b, &n, &e) < 0);
        assert_int_equal(n, 2);
        bind_spec_free_array(b, n);
}

static void test_env_file(void **state)
{
        (void) state;
        char **env = NULL;
        struct hutch_error e = HUTCH_ERROR_INIT;
        assert_int_equal(env_file_parse("# c\n\nA=1\nexport B=two words # comment\nC=\"q \\\"x\\\"\"\nD='s $x'\nA=2\n",
                                        "f", &env, &e),
                         0);
        assert_string_equal(strv_env_get(env, "A"), "2");
        assert_string_equal(strv_env_get(env, "B"), "two words");
        assert_string_equal(strv_env_get(env, "C"), "q \"x\"");
        assert_string_equal(strv_env_get(env, "D"), "s $x");
        strv_free(env);
        env = NULL;
        assert_true(env_file_parse("A=1\nnot a line\n", "f.env", &env, &e) < 0);
        assert_non_null(strstr(e.msg, "f.env:2"));
        strv_free(env);
        env = NULL;
        assert_true(env_file_parse("A=\"open\n", "g", &env, &e) < 0);
        assert_non_null(strstr(e.msg, "g:1"));
        strv_free(env);
        env = NULL;
        assert_true(env_file_parse("1A=x\n", "h", &env, &e) < 0);
        strv_free(env);
}

static void test_no_mount(void **state)
{
        (void) state;
        unsigned m = 0;
        struct hutch_error e = HUTCH_ERROR_INIT;
        assert_int_equal(no_mount_parse("home,tmp,/etc/hosts,bind-paths", &m, &e), 0);
        assert_int_equal(m, NO_MOUNT_HOME | NO_MOUNT_TMP | NO_MOUNT_HOSTS | NO_MOUNT_BIND_PATHS);
        assert_true(no_mount_parse("home,bogus", &m, &e) < 0);
        assert_non_null(strstr(e.msg, "'bogus'"));
}

static void test_conf_instance(void **state)
{
        (void) state;
        struct hutch_conf c;
        struct hutch_error e = HUTCH_ERROR_INIT;
        conf_defaults(&c);
        assert_true(c.instance_log_max_size == 10u << 20 && c.instance_ready_timeout == 1000);
        assert_int_equal(conf_parse_string(&c, "instance log max size = 512K\ninstance ready timeout = 250\n", "t", &e),
                         0);
        assert_true(c.instance_log_max_size == 512u << 10 && c.instance_ready_timeout == 250);
        assert_int_equal(conf_parse_string(&c, "instance log max size = lots\ninstance ready timeout = 1s\n", "t", &e),
                         0);
        assert_int_equal(c.n_warnings, 2);
        assert_true(c.instance_log_max_size == 512u << 10 && c.instance_ready_timeout == 250);
        /* the decompressed-file cache's cap: 128M unless set; 0 turns it off */
        assert_true(c.file_cache_size == 128u << 20);
        assert_int_equal(conf_parse_string(&c, "file cache size = 0\n", "t", &e), 0);
        assert_true(c.file_cache_size == 0);
        assert_int_equal(conf_parse_string(&c, "file cache size = 1G\nfile cache size = big\n", "t", &e), 0);
        assert_true(c.file_cache_size == 1u << 30 && c.n_warnings == 3);
        conf_free(&c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_conf_parse),       cmocka_unit_test(test_conf_warnings),
                cmocka_unit_test(test_conf_numbers),     cmocka_unit_test(test_conf_file),
                cmocka_unit_test(test_conf_instance),    cmocka_unit_test(test_bind_spec),
                cmocka_unit_test(test_bind_spec_errors), cmocka_unit_test(test_mount_spec),
                cmocka_unit_test(test_env_file),         cmocka_unit_test(test_no_mount),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
