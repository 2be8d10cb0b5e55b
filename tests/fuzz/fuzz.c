/* The input file of a fuzz target process: in $TMPDIR (or /tmp), named after the pid,
 * removed at exit. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"

static char input[64];

static void remove_input(void)
{
        unlink(input);
}

int fuzz_write_file(const uint8_t *data, size_t size, char *path, size_t len)
{
        if (!input[0]) {
                const char *tmp = getenv("TMPDIR");
                snprintf(input, sizeof input, "%s/hutch-fuzz-%d", tmp && *tmp && tmp[0] == '/' ? tmp : "/tmp",
                         (int) getpid());
                atexit(remove_input);
        }
        int fd = open(input, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -1;
        ssize_t n = write(fd, data, size);
        close(fd);
        if (n != (ssize_t) size)
                return -1;
        snprintf(path, len, "%s", input);
        return 0;
}
