/* readtree [-r READERS] PATH...: read every regular file beneath each PATH (a folder is
 * walked, names sorted) with READERS processes at once, each its own contiguous share of the
 * list (as ranks of one job read their halves of a tree), and print
 * "ms files bytes checksum": the wall time from the walk's start to the last reader's end,
 * measured inside the container it runs in. Linked statically by bench/read.sh, so that it
 * runs in any image. The checksum (a sum of 64-bit words) keeps the reads from being
 * skipped and lets runs be compared. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char **files;
static size_t n_files, cap_files;

static int by_name(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void add(char *path)
{
        if (n_files == cap_files) {
                cap_files = cap_files ? cap_files * 2 : 1024;
                files = realloc(files, cap_files * sizeof *files);
                if (!files)
                        exit(2);
        }
        files[n_files++] = path;
}

static void walk(const char *path)
{
        struct stat st;
        if (lstat(path, &st) < 0) {
                perror(path);
                exit(2);
        }
        if (S_ISREG(st.st_mode)) {
                add(strdup(path));
                return;
        }
        if (!S_ISDIR(st.st_mode))
                return;
        struct dirent **names;
        int n = scandir(path, &names, NULL, alphasort);
        if (n < 0) {
                perror(path);
                exit(2);
        }
        for (int i = 0; i < n; i++) {
                if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, "..")) {
                        char *sub;
                        if (asprintf(&sub, "%s/%s", path, names[i]->d_name) < 0)
                                exit(2);
                        walk(sub);
                        free(sub);
                }
                free(names[i]);
        }
        free(names);
}

struct result {
        uint64_t bytes, sum;
};

static void read_share(size_t from, size_t to, struct result *r)
{
        static uint64_t buf[(256 << 10) / 8];
        for (size_t i = from; i < to; i++) {
                int fd = open(files[i], O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        perror(files[i]);
                        exit(1);
                }
                ssize_t n;
                while ((n = read(fd, buf, sizeof buf)) > 0) {
                        r->bytes += (uint64_t) n;
                        memset((char *) buf + n, 0, (size_t) (-n & 7));
                        for (ssize_t w = 0; w < (n + 7) / 8; w++)
                                r->sum += buf[w];
                }
                if (n < 0) {
                        perror(files[i]);
                        exit(1);
                }
                close(fd);
        }
}

int main(int argc, char **argv)
{
        int readers = 1, opt;
        while ((opt = getopt(argc, argv, "r:")) != -1)
                if (opt == 'r')
                        readers = atoi(optarg);
        if (optind >= argc || readers < 1 || readers > 64) {
                fprintf(stderr, "usage: readtree [-r READERS] PATH...\n");
                return 2;
        }
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = optind; i < argc; i++)
                walk(argv[i]);
        qsort(files, n_files, sizeof *files, by_name);
        struct result *res =
                mmap(NULL, (size_t) readers * sizeof *res, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (res == MAP_FAILED)
                return 2;
        for (int k = 0; k < readers; k++) {
                size_t from = n_files * (size_t) k / (size_t) readers,
                       to = n_files * (size_t) (k + 1) / (size_t) readers;
                if (readers == 1) {
                        read_share(from, to, &res[k]);
                        break;
                }
                pid_t p = fork();
                if (p < 0)
                        return 2;
                if (p == 0) {
                        read_share(from, to, &res[k]);
                        _exit(0);
                }
        }
        int status, failed = 0;
        while (wait(&status) > 0)
                failed |= !WIFEXITED(status) || WEXITSTATUS(status);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (failed)
                return 1;
        uint64_t bytes = 0, sum = 0;
        for (int k = 0; k < readers; k++) {
                bytes += res[k].bytes;
                sum += res[k].sum;
        }
        double ms = (double) (b.tv_sec - a.tv_sec) * 1e3 + (double) (b.tv_nsec - a.tv_nsec) / 1e6;
        printf("%.2f %zu %" PRIu64 " %016" PRIx64 "\n", ms, n_files, bytes, sum);
        return 0;
}
