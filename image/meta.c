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

/* Apptainer trims trailing newlines from every value it shows (inspect.go setAttribute). */
static void trim_newlines(char *t)
{
        size_t n = strlen(t);
        while (n > 0 && t[n - 1] == '\n')
                t[--n] = 0;
}

/* {path: text} of the env scripts Apptainer's inspect shows (10-docker*.sh, 9*-environment.sh),
 * under the app's folder with --app. */
static int environment_object(struct image *img, json_object *env, struct hutch_error *err)
{
        static const char sd[] = "/.singularity.d/";
        for (size_t i = 0; i < ELEMENTSOF(env_files); i++) {
                _cleanup_free_ char *t = NULL;
                char key[4096];
                int r = read_opt(img, env_files[i], &t, err);
                if (r < 0)
                        return r;
                if (!t)
                        continue;
                if (img->app)
                        snprintf(key, sizeof key, "/scif/apps/%s/scif/%s", img->app, env_files[i] + strlen(sd));
                else
                        snprintf(key, sizeof key, "%s", env_files[i]);
                trim_newlines(t);
                json_object_object_add(env, key, json_object_new_string(t));
        }
        return 0;
}

static int cmp_keys(const void *a, const void *b)
{
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* An object's keys, sorted (Go's encoding/json writes a map so); caller frees the array. */
static const char **sorted_keys(json_object *o, size_t *ret_n)
{
        size_t n = (size_t) json_object_object_length(o), i = 0;
        const char **k = calloc(n + 1, sizeof *k);
        if (!k)
                return NULL;
        json_object_object_foreach (o, key, v) {
                (void) v;
                k[i++] = key;
        }
        qsort(k, n, sizeof *k, cmp_keys);
        *ret_n = n;
        return k;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int image_list_apps(struct image *img, char ***ret, struct hutch_error *err)
{
        _cleanup_strv_ char **names = NULL, **apps = NULL;
        *ret = NULL;
        int r = image_list_dirs(img, "/scif/apps", &names, err);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        for (char **n = names; n && *n; n++) {
                _cleanup_strv_ char **sub = NULL;
                char p[4096];
                snprintf(p, sizeof p, "/scif/apps/%s", *n);
                if (image_list_dirs(img, p, &sub, err) < 0)
                        continue;
                for (char **d = sub; d && *d; d++)
                        if (!strcmp(*d, "scif")) {
                                if (strv_extend(&apps, *n) < 0)
                                        return hutch_err(err, -ENOMEM, "out of memory");
                                break;
                        }
        }
        if (apps)
                qsort(apps, strv_length(apps), sizeof *apps, cmp_str);
        *ret = steal_pointer(&apps);
        return 0;
}

static int attributes_object(struct image *img, unsigned what, json_object **ret, struct hutch_error *err);

/* IMAGE_META_APPS: each app's own attributes (all of them, as Apptainer copies them from a
 * SIF's metadata), into attrs' "apps". */
static int apps_add(struct image *img, json_object *attrs, struct hutch_error *err)
{
        _cleanup_strv_ char **apps = NULL;
        int r = image_list_apps(img, &apps, err);
        if (r < 0 || !apps)
                return r;
        json_object *all = json_object_new_object();
        json_object_object_add(attrs, "apps", all);
        for (char **a = apps; *a && r >= 0; a++) {
                json_object *sub = NULL, *sub_apps = NULL, *own = NULL;
                img->app = *a;
                r = attributes_object(img, IMAGE_META_ALL & ~IMAGE_META_APPS, &sub, err);
                img->app = NULL;
                if (r >= 0 && json_object_object_get_ex(sub, "apps", &sub_apps) &&
                    json_object_object_get_ex(sub_apps, *a, &own))
                        json_object_object_add(all, *a, json_object_get(own));
                json_object_put(sub);
        }
        return r;
}

/* The attributes in Apptainer's field order (pkg/inspect/metadata.go): empty maps and strings
 * left out, as its omitempty does. With an app: the app's own under "apps" {NAME: {...}}. */
static int attributes_object(struct image *img, unsigned what, json_object **ret, struct hutch_error *err)
{
        json_object *attrs = json_object_new_object(), *app = img->app ? json_object_new_object() : NULL;
        json_object *own = app ? app : attrs, *env = json_object_new_object(), *labels = NULL;
        char *text[ELEMENTSOF(meta_files)] = {NULL};
        int r = 0;
        if ((what & IMAGE_META_ENVIRONMENT) && (r = environment_object(img, env, err)) < 0)
                goto out;
        if ((what & IMAGE_META_LABELS) && (r = labels_object(img, &labels, err)) < 0)
                goto out;
        for (size_t i = 0; i < ELEMENTSOF(meta_files); i++) {
                if (!(what & meta_files[i].bit) || (img->app && meta_files[i].bit == IMAGE_META_STARTSCRIPT))
                        continue;
                if ((r = read_meta(img, i, &text[i], err)) < 0)
                        goto out;
                /* the definition file stays byte for byte (Apptainer shows a SIF's object as is) */
                if (text[i] && meta_files[i].bit != IMAGE_META_DEFFILE)
                        trim_newlines(text[i]);
        }
        if (app)
                json_object_object_add(attrs, "apps", json_object_new_object());
        if (json_object_object_length(env) > 0)
                json_object_object_add(own, "environment", json_object_get(env));
        if (labels && json_object_object_length(labels) > 0)
                json_object_object_add(own, "labels", json_object_get(labels));
        static const unsigned order[] = {IMAGE_META_RUNSCRIPT, IMAGE_META_TEST, IMAGE_META_HELPFILE, IMAGE_META_DEFFILE,
                                         IMAGE_META_STARTSCRIPT};
        for (size_t o = 0; o < ELEMENTSOF(order); o++)
                for (size_t i = 0; i < ELEMENTSOF(meta_files); i++) {
                        if (meta_files[i].bit != order[o] || !text[i] || !*text[i])
                                continue;
                        bool top = order[o] == IMAGE_META_DEFFILE || order[o] == IMAGE_META_STARTSCRIPT;
                        json_object_object_add(top ? attrs : own, meta_files[i].key, json_object_new_string(text[i]));
                }
        if (app) {
                json_object *apps = NULL;
                json_object_object_get_ex(attrs, "apps", &apps);
                json_object_object_add(apps, img->app, json_object_get(app));
        } else if ((what & IMAGE_META_APPS) && (r = apps_add(img, attrs, err)) < 0)
                goto out;
        *ret = json_object_get(attrs);
out:
        for (size_t i = 0; i < ELEMENTSOF(meta_files); i++)
                free(text[i]);
        json_object_put(labels);
        json_object_put(env);
        json_object_put(app);
        json_object_put(attrs);
        return r;
}

/* A string as Go's encoding/json writes it (HTML-safe escapes included). */
static void go_string(FILE *f, const char *s)
{
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p == '\n')
                        fputs("\\n", f);
                else if (*p == '\r')
                        fputs("\\r", f);
                else if (*p == '\t')
                        fputs("\\t", f);
                else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&')
                        fprintf(f, "\\u%04x", *p);
                else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
                        fprintf(f, "\\u202%c", p[2] == 0xa8 ? '8' : '9');
                        p += 2;
                } else
                        fputc(*p, f);
        }
        fputc('"', f);
}

/* json.MarshalIndent(v, "", "\t"): objects keep the order they were built in. */
static void go_json(FILE *f, json_object *o, int depth)
{
        if (json_object_is_type(o, json_type_string)) {
                go_string(f, json_object_get_string(o));
                return;
        }
        if (!json_object_is_type(o, json_type_object)) {
                fputs(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), f);
                return;
        }
        if (json_object_object_length(o) == 0) {
                fputs("{}", f);
                return;
        }
        fputs("{\n", f);
        int i = 0, n = json_object_object_length(o);
        json_object_object_foreach (o, k, v) {
                for (int d = 0; d <= depth; d++)
                        fputc('\t', f);
                go_string(f, k);
                fputs(": ", f);
                go_json(f, v, depth + 1);
                fputs(++i < n ? ",\n" : "\n", f);
        }
        for (int d = 0; d < depth; d++)
                fputc('\t', f);
        fputc('}', f);
}

/* A copy of o with every nested object's keys sorted, except the attributes' own fields
 * (a Go struct: field order) and the top level (data, type). */
static json_object *sorted_copy(json_object *o)
{
        size_t n = 0;
        const char **k = sorted_keys(o, &n);
        json_object *c = json_object_new_object();
        for (size_t i = 0; k && i < n; i++) {
                json_object *v = json_object_object_get(o, k[i]);
                json_object_object_add(c, k[i],
                                       json_object_is_type(v, json_type_object) ? sorted_copy(v) : json_object_get(v));
        }
        free(k);
        return c;
}

int image_inspect_json(struct image *img, unsigned what, char **ret, struct hutch_error *err)
{
        json_object *attrs = NULL;
        int r = attributes_object(img, what, &attrs, err);
        if (r < 0)
                return r;
        /* the maps inside the attributes (labels, environment, apps) in key order */
        json_object *a = json_object_new_object();
        json_object_object_foreach (attrs, k, v)
                json_object_object_add(a, k,
                                       json_object_is_type(v, json_type_object) ? sorted_copy(v) : json_object_get(v));
        json_object_put(attrs);
        json_object *root = json_object_new_object(), *data = json_object_new_object();
        json_object_object_add(data, "attributes", a);
        json_object_object_add(root, "data", data);
        json_object_object_add(root, "type", json_object_new_string("container"));
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (f) {
                go_json(f, root, 0);
                if (fclose(f) != 0) {
                        free(buf);
                        buf = NULL;
                }
        }
        json_object_put(root);
        if (!buf)
                return hutch_err(err, -ENOMEM, "out of memory");
        *ret = buf;
        return 0;
}

/* One "%s\n" per value, a map's entries in key order (Apptainer's printSortedMap). */
static int text_append(FILE *f, json_object *own, json_object *attrs)
{
        static const char *const order[] = {"deffile", "runscript", "startscript", "test", "helpfile"};
        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                json_object *v = NULL;
                if (json_object_object_get_ex(own, order[i], &v) || json_object_object_get_ex(attrs, order[i], &v)) {
                        const char *t = json_object_get_string(v);
                        fprintf(f, "%s%s", t, endswith(t, "\n") ? "" : "\n");
                }
        }
        static const char *const maps[] = {"environment", "labels"};
        for (size_t m = 0; m < ELEMENTSOF(maps); m++) {
                json_object *o = NULL;
                size_t n = 0;
                if (!json_object_object_get_ex(own, maps[m], &o))
                        continue;
                _cleanup_free_ const char **k = sorted_keys(o, &n);
                if (!k)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        const char *v = json_object_get_string(json_object_object_get(o, k[i]));
                        if (m == 0)
                                fprintf(f, "=== %s ===\n%s\n\n", k[i], v);
                        else
                                fprintf(f, "%s: %s\n", k[i], v);
                }
        }
        return 0;
}

int image_inspect_text(struct image *img, unsigned what, char **ret, struct hutch_error *err)
{
        json_object *attrs = NULL, *own = NULL;
        int r = attributes_object(img, what, &attrs, err);
        if (r < 0)
                return r;
        own = attrs;
        if (img->app) {
                json_object *apps = NULL;
                json_object_object_get_ex(attrs, "apps", &apps);
                json_object_object_get_ex(apps, img->app, &own);
        }
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        r = f ? text_append(f, own, attrs) : -ENOMEM;
        if (f && fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        json_object_put(attrs);
        if (r < 0 || !buf) {
                free(buf);
                return hutch_err(err, -ENOMEM, "out of memory");
        }
        *ret = buf;
        return 0;
}
