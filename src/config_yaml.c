/*
 * config_yaml.c: the generic part of the loader: libyaml's document tree
 * walked through tables of {key, bit, type, offset, check} (config_walk.h).
 * One walker handles every mapping level: it notes which keys were given
 * and where, refuses unknown and repeated keys (suggesting the nearest
 * known one), stores typed values, and records every error instead of
 * stopping at the first. The keys themselves are config_schema.c's; rules
 * between keys are config_check.c's.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config_walk.h"
#include "util.h"

/* Keys longer than this get no "did you mean" (and cost no time). */
#define SUGGEST_LEN_MAX	40

/* ---- nodes ---- */

struct cfg_pos
cfg_node_pos(const yaml_node_t *n)
{
	struct cfg_pos p = { (unsigned)n->start_mark.line + 1, (unsigned)n->start_mark.column + 1 };

	return p;
}

/* Node index of the document, or NULL once CFG_NODES_MAX were visited. */
yaml_node_t *
cfg_node_at(struct walk *w, int index)
{
	static const struct cfg_pos nowhere;

	if (++w->l->nodes > CFG_NODES_MAX) {
		if (w->l->nodes == CFG_NODES_MAX + 1)
			cfg_error(w->l, nowhere, "more than %d YAML nodes (are aliases such as "
			    "*name repeating a large part?)", CFG_NODES_MAX);
		return NULL;
	}
	return yaml_document_get_node(w->doc, index);
}

const char *
cfg_node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a sequence";
	default:
		return "a string";
	}
}

bool
cfg_node_is_null(const yaml_node_t *n)
{
	const char *v = (const char *)n->data.scalar.value;

	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return *v == '\0';
	return *v == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	    strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static bool
has_control(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return true;
	return false;
}

/* The text of scalar n, or NULL after recording why it is unusable. */
const char *
cfg_scalar(struct walk *w, const yaml_node_t *n, const char *path, const char *want)
{
	const char *v;

	if (n->type != YAML_SCALAR_NODE) {
		cfg_key_error(w->l, cfg_node_pos(n), path, "must be %s, not %s", want,
		    cfg_node_kind(n));
		return NULL;
	}
	v = (const char *)n->data.scalar.value;
	if (cfg_node_is_null(n))
		cfg_key_error(w->l, cfg_node_pos(n), path, "needs a value");
	else if (strlen(v) != n->data.scalar.length)
		cfg_key_error(w->l, cfg_node_pos(n), path, "must not contain NUL bytes");
	else if (has_control(v))
		cfg_key_error(w->l, cfg_node_pos(n), path, "must not contain control characters");
	else
		return v;
	return NULL;
}

void
cfg_join_path(char *out, size_t size, const char *prefix, const char *key)
{
	if (prefix[0] == '\0')
		(void)str_copy(out, size, key);
	else
		(void)str_format(out, size, "%s.%s", prefix, key);
}

/* The text of key node k under prefix, or NULL after recording why not. */
const char *
cfg_key(struct walk *w, const yaml_node_t *k, const char *prefix)
{
	const char *v;

	if (k->type == YAML_SCALAR_NODE && !cfg_node_is_null(k)) {
		v = (const char *)k->data.scalar.value;
		if (strlen(v) == k->data.scalar.length && !has_control(v))
			return v;
	}
	if (prefix[0])
		cfg_error(w->l, cfg_node_pos(k), "a key under '%s' must be a non-empty string "
		    "without control characters", prefix);
	else
		cfg_error(w->l, cfg_node_pos(k), "a top-level key must be a non-empty string "
		    "without control characters");
	return NULL;
}

/* ---- unknown keys ---- */

/* Levenshtein distance, or UINT_MAX for strings too long to bother. */
static unsigned
edit_distance(const char *a, const char *b)
{
	unsigned row[SUGGEST_LEN_MAX + 1];
	size_t la = strlen(a), lb = strlen(b), i, j;

	if (la > SUGGEST_LEN_MAX || lb > SUGGEST_LEN_MAX)
		return UINT_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (i = 1; i <= la; i++) {
		unsigned diag = row[0], up;

		row[0] = (unsigned)i;
		for (j = 1; j <= lb; j++) {
			unsigned best = diag + (a[i - 1] != b[j - 1]);

			up = row[j];
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

/* The table's key nearest to name when it is within 2 edits, else NULL. */
static const char *
nearest_key(const struct table *t, const char *name)
{
	const char *best = NULL;
	unsigned best_d = 3;
	size_t i;

	for (i = 0; i < t->count; i++) {
		unsigned d = edit_distance(name, t->fields[i].key);

		if (d < best_d && d < strlen(name)) {
			best = t->fields[i].key;
			best_d = d;
		}
	}
	return best;
}

static void
unknown_key(struct walk *w, const yaml_node_t *k, const char *path, const char *name,
    const struct table *t)
{
	const char *near = nearest_key(t, name);

	if (near)
		cfg_error(w->l, cfg_node_pos(k), "unknown key '%s' (did you mean '%s'?)", path,
		    near);
	else
		cfg_error(w->l, cfg_node_pos(k), "unknown key '%s'", path);
}

/* ---- setters by type ---- */

char *
cfg_expand_path(struct walk *w, const char *v, const char **problem)
{
	if (v[0] != '/' && !(v[0] == '~' && (v[1] == '/' || v[1] == '\0')))
		*problem = "must be an absolute path (or start with ~/): a relative path "
		    "would depend on the caller's directory";
	return cfg_expand_home(w->l->p ? w->l->p->home : NULL, v);
}

static void
strip_trailing_slashes(char *url)
{
	size_t n = strlen(url);

	while (n > 0 && url[n - 1] == '/')
		url[--n] = '\0';
}

void
cfg_set_string(struct walk *w, const struct field *f, yaml_node_t *v, void *base,
    const char *path)
{
	const char *s = cfg_scalar(w, v, path, "a string"), *problem = NULL;
	char **slot = (char **)((char *)base + f->offset);
	char *copy;

	if (s == NULL)
		return;
	copy = f->type == FT_PATH ? cfg_expand_path(w, s, &problem) : xstrdup(s);
	if (problem == NULL && f->check)
		problem = f->check(copy);
	if (problem) {
		cfg_key_error(w->l, cfg_node_pos(v), path, "%s", problem);
		free(copy);
		return;
	}
	if (f->type == FT_URL)
		strip_trailing_slashes(copy);
	if (f->type == FT_SECRET)
		w->l->cfg->has_inline_secret = true;
	*slot = copy;
}

static void
set_uint(struct walk *w, const struct field *f, yaml_node_t *v, void *base, const char *path)
{
	const char *s = cfg_scalar(w, v, path, "a number");
	long n;

	if (s == NULL)
		return;
	if (parse_long(s, f->min, f->max, &n) < 0) {
		cfg_key_error(w->l, cfg_node_pos(v), path, "must be %ld-%ld", f->min, f->max);
		return;
	}
	*(unsigned *)((char *)base + f->offset) = (unsigned)n;
}

static void
set_bool(struct walk *w, const struct field *f, yaml_node_t *v, void *base, const char *path)
{
	const char *s = cfg_scalar(w, v, path, "true or false");
	bool *slot = (bool *)((char *)base + f->offset);

	if (s == NULL)
		return;
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
		*slot = true;
	else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
		*slot = false;
	else
		cfg_key_error(w->l, cfg_node_pos(v), path, "must be true or false");
}

static void
set_enum(struct walk *w, const struct field *f, yaml_node_t *v, void *base, const char *path)
{
	const char *s = cfg_scalar(w, v, path, "a word");
	char choices[128] = "";
	int i;

	if (s == NULL)
		return;
	for (i = 0; f->names[i]; i++) {
		if (str_eq_nocase(s, f->names[i])) {
			memcpy((char *)base + f->offset, &i, sizeof(i));
			return;
		}
		if (i > 0)
			(void)str_append(choices, sizeof(choices), f->names[i + 1] ? ", " : " or ");
		(void)str_append(choices, sizeof(choices), f->names[i]);
	}
	cfg_key_error(w->l, cfg_node_pos(v), path, "must be %s", choices);
}

/* Check one list item; NULL after recording the problem. */
static const char *
list_item(struct walk *w, const struct field *f, yaml_node_t *n, const char *path)
{
	const char *s = cfg_scalar(w, n, path, "a string"), *problem;

	if (s == NULL)
		return NULL;
	problem = f->check ? f->check(s) : NULL;
	if (problem) {
		cfg_key_error(w->l, cfg_node_pos(n), path, "'%.80s' %s", s, problem);
		return NULL;
	}
	return s;
}

/* A string or a sequence of strings into f's char ** and count; positions
   into *pos when pos is not NULL. */
void
cfg_set_list(struct walk *w, const struct field *f, yaml_node_t *v, void *base,
    const char *path, struct cfg_pos **pos)
{
	char ***items = (char ***)((char *)base + f->offset);
	size_t *count = (size_t *)((char *)base + f->count_offset);
	yaml_node_item_t *it;
	size_t n;

	if (v->type == YAML_SCALAR_NODE) {
		const char *s = list_item(w, f, v, path);

		if (s == NULL)
			return;
		*items = xcalloc(1, sizeof(char *));
		(*items)[(*count)++] = xstrdup(s);
		if (pos) {
			*pos = xcalloc(1, sizeof(**pos));
			(*pos)[0] = cfg_node_pos(v);
		}
		return;
	}
	if (v->type != YAML_SEQUENCE_NODE) {
		cfg_key_error(w->l, cfg_node_pos(v), path,
		    "must be a string or a sequence of strings, not %s", cfg_node_kind(v));
		return;
	}
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n == 0) {
		cfg_key_error(w->l, cfg_node_pos(v), path, "needs at least one entry");
		return;
	}
	*items = xcalloc(n, sizeof(char *));
	if (pos)
		*pos = xcalloc(n, sizeof(**pos));
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *item = cfg_node_at(w, *it);
		const char *s = item ? list_item(w, f, item, path) : NULL;

		if (s == NULL)
			continue;
		if (pos)
			(*pos)[*count] = cfg_node_pos(item);
		(*items)[(*count)++] = xstrdup(s);
	}
}

static void
set_list(struct walk *w, const struct field *f, yaml_node_t *v, void *base, const char *path)
{
	cfg_set_list(w, f, v, base, path, NULL);
}

static void
set_map(struct walk *w, const struct field *f, yaml_node_t *v, void *base, const char *path)
{
	if (v->type != YAML_MAPPING_NODE) {
		cfg_key_error(w->l, cfg_node_pos(v), path, "must be a mapping (key: value), not %s",
		    cfg_node_kind(v));
		return;
	}
	cfg_walk_map(w, v, f->sub, (char *)base + f->offset, path);
}

static void
set_field(struct walk *w, const struct field *f, yaml_node_t *v, void *base, const char *path)
{
	switch (f->type) {
	case FT_STRING:
	case FT_SECRET:
	case FT_PATH:
	case FT_URL:
		cfg_set_string(w, f, v, base, path);
		break;
	case FT_UINT:
		set_uint(w, f, v, base, path);
		break;
	case FT_BOOL:
		set_bool(w, f, v, base, path);
		break;
	case FT_ENUM:
		set_enum(w, f, v, base, path);
		break;
	case FT_LIST:
		set_list(w, f, v, base, path);
		break;
	case FT_MAP:
		set_map(w, f, v, base, path);
		break;
	case FT_CUSTOM:
		f->custom(w, f, v, base, path);
		break;
	}
}

/* ---- mappings ---- */

static const struct field *
find_field(const struct table *t, const char *key)
{
	size_t i;

	for (i = 0; i < t->count; i++)
		if (strcmp(t->fields[i].key, key) == 0)
			return &t->fields[i];
	return NULL;
}

static void
walk_pair(struct walk *w, yaml_node_t *k, yaml_node_t *v, const struct table *t,
    void *base, const char *prefix)
{
	const char *name = cfg_key(w, k, prefix);
	char path[KEY_PATH_MAX];
	const struct field *f;
	uint32_t bit;

	if (name == NULL)
		return;
	cfg_join_path(path, sizeof(path), prefix, name);
	f = find_field(t, name);
	if (f == NULL) {
		unknown_key(w, k, path, name, t);
		return;
	}
	bit = UINT32_C(1) << f->id;
	if (w->keys->set & bit) {
		cfg_key_error(w->l, cfg_node_pos(k), path, "given twice (first at line %u)",
		    w->keys->pos[f->id].line);
		return;
	}
	w->keys->set |= bit;
	w->keys->pos[f->id] = cfg_node_pos(v);
	set_field(w, f, v, base, path);
}

void
cfg_walk_map(struct walk *w, yaml_node_t *map, const struct table *t, void *base,
    const char *prefix)
{
	yaml_node_pair_t *pair;

	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = cfg_node_at(w, pair->key), *v = cfg_node_at(w, pair->value);

		if (k == NULL || v == NULL)
			return;
		walk_pair(w, k, v, t, base, prefix);
	}
}

/* ---- the document ---- */

/* libyaml marks are 0-based; a reader error (bad UTF-8) has only an offset. */
static struct cfg_pos
syntax_pos(const yaml_parser_t *parser, const char *text, size_t len)
{
	struct cfg_pos p = { (unsigned)parser->problem_mark.line + 1,
	    (unsigned)parser->problem_mark.column + 1 };
	size_t i, end = parser->problem_offset < len ? parser->problem_offset : len;

	if (parser->error != YAML_READER_ERROR)
		return p;
	p.line = 1;
	p.col = 1;
	for (i = 0; i < end; i++) {
		p.col = text[i] == '\n' ? 1 : p.col + 1;
		p.line += text[i] == '\n';
	}
	return p;
}

static void
syntax_error(struct cfg_loader *l, const yaml_parser_t *parser, const char *text, size_t len)
{
	cfg_error(l, syntax_pos(parser, text, len), "YAML syntax error: %s",
	    parser->problem ? parser->problem : "unknown problem");
}

/* The document's strings may hold a client_secret: wipe them before freeing. */
static void
wipe_scalars(yaml_document_t *doc)
{
	yaml_node_t *n;

	for (n = doc->nodes.start; n < doc->nodes.top; n++)
		if (n->type == YAML_SCALAR_NODE)
			secret_wipe(n->data.scalar.value, n->data.scalar.length);
}

/* A second document in the stream is an error (which one would apply?). */
static void
check_single_document(struct cfg_loader *l, yaml_parser_t *parser, const char *text,
    size_t len)
{
	yaml_document_t next;
	yaml_node_t *root;

	if (!yaml_parser_load(parser, &next)) {
		syntax_error(l, parser, text, len);
		return;
	}
	root = yaml_document_get_root_node(&next);
	if (root)
		cfg_error(l, cfg_node_pos(root),
		    "only one YAML document is allowed in a config file");
	wipe_scalars(&next);
	yaml_document_delete(&next);
}

/* 0 when the root was a mapping and was walked, else -1. */
static int
walk_root(struct walk *w, yaml_node_t *root)
{
	w->l->top.at = cfg_node_pos(root);
	if (root->type != YAML_MAPPING_NODE) {
		cfg_error(w->l, cfg_node_pos(root), "the top level must be a mapping (key: value), "
		    "not %s", cfg_node_kind(root));
		return -1;
	}
	w->keys = &w->l->top;
	cfg_walk_map(w, root, &cfg_top_table, w->l->cfg, "");
	return 0;
}

int
cfg_yaml_walk(struct cfg_loader *l, const char *text, size_t len)
{
	static const struct cfg_pos nowhere;
	struct walk w = { .l = l };
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	int rc = -1;

	if (!yaml_parser_initialize(&parser)) {
		cfg_error(l, nowhere, "cannot initialize the YAML parser");
		return -1;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		syntax_error(l, &parser, text, len);
		goto out;
	}
	w.doc = &doc;
	root = yaml_document_get_root_node(&doc);
	if (root == NULL) {
		cfg_error(l, nowhere, "no accounts (the file is empty)");
		cfg_hint(l, "define at least one account (see tokenmail.yaml(5))");
	} else {
		check_single_document(l, &parser, text, len);
		rc = walk_root(&w, root);
	}
	wipe_scalars(&doc);
	yaml_document_delete(&doc);
out:
	yaml_parser_delete(&parser);
	return rc;
}
