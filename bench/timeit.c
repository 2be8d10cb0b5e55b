/* timeit N COMMAND...: run COMMAND N times (after 3 untimed warm-ups) and print
 * "median_ms p10_ms p90_ms median_maxrss_kib". Peak RSS is wait4's ru_maxrss of the
 * command's process, which spans its life before and after execve (the launcher and
 * the payload it became). Fails if any run fails. With TIMEIT_BEFORE set, that shell
 * command runs before each run, untimed (an image's first start: its cache emptied). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
        if (argc < 3) {
                fprintf(stderr, "usage: timeit N COMMAND...\n");
                return 2;
        }
        int n = atoi(argv[1]);
        const char *before = getenv("TIMEIT_BEFORE");
        double *ms = calloc(n, sizeof *ms), *rss = calloc(n, sizeof *rss);
        for (int i = -3; i < n; i++) {
                struct timespec a, b;
                struct rusage ru;
                int status;
                if (before && system(before) != 0) {
                        fprintf(stderr, "timeit: %s failed\n", before);
                        return 1;
                }
                clock_gettime(CLOCK_MONOTONIC, &a);
                pid_t p = fork();
                if (p == 0) {
                        /* our stdout carries the figures; the command's own output goes away */
                        int null = open("/dev/null", O_WRONLY);
                        if (null >= 0)
                                dup2(null, 1);
                        execvp(argv[2], argv + 2);
                        _exit(127);
                }
                wait4(p, &status, 0, &ru);
                clock_gettime(CLOCK_MONOTONIC, &b);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        fprintf(stderr, "timeit: %s failed (status %d)\n", argv[2], status);
                        return 1;
                }
                if (i >= 0) {
                        ms[i] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
                        rss[i] = (double) ru.ru_maxrss;
                }
        }
        qsort(ms, n, sizeof *ms, cmp);
        qsort(rss, n, sizeof *rss, cmp);
        printf("%.2f %.2f %.2f %.0f\n", ms[n / 2], ms[n / 10], ms[n * 9 / 10], rss[n / 2]);
        return 0;
}
