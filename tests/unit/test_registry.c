/* registry: references, manifests and indexes, image configs, whiteouts, and layers
 * unpacked with whiteouts and opaque folders applied exactly. */
#include <archive.h>
#include <archive_entry.h>
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

#include "registry/registry-internal.h"
#include "registry/registry.h"
#include "util/util.h"

static void test_ref(void **state)
{
        (void) state;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct registry_ref r;
        assert_int_equal(registry_ref_parse("docker://alpine", &r, &err), 0);
        assert_string_equal(r.host, DOCKER_HUB_HOST);
        assert_string_equal(r.repo, "library/alpine");
        assert_string_equal(r.tag, "latest");
        assert_null(r.digest);
        char *n = registry_ref_default_name(&r);
        assert_string_equal(n, "alpine_latest.sif");
        free(n);
        registry_ref_free(&r);

        assert_int_equal(registry_ref_parse("docker://127.0.0.1:5000/test/busy-box:v1.2", &r, &err), 0);
        assert_string_equal(r.host, "127.0.0.1:5000");
        assert_string_equal(r.repo, "test/busy-box");
        assert_string_equal(r.tag, "v1.2");
        n = registry_ref_default_name(&r);
        assert_string_equal(n, "busy-box_v1.2.sif");
        free(n);
        registry_ref_free(&r);

        const char *d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        char uri[200];
        snprintf(uri, sizeof uri, "docker://localhost/a/b@%s", d);
        assert_int_equal(registry_ref_parse(uri, &r, &err), 0);
        assert_string_equal(r.host, "localhost");
        assert_null(r.tag);
        assert_string_equal(r.digest, d);
        n = registry_ref_default_name(&r);
        assert_true(strncmp(n, "b@sha256_0123", 13) == 0 && endswith(n, "cdef.sif"));
        free(n);
        registry_ref_free(&r);
        /* a tag and a digest: Apptainer's uri.GetName keeps the first two ':' parts */
        snprintf(uri, sizeof uri, "docker://localhost/a/b:v2@%s", d);
        assert_int_equal(registry_ref_parse(uri, &r, &err), 0);
        n = registry_ref_default_name(&r);
        assert_string_equal(n, "b_v2@sha256.sif");
        free(n);
        registry_ref_free(&r);

        assert_int_equal(registry_ref_parse("docker://user/img:1", &r, &err), 0);
        assert_string_equal(r.repo, "user/img");
        registry_ref_free(&r);
        assert_int_equal(registry_ref_parse("oras://h.io/x:1", &r, &err), 0);
        assert_int_equal(r.transport, REGISTRY_ORAS);
        registry_ref_free(&r);

        static const char *const bad[] = {
                "docker://",     "docker://UPPER",      "docker://a:b:c", "docker://a@sha256:12", "docker://a/:t",
                "docker://a:-t", "oras://noregistry:1", "http://a",       "docker://a//b",        "docker://a_"};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                assert_int_equal(registry_ref_parse(bad[i], &r, &err), -EINVAL);
}

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static void test_manifest(void **state)
{
        (void) state;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct oci_manifest m;
        const char *man = "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":\"x\","
                          "\"digest\":\"" D1 "\",\"size\":10},\"layers\":[{\"mediaType\":\"l\",\"digest\":\"" D2
                          "\",\"size\":5},{\"digest\":\"" D1 "\",\"size\":0}]}";
        assert_int_equal(oci_manifest_parse(man, strlen(man), &m, &err), 0);
        assert_false(m.is_index);
        assert_int_equal(m.n_layers, 2);
        assert_string_equal(m.config.digest, D1);
        assert_int_equal(m.layers[0].size, 5);
        oci_manifest_free(&m);

        const char *idx = "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"" D1 "\",\"size\":1,\"platform\":{\"os\":"
                          "\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},{\"digest\":\"" D2 "\",\"size\":1,"
                          "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";
        assert_int_equal(oci_manifest_parse(idx, strlen(idx), &m, &err), 0);
        assert_true(m.is_index);
        const struct oci_descriptor *d;
        assert_int_equal(oci_index_select(&m, "linux", "amd64", NULL, &d, &err), 0);
        assert_string_equal(d->digest, D2);
        assert_int_equal(oci_index_select(&m, "linux", "arm64", "v8", &d, &err), 0);
        assert_string_equal(d->digest, D1);
        assert_int_equal(oci_index_select(&m, "linux", "s390x", NULL, &d, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "linux/arm64/v8"));
        oci_manifest_free(&m);

        static const char *const bad[] = {
                "",
                "[]",
                "{\"schemaVersion\":1,\"layers\":[]}",
                "{\"layers\":{}}",
                "{\"layers\":[{\"digest\":\"sha256:12\",\"size\":1}],\"config\":{\"digest\":\"" D1 "\",\"size\":1}}",
                "{\"layers\":[],\"config\":{\"digest\":\"" D1 "\"}}",
                "{\"layers\":[]}",
                "{\"config\":1}",
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                assert_true(oci_manifest_parse(bad[i], strlen(bad[i]), &m, &err) < 0);
}

static void test_config(void **state)
{
        (void) state;
        struct hutch_error err = HUTCH_ERROR_INIT;
        struct oci_config c;
        const char *j = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/bin\",\"A=b c\"],"
                        "\"Entrypoint\":[\"/bin/sh\",\"-c\"],\"Cmd\":[\"echo hi\"],\"WorkingDir\":\"/srv\","
                        "\"Labels\":{\"k\":\"v\"}}}";
        assert_int_equal(oci_config_parse(j, strlen(j), &c, &err), 0);
        assert_string_equal(c.env[1], "A=b c");
        assert_string_equal(c.entrypoint[1], "-c");
        assert_string_equal(c.cmd[0], "echo hi");
        assert_null(c.cmd[1]);
        assert_non_null(strstr(c.labels_json, "\"k\""));
        oci_config_free(&c);
        assert_int_equal(oci_config_parse("{}", 2, &c, &err), 0);
        assert_null(c.env);
        oci_config_free(&c);
        assert_true(oci_config_parse("nope", 4, &c, &err) < 0);
}

static void test_whiteout(void **state)
{
        (void) state;
        char *t;
        assert_int_equal(whiteout_classify("a/b", &t), WHITEOUT_NONE);
        assert_int_equal(whiteout_classify("a/.wh.b", &t), WHITEOUT_FILE);
        assert_string_equal(t, "a/b");
        free(t);
        assert_int_equal(whiteout_classify(".wh.top", &t), WHITEOUT_FILE);
        assert_string_equal(t, "top");
        free(t);
        assert_int_equal(whiteout_classify("d/e/.wh..wh..opq", &t), WHITEOUT_OPAQUE);
        assert_string_equal(t, "d/e");
        free(t);
        assert_int_equal(whiteout_classify(".wh..wh..opq", &t), WHITEOUT_OPAQUE);
        assert_string_equal(t, "");
        free(t);
        assert_int_equal(whiteout_classify("x/.wh.", &t), WHITEOUT_BAD);
        assert_int_equal(whiteout_classify(".wh..", &t), WHITEOUT_BAD);
        assert_null(t);
        assert_int_equal(whiteout_classify(".wh...", &t), WHITEOUT_BAD);
        assert_int_equal(whiteout_classify("a/.wh..", &t), WHITEOUT_BAD);
        assert_int_equal(whiteout_classify("a/b/.wh...", &t), WHITEOUT_BAD);
        assert_int_equal(whiteout_classify("a/.wh....", &t), WHITEOUT_FILE); /* "..." is a plain name */
        assert_string_equal(t, "a/...");
        free(t);
}

static void test_archive_name(void **state)
{
        (void) state;
        assert_true(archive_name_is_valid("abc.json"));
        assert_true(archive_name_is_valid("0123/layer.tar"));
        assert_true(archive_name_is_valid("blobs/sha256/0123"));
        assert_true(archive_name_is_valid("..x/.y"));
        assert_false(archive_name_is_valid(NULL));
        assert_false(archive_name_is_valid(""));
        assert_false(archive_name_is_valid("/etc/passwd"));
        assert_false(archive_name_is_valid(".."));
        assert_false(archive_name_is_valid("../x.json"));
        assert_false(archive_name_is_valid("a/../../x"));
        assert_false(archive_name_is_valid("a/.."));
        assert_false(archive_name_is_valid("./a"));
        assert_false(archive_name_is_valid("a//b"));
        assert_false(archive_name_is_valid("a/"));
}

/* A tar of entries "NAME" (file, content NAME), "NAME/" (folder), "NAME->TARGET" (symlink). */
static void tar_write(const char *path, const char *const *names)
{
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        archive_write_add_filter_gzip(a);
        assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
        for (; *names; names++) {
                struct archive_entry *e = archive_entry_new();
                char name[256];
                snprintf(name, sizeof name, "%s", *names);
                char *arrow = strstr(name, "->");
                size_t n = strlen(name);
                if (arrow) {
                        *arrow = 0;
                        archive_entry_set_filetype(e, AE_IFLNK);
                        archive_entry_set_symlink(e, arrow + 2);
                        archive_entry_set_perm(e, 0777);
                } else if (name[n - 1] == '/') {
                        archive_entry_set_filetype(e, AE_IFDIR);
                        archive_entry_set_perm(e, 0555); /* read-only: later layers still write below */
                } else {
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_perm(e, 0644);
                        archive_entry_set_size(e, (la_int64_t) n);
                }
                archive_entry_set_pathname(e, name);
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                if (!arrow && name[n - 1] != '/')
                        archive_write_data(a, name, n);
                archive_entry_free(e);
        }
        archive_write_close(a);
        archive_write_free(a);
}

static bool exists(int root, const char *p)
{
        struct stat st;
        return fstatat(root, p, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void test_unpack(void **state)
{
        (void) state;
        if (getenv("HUTCH_VALGRIND")) /* dev.sh's valgrind run: valgrind does not know openat2(2) */
                skip();
        struct hutch_error err = HUTCH_ERROR_INIT;
        char dir[] = "/tmp/test_registry.XXXXXX";
        assert_non_null(mkdtemp(dir));
        char root[300], l1[300], l2[300], l3[300];
        snprintf(root, sizeof root, "%s/root", dir);
        snprintf(l1, sizeof l1, "%s/l1.tgz", dir);
        snprintf(l2, sizeof l2, "%s/l2.tgz", dir);
        snprintf(l3, sizeof l3, "%s/l3.tgz", dir);
        assert_int_equal(mkdir(root, 0755), 0);
        const char *const layer1[] = {"usr/",    "usr/lib/", "usr/lib/keep", "lib->usr/lib", "gone",  "opq/",
                                      "opq/old", "opq/sub/", "opq/sub/old2", "dir/",         "dir/x", NULL};
        /* the opaque marker after an entry of its own layer: that entry stays */
        const char *const layer2[] = {"opq/",      "opq/new",   "opq/.wh..wh..opq", ".wh.gone",
                                      "dir/.wh.x", "lib/added", "./usr/../escape",  NULL};
        const char *const layer3[] = {"/abs", "../up", NULL};
        tar_write(l1, layer1);
        tar_write(l2, layer2);
        tar_write(l3, layer3);
        int fd = open(root, O_RDONLY | O_DIRECTORY);
        struct unpack_opts o = {.as_root = false};
        assert_int_equal(layer_unpack(fd, l1, &o, &err), 0);
        assert_true(exists(fd, "usr/lib/keep"));
        assert_true(exists(fd, "opq/sub/old2"));
        assert_int_equal(layer_unpack(fd, l2, &o, &err), 0);
        assert_false(exists(fd, "gone"));
        assert_false(exists(fd, "dir/x"));
        assert_true(exists(fd, "dir"));
        assert_false(exists(fd, "opq/old"));
        assert_false(exists(fd, "opq/sub"));
        assert_true(exists(fd, "opq/new"));
        assert_false(exists(fd, "opq/.wh..wh..opq"));
        assert_false(exists(fd, ".wh.gone"));
        assert_true(exists(fd, "usr/lib/added")); /* through the image's own symlink */
        assert_true(exists(fd, "usr/lib/keep"));
        char esc[300];
        snprintf(esc, sizeof esc, "%s/escape", dir);
        assert_false(exists(AT_FDCWD, esc));
        assert_int_equal(layer_unpack(fd, l3, &o, &err), 0);
        assert_true(exists(fd, "abs")); /* made relative to the root */
        struct stat st;
        assert_int_equal(fstatat(fd, "usr", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 0755); /* writable while layers go on */
        layer_unpack_finish(fd, &o);
        assert_int_equal(fstatat(fd, "usr", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 0555); /* the layer's mode in the end */
        snprintf(esc, sizeof esc, "%s/up", dir);
        assert_false(exists(AT_FDCWD, esc));
        char bad[300];
        snprintf(bad, sizeof bad, "%s/notatar", dir);
        int b = open(bad, O_WRONLY | O_CREAT, 0644);
        assert_int_equal(write(b, "garbage garbage garbage", 23), 23);
        close(b);
        assert_true(layer_unpack(fd, bad, &o, &err) < 0);
        close(fd);
        char cmd[400];
        snprintf(cmd, sizeof cmd, "chmod -R u+rwx %s; rm -rf %s", dir, dir);
        assert_int_equal(system(cmd), 0);
}

/* A later layer replaces a folder noted for its mode by a symlink out of the root: the
 * mode goes to nothing outside. */
static void test_unpack_mode_symlink(void **state)
{
        (void) state;
        if (getenv("HUTCH_VALGRIND")) /* dev.sh's valgrind run: valgrind does not know openat2(2) */
                skip();
        struct hutch_error err = HUTCH_ERROR_INIT;
        char dir[] = "/tmp/test_registry.XXXXXX";
        assert_non_null(mkdtemp(dir));
        char root[300], out[300], outd[300], l1[300], l2[300], link[400];
        snprintf(root, sizeof root, "%s/root", dir);
        snprintf(out, sizeof out, "%s/victim", dir);
        snprintf(outd, sizeof outd, "%s/victim/d", dir);
        snprintf(l1, sizeof l1, "%s/l1.tgz", dir);
        snprintf(l2, sizeof l2, "%s/l2.tgz", dir);
        snprintf(link, sizeof link, "x->%s", out);
        assert_int_equal(mkdir(root, 0755), 0);
        assert_int_equal(mkdir(out, 0755), 0);
        assert_int_equal(mkdir(outd, 0755), 0);
        assert_int_equal(chmod(outd, 0755), 0);
        const char *const layer1[] = {"x/", "x/d/", NULL};
        const char *const layer2[] = {".wh.x", link, NULL};
        tar_write(l1, layer1);
        tar_write(l2, layer2);
        int fd = open(root, O_RDONLY | O_DIRECTORY);
        struct unpack_opts o = {.as_root = false};
        assert_int_equal(layer_unpack(fd, l1, &o, &err), 0);
        assert_int_equal(layer_unpack(fd, l2, &o, &err), 0);
        layer_unpack_finish(fd, &o);
        struct stat st;
        assert_int_equal(stat(outd, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0755);
        assert_int_equal(stat(out, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0755);
        close(fd);
        char cmd[400];
        snprintf(cmd, sizeof cmd, "chmod -R u+rwx %s; rm -rf %s", dir, dir);
        assert_int_equal(system(cmd), 0);
}

/* layer_unpack_growing: a layer read while its file grows, a chunk per wait_more; and one
 * whose growth stops short (wait_more < 0) fails. */
struct grow {
        const char *data;
        size_t len, written, chunk;
        int fd;
        unsigned waits;
        bool fail_half;
};

static int grow_more(void *ctx)
{
        struct grow *g = ctx;
        g->waits++;
        if (g->written == g->len)
                return 1;
        if (g->fail_half && g->written >= g->len / 2)
                return -EIO;
        size_t n = g->len - g->written < g->chunk ? g->len - g->written : g->chunk;
        assert_int_equal(write(g->fd, g->data + g->written, n), (ssize_t) n);
        g->written += n;
        return 0;
}

static void test_unpack_growing(void **state)
{
        (void) state;
        if (getenv("HUTCH_VALGRIND")) /* dev.sh's valgrind run: valgrind does not know openat2(2) */
                skip();
        struct hutch_error err = HUTCH_ERROR_INIT;
        char dir[] = "/tmp/test_registry.XXXXXX";
        assert_non_null(mkdtemp(dir));
        char root[300], whole[300], part[300], root2[300];
        snprintf(root, sizeof root, "%s/root", dir);
        snprintf(root2, sizeof root2, "%s/root2", dir);
        snprintf(whole, sizeof whole, "%s/l.tgz", dir);
        snprintf(part, sizeof part, "%s/l.part", dir);
        assert_int_equal(mkdir(root, 0755), 0);
        assert_int_equal(mkdir(root2, 0755), 0);
        const char *const layer[] = {"a/", "a/one", "a/two", "b/", "b/three", NULL};
        tar_write(whole, layer);
        char *data = NULL;
        size_t len = 0;
        assert_int_equal(read_regular_at(AT_FDCWD, whole, 1u << 20, &data, &len), 0);
        struct unpack_opts o = {.as_root = false};
        for (int fail = 0; fail <= 1; fail++) {
                struct grow g = {.data = data, .len = len, .chunk = 16, .fail_half = fail};
                g.fd = open(part, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                int in = open(part, O_RDONLY);
                int fd = open(fail ? root2 : root, O_RDONLY | O_DIRECTORY);
                assert_true(g.fd >= 0 && in >= 0 && fd >= 0);
                int r = layer_unpack_growing(fd, in, "l.part", grow_more, &g, &o, &err);
                if (!fail) {
                        assert_int_equal(r, 0);
                        assert_true(g.waits > 2); /* it waited, and read on after each wait */
                        assert_true(exists(fd, "a/one") && exists(fd, "a/two") && exists(fd, "b/three"));
                } else {
                        assert_true(r < 0);
                        assert_non_null(strstr(err.msg, "l.part")); /* libarchive's words after it */
                }
                layer_unpack_finish(fd, &o);
                close(fd);
                close(in);
                close(g.fd);
        }
        free(data);
        char cmd[400];
        snprintf(cmd, sizeof cmd, "chmod -R u+rwx %s; rm -rf %s", dir, dir);
        assert_int_equal(system(cmd), 0);
}

static void write_text(const char *dir, const char *name, const char *text)
{
        char p[400];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static unsigned conf_flags(const char *const *paths, const char *host, const char *repo)
{
        struct hutch_error err = HUTCH_ERROR_INIT;
        unsigned flags = 99;
        int r = registries_conf_lookup(paths, host, repo, &flags, &err);
        if (r < 0)
                print_error("%s\n", err.msg);
        assert_int_equal(r, 0);
        return flags;
}

/* podman's registries.conf: what of it is read, the TOML around it skipped, drop-ins. */
static void test_registries_conf(void **state)
{
        (void) state;
        char dir[] = "/tmp/test_registry.XXXXXX", main_[300], dropins[300], bad[300];
        assert_non_null(mkdtemp(dir));
        snprintf(main_, sizeof main_, "%s/registries.conf", dir);
        snprintf(dropins, sizeof dropins, "%s/d", dir);
        assert_int_equal(mkdir(dropins, 0755), 0);
        write_text(dir, "registries.conf",
                   "# comment\n"
                   "unqualified-search-registries = [\"docker.io\", # why\n"
                   "   'quay.io',\n"
                   "]\n"
                   "short-name-mode = \"enforcing\"\n"
                   "when = 1979-05-27 07:32:00Z\n"
                   "text = \"\"\"\n"
                   "[[registry]]\n"
                   "location = \"inside.string\"\n"
                   "insecure = true\"\"\"\n"
                   "[[ registry ]]\n"
                   "location = \"local.test:5000\"\n"
                   "insecure = true # plain http\n"
                   "[[registry.mirror]]\n"
                   "location = \"mirror.test\"\n"
                   "insecure = false\n"
                   "blocked = true\n"
                   "[[registry]]\n"
                   "prefix = \"ns.test/team\"\n"
                   "location = \"other.test\"\n"
                   "insecure = true\n"
                   "mirror = [{location = \"m.test\", insecure = true}, { location = 'n.test' }]\n"
                   "[[registry]]\n"
                   "location = \"ns.test/team/secret\"\n"
                   "blocked = true\n"
                   "[[registry]]\n"
                   "location = \"*.wild.test\"\n"
                   "insecure = true\n"
                   "[[registry]]\n"
                   "location = \"*.ported.test:5000\"\n"
                   "insecure = true\n"
                   "[[registry]]\n"
                   "location = \"docker.io\"\n"
                   "blocked = true\n"
                   "[aliases]\n"
                   "  \"almalinux\" = \"docker.io/library/almalinux\"\n"
                   "  'key.with.dots' = 'x'\n");
        write_text(dropins, "10-v1.conf",
                   "[registries.insecure]\nregistries = ['v1.test', \"v1b.test\"]\n"
                   "[registries.block]\nregistries = []\n");
        write_text(dropins, "20-override.conf", "[[registry]]\nlocation = \"docker.io\"\n");
        write_text(dropins, "ignored.txt", "not toml [[[\n");
        const char *const paths[] = {main_, dropins, "/nonexistent/registries.conf", NULL};
        assert_int_equal(conf_flags(paths, "local.test:5000", "a/b"), REGISTRY_INSECURE);
        assert_int_equal(conf_flags(paths, "local.test:5000", ""), REGISTRY_INSECURE);
        assert_int_equal(conf_flags(paths, "local.test", "a/b"), 0);     /* another port */
        assert_int_equal(conf_flags(paths, "local.test:50000", "a"), 0); /* a prefix ends at '/', ':' or '@' */
        assert_int_equal(conf_flags(paths, "inside.string", "a"), 0);    /* a string's text is no table */
        assert_int_equal(conf_flags(paths, "mirror.test", "a"), 0);      /* a mirror's keys are the mirror's */
        assert_int_equal(conf_flags(paths, "ns.test", "team/app"), REGISTRY_INSECURE);
        assert_int_equal(conf_flags(paths, "ns.test", "teamx/app"), 0);
        assert_int_equal(conf_flags(paths, "ns.test", "team/secret/x"), REGISTRY_BLOCKED); /* the longest */
        assert_int_equal(conf_flags(paths, "r.wild.test", "a"), REGISTRY_INSECURE);
        assert_int_equal(conf_flags(paths, "wild.test", "a"), 0);
        assert_int_equal(conf_flags(paths, "r.wild.test:5000", "a"), REGISTRY_INSECURE); /* any port */
        assert_int_equal(conf_flags(paths, "r.wildxtest:5000", "a"), 0);
        assert_int_equal(conf_flags(paths, "r.ported.test:5000", "a"), REGISTRY_INSECURE);
        assert_int_equal(conf_flags(paths, "r.ported.test:5001", "a"), 0); /* that port only */
        assert_int_equal(conf_flags(paths, "r.ported.test", "a"), 0);
        assert_int_equal(conf_flags(paths, "v1b.test", "a"), REGISTRY_INSECURE);
        assert_int_equal(conf_flags(paths, DOCKER_HUB_HOST, "library/alpine"), 0); /* the drop-in replaced it */
        const char *const only_main[] = {main_, NULL};
        assert_int_equal(conf_flags(only_main, DOCKER_HUB_HOST, "library/alpine"), REGISTRY_BLOCKED);
        assert_int_equal(conf_flags(NULL, "local.test:5000", "a"), 0);

        struct hutch_error err = HUTCH_ERROR_INIT;
        unsigned flags = 7;
        const char *const bads[] = {"[[registry]]\nlocation = \"x\" insecure = true\n", "[[registry]\n",
                                    "location = \"unterminated\n", "a = [1, 2\n", "= 3\n"};
        snprintf(bad, sizeof bad, "%s/bad.conf", dir);
        const char *const bad_paths[] = {bad, NULL};
        for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
                write_text(dir, "bad.conf", bads[i]);
                assert_int_equal(registries_conf_lookup(bad_paths, "x", "y", &flags, &err), -EINVAL);
                assert_non_null(strstr(err.msg, "bad.conf:"));
        }
        assert_int_equal(flags, 7); /* written only on success */
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
}

/* Which URLs are an insecure registry's own (TLS unverified there only): host and port. */
static void test_url_is_endpoint(void **state)
{
        (void) state;
        assert_true(url_is_endpoint("https://reg.test:5000/v2/", "https", "reg.test:5000"));
        assert_true(url_is_endpoint("https://user@REG.test:5000/v2/x?y", "https", "reg.test:5000"));
        assert_false(url_is_endpoint("https://reg.test:5001/v2/", "https", "reg.test:5000"));
        assert_false(url_is_endpoint("https://reg.test:5000/v2/", "https", "reg.test:5001"));
        assert_false(url_is_endpoint("https://reg.test/v2/", "https", "reg.test:5000"));
        assert_false(url_is_endpoint("https://reg.test:5000/v2/", "https", "reg.test"));
        assert_true(url_is_endpoint("https://reg.test/v2/", "https", "reg.test"));
        assert_true(url_is_endpoint("https://reg.test:443/v2/", "https", "reg.test"));
        assert_false(url_is_endpoint("https://reg.test/v2/", "http", "reg.test")); /* 443 is not 80 */
        /* credentials follow a redirect to the same scheme, host and port only */
        assert_true(auth_goes_to("https://reg.test:5000/v2/x", "https", "reg.test:5000"));
        assert_true(auth_goes_to("HTTPS://reg.test:5000/v2/x", "https", "reg.test:5000"));
        assert_false(auth_goes_to("http://reg.test:5000/v2/x", "https", "reg.test:5000"));
        assert_false(auth_goes_to("https://reg.test:5000/v2/x", "http", "reg.test:5000"));
        assert_false(auth_goes_to("https://blobs.test:5000/v2/x", "https", "reg.test:5000"));
        assert_false(auth_goes_to("reg.test:5000/v2/x", "https", "reg.test:5000"));
        assert_true(url_is_endpoint("http://reg.test/v2/", "http", "reg.test:80"));
        assert_false(url_is_endpoint("https://blobs.test/x", "https", "reg.test"));
        assert_false(url_is_endpoint("https://reg.test.evil/x", "https", "reg.test"));
        assert_true(url_is_endpoint("https://[::1]:5000/v2/", "https", "[::1]:5000"));
        assert_false(url_is_endpoint("https://[::1]:5001/v2/", "https", "[::1]:5000"));
        assert_true(url_is_endpoint("https://[::1]/v2/", "https", "[::1]:443"));
}

char *__real_strjoin(const char *a, const char *b, const char *c);
char *__wrap_strjoin(const char *a, const char *b, const char *c);
static unsigned strjoin_fail_at; /* n > 0: the nth call from now fails */

/* Linked with --wrap=strjoin: registry/'s calls come here */
char *__wrap_strjoin(const char *a, const char *b, const char *c)
{
        if (strjoin_fail_at && --strjoin_fail_at == 0)
                return NULL;
        return __real_strjoin(a, b, c);
}

static void paths_free(char **v)
{
        for (size_t i = 0; i < REGISTRIES_CONF_PATHS; i++)
                free(v[i]);
}

/* registries.conf where podman reads it; out of memory fails (a file left out could be the
 * one blocking a registry) */
static void test_registries_conf_paths(void **state)
{
        (void) state;
        char home[] = "/tmp/test_registry.XXXXXX", cmd[300];
        struct hutch_error err = HUTCH_ERROR_INIT;
        char *v[REGISTRIES_CONF_PATHS];
        assert_non_null(mkdtemp(home));
        assert_int_equal(registries_conf_paths("/x/r.conf", home, v, &err), 0);
        assert_string_equal(v[0], "/x/r.conf");
        assert_string_equal(v[1], "/etc/containers/registries.conf.d");
        assert_non_null(strstr(v[2], "/.config/containers/registries.conf.d"));
        assert_null(v[3]);
        paths_free(v);
        assert_int_equal(registries_conf_paths(NULL, home, v, &err), 0);
        assert_string_equal(v[0], "/etc/containers/registries.conf");
        assert_non_null(v[2]);
        paths_free(v);
        snprintf(cmd, sizeof cmd, "mkdir -p %s/.config/containers && touch %s/.config/containers/registries.conf", home,
                 home);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(registries_conf_paths("", home, v, &err), 0); /* empty: unset */
        assert_non_null(strstr(v[0], "/.config/containers/registries.conf"));
        assert_non_null(strstr(v[1], "/.config/containers/registries.conf.d"));
        assert_null(v[2]);
        paths_free(v);
        assert_int_equal(registries_conf_paths(NULL, NULL, v, &err), 0);
        assert_string_equal(v[0], "/etc/containers/registries.conf");
        assert_null(v[2]);
        paths_free(v);
        /* each allocation failing in turn: an error, nothing returned; the user's file (2
         * allocations), then $CONTAINERS_REGISTRIES_CONF and the system's (4 each) */
        for (int which = 0; which < 3; which++) {
                if (which == 1) {
                        snprintf(cmd, sizeof cmd, "rm %s/.config/containers/registries.conf", home);
                        assert_int_equal(system(cmd), 0);
                }
                for (unsigned n = 1; n <= (which ? 4u : 2u); n++) {
                        memset(v, 0x5a, sizeof v);
                        strjoin_fail_at = n;
                        int r = registries_conf_paths(which == 2 ? "/x/r.conf" : NULL, home, v, &err);
                        assert_int_equal(strjoin_fail_at, 0); /* the nth call was made */
                        assert_int_equal(r, -ENOMEM);
                        assert_non_null(strstr(err.msg, "registries.conf"));
                        assert_ptr_equal(v[0], (char *) 0x5a5a5a5a5a5a5a5aUL);
                }
        }
        snprintf(cmd, sizeof cmd, "rm -rf %s", home);
        assert_int_equal(system(cmd), 0);
}

/* docker-daemon:IMAGE: names that stay an image of /images/NAME/get; the daemon's address */
static void test_daemon(void **state)
{
        (void) state;
        const char *const good[] = {
                "busybox",      "busybox:1.36", "docker.io/library/busybox:latest", "reg.test:5000/a/b@sha256:0123",
                "81976785b790", "a..b/c"};
        const char *const bad[] = {"",      "/busybox", "a//b", "a/",    "../x", "a/../../containers/json",
                                   "a/./b", "a?b",      "a b",  "a%2fb", "a#b",  "."};
        for (size_t i = 0; i < sizeof good / sizeof *good; i++)
                assert_true(daemon_image_is_valid(good[i]));
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                assert_false(daemon_image_is_valid(bad[i]));
        struct hutch_error err = HUTCH_ERROR_INIT;
        char dir[] = "/tmp/test_registry.XXXXXX", host[300];
        assert_non_null(mkdtemp(dir));
        snprintf(host, sizeof host, "unix://%s/none.sock", dir);
        assert_int_not_equal(daemon_export(host, "busybox", -1, true, &err), 0);
        assert_non_null(strstr(err.msg, "cannot reach the Docker daemon at unix:///tmp/test_registry."));
        assert_non_null(strstr(err.msg, "none.sock: No such file or directory"));
        assert_int_equal(daemon_export("ssh://x", "busybox", -1, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "DOCKER_HOST 'ssh://x'"));
        assert_int_equal(daemon_export("unix://relative.sock", "busybox", -1, true, &err), -EINVAL);
        assert_int_equal(daemon_export("tcp://h:1/x", "busybox", -1, true, &err), -EINVAL);
        assert_int_equal(daemon_export(host, "../x", -1, true, &err), -EINVAL);
        assert_int_equal(rmdir(dir), 0);
}

/* A progress row: bar, percentage and sizes, never wider than the terminal. */
static void test_progress_row(void **state)
{
        (void) state;
        char buf[512];
        const char *d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";
        struct progress_row r = {.what = "layer", .digest = d, .got = 512 << 10, .total = 1 << 20};
        progress_row_format(&r, 80, buf, sizeof buf);
        assert_string_equal(buf, "layer  0123456789ab [==============>               ]  50% 512.0KiB/1.0MiB");
        r.got = 1 << 20;
        r.done = true;
        progress_row_format(&r, 80, buf, sizeof buf);
        assert_string_equal(buf, "layer  0123456789ab [==============================] 100% 1.0MiB/1.0MiB done");
        r = (struct progress_row){.what = "config", .digest = d, .got = 100, .total = -1};
        progress_row_format(&r, 80, buf, sizeof buf);
        assert_string_equal(buf, "config 0123456789ab [                              ]   0% 100B");
        r = (struct progress_row){.what = "layer", .digest = d, .got = 3 << 20, .total = 12 << 20};
        for (unsigned w = 2; w < 120; w++) {
                progress_row_format(&r, w, buf, sizeof buf);
                assert_true(strlen(buf) <= w - 1);
        }
        progress_row_format(&r, 45, buf, sizeof buf); /* too narrow for a bar: none */
        assert_string_equal(buf, "layer  0123456789ab  25% 3.0MiB/12.0MiB");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ref),
                cmocka_unit_test(test_manifest),
                cmocka_unit_test(test_config),
                cmocka_unit_test(test_whiteout),
                cmocka_unit_test(test_unpack),
                cmocka_unit_test(test_unpack_mode_symlink),
                cmocka_unit_test(test_unpack_growing),
                cmocka_unit_test(test_archive_name),
                cmocka_unit_test(test_registries_conf),
                cmocka_unit_test(test_progress_row),
                cmocka_unit_test(test_url_is_endpoint),
                cmocka_unit_test(test_registries_conf_paths),
                cmocka_unit_test(test_daemon),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
