/* Small helpers shared by every module: string vectors, strings, whole-file I/O,
 * fd-relative paths and process helpers. Returns -errno, never prints. */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cleanup.h"
#include "error.h"

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

/* NULL-terminated string vectors, heap-owned. */
size_t strv_length(char *const *v);
int strv_push(char ***v, char *s);         /* takes s; frees it on failure */
int strv_extend(char ***v, const char *s); /* copies s */
char **strv_copy(char *const *v);
bool strv_contains(char *const *v, const char *s);
/* Index of the entry "KEY=..." in an environment vector, or -1. */
ssize_t strv_env_find(char *const *v, const char *key, size_t keylen);
/* Set or replace "KEY=VALUE"; takes entry (which must contain '='). */
int strv_env_put(char ***v, char *entry);
int strv_env_unset(char **v, const char *key);
const char *strv_env_get(char *const *v, const char *key);

bool startswith(const char *s, const char *prefix);
bool endswith(const char *s, const char *suffix);
char *strjoin(const char *a, const char *b, const char *c); /* NULL in b/c = "" */
/* Split s on any of sep; empty fields dropped. */
int strsplit(const char *s, const char *sep, char ***ret);
/* Shell single-quote s: 'it'\''s'. */
char *shell_quote(const char *s);
/* s as the text between double quotes, quoted: "s". Its $NAME, ${...}, $(...), `...` and
 * escape pairs stay for the shell to expand, with the quotes inside those as written; a
 * bare '"' outside them, or a final '\', is escaped, so the text cannot end the quotes
 * early. */
char *shell_dquote(const char *s);
/* s escaped so that shell_dquote() of the result expands to s itself. */
char *shell_dquote_escape(const char *s);
bool is_valid_env_name(const char *s, size_t len);

/* Whole-file helpers. read_full_at and read_fd_full (from fd to its end: a file, a pipe)
 * cap at max bytes (-EFBIG beyond); the text is NUL-terminated. */
int read_full_at(int dirfd, const char *path, size_t max, char **ret, size_t *ret_len);
int read_fd_full(int fd, size_t max, char **ret, size_t *ret_len);
/* A regular file of at most max bytes, read whole (NUL-terminated). Opened O_NONBLOCK, so a
 * FIFO or a device never blocks: -EISDIR for a folder, -EBADFD for anything else that is
 * not a regular file, -EFBIG when larger than max. */
int read_regular_at(int dirfd, const char *path, size_t max, char **ret, size_t *ret_len);
int write_full(int fd, const void *buf, size_t len);
int write_file_at(int dirfd, const char *path, const char *data, size_t len, mode_t mode);
ssize_t pread_full(int fd, void *buf, size_t len, off_t off);

/* Create every missing directory of path (absolute, or relative to dirfd). Existing
 * components may be symlinks; the folders it creates are entered without following any. */
int mkdir_p_at(int dirfd, const char *path, mode_t mode);
/* Remove the file at path, then its folder if that is empty now (a temporary file in a
 * temporary folder of its own); errors are ignored. */
void unlink_with_folder(const char *path);
/* Apptainer's --fix-perms on the tree at path: its owner gets rwx on every folder, rw on
 * every file (and x where group or others have it); symlinks are not followed, nor other
 * file systems entered. Not thread-safe (nftw). The first error, or 0. */
int tree_fix_perms(const char *path);
/* A directory stream over dirfd's folder, on an fd of its own (dirfd stays usable and
 * open); NULL with errno set. */
DIR *dir_stream_at(int dirfd);
/* Lexically normalise an absolute path: collapse //, ., .. ; result is malloc'd. */
int path_normalize(const char *path, char **ret);
bool path_is_abs(const char *p);
/* path is absolute and a folder owned by uid */
bool dir_is_users(const char *path, uid_t uid);

/* "512M", "2G", "1.5g", "4096", "10MiB": binary units K M G T P E (as Apptainer and
 * podman read them). -EINVAL on anything else, -ERANGE beyond 64 bits. */
int size_parse(const char *s, uint64_t *ret);
/* Numbers from users and files, strictly: decimal digits only (no sign for u64, no
 * space, no hex, no trailing text), and within [min, max]. -EINVAL when it is not such a
 * number, -ERANGE when it is one out of range (or beyond 64 bits). */
int parse_u64_range(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
int parse_i64_range(const char *s, int64_t min, int64_t max, int64_t *ret);
/* A decimal ("2", "0.5", "1e3"): finite and within [min, max]; "nan", "inf", hex floats,
 * 1e999 and trailing text refused as above. */
int parse_double_range(const char *s, double min, double max, double *ret);
/* src made safe to print on a terminal, into dst (always terminated, cut at size): control
 * bytes, backslash and malformed UTF-8 as \n \t \r \\ \xHH; printable ASCII and
 * well-formed UTF-8 (but C1 controls) kept. Returns the length written. No allocation:
 * usable on borrowed memory. */
size_t str_escape(char *dst, size_t size, const char *src);
/* Length of the UTF-8 sequence at s (NUL-terminated) when it is well formed and not a C1
 * control (U+0080..U+009F, which some terminals obey), else 0. */
size_t utf8_printable_len(const unsigned char *s);

/* The other way, for people: "512B", "1.5KiB", "20.0MiB" (one decimal past bytes). */
void size_format(uint64_t bytes, char *buf, size_t len);

/* /proc and fd helpers (process creation: process.h). */
/* Field 22 of /proc/PID/stat: start time in clock ticks since boot (with the pid, a process
 * identity that survives pid reuse). */
int proc_start_time(pid_t pid, unsigned long long *ret);
/* Field 3 of /proc/PID/stat (R, S, D, Z, ...); 0 when gone. */
char proc_state(pid_t pid, pid_t tid);
int fd_move_above(int fd, int min);
/* Close every fd >= from except those listed (sorted or not, n entries). */
void close_all_fds(int from, const int *keep, size_t n);
/* One message of len bytes with n fds (SCM_RIGHTS, n <= 8) on a SOCK_SEQPACKET socket.
 * send_fds: 0 or -1 (errno). recv_fds: the bytes received (0 at EOF) or -1; the fds that
 * came are stored in fds (O_CLOEXEC), the others left as they were. */
int send_fds(int sock, const void *buf, size_t len, const int *fds, size_t n);
ssize_t recv_fds(int sock, void *buf, size_t len, int *fds, size_t n);

/* hutch's own programs (hutch-squashfs, and the libexec programs of verbs whose libraries
 * the lean hutch binary does not load): NAME beside this binary, as in a build folder, or
 * in ../libexec/hutch/ from it, as installed; never another installation's. buf, or NULL
 * when neither is an executable file. */
const char *libexec_program(const char *name, char *buf, size_t len);
