/*
 * config_walk.h: the interface between the generic table-driven YAML
 * walker (config_yaml.c) and tokenmail's key tables (config_schema.c).
 * Private to the config loader.
 */
#ifndef TM_CONFIG_WALK_H
#define TM_CONFIG_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "config_priv.h"
#include "tm_limits.h"

/* Longest key path in a message: "accounts.<name>.smtp.port". */
#define KEY_PATH_MAX	(TM_NAME_MAX + 64)

enum field_type {
	FT_STRING,	/* char *, checked by check */
	FT_SECRET,	/* char *, wiped when freed; never echoed in messages */
	FT_PATH,	/* char *, absolute after "~/" expansion */
	FT_URL,		/* char *, checked by check, trailing '/' dropped */
	FT_UINT,	/* unsigned in [min, max] */
	FT_BOOL,	/* bool */
	FT_ENUM,	/* an enum (int-sized), index into names */
	FT_LIST,	/* char ** at offset, size_t at count_offset */
	FT_MAP,		/* a nested table over base + offset */
	FT_CUSTOM	/* custom() does it all */
};

struct walk;
struct field;

/* NULL when value is acceptable, else what is wrong ("must be ..."). */
typedef const char *(*check_fn)(const char *value);
typedef void (*custom_fn)(struct walk *w, const struct field *f, yaml_node_t *v,
    void *base, const char *path);

struct table {
	const struct field *fields;
	size_t count;
};

struct field {
	const char *key;
	unsigned id;			/* bit in struct cfg_keys */
	enum field_type type;
	size_t offset;			/* of the value in the level's struct */
	size_t count_offset;		/* FT_LIST */
	check_fn check;			/* FT_STRING, FT_URL, FT_LIST items */
	long min, max;			/* FT_UINT */
	const char *const *names;	/* FT_ENUM: NULL-terminated, index = value */
	const struct table *sub;	/* FT_MAP */
	custom_fn custom;		/* FT_CUSTOM */
};

struct walk {
	struct cfg_loader *l;
	yaml_document_t *doc;
	struct cfg_keys *keys;		/* of the level being walked */
	size_t account;			/* index of the account being walked */
};


/* The top-level table (config_schema.c). */
extern const struct table cfg_top_table;

/* Where node n starts (1-based). */
struct cfg_pos cfg_node_pos(const yaml_node_t *n);
/* Node index of the document, or NULL once CFG_NODES_MAX were visited. */
yaml_node_t *cfg_node_at(struct walk *w, int index);
/* "a mapping", "a sequence" or "a string", for messages. */
const char *cfg_node_kind(const yaml_node_t *n);
/* true for an empty scalar, ~ and null. */
bool cfg_node_is_null(const yaml_node_t *n);
/* The text of scalar n, or NULL after recording why it is unusable (want
   says what was expected: "a string"). */
const char *cfg_scalar(struct walk *w, const yaml_node_t *n, const char *path,
    const char *want);
/* The text of key node k under prefix, or NULL after recording why not. */
const char *cfg_key(struct walk *w, const yaml_node_t *k, const char *prefix);
/* "prefix.key" (or "key" at the top) into out[size]. */
void cfg_join_path(char *out, size_t size, const char *prefix, const char *key);
/* v with "~/" expanded; *problem set when v is relative. Owned by the caller. */
char *cfg_expand_path(struct walk *w, const char *v, const char **problem);
/* Store a string field (FT_STRING, FT_SECRET, FT_PATH, FT_URL). */
void cfg_set_string(struct walk *w, const struct field *f, yaml_node_t *v, void *base,
    const char *path);
/* Store an FT_LIST field; item positions into *pos when pos is not NULL. */
void cfg_set_list(struct walk *w, const struct field *f, yaml_node_t *v, void *base,
    const char *path, struct cfg_pos **pos);
/* Walk mapping map with table t over the struct at base. */
void cfg_walk_map(struct walk *w, yaml_node_t *map, const struct table *t, void *base,
    const char *prefix);

#endif
