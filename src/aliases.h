/*
 * aliases.h: local names to addresses. The table comes from the config's
 * inline `aliases:` map or from an aliases(5) file ("name: a@x, b@y", '#'
 * comments, continuation lines starting with white space). "*" is the
 * catch-all for any other local name. Lookups ignore case, as newaliases
 * does. Targets that are themselves local names are expanded again, up to
 * TM_ALIAS_DEPTH_MAX levels; file (/path), program (|cmd), :include: and
 * local-mailbox (\name) targets cannot be delivered by tokenmail and are
 * refused when loaded: an error, not a skipped line, because skipping
 * would send that name's mail to the catch-all or fail it later instead.
 * (Debian's default /etc/aliases, "postmaster: root" lines only, loads.)
 * A name defined twice is an error too (which one would win?).
 */
#ifndef TM_ALIASES_H
#define TM_ALIASES_H

#include <stdbool.h>
#include <stddef.h>

#include "address.h"
#include "err.h"

struct alias_entry {
	char *name;		/* local name, or "*" */
	struct address_list targets;
	unsigned line;		/* where it was defined (0 if unknown) */
};

struct alias_table {
	struct alias_entry *entries;
	size_t count;
	size_t cap;
	char *source;		/* file or config it came from, for messages */
	bool from_file;		/* source is an aliases(5) file, not the config */
	size_t *index;		/* private: open-addressing hash of entry
				   numbers + 1 by case-folded name */
	size_t index_cap;	/* a power of two, at least twice count */
};

/*
 * Add name -> targets (an address-list string; line is where it was
 * defined, 0 if unknown). Returns 0, or -1 with err (EX_CONFIG) whose msg
 * says what is wrong without saying where (the caller adds "FILE:LINE:
 * alias 'x': "): a name that is not a local name (empty, '@', ',', white
 * space, control characters, longer than TM_LOCAL_PART_MAX), a name
 * already defined (case aside), targets that do not parse or parse to no
 * address, a file/program/:include:/\name target.
 */
int aliases_add(struct alias_table *t, const char *name, const char *targets,
    unsigned line, struct tm_err *err);

/*
 * Parse an aliases(5) text into t: "name: target, target", optional double
 * quotes around the name, continuation lines starting with SP or HTAB,
 * blank lines and lines whose first non-blank is '#' ignored, CRLF or LF.
 * Sets t->source to name and t->from_file. Returns 0, or -1 with err
 * (EX_CONFIG): every problem as "NAME:LINE: ..." (the line where the entry
 * starts), the first in msg, the next ones in detail, up to
 * TM_CONFIG_ERRORS_MAX. Entries without problems are added either way.
 */
int aliases_parse_buffer(struct alias_table *t, const char *name, const char *text,
    size_t len, struct tm_err *err);

/* Read and parse an aliases(5) file (following symlinks; a regular file of
   at most TM_ALIASES_FILE_MAX bytes); errors as aliases_parse_buffer(), or
   one naming the file when it cannot be read (EX_CONFIG). */
int aliases_load_file(struct alias_table *t, const char *path, struct tm_err *err);

/*
 * Expand the local name (case aside) into qualified addresses appended to
 * out: deep copies, skipping any out already holds (address_spec_equal).
 * A name without an entry uses the "*" entry when there is one.
 * Unqualified targets are expanded the same way. Returns 0; or -1 with
 * err, and out as it was: EX_NOUSER (TM_ERR_DATA) when name (or a name it
 * leads to) has no alias and there is no catch-all; EX_CONFIG for a loop
 * ("root -> admin -> root"), a chain deeper than TM_ALIAS_DEPTH_MAX, or an
 * expansion of more than ALIASES_STEPS_MAX lookups.
 */
int aliases_resolve(const struct alias_table *t, const char *name,
    struct address_list *out, struct tm_err *err);

/* Lookups one aliases_resolve() call may make (bounds a wide alias tree). */
#define ALIASES_STEPS_MAX	10000

/* Free everything t holds and zero it. */
void aliases_free(struct alias_table *t);

#endif
