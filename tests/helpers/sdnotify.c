/* sd_notify for test images without systemd-notify: sends its argument ("READY=1" when
 * none) as one datagram to $NOTIFY_SOCKET, a path or '@' for an abstract socket. Built
 * static, to run inside the busybox test image. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        const char *msg = argc > 1 ? argv[1] : "READY=1";
        const char *path = getenv("NOTIFY_SOCKET");
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (!path || !*path || strlen(path) >= sizeof a.sun_path) {
                fprintf(stderr, "sdnotify: NOTIFY_SOCKET is not set (or too long)\n");
                return 2;
        }
        memcpy(a.sun_path, path, strlen(path));
        socklen_t len = offsetof(struct sockaddr_un, sun_path) + strlen(path);
        if (a.sun_path[0] == '@')
                a.sun_path[0] = 0;
        else
                len++;
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || sendto(fd, msg, strlen(msg), 0, (struct sockaddr *) &a, len) < 0) {
                perror("sdnotify");
                return 1;
        }
        return 0;
}
