/* libFuzzer target: the SIF reader (image/sif.c) on any bytes: the header parser on the
 * input itself, then sif_load's bounds checks against the file, the partition choice and
 * every name lookup over the descriptors it accepts. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "image/image.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct sif_header h;
        struct hutch_error err = HUTCH_ERROR_INIT;
        char path[64];
        (void) sif_header_parse(data, size, &h, &err);
        if (fuzz_write_file(data, size, path, sizeof path) < 0)
                return 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        struct sif s = {0};
        if (sif_load(fd, size, &s, &err) == 0) {
                const struct sif_descriptor *d;
                if (sif_primary_partition(&s, &d, &err) == 0 && (uint64_t) d->offset + (uint64_t) d->size > size)
                        abort(); /* a partition past the end of the file */
                for (size_t i = 0; i < s.n_descr; i++) {
                        uint8_t out[SIF_DESCRIPTOR_SIZE];
                        (void) sif_datatype_name(s.descr[i].datatype);
                        (void) sif_fstype_name(s.descr[i].fstype);
                        (void) sif_parttype_name(s.descr[i].parttype);
                        (void) sif_arch_name(s.descr[i].arch);
                        (void) sif_descriptor_find(&s, s.descr[i].id);
                        sif_descriptor_format(&s.descr[i], out);
                }
                sif_free(&s);
        }
        close(fd);
        return 0;
}
