/* sign: digests as the integrity JSON spells them, the bytes the reference hashes for the
 * header and a descriptor, appending a signature object, keyrings that are not PGP, and a
 * sign → verify → one byte changed → refused round trip on a SIF built here; the reference
 * fixtures (golang-github-sylabs-sif-dev) verify with its test key when installed. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "sign/sign-internal.h"
#include "util/cleanup.h"
#include "util/util.h"

#define SIF_TESTDATA "/usr/share/gocode/src/github.com/sylabs/sif/test"

static char tmpdir[64];

static int setup(void **state)
{
        (void) state;
        strcpy(tmpdir, "/tmp/test_sign.XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
        (void) state;
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

static void test_digest_parse(void **state)
{
        (void) state;
        struct digest d;
        char buf[200];
        const char *ok = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_int_equal(digest_parse(ok, &d), 0);
        assert_string_equal(d.name, "sha256");
        assert_int_equal(d.len, 32);
        digest_format(&d, buf, sizeof buf);
        assert_string_equal(buf, ok);
        assert_int_equal(digest_parse("sha256:ba78", &d), -EINVAL);
        assert_int_equal(digest_parse("sha256:zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", &d),
                         -EINVAL);
        assert_int_equal(digest_parse("md5:900150983cd24fb0d6963f7d28e17f72", &d), -EOPNOTSUPP);
        assert_int_equal(digest_parse("sha256", &d), -EINVAL);
        assert_int_equal(digest_parse("sha256:a:b", &d), -EINVAL);
        struct digest s = {.name = "sha256"};
        assert_int_equal(digest_of_buffer(&s, "abc", 3), 0);
        assert_memory_equal(s.value, d.value, 0); /* d may be stale: compare with ok */
        assert_int_equal(digest_parse(ok, &d), 0);
        assert_memory_equal(s.value, d.value, 32);
        struct digest e = {.name = "sha512_256"};
        assert_int_equal(digest_of_buffer(&e, "abc", 3), 0);
        assert_int_equal(e.len, 32);
}

static void test_integrity_bytes(void **state)
{
        (void) state;
        struct sif_object o = {0};
        uint8_t out[INTEGRITY_BYTES_MAX], h[SIF_HEADER_SIZE];
        struct sif_descriptor d = {.datatype = SIF_DATA_PARTITION,
                                   .used = true,
                                   .id = 7,
                                   .groupid = 2 | SIF_GROUP_MASK,
                                   .linkid = 0,
                                   .offset = 4096,
                                   .size = 10,
                                   .created = 5,
                                   .modified = 6};
        strcpy(d.name, "name");
        sif_descriptor_format(&d, o.raw);
        o.d = d;
        o.min_id = 5;
        /* datatype 4, used 1, relative id 4, link 4, size 8, created 8, uid 8, gid 8, name 128, extra 384 */
        assert_int_equal(descriptor_integrity_bytes(&o, out), 557);
        assert_int_equal(out[5], 2); /* 7 - 5 */
        assert_int_equal(out[13], 10);
        assert_int_equal(out[21], 5);
        assert_memory_equal(out + 45, "name", 4);
        /* the modified time and the offset are not covered */
        o.raw[49] = 99;
        o.raw[17] = 99;
        uint8_t again[INTEGRITY_BYTES_MAX];
        descriptor_integrity_bytes(&o, again);
        assert_memory_equal(out, again, 557);
        memset(h, 0, sizeof h);
        memcpy(h + 32, "SIF_MAGIC", 9);
        h[45] = 'A'; /* arch: not covered */
        h[48] = 0x42;
        assert_int_equal(header_integrity_bytes(h, out), 61);
        assert_int_equal(out[45], 0x42);
}

/* A SIF file with two objects of group 1 and room for two more */
static void make_sif(const char *path)
{
        struct sif_header h = {.launch = "#!x\n", .version = "01", .arch = "02"};
        uint8_t hb[SIF_HEADER_SIZE], db[SIF_DESCRIPTOR_SIZE];
        FILE *f = fopen(path, "w+");
        assert_non_null(f);
        int fd = fileno(f);
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
                sif_descriptor_format(&d, db);
                assert_int_equal(pwrite(fd, db, sizeof db, 128 + i * SIF_DESCRIPTOR_SIZE), sizeof db);
                char data[100];
                memset(data, 'a' + (int) i, sizeof data);
                assert_int_equal(pwrite(fd, data, sizeof data, 4096 + 100 * i), sizeof data);
        }
        sif_header_format(&h, hb);
        assert_int_equal(pwrite(fd, hb, sizeof hb, 0), sizeof hb);
        fclose(f);
}

static void test_sign_verify_roundtrip(void **state)
{
        (void) state;
        struct sign_keyring kr = SIGN_KEYRING_NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct sign_key_info ki;
        char keys[128], img[128];
        size_t n = 0;

        snprintf(keys, sizeof keys, "%s/keys", tmpdir);
        snprintf(img, sizeof img, "%s/a.sif", tmpdir);
        make_sif(img);
        assert_int_equal(sign_keyring_open(&kr, keys, NULL, true, &err), 0);
        struct sign_newpair np = {.name = "Unit", .email = "u@example.org", .passphrase = "pw", .bits = 1024};
        assert_int_equal(sign_keyring_newpair(&kr, &np, &ki, &err), 0);
        assert_string_equal(ki.uid, "Unit <u@example.org>");
        assert_int_equal(sign_keyring_save(&kr, &err), 0);

        struct sign_opts o = {.fingerprint = ki.fingerprint, .passphrase = "wrong", .now = 1};
        assert_int_equal(sign_image_sign(&kr, img, &o, &n, &err), -EACCES);
        o.passphrase = "pw";
        assert_int_equal(sign_image_sign(&kr, img, &o, &n, &err), 0);
        assert_int_equal(n, 1);

        struct sign_verify_opts vo = {0};
        struct sign_verify_report rep = {0};
        assert_int_equal(sign_image_verify(&kr, img, &vo, &rep, &err), 0);
        assert_int_equal(rep.n_sigs, 1);
        assert_int_equal(rep.sigs[0].sig_id, 3);
        assert_int_equal(rep.sigs[0].n_verified, 2);
        assert_string_equal(rep.sigs[0].fingerprint, ki.fingerprint);
        sign_verify_report_free(&rep);

        /* the appended object: no group, linked to group 1, SHA-256, the fingerprint */
        struct sif_file f = SIF_FILE_NULL;
        assert_int_equal(sif_file_open(&f, img, false, &err), 0);
        const struct sif_object *sig = sif_file_object(&f, 3);
        assert_non_null(sig);
        assert_int_equal(sig->d.groupid, SIF_GROUP_MASK);
        assert_int_equal(sig->d.linkid, 1 | SIF_GROUP_MASK);
        assert_int_equal(sig->d.offset, 4296);
        assert_int_equal(f.s.header.descr_free, 1);
        assert_int_equal(sig->d.extra[0], 1);
        sif_file_close(&f);

        /* one byte of object 2 changed */
        FILE *fp = fopen(img, "r+");
        assert_int_equal(pwrite(fileno(fp), "X", 1, 4250), 1);
        fclose(fp);
        assert_true(sign_image_verify(&kr, img, &vo, &rep, &err) < 0);
        assert_non_null(strstr(err.msg, "object 2 changed after signing"));
        sign_verify_report_free(&rep);

        /* an unknown signer: an empty keyring */
        struct sign_keyring empty = SIGN_KEYRING_NULL;
        snprintf(keys, sizeof keys, "%s/none", tmpdir);
        assert_int_equal(sign_keyring_open(&empty, keys, NULL, false, &err), 0);
        assert_int_equal(sign_image_verify(&empty, img, &vo, &rep, &err), -ENOKEY);
        assert_non_null(strstr(err.msg, ki.fingerprint));
        sign_verify_report_free(&rep);
        sign_keyring_close(&empty);
        sign_keyring_close(&kr);
}

static void test_bad_keyrings(void **state)
{
        (void) state;
        struct sign_keyring kr = SIGN_KEYRING_NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        char dir[128], path[160];
        size_t n = 0;

        snprintf(dir, sizeof dir, "%s/bad", tmpdir);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(path, sizeof path, "%s/pgp-public", dir);
        assert_int_equal(write_file_at(AT_FDCWD, path, "not a key\n", 10, 0600), 0);
        assert_int_equal(sign_keyring_open(&kr, dir, NULL, false, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "not an OpenPGP keyring"));
        sign_keyring_close(&kr);

        const char *trunc = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBF6nUPABCACmd6vggtFfkZvYHJRv\n";
        assert_int_equal(sign_keyring_open(&kr, NULL, NULL, true, &err), 0);
        assert_int_equal(sign_keyring_import(&kr, trunc, strlen(trunc), &n, NULL, &err), -EINVAL);
        assert_int_equal(sign_keyring_import(&kr, "garbage", 7, &n, NULL, &err), -EINVAL);
        sign_keyring_close(&kr);
}

static void test_reference_fixtures(void **state)
{
        (void) state;
        struct sign_keyring kr = SIGN_KEYRING_NULL;
        struct hutch_error err = HUTCH_ERROR_INIT;
        _cleanup_free_ char *key = NULL;
        size_t len = 0, n = 0;
        static const struct {
                const char *image;
                bool legacy;
                size_t sigs;
        } cases[] = {
                {"one-group-signed.sif", false, 1},
                {"two-groups-signed.sif", false, 2},
                {"one-group-signed-legacy-group.sif", true, 1},
                {"two-groups-signed-legacy-group.sif", true, 1},
        };

        if (read_regular_at(AT_FDCWD, SIF_TESTDATA "/keys/private.asc", 1 << 20, &key, &len) < 0)
                skip();
        assert_int_equal(sign_keyring_open(&kr, NULL, NULL, true, &err), 0);
        size_t changed = 0;
        assert_int_equal(sign_keyring_import(&kr, key, len, &n, &changed, &err), 0);
        assert_int_equal(n, 1);
        assert_true(changed >= 1); /* the key and its subkeys */
        /* the same key again brings nothing: `key import` says it belongs already */
        assert_int_equal(sign_keyring_import(&kr, key, len, &n, &changed, &err), 0);
        assert_int_equal(n, 1);
        assert_int_equal(changed, 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct sign_verify_opts vo = {.legacy = cases[i].legacy};
                struct sign_verify_report rep = {0};
                char path[256];
                snprintf(path, sizeof path, SIF_TESTDATA "/images/%s", cases[i].image);
                int r = sign_image_verify(&kr, path, &vo, &rep, &err);
                if (r < 0)
                        fail_msg("%s: %s", cases[i].image, err.msg);
                assert_int_equal(rep.n_sigs, cases[i].sigs);
                assert_string_equal(rep.sigs[0].fingerprint, "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84");
                sign_verify_report_free(&rep);
                /* and the other kind is refused */
                vo.legacy = !vo.legacy;
                assert_true(sign_image_verify(&kr, path, &vo, &rep, &err) < 0);
                sign_verify_report_free(&rep);
        }
        sign_keyring_close(&kr);
}

static void test_policy(void **state)
{
        (void) state;
        struct hutch_error err = HUTCH_ERROR_INIT;
        char **fps = NULL;
        const char *a = "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84", *b = "08119cb7ef52a6b0096f2f84e88bc6a0cef26589";
        char line1[128], line2[128];
        snprintf(line1, sizeof line1, "%s /shared/images /opt/img/", a);
        snprintf(line2, sizeof line2, "%s", b);
        char *only_a[] = {line1, NULL}, *both[] = {line1, line2, NULL};

        assert_int_equal(trust_policy_for(only_a, "/home/u/x.sif", &fps, &err), 0);
        assert_null(fps);
        assert_int_equal(trust_policy_for(only_a, "/shared/images-other/x.sif", &fps, &err), 0);
        assert_null(fps);
        assert_int_equal(trust_policy_for(only_a, "/opt/img/x.sif", &fps, &err), 0);
        assert_non_null(fps);
        assert_string_equal(fps[0], a);
        strv_free(fps);
        assert_int_equal(trust_policy_for(both, "/home/u/x.sif", &fps, &err), 0);
        assert_string_equal(fps[0], "08119CB7EF52A6B0096F2F84E88BC6A0CEF26589");
        assert_null(fps[1]);
        uint64_t h1 = trust_policy_hash(fps);
        strv_free(fps);
        assert_int_equal(trust_policy_for(both, "/shared/images/sub/x.sif", &fps, &err), 0);
        assert_int_equal(strv_length(fps), 2);
        assert_true(trust_policy_hash(fps) != h1);
        strv_free(fps);
        char *bad1[] = {"1234 /x", NULL}, *bad2[] = {line2, "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84 relative", NULL};
        assert_int_equal(trust_policy_for(bad1, "/x/y", &fps, &err), -EINVAL);
        assert_int_equal(trust_policy_for(bad2, "/x/y", &fps, &err), -EINVAL);

        struct stat st = {.st_dev = 1, .st_ino = 2, .st_size = 3};
        char n1[TRUST_CACHE_NAME_MAX], n2[TRUST_CACHE_NAME_MAX];
        trust_cache_name(&st, 7, n1, sizeof n1);
        st.st_ctim.tv_nsec = 1;
        trust_cache_name(&st, 7, n2, sizeof n2);
        assert_string_not_equal(n1, n2);
}

/* More object groups than the caller can hold: refused, never silently cut (a group left
 * out would go unverified). */
static void test_groups_overflow(void **state)
{
        (void) state;
        struct sif_object objs[3] = {0};
        for (uint32_t i = 0; i < 3; i++)
                objs[i].d.groupid = SIF_GROUP_MASK | (i + 1);
        struct sif_file f = {.obj = objs, .n_obj = 3};
        uint32_t groups[3];
        assert_int_equal(sif_file_groups(&f, groups, 3), 3);
        assert_int_equal(groups[0], 1);
        assert_int_equal(groups[2], 3);
        assert_true(sif_file_groups(&f, groups, 2) == SIZE_MAX);
        objs[2].d.groupid = SIF_GROUP_MASK | 2; /* two distinct groups fit */
        assert_int_equal(sif_file_groups(&f, groups, 2), 2);
}

/* keyserver URLs, the form encoding, key ids and the machine-readable index (sign/hkp.c) */
static void test_hkp(void **state)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        char *u = NULL, id[41];
        (void) state;
        static const char *const good[][2] = {
                {"hkp://keys.example.org", "http://keys.example.org:11371"},
                {"hkp://keys.example.org:80/", "http://keys.example.org:80"},
                {"hkps://keys.example.org", "https://keys.example.org"},
                {"https://h:8443/ks//", "https://h:8443/ks"},
                {"http://127.0.0.1:1", "http://127.0.0.1:1"},
                {"hkp://[::1]", "http://[::1]:11371"},
                {"hkp://[::1]:99", "http://[::1]:99"},
        };
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
                assert_int_equal(sign_hkp_base(good[i][0], &u, &err), 0);
                assert_string_equal(u, good[i][1]);
                free(u);
        }
        static const char *const bad[] = {"ftp://h",    "h",           "hkp://",     "https:///x",
                                          "http://a b", "http://h/?x", "http://u@h", "hkp://:11371"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_true(sign_hkp_base(bad[i], &u, &err) < 0);

        char *e = sign_hkp_escape("a b+c/=\n~");
        assert_string_equal(e, "a%20b%2Bc%2F%3D%0A~");
        free(e);

        assert_true(sign_hkp_keyid_valid("0x0123456789abcdef", id, sizeof id));
        assert_string_equal(id, "0123456789ABCDEF");
        assert_true(sign_hkp_keyid_valid("0123456789ABCDEF0123456789ABCDEF01234567", id, sizeof id));
        assert_false(sign_hkp_keyid_valid("0123456789ABCDEG", id, sizeof id));
        assert_false(sign_hkp_keyid_valid("01234567", id, sizeof id));
        assert_false(sign_hkp_keyid_valid("", id, sizeof id));

        struct sign_hkp_key *k = NULL;
        size_t n = 0;
        const char *idx = "info:1:2\r\npub:0123456789ABCDEF0123456789ABCDEF01234567:1:2048:1700000000::r\n"
                          "uid:A%20B%20%3Ca@b%3E:1700000000::\nuid:esc%1B[31m:::\n"
                          "uid:c1%C2%9B31m%9B0m:::\nuid:J%C3%BCrgen%20%E6%97%A5:::\n"
                          "pub:89abcdef:22::::\n";
        assert_int_equal(sign_hkp_index_parse(idx, strlen(idx), &k, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(k[0].alg, "RSA");
        assert_int_equal(k[0].bits, 2048);
        assert_int_equal(k[0].created, 1700000000);
        assert_true(k[0].revoked);
        assert_int_equal(k[0].n_uids, 4);
        assert_string_equal(k[0].uids[0], "A B <a@b>");
        assert_string_equal(k[0].uids[1], "esc?[31m");                   /* no escape sequence reaches a terminal */
        assert_string_equal(k[0].uids[2], "c1??31m?0m");                 /* nor a C1 CSI, as UTF-8 or a lone byte */
        assert_string_equal(k[0].uids[3], "J\xc3\xbcrgen \xe6\x97\xa5"); /* well-formed UTF-8 kept */
        assert_string_equal(k[1].fingerprint, "89ABCDEF");
        assert_string_equal(k[1].alg, "EdDSA");
        free(k);
        static const char *const bad_idx[] = {
                "",
                "<html>error</html>",
                "uid:before-a-key:::\n",
                "pub:XYZ:1:2048:::\n",
                "pub:0123456789ABCDEF:1:99999999:::\n",
                "pub:0123456789ABCDEF:1:-1:::\n",
                "info:1:1\ninfo:1:1\n",
                "pub:0123456789ABCDEF:1:2048:::\nsomething:else\n",
        };
        for (size_t i = 0; i < sizeof bad_idx / sizeof bad_idx[0]; i++)
                assert_int_equal(sign_hkp_index_parse(bad_idx[i], strlen(bad_idx[i]), &k, &n, &err), -EBADMSG);
        assert_int_equal(sign_hkp_index_parse("info:1:0\n\0pub", 13, &k, &n, &err), -EBADMSG);
        assert_int_equal(sign_hkp_index_parse("info:1:0\n", 9, &k, &n, &err), 0);
        assert_int_equal(n, 0);
        free(k);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_digest_parse),    cmocka_unit_test(test_groups_overflow),
                cmocka_unit_test(test_integrity_bytes), cmocka_unit_test(test_sign_verify_roundtrip),
                cmocka_unit_test(test_bad_keyrings),    cmocka_unit_test(test_reference_fixtures),
                cmocka_unit_test(test_policy),          cmocka_unit_test(test_hkp),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
