/* What this machine charges for the operations a container start is made of: page faults
 * on fresh and on copy-on-write memory, populating memory in one call, fork and
 * clone(CLONE_VM). The figures in docs/performance.md ("What this machine kind charges").
 * usage: cc -O2 -o vmcost bench/vmcost.c && ./vmcost */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIZE (2u << 20)
#define ROUNDS 20

static double now_ms(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double) t.tv_sec * 1e3 + (double) t.tv_nsec / 1e6;
}

static volatile double *child_ran; /* shared with the children */

static int child(void *arg)
{
        (void) arg;
        *child_ran = now_ms();
        return 0;
}

static char *fresh(int extra)
{
        char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
        if (p == MAP_FAILED) {
                perror("mmap");
                exit(1);
        }
        return p;
}

static void touch(char *p)
{
        for (size_t o = 0; o < SIZE; o += 4096)
                p[o] = 1;
}

int main(void)
{
        const double pages = SIZE / 4096.0;
        double fault = 0, populate = 0, cow = 0;
        for (int i = 0; i < ROUNDS; i++) {
                char *p = fresh(0);
                double t = now_ms();
                touch(p);
                fault += now_ms() - t;
                munmap(p, SIZE);
                t = now_ms();
                p = fresh(MAP_POPULATE);
                populate += now_ms() - t;
                pid_t c = fork(); /* p is now copy-on-write in this process */
                if (c == 0) {
                        pause();
                        _exit(0);
                }
                t = now_ms();
                touch(p);
                cow += now_ms() - t;
                kill(c, SIGKILL);
                waitpid(c, NULL, 0);
                munmap(p, SIZE);
        }
        printf("fault on fresh memory      %6.2f us/page\n", fault * 1e3 / ROUNDS / pages);
        printf("fault after fork (COW)     %6.2f us/page\n", cow * 1e3 / ROUNDS / pages);
        printf("MAP_POPULATE               %6.2f us/page\n", populate * 1e3 / ROUNDS / pages);

        child_ran = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        char *ballast = fresh(MAP_POPULATE); /* a launcher-sized process */
        touch(ballast);
        char *stack = malloc(1 << 16);
        double forked = 0, cloned = 0;
        for (int i = 0; i < ROUNDS; i++) {
                double t = now_ms();
                pid_t c = fork();
                if (c == 0) {
                        *child_ran = now_ms();
                        _exit(0);
                }
                waitpid(c, NULL, 0);
                forked += *child_ran - t;
                t = now_ms();
                c = clone(child, stack + (1 << 16), CLONE_VM | SIGCHLD, NULL);
                waitpid(c, NULL, 0);
                cloned += *child_ran - t;
        }
        printf("fork() until the child runs         %6.3f ms\n", forked / ROUNDS);
        printf("clone(CLONE_VM) until the child runs %6.3f ms\n", cloned / ROUNDS);
        free(stack);
        return 0;
}
