/* hutch-squashfs: the image server as a program of its own (image/serve.c). hutch
 * spawns it at a launch's start, an instance's supervisor before its launcher
 * (image_serve_process), with a seqpacket socket as fd 3, on which the mount comes, the
 * owner's pidfd as fd 4, where a crash is reported as fd 5, and its cache's cap in bytes
 * as its argument. Linked statically (meson.build): it starts without the dynamic loader
 * and libc's relocation, ~0.5-1 ms sooner on virtual machines, and the launcher waits for
 * its first answer. It does nothing that needs NSS, which a static program could not load
 * safely. */
#include <stdio.h>
#include <stdlib.h>

#include "image/image.h"

int main(int argc, char **argv)
{
        int r = image_serve_main(argc > 1 ? strtoull(argv[1], NULL, 10) : 0);
        if (r == 2)
                fputs("hutch-squashfs: error: this program is started by hutch itself\n", stderr);
        return r;
}
