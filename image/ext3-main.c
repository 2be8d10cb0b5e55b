/* hutch-ext3: an ordinary user's ext3 overlay served over FUSE (image/ext3.c). hutch's
 * overlay watcher (runtime/overlay-fuse.c) starts it with the image's fd, the filesystem's
 * offset in it and the FUSE mount's fd. */
#include <stdio.h>

#include "image/image.h"

int main(int argc, char **argv)
{
        int r = image_ext3_main(argc, argv);
        if (r == 2)
                fputs("hutch-ext3: error: this program is started by hutch itself\n", stderr);
        return r;
}
