/* The definition file parser, with Apptainer's rules: a stage starts at each line
 * "Bootstrap:" (any case, first column); its header is every line before its first section;
 * a section starts at a line whose first word begins with '%'; a section given twice adds
 * its text to the first, %files sections merge by their "from" argument; an unknown section
 * or header key is an error. {{ NAME }} templates are replaced before parsing. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "recipe.h"
#include "util/log.h"
#include "util/util.h"

static const char *const section_names[RECIPE_N_SECTIONS] = {
        [RECIPE_HELP] = "help",
        [RECIPE_SETUP] = "setup",
        [RECIPE_LABELS] = "labels",
        [RECIPE_ENVIRONMENT] = "environment",
        [RECIPE_PRE] = "pre",
        [RECIPE_POST] = "post",
        [RECIPE_RUNSCRIPT] = "runscript",
        [RECIPE_TEST] = "test",
        [RECIPE_STARTSCRIPT] = "startscript",
        [RECIPE_ARGUMENTS] = "arguments",
        [RECIPE_FILES] = "files",
};

static const char *const app_section_names[RECIPE_APP_N_SECTIONS] = {
        [RECIPE_APP_INSTALL] = "appinstall", [RECIPE_APP_RUN] = "apprun",     [RECIPE_APP_ENV] = "appenv",
        [RECIPE_APP_LABELS] = "applabels",   [RECIPE_APP_FILES] = "appfiles", [RECIPE_APP_HELP] = "apphelp",
        [RECIPE_APP_TEST] = "apptest",       [RECIPE_APP_START] = "appstart",
};

/* Apptainer's header keywords (pkg/build/types/parser: validHeaders); "otherurlN" for any N;
 * "gpg": the yum agent's key (Singularity's header, Apptainer's $GPG). */
static const char *const header_keys[] = {
        "bootstrap",  "from",        "includecmd", "mirrorurl",    "updateurl", "osversion", "include",
        "library",    "registry",    "namespace",  "stage",        "product",   "user",      "regcode",
        "productpgp", "registerurl", "modules",    "fingerprints", "setopt",    "gpg",
};

const char *recipe_section_name(enum recipe_section s)
{
        return (unsigned) s < RECIPE_N_SECTIONS ? section_names[s] : "?";
}

const char *recipe_app_section_name(enum recipe_app_section s)
{
        return (unsigned) s < RECIPE_APP_N_SECTIONS ? app_section_names[s] : "?";
}

const char *recipe_header_get(const struct recipe_stage *st, const char *key)
{
        for (size_t i = 0; i < st->n_header; i++)
                if (!strcmp(st->header[i].key, key))
                        return st->header[i].value;
        return NULL;
}

int recipe_stage_find(const struct recipe *r, const char *name)
{
        for (size_t i = 0; i < r->n_stages; i++)
                if (r->stages[i].name && !strcmp(r->stages[i].name, name))
                        return (int) i;
        return -1;
}

void recipe_kv_free(struct recipe_kv *kv, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(kv[i].key);
                free(kv[i].value);
        }
        free(kv);
}

static void file_lines_free(struct recipe_file *f, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(f[i].src);
                free(f[i].dst);
        }
        free(f);
}

static void script_free(struct recipe_script *s)
{
        free(s->text);
        free(s->args);
        s->text = s->args = NULL;
}

static void stage_free(struct recipe_stage *st)
{
        recipe_kv_free(st->header, st->n_header);
        for (size_t i = 0; i < RECIPE_N_SECTIONS; i++)
                script_free(&st->script[i]);
        for (size_t i = 0; i < st->n_files; i++) {
                free(st->files[i].from);
                file_lines_free(st->files[i].lines, st->files[i].n);
        }
        free(st->files);
        recipe_kv_free(st->labels, st->n_labels);
        for (size_t i = 0; i < st->n_apps; i++) {
                struct recipe_app *a = &st->apps[i];
                free(a->name);
                for (size_t k = 0; k < RECIPE_APP_N_SECTIONS; k++)
                        script_free(&a->script[k]);
                file_lines_free(a->files, a->n_files);
                recipe_kv_free(a->labels, a->n_labels);
        }
        free(st->apps);
}

void recipe_free(struct recipe *r)
{
        for (size_t i = 0; i < r->n_stages; i++)
                stage_free(&r->stages[i]);
        free(r->stages);
        free(r->raw);
        strv_free(r->unused_args);
        *r = (struct recipe){0};
}

static void *mfree(void *p)
{
        free(p);
        return NULL;
}

static char *trim(char *s)
{
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char) s[n - 1]))
                s[--n] = 0;
        return s;
}

/* Append a key/value, or replace the value of a key given before. */
int recipe_kv_set(struct recipe_kv **kv, size_t *n, const char *key, const char *value)
{
        char *v = strdup(value);
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < *n; i++)
                if (!strcmp((*kv)[i].key, key)) {
                        free((*kv)[i].value);
                        (*kv)[i].value = v;
                        return 0;
                }
        struct recipe_kv *nkv = realloc(*kv, (*n + 1) * sizeof **kv);
        char *k = strdup(key);
        if (!nkv || !k) {
                free(v);
                free(k);
                if (nkv)
                        *kv = nkv;
                return -ENOMEM;
        }
        *kv = nkv;
        nkv[(*n)++] = (struct recipe_kv){k, v};
        return 0;
}

/* ---- templating: {{ NAME }} (NAME: letters, digits, '_'), as Apptainer's build args */

/* %arguments' "KEY=VALUE" lines: every such section of the file, before any stage split. */
static int arguments_collect(const char *text, struct recipe_kv **kv, size_t *n)
{
        bool in_args = false;
        for (const char *l = text; *l;) {
                const char *eol = strchrnul(l, '\n');
                _cleanup_free_ char *line = strndup(l, (size_t) (eol - l));
                if (!line)
                        return -ENOMEM;
                char *t = trim(line);
                if (t[0] == '%') {
                        size_t w = strcspn(t + 1, " \t");
                        in_args = w == strlen("arguments") && !strncasecmp(t + 1, "arguments", w);
                } else if (in_args && t[0] && t[0] != '#') {
                        char *eq = strchr(t, '=');
                        if (eq) {
                                *eq = 0;
                                char *v = trim(eq + 1);
                                size_t vl = strlen(v);
                                if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
                                        v[vl - 1] = 0;
                                        v++;
                                }
                                if (recipe_kv_set(kv, n, trim(t), v) < 0)
                                        return -ENOMEM;
                        }
                }
                l = *eol ? eol + 1 : eol;
        }
        return 0;
}

struct tmpl_ctx {
        struct recipe_kv *vals;
        size_t n_vals;
        bool *used; /* per build arg */
        char *const *args;
        const char *path;
};

/* The value of NAME: the last --build-arg of it, else its %arguments default. */
static const char *tmpl_value(struct tmpl_ctx *c, const char *name, size_t len)
{
        const char *v = NULL;
        for (size_t i = 0; c->args && c->args[i]; i++)
                if (!strncmp(c->args[i], name, len) && c->args[i][len] == '=') {
                        v = c->args[i] + len + 1;
                        c->used[i] = true;
                }
        for (size_t i = 0; !v && i < c->n_vals; i++)
                if (strlen(c->vals[i].key) == len && !strncmp(c->vals[i].key, name, len))
                        v = c->vals[i].value;
        return v;
}

static int str_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
        if (*len + n + 1 > *cap) {
                size_t nc = (*len + n + 1) * 2;
                char *b = realloc(*buf, nc);
                if (!b)
                        return -ENOMEM;
                *buf = b;
                *cap = nc;
        }
        memcpy(*buf + *len, s, n);
        *len += n;
        (*buf)[*len] = 0;
        return 0;
}

/* One "{{ ... }}" at p (p[0..1] == "{{"): replaced when it holds one NAME, copied as it is
 * otherwise (a Go template or jinja text in a script); one that does not end on its line is
 * an error, since a missing "}}" would otherwise build an image with the text left in. */
static int tmpl_one(struct tmpl_ctx *c, const char **p, size_t line, char **out, size_t *len, size_t *cap,
                    struct hutch_error *err)
{
        const char *s = *p, *end = strstr(s + 2, "}}"), *eol = strchrnul(s, '\n');
        if (!end || end > eol) {
                int n = (int) strcspn(s, "\n");
                return hutch_err(err, -EINVAL, "%s:%zu: unterminated template '%.*s' (no '}}' on its line)", c->path,
                                 line, n > 40 ? 40 : n, s);
        }
        const char *a = s + 2, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
                a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
        bool name = a < b;
        for (const char *q = a; q < b; q++)
                name = name && (isalnum((unsigned char) *q) || *q == '_');
        *p = end + 2;
        if (!name)
                return str_append(out, len, cap, s, (size_t) (*p - s));
        const char *v = tmpl_value(c, a, (size_t) (b - a));
        if (!v)
                return hutch_err(err, -EINVAL,
                                 "%s:%zu: build argument '%.*s' has no value: give it with --build-arg %.*s=VALUE or "
                                 "a default in %%arguments",
                                 c->path, line, (int) (b - a), a, (int) (b - a), a);
        return str_append(out, len, cap, v, strlen(v));
}

static int templates_apply(const char *text, char *const *args, const char *path, char **ret, char ***ret_unused,
                           struct hutch_error *err)
{
        struct tmpl_ctx c = {.args = args, .path = path};
        _cleanup_free_ char *out = NULL;
        _cleanup_free_ bool *used = calloc(strv_length(args) + 1, sizeof(bool));
        size_t len = 0, cap = 0, line = 1;
        int r = used ? arguments_collect(text, &c.vals, &c.n_vals) : -ENOMEM;
        c.used = used;
        for (const char *p = text; r >= 0 && *p;) {
                size_t n = strcspn(p, "{\n");
                r = str_append(&out, &len, &cap, p, n);
                p += n;
                if (r < 0 || !*p)
                        break;
                if (p[0] == '{' && p[1] == '{') {
                        r = tmpl_one(&c, &p, line, &out, &len, &cap, err);
                        continue;
                }
                line += *p == '\n';
                r = str_append(&out, &len, &cap, p++, 1);
        }
        recipe_kv_free(c.vals, c.n_vals);
        if (r == -ENOMEM)
                return hutch_err(err, r, "out of memory");
        if (r < 0)
                return r;
        _cleanup_strv_ char **unused = NULL;
        for (size_t i = 0; args && args[i]; i++)
                if (!used[i] && strv_push(&unused, strndup(args[i], strcspn(args[i], "="))) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        *ret = out ? steal_pointer(&out) : strdup("");
        *ret_unused = steal_pointer(&unused);
        return *ret ? 0 : hutch_err(err, -ENOMEM, "out of memory");
}

/* ---- the header */

static bool is_header_key(const char *k)
{
        for (size_t i = 0; i < ELEMENTSOF(header_keys); i++)
                if (!strcmp(k, header_keys[i]))
                        return true;
        size_t n = strlen("otherurl");
        return !strncmp(k, "otherurl", n) && k[n] && strspn(k + n, "0123456789") == strlen(k + n);
}

/* "Key: value" lines; a '#' starts a comment; a value ending in '\' goes on on the next line. */
static int header_parse(struct recipe_stage *st, char **lines, size_t n, size_t first_line, const char *path,
                        struct hutch_error *err)
{
        _cleanup_free_ char *key = NULL, *val = NULL; /* a continued value */
        for (size_t i = 0; i < n; i++) {
                char *l = trim(lines[i]);
                if (!*l || *l == '#') {
                        if (key && recipe_kv_set(&st->header, &st->n_header, key, val) < 0)
                                return hutch_err(err, -ENOMEM, "out of memory");
                        key = mfree(key);
                        val = mfree(val);
                        continue;
                }
                l[strcspn(l, "#")] = 0;
                _cleanup_free_ char *k = NULL, *v = NULL;
                if (!key) {
                        char *colon = strchr(l, ':');
                        if (!colon)
                                return hutch_err(err, -EINVAL, "%s:%zu: header line '%s' is not 'Key: value'", path,
                                                 first_line + i, l);
                        *colon = 0;
                        k = strdup(trim(l));
                        v = strdup(trim(colon + 1));
                        for (char *q = k; q && *q; q++)
                                *q = (char) tolower((unsigned char) *q);
                } else {
                        k = steal_pointer(&key);
                        v = strjoin(val, trim(l), NULL);
                        val = mfree(val);
                }
                if (!k || !v)
                        return hutch_err(err, -ENOMEM, "out of memory");
                if (endswith(v, "\\")) {
                        v[strlen(v) - 1] = 0;
                        key = steal_pointer(&k);
                        val = steal_pointer(&v);
                        continue;
                }
                if (!is_header_key(k))
                        return hutch_err(err, -EINVAL, "%s:%zu: unknown header keyword '%s'", path, first_line + i, k);
                if (recipe_kv_set(&st->header, &st->n_header, k, v) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        if (key && recipe_kv_set(&st->header, &st->n_header, key, val) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        return 0;
}

/* ---- %files and %labels lines */

/* The next word of a %files line: a run of non-blanks, or a "double" or 'single' quoted
 * string (quotes removed), so that paths with spaces can be given. NULL at the end. */
static char *next_word(char **p)
{
        char *s = *p;
        while (*s == ' ' || *s == '\t')
                s++;
        if (!*s)
                return NULL;
        char *w = s, *o = s;
        while (*s && *s != ' ' && *s != '\t') {
                if (*s == '"' || *s == '\'') {
                        char q = *s++;
                        while (*s && *s != q)
                                *o++ = *s++;
                        if (*s)
                                s++;
                        continue;
                }
                *o++ = *s++;
        }
        if (*s)
                s++;
        *o = 0;
        *p = s;
        return w;
}

static int files_lines_add(struct recipe_file **lines, size_t *n, const char *body, const char *path, size_t line0,
                           struct hutch_error *err)
{
        _cleanup_free_ char *copy = strdup(body);
        size_t ln = line0;
        if (!copy)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (char *l = copy, *next; l; l = next, ln++) {
                next = strchr(l, '\n');
                if (next)
                        *next++ = 0;
                char *t = trim(l);
                if (!*t || *t == '#')
                        continue;
                _cleanup_free_ char *whole = strdup(t);
                char *p = t, *src = next_word(&p), *dst = next_word(&p);
                if (whole && next_word(&p))
                        return hutch_err(err, -EINVAL, "%s:%zu: %%files line '%s' is not 'SOURCE [DESTINATION]'", path,
                                         ln, whole);
                if (!*src)
                        return hutch_err(err, -EINVAL, "%s:%zu: %%files line with an empty source", path, ln);
                struct recipe_file *nl = realloc(*lines, (*n + 1) * sizeof **lines);
                if (!nl)
                        return hutch_err(err, -ENOMEM, "out of memory");
                *lines = nl;
                nl[*n] = (struct recipe_file){strdup(src), strdup(dst ? dst : "")};
                if (!nl[(*n)++].src || !nl[*n - 1].dst)
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        return 0;
}

int recipe_labels_add(struct recipe_kv **kv, size_t *n, const char *body)
{
        _cleanup_free_ char *copy = strdup(body);
        if (!copy)
                return -ENOMEM;
        for (char *l = copy, *next; l; l = next) {
                next = strchr(l, '\n');
                if (next)
                        *next++ = 0;
                char *t = trim(l);
                if (!*t || *t == '#')
                        continue;
                size_t k = strcspn(t, " \t");
                char *v = t + k;
                if (*v)
                        *v++ = 0;
                if (recipe_kv_set(kv, n, t, trim(v)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* ---- sections */

static int script_add(struct recipe_script *s, const char *body, const char *args)
{
        char *t = strjoin(s->text ? s->text : "", body, NULL);
        if (!t)
                return -ENOMEM;
        free(s->text);
        s->text = t;
        if (args && *args) {
                free(s->args);
                if (!(s->args = strdup(args)))
                        return -ENOMEM;
        }
        return 0;
}

static int files_section(struct recipe_stage *st, const char *args, const char *body, const char *path, size_t line,
                         struct hutch_error *err)
{
        _cleanup_free_ char *from = NULL;
        if (args && *args) {
                _cleanup_free_ char *a = strdup(args);
                char *p = a, *w1 = a ? next_word(&p) : NULL, *w2 = w1 ? next_word(&p) : NULL;
                if (!a)
                        return hutch_err(err, -ENOMEM, "out of memory");
                if (!w1 || strcasecmp(w1, "from") || !w2 || next_word(&p))
                        return hutch_err(err, -EINVAL, "%s:%zu: '%%files %s': the only argument is 'from STAGE'", path,
                                         line, args);
                if (!(from = strdup(w2)))
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        struct recipe_files *f = NULL;
        for (size_t i = 0; i < st->n_files && !f; i++)
                if ((!from && !st->files[i].from) || (from && st->files[i].from && !strcmp(from, st->files[i].from)))
                        f = &st->files[i];
        if (!f) {
                struct recipe_files *nf = realloc(st->files, (st->n_files + 1) * sizeof *nf);
                if (!nf)
                        return hutch_err(err, -ENOMEM, "out of memory");
                st->files = nf;
                f = &nf[st->n_files++];
                *f = (struct recipe_files){.from = steal_pointer(&from)};
        }
        return files_lines_add(&f->lines, &f->n, body, path, line + 1, err);
}

static struct recipe_app *app_get(struct recipe_stage *st, const char *name)
{
        for (size_t i = 0; i < st->n_apps; i++)
                if (!strcmp(st->apps[i].name, name))
                        return &st->apps[i];
        struct recipe_app *na = realloc(st->apps, (st->n_apps + 1) * sizeof *na);
        if (!na)
                return NULL;
        st->apps = na;
        na[st->n_apps] = (struct recipe_app){.name = strdup(name)};
        return na[st->n_apps].name ? &na[st->n_apps++] : NULL;
}

static int app_section(struct recipe_stage *st, size_t k, const char *args, const char *body, const char *path,
                       size_t line, struct hutch_error *err)
{
        _cleanup_free_ char *a = strdup(args ? args : "");
        char *p = a, *name = a ? next_word(&p) : NULL;
        if (!a)
                return hutch_err(err, -ENOMEM, "out of memory");
        if (!name)
                return hutch_err(err, -EINVAL, "%s:%zu: %%%s needs the app's name", path, line, app_section_names[k]);
        if (!name[0] ||
            strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(name) ||
            !strcmp(name, ".") || !strcmp(name, ".."))
                return hutch_err(err, -EINVAL, "%s:%zu: '%s' is not an app name", path, line, name);
        struct recipe_app *app = app_get(st, name);
        int r = app ? 0 : -ENOMEM;
        if (r >= 0 && k == RECIPE_APP_FILES)
                return files_lines_add(&app->files, &app->n_files, body, path, line + 1, err);
        if (r >= 0 && k == RECIPE_APP_LABELS)
                r = recipe_labels_add(&app->labels, &app->n_labels, body);
        if (r >= 0)
                r = script_add(&app->script[k], body, trim(p));
        return r < 0 ? hutch_err(err, r, "out of memory") : 0;
}

/* One section: its header line ("%name args") and its body (every line after it, each
 * ending in '\n'). */
static int section_add(struct recipe_stage *st, char *head, const char *body, const char *path, size_t line,
                       struct hutch_error *err)
{
        char *name = head + 1, *args = name + strcspn(name, " \t");
        if (*args)
                *args++ = 0;
        args = trim(args);
        for (char *q = name; *q; q++)
                *q = (char) tolower((unsigned char) *q);
        for (size_t k = 0; k < RECIPE_APP_N_SECTIONS; k++)
                if (!strcmp(name, app_section_names[k]))
                        return app_section(st, k, args, body, path, line, err);
        for (size_t k = 0; k < RECIPE_N_SECTIONS; k++) {
                if (strcmp(name, section_names[k]))
                        continue;
                if (k == RECIPE_FILES)
                        return files_section(st, args, body, path, line, err);
                if (k == RECIPE_LABELS && recipe_labels_add(&st->labels, &st->n_labels, body) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                if (script_add(&st->script[k], body, args) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
                return 0;
        }
        return hutch_err(err, -EINVAL, "%s:%zu: invalid section '%%%s' (not one of Apptainer's)", path, line, name);
}

static bool is_section_line(const char *l)
{
        l += strspn(l, " \t");
        return *l == '%';
}

/* One stage: lines[0..n) of the file, starting at line first_line. ret_empty: nothing in it
 * (blank lines and comments only), which is skipped as Apptainer does. */
static int stage_parse(struct recipe_stage *st, char **lines, size_t n, size_t first_line, const char *path,
                       bool *ret_empty, struct hutch_error *err)
{
        size_t i = 0;
        while (i < n && !is_section_line(lines[i]))
                i++;
        int r = header_parse(st, lines, i, first_line, path, err);
        bool empty = st->n_header == 0;
        while (r >= 0 && i < n) {
                size_t j = i + 1;
                _cleanup_free_ char *body = strdup("");
                for (; body && j < n && !is_section_line(lines[j]); j++) {
                        char *b = strjoin(body, lines[j], "\n");
                        free(body);
                        body = b;
                }
                if (!body)
                        return hutch_err(err, -ENOMEM, "out of memory");
                r = section_add(st, trim(lines[i]), body, path, first_line + i, err);
                empty = false;
                i = j;
        }
        if (r < 0)
                return r;
        st->bootstrap = recipe_header_get(st, "bootstrap");
        st->from = recipe_header_get(st, "from");
        st->name = recipe_header_get(st, "stage");
        *ret_empty = empty;
        return 0;
}

/* Lines of text ('\n' or "\r\n"), each a copy. */
static int lines_split(const char *text, char ***ret)
{
        _cleanup_strv_ char **v = NULL;
        for (const char *l = text; *l;) {
                const char *eol = strchrnul(l, '\n');
                size_t n = (size_t) (eol - l);
                if (n > 0 && l[n - 1] == '\r')
                        n--;
                if (strv_push(&v, strndup(l, n)) < 0)
                        return -ENOMEM;
                l = *eol ? eol + 1 : eol;
        }
        *ret = v ? steal_pointer(&v) : calloc(1, sizeof(char *));
        return *ret ? 0 : -ENOMEM;
}

static bool is_bootstrap_line(const char *l)
{
        return !strncasecmp(l, "bootstrap:", strlen("bootstrap:"));
}

static int stages_parse(struct recipe *rec, char **lines, const char *path, struct hutch_error *err)
{
        size_t n = strv_length(lines);
        for (size_t start = 0; start < n;) {
                size_t end = start + 1;
                while (end < n && !is_bootstrap_line(lines[end]))
                        end++;
                struct recipe_stage st = {0};
                bool empty = true;
                int r = stage_parse(&st, lines + start, end - start, start + 1, path, &empty, err);
                if (r < 0 || empty) {
                        stage_free(&st);
                        if (r < 0)
                                return r;
                        start = end;
                        continue;
                }
                struct recipe_stage *ns = realloc(rec->stages, (rec->n_stages + 1) * sizeof *ns);
                if (!ns) {
                        stage_free(&st);
                        return hutch_err(err, -ENOMEM, "out of memory");
                }
                rec->stages = ns;
                ns[rec->n_stages++] = st;
                start = end;
        }
        if (rec->n_stages == 0)
                return hutch_err(err, -EINVAL, "%s: empty definition file", path);
        return 0;
}

/* What a build needs of every stage, checked before anything is made. */
static int stages_check(const struct recipe *rec, const char *path, struct hutch_error *err)
{
        for (size_t i = 0; i < rec->n_stages; i++) {
                const struct recipe_stage *st = &rec->stages[i];
                if (!st->bootstrap || !*st->bootstrap)
                        return hutch_err(err, -EINVAL, "%s: no 'Bootstrap:' header%s", path,
                                         rec->n_stages > 1 ? " in one of its stages" : "");
                for (size_t k = 0; k < i; k++)
                        if (st->name && rec->stages[k].name && !strcmp(st->name, rec->stages[k].name))
                                return hutch_err(err, -EINVAL, "%s: two stages named '%s'", path, st->name);
                for (size_t f = 0; f < st->n_files; f++) {
                        const char *from = st->files[f].from;
                        int s = from ? recipe_stage_find(rec, from) : 0;
                        if (from && (s < 0 || (size_t) s >= i))
                                return hutch_err(err, -EINVAL,
                                                 "%s: '%%files from %s': no stage before this one is "
                                                 "named '%s'",
                                                 path, from, from);
                }
        }
        return 0;
}

int recipe_parse(const char *text, size_t len, char *const *build_args, const char *path, struct recipe *ret,
                 struct hutch_error *err)
{
        struct recipe rec = {0};
        _cleanup_free_ char *expanded = NULL;
        _cleanup_strv_ char **lines = NULL;
        if (memchr(text, 0, len))
                return hutch_err(err, -EINVAL, "%s: not a text file (it holds a NUL byte)", path);
        rec.raw = strndup(text, len);
        rec.raw_len = len;
        if (!rec.raw)
                return hutch_err(err, -ENOMEM, "out of memory");
        int r = templates_apply(rec.raw, build_args, path, &expanded, &rec.unused_args, err);
        if (r >= 0 && lines_split(expanded, &lines) < 0)
                r = hutch_err(err, -ENOMEM, "out of memory");
        if (r >= 0)
                r = stages_parse(&rec, lines, path, err);
        if (r >= 0)
                r = stages_check(&rec, path, err);
        if (r < 0) {
                recipe_free(&rec);
                return r;
        }
        *ret = rec;
        return 0;
}

int recipe_build_args_parse(const char *text, char ***args, struct hutch_error *err)
{
        _cleanup_strv_ char **lines = NULL;
        if (lines_split(text, &lines) < 0)
                return hutch_err(err, -ENOMEM, "out of memory");
        for (size_t i = 0; lines[i]; i++) {
                char *t = trim(lines[i]);
                if (!*t || *t == '#')
                        continue;
                char *eq = strchr(t, '=');
                if (!eq || eq == t)
                        return hutch_err(err, -EINVAL, "line %zu: '%s' is not KEY=VALUE", i + 1, t);
                if (strv_extend(args, t) < 0)
                        return hutch_err(err, -ENOMEM, "out of memory");
        }
        return 0;
}
