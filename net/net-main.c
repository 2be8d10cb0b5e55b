/* hutch-net: the network helper a launcher starts (detached, socket on fd 3) to wire its new
 * network namespace with pasta, slirp4netns or a bridge, and to undo that when the
 * container ends. Its own program: libnl is a shared library the lean hutch never loads. */
#include <stdio.h>
#include <string.h>

#include "net-helper.h"

int main(int argc, char **argv)
{
        if (argc < 2 || strcmp(argv[1], "helper") != 0) {
                fprintf(stderr, "hutch-net is started by hutch (--net --network pasta|slirp4netns|bridge)\n");
                return 2;
        }
        return net_helper_main(3, argc, argv);
}
