/* Run a command as a child subreaper and reap every orphan below it, so processes that
 * outlive their parent (hutch's detached FUSE server) are reaped even on machines whose
 * PID 1 does not reap. Exits with the command's status. */
#include <errno.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr, "usage: reaper COMMAND [ARGS...]\n");
                return 2;
        }
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        pid_t child = fork();
        if (child == 0) {
                execvp(argv[1], argv + 1);
                perror(argv[1]);
                _exit(127);
        }
        int status = 0, st;
        pid_t p;
        /* wait for the command, then for whatever it left behind */
        while ((p = wait(&st)) > 0 || errno == EINTR)
                if (p == child)
                        status = st;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
