/* libFuzzer target: hutch.conf (conf/conf.c): the input up to its first NUL byte as the
 * system file, the rest as a user's file tightening it, then the policy checks over the
 * merged result. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "fuzz.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct hutch_conf sys, user;
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        size_t first = strlen(text);
        log_set_level(LOG_LEVEL_ERROR);
        conf_defaults(&sys);
        conf_defaults(&user);
        (void) conf_parse_string(&sys, text, "sys", &err);
        if (first < size)
                (void) conf_parse_string(&user, text + first + 1, "user", &err);
        conf_tighten(&sys, &user, "user");
        (void) conf_bind_check(&sys, "/mnt/data", &err);
        (void) conf_bind_check(&sys, "/", &err);
        int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
                (void) conf_image_check(&sys, fd, "/", &err);
                close(fd);
        }
        conf_free(&sys);
        conf_free(&user);
        free(text);
        return 0;
}
