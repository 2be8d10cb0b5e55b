/* hutch-net: the network helper a launcher starts (detached, socket on fd 3) to wire its new
 * network namespace with pasta, slirp4netns or a bridge, and to undo that when the
 * container ends. Its own program: libnl is a shared library the lean hutch never loads.
 * The admin may install it setuid root, for users' bridges (docs/user-guide.md). */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <netlink/netlink.h>

#include "net-helper.h"

int main(int argc, char **argv)
{
        /* Run setuid root: before anything else, nothing of the caller's environment stays
         * (libnl's constructor read NLDBG already: its debug output is turned off again),
         * fds 0-2 are open, so that no file opened later becomes the caller's stderr, and
         * the umask is ours. */
        bool setuid_run = getuid() != geteuid() || getgid() != getegid();
        if (setuid_run) {
                clearenv();
                nl_debug = 0;
                for (int fd = 0; fd < 3; fd++)
                        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
                                return 1;
                umask(022);
        }
        if (argc < 2 || strcmp(argv[1], "helper") != 0) {
                fprintf(stderr, "hutch-net is started by hutch (--net --network pasta|slirp4netns|bridge)\n");
                return 2;
        }
        return net_helper_main(3, setuid_run);
}
