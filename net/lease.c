/* Address leases of a bridge network: NAME.leases in the lease folder, one "ADDR PID START"
 * line per container, rewritten whole under an OFD lock of the file. The holder is the
 * network helper of the container (pid + start time): a lease whose holder is gone (a
 * helper killed with SIGKILL) is free for the next allocator, so no crash leaks one. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net-internal.h"
#include "util/util.h"

struct lease {
        uint32_t addr;
        pid_t pid;
        unsigned long long start;
};

static int lease_file_open(int dirfd, const struct net_bridge_conf *b, struct hutch_error *err)
{
        char name[96];
        snprintf(name, sizeof name, "%s.leases", b->name);
        int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return hutch_err_sys(err, -errno, "cannot open the lease file %s", name);
        /* held for a few file operations at most: a holder stopped with the lock (a frozen
         * cgroup, SIGSTOP) fails the next allocators after 10 s instead of hanging them */
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        for (int tries = 0; fcntl(fd, F_OFD_SETLK, &fl) < 0; tries++) {
                int e = errno;
                if ((e != EAGAIN && e != EACCES && e != EINTR) || tries >= 1000) {
                        close(fd);
                        if (e == EAGAIN || e == EACCES)
                                return hutch_err(err, -ETIMEDOUT,
                                                 "the lease file %s stays locked (a stopped hutch-net holds it)", name);
                        return hutch_err_sys(err, -e, "cannot lock the lease file %s", name);
                }
                usleep(10000);
        }
        return fd;
}

/* Alive unless known gone: an error that is not "no such process" (out of fds, say) keeps
 * the lease. */
static bool holder_alive(const struct lease *l)
{
        unsigned long long st;
        int r = proc_start_time(l->pid, &st);
        return !(r == -ENOENT || r == -ESRCH || (r == 0 && st != l->start));
}

/* The leases of the file whose holders live (others dropped); *ret malloc'd. */
static int leases_read(int fd, struct lease **ret, size_t *ret_n)
{
        char p[64];
        _cleanup_free_ char *text = NULL;
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        int r = read_full_at(AT_FDCWD, p, 1 << 22, &text, NULL);
        if (r < 0)
                return r;
        size_t n = 0, cap = 0;
        struct lease *v = NULL;
        for (char *line = text, *nl; line && *line; line = nl) {
                nl = strchr(line, '\n');
                if (nl)
                        *nl++ = 0;
                char a[32];
                int pid;
                struct lease l;
                struct in_addr ia;
                if (sscanf(line, "%31s %d %llu", a, &pid, &l.start) != 3 || inet_pton(AF_INET, a, &ia) != 1)
                        continue;
                l.addr = ntohl(ia.s_addr);
                l.pid = pid;
                if (!holder_alive(&l))
                        continue;
                if (n == cap) {
                        cap = cap ? 2 * cap : 16;
                        struct lease *nv = realloc(v, cap * sizeof *v);
                        if (!nv) {
                                free(v);
                                return -ENOMEM;
                        }
                        v = nv;
                }
                v[n++] = l;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static int leases_write(int fd, const struct lease *v, size_t n)
{
        _cleanup_free_ char *text = malloc(n * 64 + 1);
        size_t o = 0;
        if (!text)
                return -ENOMEM;
        text[0] = 0;
        for (size_t i = 0; i < n; i++) {
                struct in_addr ia = {.s_addr = htonl(v[i].addr)};
                char a[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &ia, a, sizeof a);
                o += (size_t) snprintf(text + o, 64, "%s %d %llu\n", a, (int) v[i].pid, v[i].start);
        }
        /* written over the old text, then cut: the file is never empty on the way */
        if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        int r = write_full(fd, text, o);
        if (r < 0)
                return r;
        return ftruncate(fd, (off_t) o) < 0 ? -errno : 0;
}

int net_lease_take(int dirfd, const struct net_bridge_conf *b, pid_t holder, unsigned long long holder_start,
                   uint32_t *ret_addr, struct hutch_error *err)
{
        _cleanup_close_ int fd = lease_file_open(dirfd, b, err);
        _cleanup_free_ struct lease *v = NULL;
        size_t n = 0;
        if (fd < 0)
                return fd;
        int r = leases_read(fd, &v, &n);
        if (r < 0)
                return hutch_err_sys(err, r, "cannot read the leases of network '%s'", b->name);
        uint32_t size = 1u << (32 - b->prefix);
        /* the subnet's own address, its broadcast and the gateway are never leased */
        for (uint32_t a = b->subnet + 1; a < b->subnet + size - 1; a++) {
                bool taken = a == b->gateway;
                for (size_t i = 0; i < n && !taken; i++)
                        taken = v[i].addr == a;
                if (taken)
                        continue;
                struct lease *nv = realloc(v, (n + 1) * sizeof *v);
                if (!nv)
                        return hutch_err(err, -ENOMEM, "out of memory");
                v = nv;
                v[n++] = (struct lease){.addr = a, .pid = holder, .start = holder_start};
                r = leases_write(fd, v, n);
                if (r < 0)
                        return hutch_err_sys(err, r, "cannot write the leases of network '%s'", b->name);
                *ret_addr = a;
                return 0;
        }
        return hutch_err(err, -EADDRNOTAVAIL, "network '%s' has no free address left (all %u leased)", b->name,
                         size - 3);
}

int net_lease_release(int dirfd, const struct net_bridge_conf *b, uint32_t addr)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_close_ int fd = lease_file_open(dirfd, b, &err);
        _cleanup_free_ struct lease *v = NULL;
        size_t n = 0, k = 0;
        if (fd < 0)
                return fd;
        int r = leases_read(fd, &v, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (v[i].addr != addr)
                        v[k++] = v[i];
        return leases_write(fd, v, k);
}
