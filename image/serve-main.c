/* hutch-squashfs: a batch container's FUSE server as a program of its own. hutch spawns
 * it at a launch's start (image_serve_process) with a seqpacket socket as fd 3, on which
 * the mount comes, and the launcher's pidfd as fd 4; it serves the mount until either
 * ends. Linked statically (meson.build): it starts without the dynamic loader and libc's
 * relocation, ~0.5-1 ms sooner on virtual machines, and the launcher waits for its first
 * answer. It does nothing that needs NSS, which a static program could not load safely. */
#include <stdio.h>

#include "image/image.h"

int main(void)
{
        int r = image_serve_main();
        if (r == 2)
                fputs("hutch-squashfs: error: this program is started by hutch itself\n", stderr);
        return r;
}
