/* util: string vectors, env vectors, quoting, path normalisation, errors, process helpers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/sha256.h"
#include "util/process.h"
#include "util/util.h"

static void test_strv(void **state)
{
        (void) state;
        char **v = NULL;
        assert_int_equal(strv_extend(&v, "a"), 0);
        assert_int_equal(strv_extend(&v, "b"), 0);
        assert_int_equal(strv_length(v), 2);
        assert_true(strv_contains(v, "b"));
        assert_false(strv_contains(v, "c"));
        char **c = strv_copy(v);
        assert_string_equal(c[1], "b");
        strv_free(c);
        strv_free(v);
}

static void test_env(void **state)
{
        (void) state;
        char **v = NULL;
        assert_int_equal(strv_env_put(&v, strdup("A=1")), 0);
        assert_int_equal(strv_env_put(&v, strdup("AB=2")), 0);
        assert_int_equal(strv_env_put(&v, strdup("A=3")), 0);
        assert_int_equal(strv_length(v), 2);
        assert_string_equal(strv_env_get(v, "A"), "3");
        assert_string_equal(strv_env_get(v, "AB"), "2");
        assert_null(strv_env_get(v, "B"));
        assert_int_equal(strv_env_put(&v, strdup("NOEQ")), -EINVAL);
        assert_int_equal(strv_env_unset(v, "A"), 1);
        assert_null(strv_env_get(v, "A"));
        strv_free(v);
}

static void test_quote(void **state)
{
        (void) state;
        char *q = shell_quote("it's");
        assert_string_equal(q, "'it'\\''s'");
        free(q);
        q = shell_quote("");
        assert_string_equal(q, "''");
        free(q);
}

static void test_split(void **state)
{
        (void) state;
        char **v = NULL;
        assert_int_equal(strsplit(",a,,b,", ",", &v), 0);
        assert_int_equal(strv_length(v), 2);
        assert_string_equal(v[0], "a");
        assert_string_equal(v[1], "b");
        strv_free(v);
}

static void test_normalize(void **state)
{
        (void) state;
        static const char *const cases[][2] = {
                {"/", "/"}, {"//a//b/", "/a/b"}, {"/a/./b/../c", "/a/c"}, {"/../..", "/"}, {"/a/b/..", "/a"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *r = NULL;
                assert_int_equal(path_normalize(cases[i][0], &r), 0);
                assert_string_equal(r, cases[i][1]);
                free(r);
        }
        char *r = NULL;
        assert_int_equal(path_normalize("rel", &r), -EINVAL);
}

static void test_env_name(void **state)
{
        (void) state;
        assert_true(is_valid_env_name("A_1", 3));
        assert_false(is_valid_env_name("1A", 2));
        assert_false(is_valid_env_name("A-B", 3));
        assert_false(is_valid_env_name("", 0));
}

static void test_error(void **state)
{
        (void) state;
        struct hutch_error e = HUTCH_ERROR_INIT;
        assert_int_equal(hutch_err(&e, -ENOENT, "no %s", "file"), -ENOENT);
        assert_string_equal(e.msg, "no file");
        assert_int_equal(hutch_err_wrap(&e, "image '%s'", "x"), -ENOENT);
        assert_string_equal(e.msg, "image 'x': no file");
        hutch_err_sys(&e, -EACCES, "cannot open");
        assert_string_equal(e.msg, "cannot open: Permission denied");
        /* a positive code is not an errno: it becomes -EIO */
        assert_int_equal(hutch_err(&e, 5, "x"), -EIO);
}

static void test_size(void **state)
{
        (void) state;
        uint64_t v;
        assert_int_equal(size_parse("4096", &v), 0);
        assert_int_equal(v, 4096);
        assert_int_equal(size_parse("512M", &v), 0);
        assert_int_equal(v, 512ull << 20);
        assert_int_equal(size_parse("2g", &v), 0);
        assert_int_equal(v, 2ull << 30);
        assert_int_equal(size_parse("1.5G", &v), 0);
        assert_int_equal(v, 3ull << 29);
        assert_int_equal(size_parse("10MiB", &v), 0);
        assert_int_equal(v, 10ull << 20);
        assert_int_equal(size_parse("2KB", &v), 0);
        assert_int_equal(v, 2048);
        assert_int_equal(size_parse("", &v), -EINVAL);
        assert_int_equal(size_parse("-1", &v), -EINVAL);
        assert_int_equal(size_parse("12Q", &v), -EINVAL);
        assert_int_equal(size_parse("1M2", &v), -EINVAL);
        assert_int_equal(size_parse("M", &v), -EINVAL);
        assert_int_equal(size_parse("99999E", &v), -ERANGE);
        /* what strtod alone would take */
        static const char *const bad[] = {"nan",    "NaN", "inf", "infinity", "0x10", "0x1p4M", "1e3",
                                          "1e999G", " 5",  "+5",  ".5G",      "nanM", "-0"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_true(size_parse(bad[i], &v) < 0);
        assert_int_equal(size_parse("1.", &v), 0);
        assert_int_equal(v, 1);
}

static void test_parse_numbers(void **state)
{
        (void) state;
        uint64_t u;
        int64_t i;
        double d;
        assert_int_equal(parse_u64_range("42", 0, 100, &u), 0);
        assert_int_equal(u, 42);
        assert_int_equal(parse_u64_range("18446744073709551615", 0, UINT64_MAX, &u), 0);
        assert_true(u == UINT64_MAX);
        assert_int_equal(parse_u64_range("18446744073709551616", 0, UINT64_MAX, &u), -ERANGE);
        assert_int_equal(parse_u64_range("101", 0, 100, &u), -ERANGE);
        assert_int_equal(parse_u64_range("0", 1, 100, &u), -ERANGE);
        static const char *const not_u64[] = {"", "-1", "+1", " 1", "1 ", "0x10", "1.0", "1e3", "nan", "12abc"};
        for (size_t k = 0; k < ELEMENTSOF(not_u64); k++)
                assert_int_equal(parse_u64_range(not_u64[k], 0, UINT64_MAX, &u), -EINVAL);
        assert_int_equal(parse_u64_range(NULL, 0, 1, &u), -EINVAL);

        assert_int_equal(parse_i64_range("-1", -1, 10, &i), 0);
        assert_int_equal(i, -1);
        assert_int_equal(parse_i64_range("-2", -1, 10, &i), -ERANGE);
        assert_int_equal(parse_i64_range("9223372036854775808", INT64_MIN, INT64_MAX, &i), -ERANGE);
        assert_int_equal(parse_i64_range("-9223372036854775809", INT64_MIN, INT64_MAX, &i), -ERANGE);
        assert_int_equal(parse_i64_range("--1", INT64_MIN, INT64_MAX, &i), -EINVAL);
        assert_int_equal(parse_i64_range("-", INT64_MIN, INT64_MAX, &i), -EINVAL);
        assert_int_equal(parse_i64_range("0x7", INT64_MIN, INT64_MAX, &i), -EINVAL);

        assert_int_equal(parse_double_range("0.5", 0, 10, &d), 0);
        assert_true(d == 0.5);
        assert_int_equal(parse_double_range("2e3", 0, 1e4, &d), 0);
        assert_true(d == 2000);
        assert_int_equal(parse_double_range(".25", 0, 1, &d), 0);
        assert_int_equal(parse_double_range("-1.5", -2, 0, &d), 0);
        assert_true(d == -1.5);
        static const char *const out_of_range[] = {"1e999", "-1e999", "1e-999", "11", "-0.1"};
        for (size_t k = 0; k < ELEMENTSOF(out_of_range); k++)
                assert_int_equal(parse_double_range(out_of_range[k], 0, 10, &d), -ERANGE);
        static const char *const not_double[] = {"nan", "NAN", "-nan", "inf", "-inf", "Infinity", "0x1p3", "0x10", "",
                                                 " 1",  "1 ",  "1.5x", "1e",  "1e+",  ".",        "-",     "1..2"};
        for (size_t k = 0; k < ELEMENTSOF(not_double); k++)
                assert_int_equal(parse_double_range(not_double[k], -1e300, 1e300, &d), -EINVAL);
}

static void test_escape(void **state)
{
        (void) state;
        char buf[64];
        assert_int_equal(str_escape(buf, sizeof buf, "plain text/ok"), 13);
        assert_string_equal(buf, "plain text/ok");
        str_escape(buf, sizeof buf, "\033]0;x\007a\\b\n\t\r\x7f");
        assert_string_equal(buf, "\\x1b]0;x\\x07a\\\\b\\n\\t\\r\\x7f");
        /* UTF-8 kept; a C1 control (U+009B, a CSI), lone and overlong bytes escaped */
        str_escape(buf, sizeof buf, "caf\xc3\xa9 \xc2\x9b \x9b \xc0\xaf \xe2\x82");
        assert_string_equal(buf, "caf\xc3\xa9 \\xc2\\x9b \\x9b \\xc0\\xaf \\xe2\\x82");
        /* cut whole: never half an escape, always terminated */
        assert_int_equal(str_escape(buf, 6, "ab\033cd"), 2);
        assert_string_equal(buf, "ab");
        assert_int_equal(str_escape(buf, 1, "x"), 0);
        assert_string_equal(buf, "");
}

static void test_read_regular(void **state)
{
        (void) state;
        char dir[] = "/tmp/hutch-test-XXXXXX";
        assert_non_null(mkdtemp(dir));
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        assert_true(dfd >= 0);
        assert_int_equal(write_file_at(dfd, "f", "hello", 5, 0600), 0);
        assert_int_equal(mkfifoat(dfd, "fifo", 0600), 0);
        char *t = NULL;
        size_t len = 0;
        assert_int_equal(read_regular_at(dfd, "f", 5, &t, &len), 0);
        assert_string_equal(t, "hello");
        assert_int_equal(len, 5);
        free(t);
        assert_int_equal(read_regular_at(dfd, "f", 4, &t, NULL), -EFBIG);
        /* a FIFO with no writer: an error at once, not a wait */
        assert_int_equal(read_regular_at(dfd, "fifo", 100, &t, NULL), -EBADFD);
        assert_int_equal(read_regular_at(AT_FDCWD, "/dev/zero", 100, &t, NULL), -EBADFD);
        /* /dev/null names no file: read as empty */
        assert_int_equal(read_regular_at(AT_FDCWD, "/dev/null", 100, &t, &len), 0);
        assert_int_equal(len, 0);
        free(t);
        t = NULL;
        assert_int_equal(read_regular_at(dfd, ".", 100, &t, NULL), -EISDIR);
        assert_int_equal(read_regular_at(dfd, "none", 100, &t, NULL), -ENOENT);
        assert_int_equal(unlinkat(dfd, "f", 0), 0);
        assert_int_equal(unlinkat(dfd, "fifo", 0), 0);
        close(dfd);
        assert_int_equal(rmdir(dir), 0);
}

static void test_proc(void **state)
{
        (void) state;
        unsigned long long a, b;
        assert_int_equal(proc_start_time(getpid(), &a), 0);
        assert_int_equal(proc_start_time(getpid(), &b), 0);
        assert_true(a == b && a > 0);
        assert_int_equal(proc_state(getpid(), 0), 'R');
        assert_int_equal(proc_start_time(0x3fffffff, &a), -ENOENT);
        assert_int_equal(proc_state(0x3fffffff, 0), 0);
}

/* mkdir_p_at: every level made, an existing path is fine (through a symlink too), a file
 * in the way is an error */
/* --fix-perms: folders the owner could not enter or read are made so and walked into */
static void test_fix_perms(void **state)
{
        (void) state;
        char tmpl[] = "/tmp/hutch-test-perms.XXXXXX";
        char *d = mkdtemp(tmpl);
        assert_non_null(d);
        int dfd = open(d, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_int_equal(mkdir_p_at(dfd, "a/b", 0700), 0);
        assert_int_equal(mknodat(dfd, "a/b/f", S_IFREG | 0444, 0), 0);
        assert_int_equal(mknodat(dfd, "a/b/x", S_IFREG | 0555, 0), 0);
        assert_int_equal(mknodat(dfd, "a/g", S_IFREG | 0040, 0), 0);
        assert_int_equal(symlinkat("/nonexistent", dfd, "a/link"), 0);
        assert_int_equal(fchmodat(dfd, "a/b", 0500, 0), 0);
        assert_int_equal(fchmodat(dfd, "a", 0, 0), 0);
        assert_int_equal(tree_fix_perms(d), 0);
        static const struct {
                const char *path;
                mode_t mode;
        } want[] = {{"a", 0700}, {"a/b", 0700}, {"a/b/f", 0644}, {"a/b/x", 0755}, {"a/g", 0640}};
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                struct stat st;
                assert_int_equal(fstatat(dfd, want[i].path, &st, AT_SYMLINK_NOFOLLOW), 0);
                assert_int_equal(st.st_mode & 07777, want[i].mode);
        }
        assert_int_equal(tree_fix_perms("/nonexistent/hutch-test"), -ENOENT);
        /* as its owner without root's powers, a folder it cannot read is fixed, then walked */
        if (geteuid() == 0) {
                assert_int_equal(fchmodat(dfd, "a/b/f", 0, 0), 0);
                assert_int_equal(fchmodat(dfd, "a/b", 0, 0), 0);
                assert_int_equal(fchmodat(dfd, "a", 0, 0), 0);
                char cmd[256];
                snprintf(cmd, sizeof cmd, "chown -R 65534:65534 %s", d);
                assert_int_equal(system(cmd), 0);
                pid_t pid = fork();
                assert_true(pid >= 0);
                if (pid == 0)
                        _exit(setresgid(65534, 65534, 65534) == 0 && setresuid(65534, 65534, 65534) == 0 &&
                                              tree_fix_perms(d) == 0
                                      ? 0
                                      : 1);
                int status;
                assert_int_equal(waitpid(pid, &status, 0), pid);
                assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                struct stat st;
                assert_int_equal(fstatat(dfd, "a/b/f", &st, 0), 0);
                assert_int_equal(st.st_mode & 07777, 0600);
        }
        close(dfd);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", d);
        assert_int_equal(system(cmd), 0);
}

static void test_mkdir_p(void **state)
{
        (void) state;
        char tmpl[] = "/tmp/hutch-test-mkdir.XXXXXX";
        char *d = mkdtemp(tmpl);
        assert_non_null(d);
        int dfd = open(d, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        assert_int_equal(mkdir_p_at(dfd, "a/b/c", 0700), 0);
        struct stat st;
        assert_int_equal(fstatat(dfd, "a/b/c", &st, 0), 0);
        assert_true(S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
        assert_int_equal(mkdir_p_at(dfd, "a/b/c", 0700), 0);
        assert_int_equal(symlinkat("a/b", dfd, "link"), 0);
        assert_int_equal(mkdir_p_at(dfd, "link/c/d", 0700), 0);
        assert_int_equal(fstatat(dfd, "a/b/c/d", &st, 0), 0);
        int f = openat(dfd, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(f >= 0);
        close(f);
        assert_true(mkdir_p_at(dfd, "file", 0700) < 0);
        assert_int_equal(mkdir_p_at(dfd, "file/x", 0700), -ENOTDIR);
        close(dfd);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", d);
        assert_int_equal(system(cmd), 0);
}

/* close_all_fds: only the listed fds (any order, duplicates, below `from`) stay open */
static void test_close_all(void **state)
{
        (void) state;
        pid_t p = fork();
        if (p == 0) {
                int fds[6];
                for (int i = 0; i < 6; i++)
                        fds[i] = open("/dev/null", O_RDONLY);
                int keep[] = {fds[4], fds[1], fds[4], 1};
                close_all_fds(fds[0], keep, 4);
                int ok = fcntl(fds[1], F_GETFD) >= 0 && fcntl(fds[4], F_GETFD) >= 0 && fcntl(1, F_GETFD) >= 0;
                for (int i = 0; i < 6; i++)
                        if (i != 1 && i != 4)
                                ok = ok && fcntl(fds[i], F_GETFD) < 0;
                close_all_fds(3, NULL, 0);
                ok = ok && fcntl(fds[1], F_GETFD) < 0 && fcntl(fds[4], F_GETFD) < 0;
                _exit(ok ? 0 : 1);
        }
        int ws;
        assert_int_equal(waitpid(p, &ws, 0), p);
        assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
}

/* fds over a seqpacket socket: the message and each fd arrive (close-on-exec), fds beyond
 * the caller's room are closed, EOF reads as 0 */
static void test_fds(void **state)
{
        (void) state;
        int sp[2], p[2], q[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(pipe(p), 0);
        assert_int_equal(pipe(q), 0);
        int send[2] = {p[1], q[1]};
        assert_int_equal(send_fds(sp[0], "hello", 6, send, 2), 0);
        char buf[16] = "";
        int got[2] = {-1, -1};
        assert_int_equal(recv_fds(sp[1], buf, sizeof buf, got, 2), 6);
        assert_string_equal(buf, "hello");
        assert_true(got[0] >= 0 && got[1] >= 0);
        assert_int_equal(fcntl(got[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        assert_int_equal(write(got[1], "x", 1), 1);
        char c = 0;
        assert_int_equal(read(q[0], &c, 1), 1);
        assert_int_equal(c, 'x');
        /* room for one: the second is closed, not leaked */
        int one = -1;
        assert_int_equal(send_fds(sp[0], "a", 1, send, 2), 0);
        assert_int_equal(recv_fds(sp[1], buf, sizeof buf, &one, 1), 1);
        assert_true(one >= 0);
        close(one);
        /* no fds sent: none stored */
        int none = -1;
        assert_int_equal(send_fds(sp[0], "b", 1, NULL, 0), 0);
        assert_int_equal(recv_fds(sp[1], buf, sizeof buf, &none, 1), 1);
        assert_int_equal(none, -1);
        assert_int_equal(send_fds(sp[0], "c", 1, send, 9), -1);
        assert_int_equal(errno, EINVAL);
        close(sp[0]);
        assert_int_equal(recv_fds(sp[1], buf, sizeof buf, &none, 1), 0);
        int all[] = {sp[1], p[0], p[1], q[0], q[1], got[0], got[1]};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                close(all[i]);
}

static void test_size_format(void **state)
{
        (void) state;
        char b[32];
        size_format(512, b, sizeof b);
        assert_string_equal(b, "512B");
        size_format(1536, b, sizeof b);
        assert_string_equal(b, "1.5KiB");
        size_format(128ull << 20, b, sizeof b);
        assert_string_equal(b, "128.0MiB");
        size_format(0, b, sizeof b);
        assert_string_equal(b, "0B");
}

static void test_dir_stream(void **state)
{
        (void) state;
        char dir[] = "/tmp/hutch-test-dir.XXXXXX", path[64];
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/f", dir);
        assert_int_equal(write_file_at(AT_FDCWD, path, "x", 1, 0600), 0);
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        DIR *d = dir_stream_at(fd);
        assert_non_null(d);
        int seen = 0;
        for (struct dirent *de; (de = readdir(d));)
                seen += !strcmp(de->d_name, "f");
        closedir(d);
        assert_int_equal(seen, 1);
        /* the caller's fd is its own still */
        assert_int_equal(faccessat(fd, "f", F_OK, 0), 0);
        close(fd);
        errno = 0;
        assert_null(dir_stream_at(-1));
        assert_int_equal(errno, EBADF);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void sha256_of(const void *data, size_t len, size_t step, char out[72])
{
        struct sha256 s;
        uint8_t d[32];
        sha256_init(&s);
        for (size_t i = 0; i < len; i += step)
                sha256_update(&s, (const char *) data + i, len - i < step ? len - i : step);
        sha256_final(&s, d);
        sha256_hex(d, out);
}

/* FIPS 180-4's examples, and lengths around the padding's edges fed in odd pieces */
static void test_sha256(void **state)
{
        (void) state;
        char h[72];
        sha256_of("", 0, 1, h);
        assert_string_equal(h, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        sha256_of("abc", 3, 1, h);
        assert_string_equal(h, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        sha256_of(two, strlen(two), 7, h);
        assert_string_equal(h, "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        char *m = malloc(1000000);
        assert_non_null(m);
        memset(m, 'a', 1000000);
        sha256_of(m, 1000000, 4099, h);
        assert_string_equal(h, "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        sha256_of(m, 55, 55, h);
        assert_string_equal(h, "sha256:9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
        sha256_of(m, 64, 13, h);
        assert_string_equal(h, "sha256:ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
        free(m);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_strv),          cmocka_unit_test(test_env),
                cmocka_unit_test(test_quote),         cmocka_unit_test(test_split),
                cmocka_unit_test(test_normalize),     cmocka_unit_test(test_env_name),
                cmocka_unit_test(test_error),         cmocka_unit_test(test_size),
                cmocka_unit_test(test_proc),          cmocka_unit_test(test_fds),
                cmocka_unit_test(test_dir_stream),    cmocka_unit_test(test_size_format),
                cmocka_unit_test(test_close_all),     cmocka_unit_test(test_mkdir_p),
                cmocka_unit_test(test_parse_numbers), cmocka_unit_test(test_escape),
                cmocka_unit_test(test_read_regular),  cmocka_unit_test(test_sha256),
                cmocka_unit_test(test_fix_perms),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
