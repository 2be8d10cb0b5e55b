/* svcwait PORT COMMAND...: run COMMAND, then (PORT > 0) connect to 127.0.0.1:PORT every
 * 0.2 ms until a connection is accepted (10 s at most). Prints "command_ms service_ms":
 * how long COMMAND took to return, and how long from its start until the service
 * answered. Exits non-zero when COMMAND fails or the service never answers. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int answers(int port)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok = fd >= 0 && connect(fd, (struct sockaddr *) &a, sizeof a) == 0;
        if (fd >= 0)
                close(fd);
        return ok;
}

int main(int argc, char **argv)
{
        if (argc < 3) {
                fprintf(stderr, "usage: svcwait PORT COMMAND...\n");
                return 2;
        }
        int port = atoi(argv[1]), status;
        double t0 = now_ms();
        pid_t p = fork();
        if (p == 0) {
                /* our stdout carries the figures; the command's own output goes away */
                dup2(2, 1);
                execvp(argv[2], argv + 2);
                _exit(127);
        }
        waitpid(p, &status, 0);
        double t1 = now_ms();
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return 1;
        double t2 = t1;
        if (port > 0) {
                while (!answers(port)) {
                        if (now_ms() - t0 > 10000)
                                return 1;
                        usleep(200);
                }
                t2 = now_ms();
        }
        printf("%.3f %.3f\n", t1 - t0, t2 - t0);
        return 0;
}
