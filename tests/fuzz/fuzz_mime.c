/*
 * fuzz_mime.c: the MIME structure parser and the transfer decoders
 * (mime.h), which the Graph draft path runs over the spooled message. The
 * input is the message as transmitted. It is parsed twice, once through a
 * reader that returns everything asked for and once through one that
 * returns short reads; then every part's body is decoded.
 * Invariants: the short reads find the same tree; every part lies inside
 * the message in order (header, body, next delimiter); a parent comes
 * before its children; a body decodes to as many octets read in small
 * pieces as mime_part_decoded_size() counts.
 */
#include <string.h>

#include "fuzz.h"
#include "mime.h"

struct mem {
	const uint8_t *data;
	size_t len;
	size_t most;	/* the longest read returned; 0: no limit */
	unsigned calls;
};

static long
mem_read(void *ctx, long long off, char *buf, size_t n)
{
	struct mem *m = ctx;
	size_t k;

	if (off < 0 || (size_t)off >= m->len)
		return 0;
	k = m->len - (size_t)off;
	k = k < n ? k : n;
	if (m->most > 0 && k > 1 + m->calls++ % m->most)
		k = 1 + (m->calls - 1) % m->most;
	memcpy(buf, m->data + off, k);
	return (long)k;
}

static void
check_part(const struct mime_tree *t, size_t i, long long size)
{
	const struct mime_part *p = &t->parts[i];

	fuzz_check(p->header_start >= 0 && p->header_start <= p->body_start &&
	    p->body_start <= p->body_end && p->body_end <= p->next_delim &&
	    p->next_delim <= size, "a part's ranges are out of order");
	fuzz_check(i == 0 ? p->parent == -1 && p->depth == 0 :
	    p->parent >= 0 && (size_t)p->parent < i && p->depth == t->parts[p->parent].depth + 1,
	    "a part's parent does not come before it");
	fuzz_check(strlen(p->type) <= MIME_TYPE_MAX && strlen(p->boundary) <= MIME_BOUNDARY_MAX,
	    "a part's type or boundary is too long");
	if (p->filename != NULL)
		fuzz_check(fuzz_one_line(p->filename, strlen(p->filename)),
		    "a file name holds a line end");
}

static void
same_tree(const struct mime_tree *a, const struct mime_tree *b)
{
	size_t i;

	fuzz_check(a->count == b->count, "short reads find another number of parts");
	for (i = 0; i < a->count && i < b->count; i++) {
		const struct mime_part *x = &a->parts[i], *y = &b->parts[i];

		fuzz_check(x->parent == y->parent && x->delim_start == y->delim_start &&
		    x->header_start == y->header_start && x->body_start == y->body_start &&
		    x->body_end == y->body_end && x->next_delim == y->next_delim &&
		    x->multipart == y->multipart && x->encoding == y->encoding &&
		    strcmp(x->type, y->type) == 0 && strcmp(x->boundary, y->boundary) == 0,
		    "short reads find another part");
		fuzz_check((x->filename == NULL) == (y->filename == NULL) &&
		    (x->filename == NULL || strcmp(x->filename, y->filename) == 0),
		    "short reads find another file name");
	}
}

/* Decode the body of part p in pieces of up to cap octets. */
static void
decode(const struct mime_reader *r, const struct mime_part *p, size_t cap)
{
	struct mime_part_reader *pr = xmalloc(sizeof(*pr));
	char buf[64];
	long long total = 0, size = -1;
	struct tm_err err;
	long n;

	mime_part_reader_init(pr, r, p);
	while ((n = mime_part_read(pr, buf, cap, &err)) > 0) {
		fuzz_check((size_t)n <= cap, "a part read returned more than asked");
		total += n;
	}
	fuzz_check(n == 0, "a part read failed on a reader that does not fail");
	fuzz_check(mime_part_decoded_size(r, p, &size, &err) == 0 && size == total,
	    "mime_part_decoded_size disagrees with the reads");
	free(pr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mem whole = { data, size, 0, 0 }, bits = { data, size, 1 + size % 13, 0 };
	struct mime_reader r = { &whole, mem_read, (long long)size };
	struct mime_reader rb = { &bits, mem_read, (long long)size };
	struct mime_tree t = { NULL, 0 }, tb = { NULL, 0 };
	struct tm_err err;
	size_t i;

	fuzz_check(mime_parse(&r, &t, &err) == 0, "a parse failed on a reader that does not fail");
	fuzz_check(mime_parse(&rb, &tb, &err) == 0, "a parse failed on short reads");
	same_tree(&t, &tb);
	for (i = 0; i < t.count; i++) {
		check_part(&t, i, (long long)size);
		(void)mime_part_is_attachment(&t, i);
		decode(&r, &t.parts[i], 4 + i % 61);
	}
	mime_tree_free(&t);
	mime_tree_free(&tb);
	return 0;
}
