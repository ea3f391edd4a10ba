/*
 * aliases.c: local names -> addresses (aliases.h): the table, the aliases(5)
 * file syntax, and the expansion of a name through chains of aliases.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aliases.h"
#include "tm_limits.h"
#include "util.h"

/* Room kept at the end of err->detail for "(N more errors not shown)". */
#define DETAIL_RESERVE	48

/* State of one aliases_parse_buffer() call. */
struct alias_parse {
	struct alias_table *t;
	const char *name;		/* file name for messages */
	struct tm_err *err;
	unsigned nerrors;
	unsigned hidden;		/* errors that did not fit in err */
	struct strbuf entry;		/* the logical line being collected */
	unsigned entry_line;		/* where it started; 0: none */
};

/* State of one aliases_resolve() call. */
struct alias_walk {
	const struct alias_table *t;
	struct address_list *out;
	struct tm_err *err;
	const struct alias_entry *path[TM_ALIAS_DEPTH_MAX];	/* entries being expanded */
	const char *names[TM_ALIAS_DEPTH_MAX];	/* the names that led to them */
	size_t depth;
	unsigned steps;
};

static int expand_name(struct alias_walk *w, const char *name);

/* ---- the table ---- */

/* FNV-1a over the name with ASCII letters folded to lower case. */
static size_t
name_hash(const char *s)
{
	uint64_t h = UINT64_C(1469598103934665603);

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * UINT64_C(1099511628211);
	}
	return (size_t)h;
}

static void
index_insert(struct alias_table *t, size_t i)
{
	size_t mask = t->index_cap - 1, j = name_hash(t->entries[i].name) & mask;

	while (t->index[j] != 0)
		j = (j + 1) & mask;
	t->index[j] = i + 1;
}

/* Index entry i, growing the hash so it stays at most half full. */
static void
index_add(struct alias_table *t, size_t i)
{
	size_t j;

	if (2 * t->count <= t->index_cap) {
		index_insert(t, i);
		return;
	}
	free(t->index);
	t->index_cap = t->index_cap ? 2 * t->index_cap : 64;
	t->index = xcalloc(t->index_cap, sizeof(*t->index));
	for (j = 0; j < t->count; j++)
		index_insert(t, j);
}

static const struct alias_entry *
find_entry(const struct alias_table *t, const char *name)
{
	size_t mask = t->index_cap - 1, j;

	if (t->index_cap == 0)
		return NULL;
	for (j = name_hash(name) & mask; t->index[j] != 0; j = (j + 1) & mask)
		if (str_eq_nocase(t->entries[t->index[j] - 1].name, name))
			return &t->entries[t->index[j] - 1];
	return NULL;
}

static bool
name_ok(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;

	if (*p == '\0' || strlen(name) > TM_LOCAL_PART_MAX)
		return false;
	for (; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == ' ' || *p == '@' || *p == ',')
			return false;
	return true;
}

/* Why one list element (at e) cannot be delivered by tokenmail, or NULL. */
static const char *
refused_element(const char *e)
{
	e += strspn(e, " \t");
	if (*e == '"')
		e++;
	if (*e == '|' || *e == '/' || str_starts_nocase(e, ":include:"))
		return "tokenmail delivers only to addresses, not to files or programs";
	if (*e == '\\')
		return "tokenmail delivers only to addresses, not to local mailboxes (\\name)";
	return NULL;
}

/* Check each comma-separated element of targets (commas inside quotes aside). */
static const char *
refused_target(const char *targets)
{
	const char *p, *why = refused_element(targets);
	bool quoted = false;

	for (p = targets; *p && why == NULL; p++) {
		if (*p == '\\' && quoted && p[1])
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (*p == ',' && !quoted)
			why = refused_element(p + 1);
	}
	return why;
}

static void
append_entry(struct alias_table *t, const char *name, struct address_list *targets,
    unsigned line)
{
	struct alias_entry *e;

	if (t->count == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->entries = xreallocarray(t->entries, t->cap, sizeof(*t->entries));
	}
	e = &t->entries[t->count++];
	e->name = xstrdup(name);
	e->targets = *targets;
	e->line = line;
	memset(targets, 0, sizeof(*targets));
	index_add(t, t->count - 1);
}

int
aliases_add(struct alias_table *t, const char *name, const char *targets,
    unsigned line, struct tm_err *err)
{
	struct address_list list = { 0 };
	const struct alias_entry *old;
	struct tm_err perr;
	const char *why;
	int rc = -1;

	if (!name_ok(name)) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "the name must be a local name (no '@', "
		    "',', white space or control characters; at most %d octets)",
		    TM_LOCAL_PART_MAX);
	} else if ((old = find_entry(t, name)) != NULL) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "defined twice (first at line %u)",
		    old->line);
	} else if ((why = refused_target(targets)) != NULL) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s", why);
	} else if (address_list_parse(&list, targets, strlen(targets), &perr) < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "%s", perr.msg);
	} else if (list.count == 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "has no address");
	} else {
		append_entry(t, name, &list, line);
		rc = 0;
	}
	address_list_free(&list);
	return rc;
}

void
aliases_free(struct alias_table *t)
{
	size_t i;

	for (i = 0; i < t->count; i++) {
		free(t->entries[i].name);
		address_list_free(&t->entries[i].targets);
	}
	free(t->entries);
	free(t->index);
	free(t->source);
	memset(t, 0, sizeof(*t));
}

/* ---- aliases(5) text ---- */

static void __attribute__((format(printf, 3, 4)))
parse_error(struct alias_parse *ps, unsigned line, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	ps->nerrors++;
	if (ps->nerrors == 1)
		tm_err_set(ps->err, TM_ERR_CONFIG, EX_CONFIG, "%s:%u: %s", ps->name, line, text);
	else if (ps->nerrors <= TM_CONFIG_ERRORS_MAX && strlen(ps->err->detail) +
	    strlen(ps->name) + strlen(text) + 16 + DETAIL_RESERVE <= sizeof(ps->err->detail))
		tm_err_detail(ps->err, "%s:%u: %s", ps->name, line, text);
	else
		ps->hidden++;
}

/* Split "name: targets" (name optionally in double quotes); the name is
   returned as a new string and *targets points after the colon. */
static char *
split_entry(const char *text, const char **targets)
{
	const char *end, *colon;

	if (text[0] == '"') {
		end = strchr(text + 1, '"');
		if (end == NULL)
			return NULL;
		colon = end + 1 + strspn(end + 1, " \t");
		if (*colon != ':')
			return NULL;
		*targets = colon + 1;
		return xstrndup(text + 1, (size_t)(end - text - 1));
	}
	colon = strchr(text, ':');
	if (colon == NULL)
		return NULL;
	for (end = colon; end > text && (end[-1] == ' ' || end[-1] == '\t'); end--)
		continue;
	*targets = colon + 1;
	return xstrndup(text, (size_t)(end - text));
}

/* Add the logical line collected so far, if any. */
static void
flush_entry(struct alias_parse *ps)
{
	const char *targets = NULL;
	struct tm_err e;
	char *name;

	if (ps->entry_line == 0)
		return;
	name = split_entry(ps->entry.data, &targets);
	if (name == NULL)
		parse_error(ps, ps->entry_line, "expected \"name: address, ...\"");
	else if (aliases_add(ps->t, name, targets, ps->entry_line, &e) < 0)
		parse_error(ps, ps->entry_line, "alias '%.64s': %s", name, e.msg);
	free(name);
	strbuf_reset(&ps->entry);
	ps->entry_line = 0;
}

static bool
is_blank_or_comment(const char *line, size_t n)
{
	size_t i = 0;

	while (i < n && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return i == n || line[i] == '#';
}

/* One physical line (without its '\n'). */
static void
feed_line(struct alias_parse *ps, const char *line, size_t n, unsigned lineno)
{
	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (memchr(line, '\0', n) != NULL) {
		parse_error(ps, lineno, "NUL byte in the line");
		return;
	}
	if (is_blank_or_comment(line, n))
		return;
	if (line[0] == ' ' || line[0] == '\t') {
		if (ps->entry_line == 0)
			parse_error(ps, lineno, "continuation line without an alias before it");
		else if (strbuf_append(&ps->entry, line, n) < 0)
			parse_error(ps, ps->entry_line, "entry too long");
		return;
	}
	flush_entry(ps);
	ps->entry_line = lineno;
	if (strbuf_append(&ps->entry, line, n) < 0)
		parse_error(ps, lineno, "entry too long");
}

int
aliases_parse_buffer(struct alias_table *t, const char *name, const char *text,
    size_t len, struct tm_err *err)
{
	struct alias_parse ps = { .t = t, .name = name, .err = err };
	const char *p = text, *end = text + len;
	unsigned lineno = 0;

	tm_err_clear(err);
	free(t->source);
	t->source = xstrdup(name);
	t->from_file = true;
	strbuf_init(&ps.entry, TM_ALIASES_FILE_MAX);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		feed_line(&ps, p, n, ++lineno);
		p += n + (nl != NULL);
	}
	flush_entry(&ps);
	strbuf_free(&ps.entry);
	if (ps.hidden)
		tm_err_detail(err, "(%u more errors not shown)", ps.hidden);
	return ps.nerrors ? -1 : 0;
}

/* Read the regular file at fd (at most TM_ALIASES_FILE_MAX bytes) into a new buffer. */
static int
read_aliases_fd(int fd, const char *path, char **out, size_t *len, struct tm_err *err)
{
	struct stat st;
	size_t cap;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "aliases file %s: not a regular "
		    "file", path);
	if (st.st_size > TM_ALIASES_FILE_MAX)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "aliases file %s: larger than "
		    "%d bytes", path, TM_ALIASES_FILE_MAX);
	cap = (size_t)st.st_size + 1;	/* one more: notice a file that grew */
	*out = xmalloc(cap + 1);
	if (read_fd_bounded(fd, *out, cap, len) < 0)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot read aliases file "
		    "%s: %s", path, strerror(errno));
	if (*len == cap)
		return tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "aliases file %s: changed while "
		    "being read", path);
	(*out)[*len] = '\0';
	return 0;
}

int
aliases_load_file(struct alias_table *t, const char *path, struct tm_err *err)
{
	char *text = NULL;
	size_t len = 0;
	int fd, rc = -1;

	tm_err_clear(err);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		tm_err_set(err, TM_ERR_CONFIG, EX_CONFIG, "cannot open aliases file %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if (read_aliases_fd(fd, path, &text, &len, err) < 0)
		goto out;
	rc = aliases_parse_buffer(t, path, text, len, err);
out:
	free(text);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- expansion ---- */

static int
no_alias(struct alias_walk *w, const char *name)
{
	const char *src = w->t->source ? w->t->source : "the configuration";

	if (w->depth > 0)
		tm_err_set(w->err, TM_ERR_DATA, EX_NOUSER, "no alias for local recipient '%.64s' "
		    "(reached from '%.64s')", name, w->names[0]);
	else
		tm_err_set(w->err, TM_ERR_DATA, EX_NOUSER, "no alias for local recipient '%.64s'",
		    name);
	if (w->t->from_file)
		tm_err_hint(w->err, "add \"%.64s: user@example.com\" to %s, or a \"*\" catch-all",
		    name, src);
	else
		tm_err_hint(w->err, "add it under aliases: in %s, or an aliases: \"*\" catch-all",
		    src);
	return -1;
}

static int
loop_error(struct alias_walk *w, const char *name, const struct alias_entry *e)
{
	char chain[400] = "";
	size_t i;

	for (i = 0; i < w->depth; i++) {
		(void)str_append(chain, sizeof(chain), w->names[i]);
		(void)str_append(chain, sizeof(chain), " -> ");
	}
	(void)str_append(chain, sizeof(chain), name);
	tm_err_set(w->err, TM_ERR_CONFIG, EX_CONFIG, "alias loop: %s%s", chain,
	    strcmp(e->name, "*") == 0 ? " (through the \"*\" catch-all)" : "");
	tm_err_hint(w->err, "fix the aliases in %s",
	    w->t->source ? w->t->source : "the configuration");
	return -1;
}

/* One target of the entry being expanded. */
static int
expand_target(struct alias_walk *w, const struct address *a)
{
	char spec[TM_ADDRESS_MAX + 1];

	if (a->domain == NULL)
		return expand_name(w, a->local);
	if (address_spec(a, spec, sizeof(spec)) < 0)
		return tm_err_set(w->err, TM_ERR_CONFIG, EX_CONFIG, "alias '%.64s': a target "
		    "address is too long", w->names[w->depth - 1]);
	if (address_list_find(w->out, spec) < 0)
		address_list_add(w->out, a);
	return 0;
}

static int
expand_name(struct alias_walk *w, const char *name)
{
	const struct alias_entry *e = find_entry(w->t, name);
	size_t i;
	int rc = 0;

	if (e == NULL && (e = find_entry(w->t, "*")) == NULL)
		return no_alias(w, name);
	for (i = 0; i < w->depth; i++)
		if (w->path[i] == e)
			return loop_error(w, name, e);
	if (w->depth == TM_ALIAS_DEPTH_MAX)
		return tm_err_set(w->err, TM_ERR_CONFIG, EX_CONFIG, "alias '%.64s': more than %d "
		    "levels of aliases", w->names[0], TM_ALIAS_DEPTH_MAX);
	if (++w->steps > ALIASES_STEPS_MAX)
		return tm_err_set(w->err, TM_ERR_CONFIG, EX_CONFIG, "alias '%.64s' expands to "
		    "more than %d aliases", w->names[0], ALIASES_STEPS_MAX);
	w->path[w->depth] = e;
	w->names[w->depth++] = name;
	for (i = 0; i < e->targets.count && rc == 0; i++)
		rc = expand_target(w, &e->targets.items[i]);
	w->depth--;
	return rc;
}

int
aliases_resolve(const struct alias_table *t, const char *name, struct address_list *out,
    struct tm_err *err)
{
	struct alias_walk w = { .t = t, .out = out, .err = err };
	size_t before = out->count;

	if (expand_name(&w, name) == 0)
		return 0;
	while (out->count > before)
		address_free(&out->items[--out->count]);
	return -1;
}
