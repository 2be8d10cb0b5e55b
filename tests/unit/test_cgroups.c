/* cgroups: limit flags, sizes, Apptainer's TOML, maxima and defaults, v1/v2 translation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cgroups/cgroups.h"

static const char *file_value(struct cgroup_file *f, size_t n, const char *file)
{
        for (size_t i = 0; i < n; i++)
                if (!strcmp(f[i].file, file))
                        return f[i].value;
        return NULL;
}

static void test_limits_format(void **state)
{
        (void) state;
        struct cgroup_limits l;
        struct hutch_error e = HUTCH_ERROR_INIT;
        char *s = NULL;
        cgroup_limits_init(&l);
        assert_int_equal(cgroup_limits_format(&l, &s), 0);
        assert_string_equal(s, "");
        free(s);
        assert_int_equal(cgroup_limits_format(NULL, &s), 0);
        assert_string_equal(s, "");
        free(s);
        assert_int_equal(cgroup_limit_flag(&l, "memory", "1G", &e), 0);
        assert_int_equal(cgroup_limit_flag(&l, "cpus", "0.5", &e), 0);
        assert_int_equal(cgroup_limit_flag(&l, "pids-limit", "100", &e), 0);
        assert_int_equal(cgroup_limit_flag(&l, "memory-swap", "-1", &e), 0);
        assert_int_equal(cgroup_limits_format(&l, &s), 0);
        assert_string_equal(s, "memory=1G,memory-swap=-1,cpus=0.5,pids-limit=100");
        free(s);
        cgroup_limits_free(&l);
}

static void test_flags(void **state)
{
        (void) state;
        struct cgroup_limits l;
        struct hutch_error err = HUTCH_ERROR_INIT;
        cgroup_limits_init(&l);
        assert_false(cgroup_limits_any(&l));
        assert_int_equal(cgroup_limit_flag(&l, "memory", "512M", &err), 0);
        assert_true(l.memory == 512LL << 20);
        assert_int_equal(cgroup_limit_flag(&l, "cpus", "1.5", &err), 0);
        assert_true(l.cpu_quota == 150000 && l.cpu_period == 100000);
        assert_int_equal(cgroup_limit_flag(&l, "pids-limit", "10", &err), 0);
        assert_true(l.pids == 10);
        assert_int_equal(cgroup_limit_flag(&l, "memory-swap", "-1", &err), 0);
        assert_true(l.memory_swap == CG_UNLIMITED);
        assert_int_equal(cgroup_limit_flag(&l, "cpuset-cpus", "0-1,3", &err), 0);
        assert_int_equal(cgroup_limit_flag(&l, "device-read-bps", "/dev/null:1M", &err), -EINVAL); /* char dev */
        assert_int_equal(cgroup_limit_flag(&l, "device-read-bps", "8:0:1M", &err), 0);
        assert_true(l.n_devs == 1 && l.devs[0].major == 8 && l.devs[0].value == 1 << 20);
        assert_int_equal(cgroup_limit_flag(&l, "oom-kill-disable", NULL, &err), 0);
        assert_true(cgroup_limits_any(&l));
        const char *bad[][2] = {{"memory", "lots"},   {"memory", "1K"},      {"cpus", "0"},
                                {"cpus", "-1"},       {"cpus", "x"},         {"cpu-shares", "1"},
                                {"pids-limit", "x"},  {"blkio-weight", "5"}, {"blkio-weight-device", "8:0:2000"},
                                {"cpuset-cpus", "a"}, {"memory-swap", "big"}};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                assert_int_equal(cgroup_limit_flag(&l, bad[i][0], bad[i][1], &err), -EINVAL);
        assert_int_equal(cgroup_limit_flag(&l, "not-a-limit", "1", &err), -ENOENT);
        assert_true(cgroup_is_limit_flag("cpus") && !cgroup_is_limit_flag("bind"));
        cgroup_limits_free(&l);
}

static void test_v2_files(void **state)
{
        (void) state;
        struct cgroup_limits l;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct cgroup_file *f;
        size_t n;
        cgroup_limits_init(&l);
        cgroup_limit_flag(&l, "cpus", "0.5", &err);
        cgroup_limit_flag(&l, "memory", "32M", &err);
        cgroup_limit_flag(&l, "memory-swap", "64M", &err);
        cgroup_limit_flag(&l, "memory-reservation", "16M", &err);
        cgroup_limit_flag(&l, "pids-limit", "10", &err);
        cgroup_limit_flag(&l, "cpu-shares", "1024", &err);
        cgroup_limit_flag(&l, "blkio-weight", "500", &err);
        cgroup_limit_flag(&l, "device-write-iops", "8:16:100", &err);
        assert_int_equal(cgroup_limits_files(&l, 2, &f, &n, &err), 0);
        assert_string_equal(file_value(f, n, "cpu.max"), "50000 100000");
        assert_string_equal(file_value(f, n, "memory.max"), "33554432");
        assert_string_equal(file_value(f, n, "memory.swap.max"), "33554432"); /* 64M total - 32M memory */
        assert_string_equal(file_value(f, n, "memory.low"), "16777216");
        assert_string_equal(file_value(f, n, "pids.max"), "10");
        /* OCI: weight = 1 + (shares - 2) * 9999 / 262142 */
        assert_string_equal(file_value(f, n, "cpu.weight"), "39");
        assert_string_equal(file_value(f, n, "io.weight"), "default 4950");
        assert_string_equal(file_value(f, n, "io.max"), "8:16 wiops=100");
        cgroup_files_free(f, n);
        assert_int_equal(cgroup_shares_to_weight(2), 1);
        assert_int_equal(cgroup_shares_to_weight(262144), 10000);
        assert_int_equal(cgroup_blkio_to_io_weight(10), 1);
        assert_int_equal(cgroup_blkio_to_io_weight(1000), 10000);
        l.oom_kill_disable = true;
        assert_int_equal(cgroup_limits_files(&l, 2, &f, &n, &err), -EOPNOTSUPP);
        cgroup_limits_free(&l);
}

static void test_v1_files(void **state)
{
        (void) state;
        struct cgroup_limits l;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct cgroup_file *f;
        size_t n;
        cgroup_limits_init(&l);
        cgroup_limit_flag(&l, "cpus", "2", &err);
        cgroup_limit_flag(&l, "memory", "32M", &err);
        cgroup_limit_flag(&l, "memory-swap", "-1", &err);
        cgroup_limit_flag(&l, "pids-limit", "-1", &err);
        cgroup_limit_flag(&l, "oom-kill-disable", NULL, &err);
        cgroup_limit_flag(&l, "device-read-bps", "8:0:1M", &err);
        assert_int_equal(cgroup_limits_files(&l, 1, &f, &n, &err), 0);
        assert_string_equal(file_value(f, n, "cpu.cfs_quota_us"), "200000");
        assert_string_equal(file_value(f, n, "cpu.cfs_period_us"), "100000");
        assert_string_equal(file_value(f, n, "memory.limit_in_bytes"), "33554432");
        assert_string_equal(file_value(f, n, "memory.memsw.limit_in_bytes"), "-1");
        assert_string_equal(file_value(f, n, "memory.oom_control"), "1");
        assert_string_equal(file_value(f, n, "pids.max"), "max");
        assert_string_equal(file_value(f, n, "blkio.throttle.read_bps_device"), "8:0 1048576");
        /* memory before memsw: memsw may never be below memory */
        size_t im = 0, is = 0;
        for (size_t i = 0; i < n; i++) {
                if (!strcmp(f[i].file, "memory.limit_in_bytes"))
                        im = i;
                if (!strcmp(f[i].file, "memory.memsw.limit_in_bytes"))
                        is = i;
        }
        assert_true(im < is);
        cgroup_files_free(f, n);
        cgroup_limit_flag(&l, "memory-swap", "16M", &err);
        assert_int_equal(cgroup_limits_files(&l, 1, &f, &n, &err), -EINVAL);
        cgroup_limits_free(&l);
}

static void test_toml(void **state)
{
        (void) state;
        struct cgroup_limits l;
        struct hutch_error err = HUTCH_ERROR_INIT;
        cgroup_limits_init(&l);
        const char *t = "# Apptainer cgroups.toml\n"
                        "[memory]\n  limit = 536870912 # 512 MiB\n  reservation = 268435456\n  swap = -1\n"
                        "  disableOOMKiller = false\n"
                        "[cpu]\n  shares = 512\n  quota = 50000\n  period = 100000\n  cpus = \"0-1\"\n"
                        "[pids]\n  limit = 64\n"
                        "[blockIO]\n  weight = 300\n"
                        "[[blockIO.throttleReadBpsDevice]]\n  major = 8\n  minor = 0\n  rate = 1048576\n"
                        "[[blockIO.weightDevice]]\n  major = 8\n  minor = 16\n  weight = 200\n";
        assert_int_equal(cgroup_toml_parse(t, "c.toml", &l, &err), 0);
        assert_true(l.memory == 536870912 && l.memory_reservation == 268435456 && l.memory_swap == CG_UNLIMITED);
        assert_true(l.cpu_shares == 512 && l.cpu_quota == 50000 && l.cpu_period == 100000);
        assert_string_equal(l.cpuset_cpus, "0-1");
        assert_true(l.pids == 64 && l.blkio_weight == 300 && l.n_devs == 2);
        assert_true(l.devs[0].kind == CG_DEV_RBPS && l.devs[0].value == 1048576);
        assert_true(l.devs[1].kind == CG_DEV_WEIGHT && l.devs[1].minor == 16 && l.devs[1].value == 200);
        cgroup_limits_free(&l);
        const char *bad[] = {"[memory]\nlimit = \"lots\"\n",
                             "[memory]\nkernel = 5\n",
                             "limit = 5\n",
                             "[network]\nclassID = 1\n",
                             "[[devices]]\nallow = false\n",
                             "[cpu\nshares = 5\n",
                             "[[blockIO.weightDevice]]\nmajor = 8\nweight = 5\n",
                             "[cpu]\nshares = 1\n",
                             "[memory]\nlimit = 5 6\n"};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                cgroup_limits_init(&l);
                err.msg[0] = 0;
                assert_true(cgroup_toml_parse(bad[i], "c.toml", &l, &err) < 0);
                assert_non_null(strstr(err.msg, "c.toml:"));
                cgroup_limits_free(&l);
        }
}

static void test_clamp(void **state)
{
        (void) state;
        struct cgroup_limits l, max, def;
        struct hutch_error err = HUTCH_ERROR_INIT;
        char *what = NULL;
        cgroup_limits_init(&l);
        cgroup_limits_init(&max);
        cgroup_limits_init(&def);
        cgroup_limit_flag(&l, "memory", "8G", &err);
        cgroup_limit_flag(&max, "memory", "4G", &err);
        cgroup_limit_flag(&max, "cpus", "2", &err);
        cgroup_limit_flag(&def, "pids-limit", "512", &err);
        cgroup_limits_default(&l, &def);
        assert_true(l.pids == 512);
        assert_int_equal(cgroup_limits_clamp(&l, &max, &what), 2);
        assert_true(l.memory == 4LL << 30 && l.cpu_quota == 200000);
        assert_string_equal(what, "memory, cpus");
        free(what);
        what = NULL;
        assert_int_equal(cgroup_limits_clamp(&l, &max, &what), 0);
        assert_null(what);
        cgroup_limits_free(&l);
        cgroup_limits_free(&max);
        cgroup_limits_free(&def);
}

static void test_string(void **state)
{
        (void) state;
        struct cgroup cg;
        char *s = NULL;
        assert_int_equal(cgroup_from_string("1\t/sys/fs/cgroup/memory/a\t/sys/fs/cgroup/cpu/a", &cg), 0);
        assert_true(cg.version == 1 && cg.n_dirs == 2);
        assert_int_equal(cgroup_to_string(&cg, &s), 0);
        assert_string_equal(s, "1\t/sys/fs/cgroup/memory/a\t/sys/fs/cgroup/cpu/a");
        free(s);
        cgroup_release(&cg);
        assert_int_equal(cgroup_from_string("3\t/x", &cg), -EINVAL);
        assert_int_equal(cgroup_from_string("2\trelative", &cg), -EINVAL);
        assert_int_equal(cgroup_from_string("2\t/a/../b/../c", &cg), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_flags),         cmocka_unit_test(test_v2_files), cmocka_unit_test(test_v1_files),
                cmocka_unit_test(test_toml),          cmocka_unit_test(test_clamp),    cmocka_unit_test(test_string),
                cmocka_unit_test(test_limits_format),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
