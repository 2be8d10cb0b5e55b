/* conf: hutch.conf, bind and --mount specs, env files, --no-mount names. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
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
        /* empty specs bind nothing, as Apptainer's */
        b = NULL;
        n = 0;
        assert_int_equal(bind_spec_parse("", &b, &n, &e), 0);
        assert_int_equal(bind_spec_parse(",,", &b, &n, &e), 0);
        assert_int_equal(n, 0);
        assert_null(b);
        /* options after a comma: an ro among them wins, as Apptainer's */
        assert_int_equal(bind_spec_parse("/d:/e:ro,rw,/f:/g:rw,ro", &b, &n, &e), 0);
        assert_int_equal(n, 2);
        assert_true(b[0].ro);
        assert_true(b[1].ro);
        bind_spec_free_array(b, n);
        /* blanks around each spec are trimmed, as Apptainer's TrimSpace */
        b = NULL;
        n = 0;
        assert_int_equal(bind_spec_parse(" /a:/b , /c:/d:ro,\t/e ,  ,rw ", &b, &n, &e), 0);
        assert_int_equal(n, 3);
        assert_string_equal(b[0].src, "/a");
        assert_string_equal(b[0].dst, "/b");
        assert_string_equal(b[1].src, "/c");
        assert_true(b[1].ro);
        assert_string_equal(b[2].src, "/e");
        assert_string_equal(b[2].dst, "/e");
        assert_false(b[2].ro);
        bind_spec_free_array(b, n);
}

static void test_bind_spec_errors(void **state)
{
        (void) state;
        static const char *const bad[] = {"/a:rel", "/a:/b:xx", "/a:/b:ro:extra", ":/b", "/a:", "relative"};
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
                                        "f", NULL, &env, &e),
                         0);
        assert_string_equal(strv_env_get(env, "A"), "2");
        assert_string_equal(strv_env_get(env, "B"), "two words");
        assert_string_equal(strv_env_get(env, "C"), "q \"x\"");
        assert_string_equal(strv_env_get(env, "D"), "s $x");
        strv_free(env);
        env = NULL;
        assert_true(env_file_parse("A=1\nnot a line\n", "f.env", NULL, &env, &e) < 0);
        assert_non_null(strstr(e.msg, "f.env:2"));
        strv_free(env);
        env = NULL;
        assert_true(env_file_parse("A=\"open\n", "g", NULL, &env, &e) < 0);
        assert_non_null(strstr(e.msg, "g:1"));
        strv_free(env);
        env = NULL;
        assert_true(env_file_parse("1A=x\n", "h", NULL, &env, &e) < 0);
        strv_free(env);
        env = NULL;
        /* $NAME/${NAME}: the file's own above, else the host's; literal in single quotes */
        char *host[] = {"HOME=/home/u", "USER=u", NULL};
        assert_int_equal(env_file_parse("A=$HOME/x\nB=\"${USER}-$A\"\nC='$HOME'\nD=a$\nE=\\$HOME\nF=$NOPE.\n", "i",
                                        host, &env, &e),
                         0);
        assert_string_equal(strv_env_get(env, "A"), "/home/u/x");
        assert_string_equal(strv_env_get(env, "B"), "u-/home/u/x");
        assert_string_equal(strv_env_get(env, "C"), "$HOME");
        assert_string_equal(strv_env_get(env, "D"), "a$");
        assert_string_equal(strv_env_get(env, "E"), "$HOME");
        assert_string_equal(strv_env_get(env, "F"), ".");
        strv_free(env);
        static const char *const cmds[] = {"A=$(id)\n", "A=\"`id`\"\n", "A=`id`\n", "A=${X:-y}\n", "A=${\n"};
        for (size_t i = 0; i < ELEMENTSOF(cmds); i++) {
                env = NULL;
                assert_true(env_file_parse(cmds[i], "j", host, &env, &e) == -EINVAL);
                assert_non_null(strstr(e.msg, "j:1"));
                strv_free(env);
        }
}

static void test_no_mount(void **state)
{
        (void) state;
        unsigned m = 0;
        struct hutch_error e = HUTCH_ERROR_INIT;
        char **paths = NULL;
        assert_int_equal(no_mount_parse("home,tmp,/etc/hosts,bind-paths,/etc/localtime", &m, &paths, &e), 0);
        assert_int_equal(m, NO_MOUNT_HOME | NO_MOUNT_TMP | NO_MOUNT_HOSTS | NO_MOUNT_BIND_PATHS);
        assert_non_null(paths);
        assert_string_equal(paths[0], "/etc/localtime"); /* a bind path's destination */
        assert_null(paths[1]);
        m = 0;
        assert_int_equal(no_mount_parse("home,bogus", &m, &paths, &e), 0); /* a warning, as Apptainer */
        assert_int_equal(m, NO_MOUNT_HOME);
        assert_null(paths[1]);
        strv_free(paths);
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

/* 'sessiondir max size': Apptainer's MiB, a size with a unit, 0 for no cap; only smaller
 * (and never 0) from a user's file. */
static void test_conf_sessiondir(void **state)
{
        (void) state;
        struct hutch_conf c, u;
        struct hutch_error e = HUTCH_ERROR_INIT;
        log_set_level(LOG_LEVEL_ERROR);
        conf_defaults(&c);
        assert_true(c.sessiondir_max_size == 64u << 20);
        assert_int_equal(conf_parse_string(&c, "sessiondir max size = 16\n", "t", &e), 0);
        assert_true(c.sessiondir_max_size == 16u << 20 && c.n_warnings == 0);
        assert_int_equal(conf_parse_string(&c, "sessiondir max size = 1G\n", "t", &e), 0);
        assert_true(c.sessiondir_max_size == 1u << 30);
        static const char *const bad[] = {"sessiondir max size = 512K\n", "sessiondir max size = lots\n",
                                          "sessiondir max size = -1\n", "sessiondir max size = 99999999999999999\n",
                                          "sessiondir max size = \n"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(conf_parse_string(&c, bad[i], "t", &e), 0);
                assert_true(c.sessiondir_max_size == 1u << 30);
                assert_int_equal(c.n_warnings, i + 1);
        }
        assert_int_equal(conf_parse_string(&c, "sessiondir max size = 0\n", "t", &e), 0);
        assert_true(c.sessiondir_max_size == 0);
        conf_free(&c);
        /* over a system cap of 32 MiB: 8 tightens; 0 (no cap) and 128 would loosen */
        conf_defaults(&c);
        assert_int_equal(conf_parse_string(&c, "sessiondir max size = 32\n", "sys", &e), 0);
        static const struct {
                const char *text;
                uint64_t want;
        } cases[] = {{"sessiondir max size = 0\n", 32u << 20},
                     {"sessiondir max size = 128\n", 32u << 20},
                     {"sessiondir max size = 8\n", 8u << 20}};
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                conf_defaults(&u);
                assert_int_equal(conf_parse_string(&u, cases[i].text, "user", &e), 0);
                conf_tighten(&c, &u, "user");
                assert_true(c.sessiondir_max_size == cases[i].want);
        }
        conf_free(&c);
        /* with no system cap (0) a user may set one */
        conf_defaults(&c);
        c.sessiondir_max_size = 0;
        conf_defaults(&u);
        assert_int_equal(conf_parse_string(&u, "sessiondir max size = 4\n", "user", &e), 0);
        conf_tighten(&c, &u, "user");
        assert_true(c.sessiondir_max_size == 4u << 20);
        conf_free(&c);
}

/* A user's file over the system's: only the tighter direction of each key is taken. */
static void test_conf_tighten(void **state)
{
        (void) state;
        struct hutch_conf sys, u;
        struct hutch_error e = HUTCH_ERROR_INIT;
        log_set_level(LOG_LEVEL_ERROR);
        conf_defaults(&sys);
        assert_int_equal(conf_parse_string(&sys,
                                           "allow container dir = no\nmount dev = minimal\nmax instances = 4\n"
                                           "instance log max size = 1M\ncgroup parent = /adm\nmax memory = 1G\n"
                                           "limit container paths = /srv/img, /opt/img\nfile cache size = 64M\n",
                                           "sys", &e),
                         0);
        assert_int_equal(strv_length(sys.limit_container_paths), 2);
        assert_string_equal(sys.limit_container_paths[1], "/opt/img");
        conf_defaults(&u);
        assert_int_equal(conf_parse_string(&u,
                                           "allow container dir = yes\nallow container sif = no\nmount dev = yes\n"
                                           "max instances = 0\ninstance log max size = 0\ncgroup parent = /mine\n"
                                           "max memory = 8G\nlimit container paths = /home\nfile cache size = 1G\n"
                                           "instance ready timeout = 5000\n",
                                           "user", &e),
                         0);
        unsigned before = sys.n_warnings;
        conf_tighten(&sys, &u, "user");
        assert_false(sys.allow_dir); /* yes cannot switch the admin's no off */
        assert_false(sys.allow_sif); /* no tightens */
        assert_true(sys.allow_squashfs);
        assert_int_equal(sys.mount_dev, MOUNT_DEV_MINIMAL);
        assert_true(sys.max_instances == 4);               /* 0 would be no limit */
        assert_true(sys.instance_log_max_size == 1 << 20); /* likewise */
        assert_true(sys.file_cache_size == 64u << 20);
        assert_true(sys.instance_ready_timeout == 5000); /* a wait, not a permission */
        assert_string_equal(sys.cgroup_parent, "/adm");
        assert_int_equal(strv_length(sys.limit_maxima), 1); /* the admin's stay the admin's */
        assert_string_equal(sys.limit_maxima_user[0], "memory=8G");
        assert_int_equal(strv_length(sys.limit_container_paths), 2);
        assert_string_equal(sys.limit_container_paths_user[0], "/home");
        assert_int_equal(sys.n_warnings - before, 6);
        /* a user's tighter numbers are taken; an unset key changes nothing */
        conf_defaults(&u);
        assert_int_equal(conf_parse_string(&u, "max instances = 2\ninstance log max size = 4K\n", "user", &e), 0);
        conf_tighten(&sys, &u, "user");
        assert_true(sys.max_instances == 2 && sys.instance_log_max_size == 4096 && !sys.allow_dir);
        conf_free(&sys);
        /* with no system limit, the user's own 'max instances' and cgroup parent apply */
        conf_defaults(&sys);
        conf_defaults(&u);
        assert_int_equal(conf_parse_string(&u, "max instances = 3\ncgroup parent = /mine\nbind path = /x\n", "u", &e),
                         0);
        conf_tighten(&sys, &u, "u");
        assert_true(sys.max_instances == 3);
        assert_string_equal(sys.cgroup_parent, "/mine");
        assert_string_equal(sys.bind_paths[0], "/x");
        conf_free(&sys);
        /* 'user bind control = no': the user's file adds no binds either */
        conf_defaults(&sys);
        assert_int_equal(conf_parse_string(&sys, "user bind control = no\n", "sys", &e), 0);
        conf_defaults(&u);
        assert_int_equal(conf_parse_string(&u, "bind path = /x\nuser bind control = yes\n", "u", &e), 0);
        conf_tighten(&sys, &u, "u");
        assert_null(sys.bind_paths);
        assert_false(sys.user_bind_control);
        /* 'enforce bind paths': yes is the tight side */
        conf_defaults(&u);
        assert_int_equal(conf_parse_string(&u, "enforce bind paths = yes\n", "u", &e), 0);
        conf_tighten(&sys, &u, "u");
        assert_true(sys.enforce_bind_paths);
        conf_defaults(&u);
        before = sys.n_warnings;
        assert_int_equal(conf_parse_string(&u, "enforce bind paths = no\n", "u", &e), 0);
        conf_tighten(&sys, &u, "u");
        assert_true(sys.enforce_bind_paths && sys.n_warnings == before + 1);
        /* 'audit batch runs' too: a user turns it on, never off */
        assert_false(sys.audit_batch);
        conf_defaults(&u);
        assert_int_equal(conf_parse_string(&u, "audit batch runs = yes\n", "u", &e), 0);
        conf_tighten(&sys, &u, "u");
        assert_true(sys.audit_batch);
        conf_defaults(&u);
        before = sys.n_warnings;
        assert_int_equal(conf_parse_string(&u, "audit batch runs = no\n", "u", &e), 0);
        conf_tighten(&sys, &u, "u");
        assert_true(sys.audit_batch && sys.n_warnings == before + 1);
        conf_free(&sys);
}

static void test_conf_policy_checks(void **state)
{
        (void) state;
        struct hutch_conf c;
        struct hutch_error e = HUTCH_ERROR_INIT;
        conf_defaults(&c);
        int fd = open("/etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(conf_image_check(&c, fd, "/etc", &e), 0);
        assert_int_equal(conf_parse_string(&c, "limit container paths = /usr, /et\n", "t", &e), 0);
        assert_int_equal(conf_image_check(&c, fd, "/etc", &e), -EPERM); /* /et is no parent of /etc */
        assert_non_null(strstr(e.msg, "limit container paths"));
        assert_int_equal(conf_parse_string(&c, "limit container paths = /usr, /etc/\n", "t", &e), 0);
        assert_int_equal(conf_image_check(&c, fd, "/etc", &e), 0);
        assert_int_equal(conf_parse_string(&c, "limit container owners = nosuchuser, 4000000\n", "t", &e), 0);
        assert_int_equal(conf_image_check(&c, fd, "/etc", &e), -EPERM); /* /etc is root's */
        assert_non_null(strstr(e.msg, "limit container owners"));
        assert_int_equal(conf_parse_string(&c, "limit container owners = nosuchuser, root\n", "t", &e), 0);
        assert_int_equal(conf_image_check(&c, fd, "/etc", &e), 0);
        assert_int_equal(conf_parse_string(&c, "limit container owners = NULL\n", "t", &e), 0);
        assert_null(c.limit_container_owners);
        close(fd);

        assert_int_equal(conf_parse_string(&c, "bind path = /data:/mnt/data\nbind path = /etc/localtime\n", "t", &e),
                         0);
        assert_int_equal(conf_bind_check(&c, "/mnt/data", &e), 0); /* not enforced */
        assert_int_equal(conf_parse_string(&c, "enforce bind paths = yes\n", "t", &e), 0);
        assert_int_equal(conf_bind_check(&c, "/mnt/data", &e), -EPERM);
        assert_int_equal(conf_bind_check(&c, "/mnt/data/x", &e), -EPERM);
        assert_int_equal(conf_bind_check(&c, "/mnt", &e), -EPERM);
        assert_int_equal(conf_bind_check(&c, "/", &e), -EPERM);
        assert_int_equal(conf_bind_check(&c, "/mnt/database", &e), 0);
        assert_int_equal(conf_bind_check(&c, "/etc/localtime", &e), -EPERM);
        assert_int_equal(conf_bind_check(&c, "/etc/hosts", &e), 0);
        /* a list whose later entry is bad (found by fuzz_conf: its good part leaked) */
        assert_int_equal(conf_parse_string(&c, "bind path = /a:/b,/c:x\n", "t", &e), 0);
        assert_int_equal(conf_bind_check(&c, "/q", &e), 0);
        conf_free(&c);

        /* --cgroup-parent against the admin's 'cgroup parent' (the system file's, not a user's) */
        conf_defaults(&c);
        assert_int_equal(conf_parse_string(&c, "cgroup parent = /hutch/\n", "t", &e), 0);
        assert_int_equal(conf_cgroup_parent_check(&c, "/elsewhere", 1000, &e), 0); /* a user's own file's */
        c.cgroup_parent_admins = true;
        assert_int_equal(conf_cgroup_parent_check(&c, "/elsewhere", 1000, &e), -EPERM);
        assert_non_null(strstr(e.msg, "'/hutch/'"));
        assert_int_equal(conf_cgroup_parent_check(&c, "/hutchx", 1000, &e), -EPERM);
        assert_int_equal(conf_cgroup_parent_check(&c, "/", 1000, &e), -EPERM);
        assert_int_equal(conf_cgroup_parent_check(&c, "/hutch", 1000, &e), 0);
        assert_int_equal(conf_cgroup_parent_check(&c, "/hutch/alice", 1000, &e), 0);
        assert_int_equal(conf_cgroup_parent_check(&c, "/elsewhere", 0, &e), 0); /* root's choice */
        conf_free(&c);
}

static void test_conf_system_file(void **state)
{
        (void) state;
        struct hutch_conf c;
        struct hutch_error e = HUTCH_ERROR_INIT;
        char path[] = "/tmp/test_conf.XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "mount home = no\n", 16), 16);
        close(fd);
        conf_defaults(&c);
        assert_int_equal(chmod(path, 0666), 0);
        assert_int_equal(conf_load_system(&c, path, &e), -EPERM); /* writable by others */
        assert_non_null(strstr(e.msg, "refused"));
        assert_int_equal(chmod(path, 0620), 0);
        assert_int_equal(conf_load_system(&c, path, &e), -EPERM); /* by the group */
        assert_int_equal(chmod(path, 0644), 0);
        if (geteuid() == 0) {
                assert_int_equal(conf_load_system(&c, path, &e), 0);
                assert_false(c.mount_home);
                assert_int_equal(chown(path, 1, 0), 0);
        }
        assert_int_equal(conf_load_system(&c, path, &e), -EPERM); /* not root's */
        assert_int_equal(conf_load_system(&c, "/nonexistent/hutch.conf", &e), -ENOENT);
        assert_int_equal(conf_load_system(&c, "/dev/null", &e), -EPERM); /* no regular file */
        unlink(path);
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
                cmocka_unit_test(test_conf_tighten),     cmocka_unit_test(test_conf_policy_checks),
                cmocka_unit_test(test_conf_system_file), cmocka_unit_test(test_conf_sessiondir),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
