/* killfirst COMM N [TIMEOUT_MS]: wait until N processes of ours named COMM exist, then
 * SIGKILL the one started first and print its pid. Polls /proc without sleeping, to catch
 * a state that lasts a few milliseconds (an instance's launcher while its init sets the
 * container up: both are named hutch-launch then). Exits 1 when it never came. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* 0 and the start time when /proc/PID/stat names comm */
static int match(const char *pid, const char *comm, unsigned long long *start)
{
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
                return -1;
        buf[n] = 0;
        char *l = strchr(buf, '('), *r = strrchr(buf, ')');
        if (!l || !r || (size_t) (r - l - 1) != strlen(comm) || strncmp(l + 1, comm, r - l - 1))
                return -1;
        /* field 22 counted from the state, field 3 */
        char *p = r + 2;
        for (int f = 3; f < 22 && p; f++)
                p = strchr(p, ' ') ? strchr(p, ' ') + 1 : NULL;
        if (!p)
                return -1;
        *start = strtoull(p, NULL, 10);
        return 0;
}

int main(int argc, char **argv)
{
        if (argc < 3) {
                fprintf(stderr, "usage: killfirst COMM N [TIMEOUT_MS]\n");
                return 2;
        }
        int want = atoi(argv[2]);
        double until = now_ms() + (argc > 3 ? atof(argv[3]) : 10000);
        uid_t uid = getuid();
        while (now_ms() < until) {
                DIR *d = opendir("/proc");
                struct dirent *de;
                int found = 0;
                long first = 0;
                unsigned long long first_start = 0;
                while (d && (de = readdir(d))) {
                        unsigned long long start;
                        struct stat st;
                        char path[300];
                        if (de->d_name[0] < '1' || de->d_name[0] > '9')
                                continue;
                        snprintf(path, sizeof path, "/proc/%s", de->d_name);
                        if (stat(path, &st) < 0 || st.st_uid != uid || match(de->d_name, argv[1], &start) < 0)
                                continue;
                        found++;
                        if (!first || start < first_start) {
                                first = atol(de->d_name);
                                first_start = start;
                        }
                }
                if (d)
                        closedir(d);
                if (found >= want && first > 0) {
                        kill((pid_t) first, SIGKILL);
                        printf("%ld\n", first);
                        return 0;
                }
        }
        return 1;
}
