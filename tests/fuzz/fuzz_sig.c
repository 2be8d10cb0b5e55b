/* libFuzzer target: what hutch reads of SIF signatures (sign/). The first byte chooses:
 * 0: the rest is a whole SIF file, verified (integrity format, legacy, legacy per object)
 * with the reference test key when installed: the descriptors, the signature objects'
 * reading and linking, the clear-signed messages librnp is handed; 1 and 2: the rest is the
 * text of a signature object librnp has verified, checked against a fixed image as the
 * integrity JSON (1) or a legacy SIFHASH line (2), which no signing key could otherwise
 * reach from mutated inputs; 3: the rest is the data of a signature object appended to that
 * image, verified. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "sign/sign-internal.h"
#include "util/util.h"

#define REFERENCE_KEY "/usr/share/gocode/src/github.com/sylabs/sif/test/keys/private.asc"
#define FP "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84"

static struct sign_keyring kr = SIGN_KEYRING_NULL;
static uint8_t image[4096 + 200]; /* two objects of group 1, room for two more */

static void init(void)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        char *key = NULL;
        size_t len = 0, n = 0;
        if (sign_keyring_open(&kr, NULL, NULL, false, &err) < 0)
                abort();
        if (read_regular_at(AT_FDCWD, REFERENCE_KEY, 1 << 20, &key, &len) == 0)
                (void) sign_keyring_import(&kr, key, len, &n, NULL, &err);
        free(key);
        struct sif_header h = {.launch = "#!x\n", .version = "01", .arch = "02"};
        h.descr_total = 4;
        h.descr_free = 2;
        h.descr_offset = 128;
        h.descr_size = 4 * SIF_DESCRIPTOR_SIZE;
        h.data_offset = 4096;
        h.data_size = 200;
        for (uint32_t i = 0; i < 2; i++) {
                struct sif_descriptor d = {.datatype = SIF_DATA_GENERIC,
                                           .used = true,
                                           .id = i + 1,
                                           .groupid = 1 | SIF_GROUP_MASK,
                                           .offset = 4096 + 100 * i,
                                           .size = 100};
                sif_descriptor_format(&d, image + 128 + i * SIF_DESCRIPTOR_SIZE);
                memset(image + 4096 + 100 * i, 'a' + (int) i, 100);
        }
        sif_header_format(&h, image);
        /* the seed corpus is made from this image (tests/fuzz/mkcorpus-sig.sh) */
        const char *t = getenv("FUZZ_SIG_TEMPLATE");
        if (t && write_file_at(AT_FDCWD, t, (const char *) image, sizeof image, 0644) < 0)
                abort();
}

static void verify_file(const char *path)
{
        static const struct sign_verify_opts opts[] = {
                {0},
                {.legacy = true},
                {.legacy = true, .all = true},
        };
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                struct hutch_error err = HUTCH_ERROR_INIT;
                struct sign_verify_report rep = {0};
                (void) sign_image_verify(&kr, path, &opts[i], &rep, &err);
                for (size_t k = 0; k < rep.n_sigs; k++)
                        if (rep.sigs[k].n_verified > ELEMENTSOF(rep.sigs[k].verified))
                                abort();
                sign_verify_report_free(&rep);
        }
}

/* the fixed image with a signature object of data (data NULL: none) */
static int write_image(const uint8_t *data, size_t len, char *path, size_t path_len)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        if (fuzz_write_file(image, sizeof image, path, path_len) < 0)
                return -1;
        if (!data)
                return 0;
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return -1;
        struct sif_descriptor d = {
                .datatype = SIF_DATA_SIGNATURE, .groupid = SIF_GROUP_MASK, .linkid = 1 | SIF_GROUP_MASK};
        d.extra[0] = 1;
        for (size_t i = 0; i < 20; i++) /* the reference key's fingerprint */
                d.extra[4 + i] = (uint8_t) strtoul((char[]){FP[2 * i], FP[2 * i + 1], 0}, NULL, 16);
        int r = sif_object_append(fd, data, len, 1, &d, &err);
        close(fd);
        return r;
}

static void check_text(const uint8_t *data, size_t size, bool legacy)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct sif_file f = SIF_FILE_NULL;
        struct sign_sig_result res;
        char path[64];
        char *text = strndup((const char *) data, size);
        if (!text || write_image(NULL, 0, path, sizeof path) < 0 || sif_file_open(&f, path, false, &err) < 0) {
                free(text);
                return;
        }
        struct sif_object sig = {.d = {.datatype = SIF_DATA_SIGNATURE, .id = 3, .linkid = 1 | SIF_GROUP_MASK}};
        sig.d.extra[0] = (uint8_t) (size ? data[0] % 5 : 1); /* legacy's hash type, also bad ones */
        memset(&res, 0, sizeof res);
        if (verify_signed_text(&f, 1, &sig, text, legacy, &res, &err) == 0 && res.n_verified != 2)
                abort(); /* a success verifies the whole group */
        sif_file_close(&f);
        free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char path[64];
        if (!kr.ffi)
                init();
        if (size == 0)
                return 0;
        switch (data[0] % 4) {
        case 0:
                if (fuzz_write_file(data + 1, size - 1, path, sizeof path) == 0)
                        verify_file(path);
                break;
        case 1: check_text(data + 1, size - 1, false); break;
        case 2: check_text(data + 1, size - 1, true); break;
        case 3:
                if (write_image(data + 1, size - 1, path, sizeof path) == 0)
                        verify_file(path);
                break;
        }
        return 0;
}
