/* Image metadata from /.singularity.d (labels.json, Singularity deffile, runscript,
 * startscript, test, env scripts, runscript.help) and a SIF file's definition file object,
 * read without mounting the image, and rendered as Apptainer's inspect does. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image.h"
#include "util/util.h"

#define META_MAX (4u << 20)

static const struct {
        unsigned bit;
        const char *key, *path;
} meta_files[] = {
        {IMAGE_META_DEFFILE, "deffile", "/.singularity.d/Singularity"},
        {IMAGE_META_RUNSCRIPT, "runscript", "/.singularity.d/runscript"},
        {IMAGE_META_STARTSCRIPT, "startscript", "/.singularity.d/startscript"},
        {IMAGE_META_TEST, "test", "/.singularity.d/test"},
        {IMAGE_META_HELPFILE, "helpfile", "/.singularity.d/runscript.help"},
};

static const char *const env_files[] = {"/.singularity.d/env/10-docker2singularity.sh",
                                        "/.singularity.d/env/90-environment.sh",
                                        "/.singularity.d/env/91-environment.sh"};

/* -ENOENT is "absent", not an error. */
static int read_opt(struct image *img, const char *path, char **ret, struct hutch_error *err)
{
        static const char sd[] = "/.singularity.d/";
        char app_path[4096];
        if (img->app && startswith(path, sd) && strcmp(path, "/.singularity.d/Singularity")) {
                snprintf(app_path, sizeof app_path, "/scif/apps/%s/scif/%s", img->app, path + strlen(sd));
                path = app_path;
        }
        int r = image_read_file(img, path, META_MAX, ret, NULL, err);
        if (r == -ENOENT) {
                *ret = NULL;
                return 0;
        }
        return r;
}

/* A SIF file's definition file object (Def.FILE, which build writes and Apptainer's inspect
 * shows); *ret NULL when it has none, or an empty one. */
static int sif_deffile(struct image *img, char **ret, struct hutch_error *err)
{
        struct stat st;
        struct sif sif = {0};
        *ret = NULL;
        if (img->format != IMAGE_FORMAT_SIF)
                return 0;
        if (fstat(img->fd, &st) < 0)
                return hutch_err_sys(err, -errno, "cannot read '%s'", img->path);
        int r = sif_load(img->fd, (uint64_t) st.st_size, &sif, err);
        if (r < 0)
                return hutch_err_wrap(err, "'%s'", img->path);
        for (size_t i = 0; i < sif.n_descr && r == 0 && !*ret; i++) {
                const struct sif_descriptor *d = &sif.descr[i];
                if (d->datatype != SIF_DATA_DEFFILE || d->size == 0)
                        continue;
                if ((uint64_t) d->size > META_MAX) {
                        r = hutch_err(err, -EFBIG, "'%s': the definition file object is larger than 4 MiB", img->path);
                        break;
                }
                char *t = malloc((size_t) d->size + 1);
                ssize_t n = t ? pread_full(img->fd, t, (size_t) d->size, d->offset) : -ENOMEM;
                if (n != d->size) {
                        free(t);
                        r = hutch_err_sys(err, n < 0 ? (int) n : -EIO, "cannot read the definition file of '%s'",
                                          img->path);
                        break;
                }
                t[n] = 0;
                *ret = t;
        }
        sif_free(&sif);
        return r;
}

/* One of meta_files: the deffile from the SIF object first, else from the image's tree. */
static int read_meta(struct image *img, size_t i, char **ret, struct hutch_error *err)
{
        if (meta_files[i].bit == IMAGE_META_DEFFILE) {
                int r = sif_deffile(img, ret, err);
                if (r < 0 || *ret)
                        return r;
        }
        return read_opt(img, meta_files[i].path, ret, err);
}

static int labels_object(struct image *img, json_object **ret, struct hutch_error *err)
{
        _cleanup_free_ char *text = NULL;
        int r = read_opt(img, "/.singularity.d/labels.json", &text, err);
        if (r < 0)
                return r;
        json_object *o = text ? json_tokener_parse(text) : NULL;
        if (text && (!o || !json_object_is_type(o, json_type_object))) {
                json_object_put(o);
                return hutch_err(err, -EINVAL, "image '%s': /.singularity.d/labels.json is not a JSON object",
                                 img->path);
        }
        *ret = o ? o : json_object_new_object();
        return 0;
}

static int environment_text(struct image *img, char **ret, struct hutch_error *err)
{
        _cleanup_free_ char *out = strdup("");
        for (size_t i = 0; out && i < ELEMENTSOF(env_files); i++) {
                _cleanup_free_ char *t = NULL, *n = NULL;
                int r = read_opt(img, env_files[i], &t, err);
                if (r < 0)
                        return r;
                if (!t)
                        continue;
                if (asprintf(&n, "%s=== %s ===\n%s%s", out, env_files[i], t, endswith(t, "\n") ? "" : "\n") < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                free(out);
                out = steal_pointer(&n);
        }
        if (!out)
                return hutch_err(err, -ENOMEM, "out of memory");
        *ret = steal_pointer(&out);
        return 0;
}

int image_inspect_json(struct image *img, unsigned what, char **ret, struct hutch_error *err)
{
        json_object *root = json_object_new_object(), *data = json_object_new_object(),
                    *attrs = json_object_new_object();
        int r = 0;
        json_object_object_add(root, "data", data);
        json_object_object_add(data, "attributes", attrs);
        json_object_object_add(root, "type", json_object_new_string("container"));
        if (what & IMAGE_META_LABELS) {
                json_object *l = NULL;
                if ((r = labels_object(img, &l, err)) < 0)
                        goto out;
                json_object_object_add(attrs, "labels", l);
        }
        for (size_t i = 0; i < ELEMENTSOF(meta_files); i++) {
                _cleanup_free_ char *t = NULL;
                if (!(what & meta_files[i].bit))
                        continue;
                if ((r = read_meta(img, i, &t, err)) < 0)
                        goto out;
                if (t)
                        json_object_object_add(attrs, meta_files[i].key, json_object_new_string(t));
        }
        if (what & IMAGE_META_ENVIRONMENT) {
                _cleanup_free_ char *t = NULL;
                if ((r = environment_text(img, &t, err)) < 0)
                        goto out;
                if (*t)
                        json_object_object_add(attrs, "environment", json_object_new_string(t));
        }
        *ret = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
        if (!*ret)
                r = hutch_err(err, -ENOMEM, "out of memory");
out:
        json_object_put(root);
        return r;
}

int image_inspect_text(struct image *img, unsigned what, char **ret, struct hutch_error *err)
{
        _cleanup_free_ char *out = strdup("");
        int r;
        if (!out)
                return hutch_err(err, -ENOMEM, "out of memory");
#define APPEND(s)                                                        \
        do {                                                             \
                char *_n = strjoin(out, (s), NULL);                      \
                if (!_n)                                                 \
                        return hutch_err(err, -ENOMEM, "out of memory"); \
                free(out);                                               \
                out = _n;                                                \
        } while (0)
        if (what & IMAGE_META_LABELS) {
                json_object *l = NULL;
                if ((r = labels_object(img, &l, err)) < 0)
                        return r;
                json_object_object_foreach (l, k, v) {
                        _cleanup_free_ char *line = NULL;
                        if (asprintf(&line, "%s: %s\n", k, json_object_get_string(v)) < 0) {
                                json_object_put(l);
                                return hutch_err(err, -ENOMEM, "out of memory");
                        }
                        APPEND(line);
                }
                json_object_put(l);
        }
        for (size_t i = 0; i < ELEMENTSOF(meta_files); i++) {
                _cleanup_free_ char *t = NULL;
                if (!(what & meta_files[i].bit))
                        continue;
                if ((r = read_meta(img, i, &t, err)) < 0)
                        return r;
                if (t) {
                        APPEND(t);
                        if (*t && !endswith(t, "\n"))
                                APPEND("\n");
                }
        }
        if (what & IMAGE_META_ENVIRONMENT) {
                _cleanup_free_ char *t = NULL;
                if ((r = environment_text(img, &t, err)) < 0)
                        return r;
                APPEND(t);
        }
#undef APPEND
        *ret = steal_pointer(&out);
        return 0;
}
