/*
 * stream_test.c: streamed request bodies (stream.h). Pieces of memory and
 * of a temp file in any mix, base64 of a stream (compared with
 * base64_encode), chains, a MIME part's decoded body, each read with
 * buffer sizes from 1 octet up and read again after a rewind; read errors
 * of the file propagate through base64 and chains as EX_IOERR.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base64.h"
#include "mime.h"
#include "stream.h"
#include "util.h"
#include "tap.h"

#define MEM_SIZE	16384
#define FILE_SIZE	(1024 * 1024 + 17)	/* the 1 MB input and some */
#define OUT_LIMIT	((size_t)8 * 1024 * 1024)

static char mem_data[MEM_SIZE];
static char *file_data;		/* what the temp file holds */
static int file_fd = -1;

static const size_t read_sizes[] = { 1, 2, 3, 4, 7, 4096 };
#define NSIZES (sizeof(read_sizes) / sizeof(read_sizes[0]))

/* xorshift32 with a fixed seed: the same bytes on every run. */
static unsigned rng_state = 2463534242u;

static unsigned
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static void
fill_random(char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (char)(rng() >> 24);
}

/* The temp file (mkstemp in /tmp, unlinked at once) holding file_data. */
static int
make_file(void)
{
	char path[] = "/tmp/stream_test.XXXXXX";
	size_t done = 0;
	ssize_t n;

	file_data = xmalloc(FILE_SIZE);
	fill_random(file_data, FILE_SIZE);
	fill_random(mem_data, MEM_SIZE);
	if ((file_fd = mkstemp(path)) < 0)
		return -1;
	unlink(path);
	while (done < FILE_SIZE) {
		n = write(file_fd, file_data + done, FILE_SIZE - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

/*
 * Read s to its end with buffers of sizes[0], sizes[1], ... (cycling) into
 * out. Returns the total, or -1 when a read failed, returned more than
 * asked, or a read after the end did not give 0 again.
 */
static long long
read_all(struct stream *s, const size_t *sizes, size_t nsizes, struct strbuf *out)
{
	static char buf[65536];
	long long total = 0;
	size_t k = 0;
	long got;

	strbuf_reset(out);
	for (;;) {
		size_t n = sizes[k++ % nsizes];

		got = stream_read(s, buf, n);
		if (got < 0 || (size_t)got > n)
			return -1;
		if (got == 0)
			break;
		if (strbuf_append(out, buf, (size_t)got) < 0)
			return -1;
		total += got;
	}
	return stream_read(s, buf, sizeof(buf)) == 0 ? total : -1;
}

/* true if s reads as want[len] with buffers of size n, size == len. */
static bool
reads_as(struct stream *s, size_t n, const char *want, size_t len)
{
	struct strbuf out;
	long long total;
	bool ok;

	strbuf_init(&out, OUT_LIMIT);
	total = read_all(s, &n, 1, &out);
	ok = total == (long long)len && s->size == (long long)len && out.len == len &&
	    (len == 0 || memcmp(out.data, want, len) == 0);
	if (!ok)
		printf("#   size %zu: got %lld octets (s.size %lld), want %zu\n", n, total, s->size,
		    len);
	strbuf_free(&out);
	return ok;
}

/* ---- pieces ---- */

struct piece_spec {
	char kind;		/* 'm' memory, 'f' the temp file, 0 ends the list */
	long long off, len;
};

struct pieces_case {
	const char *name;
	struct piece_spec p[9];
};

static const struct pieces_case pieces_cases[] = {
	{ "no piece", { { 0, 0, 0 } } },
	{ "one memory piece", { { 'm', 0, 100 } } },
	{ "one file range", { { 'f', 0, 100 } } },
	{ "memory, file, memory", { { 'm', 5, 10 }, { 'f', 1000, 5000 }, { 'm', 0, 1 } } },
	{ "file ranges out of order, one across 4096",
	  { { 'f', 7, 3 }, { 'f', 0, 1 }, { 'f', 1, 1 }, { 'm', 3, 2 }, { 'f', 4095, 4098 } } },
	{ "empty pieces skipped",
	  { { 'm', 0, 0 }, { 'f', 10, 0 }, { 'm', 0, 3 }, { 'f', 0, 0 }, { 'm', 3, 0 } } },
	{ "file, file, memory, memory",
	  { { 'f', 100, 7 }, { 'f', 107, 9 }, { 'm', 8000, 192 }, { 'm', 0, 4097 } } },
	{ "a long file range", { { 'f', 12345, 100000 } } },
	{ "alternating one-octet pieces",
	  { { 'm', 1, 1 }, { 'f', 2, 1 }, { 'm', 3, 1 }, { 'f', 4, 1 }, { 'm', 5, 1 },
	    { 'f', 6, 1 }, { 'm', 7, 1 }, { 'f', 8, 1 } } },
};

/* p from spec; the bytes it stands for appended to want. */
static void
build_pieces(const struct piece_spec *spec, size_t nspec, struct stream_pieces *p,
    struct strbuf *want)
{
	size_t i;

	stream_pieces_init(p);
	for (i = 0; i < nspec && spec[i].kind; i++) {
		const char *src = spec[i].kind == 'm' ? mem_data : file_data;

		if (spec[i].kind == 'm')
			stream_pieces_add_mem(p, mem_data + spec[i].off, (size_t)spec[i].len);
		else
			stream_pieces_add_file(p, file_fd, spec[i].off, spec[i].len);
		(void)strbuf_append(want, src + spec[i].off, (size_t)spec[i].len);
	}
}

static void
run_pieces_case(const struct pieces_case *c)
{
	struct stream_pieces p;
	struct strbuf want;
	size_t k;

	for (k = 0; k < NSIZES; k++) {
		strbuf_init(&want, OUT_LIMIT);
		build_pieces(c->p, sizeof(c->p) / sizeof(c->p[0]), &p, &want);
		tap_ok(reads_as(&p.s, read_sizes[k], want.data, want.len), "pieces: %s, reads of %zu",
		    c->name, read_sizes[k]);
		tap_ok(stream_rewind(&p.s) == 0 &&
		    reads_as(&p.s, read_sizes[(k + 1) % NSIZES], want.data, want.len),
		    "pieces: %s, rewound and read again (%zu)", c->name,
		    read_sizes[(k + 1) % NSIZES]);
		stream_pieces_free(&p);
		strbuf_free(&want);
	}
}

/* A rewind in the middle of a read starts over from the first octet. */
static void
test_pieces_rewind_midway(void)
{
	static const struct piece_spec spec[] = { { 'm', 0, 10 }, { 'f', 20, 30 }, { 'm', 50, 5 } };
	struct stream_pieces p;
	struct strbuf want;
	char buf[16];

	strbuf_init(&want, OUT_LIMIT);
	build_pieces(spec, 3, &p, &want);
	tap_ok(stream_read(&p.s, buf, 7) == 7 && stream_read(&p.s, buf, 16) == 3 &&
	    stream_read(&p.s, buf, 16) == 16, "pieces: partial reads stop at piece ends");
	tap_ok(stream_rewind(&p.s) == 0 && reads_as(&p.s, 5, want.data, want.len),
	    "pieces: rewound midway, read from the start");
	stream_pieces_free(&p);
	tap_is_int((long)p.s.size, 0, "pieces: free leaves an empty stream");
	tap_is_int(stream_read(&p.s, buf, 16), 0, "pieces: freed stream reads nothing");
	strbuf_free(&want);
}

/* More pieces than the first allocation holds. */
static void
test_many_pieces(void)
{
	struct stream_pieces p;
	struct strbuf want;
	size_t i;

	strbuf_init(&want, OUT_LIMIT);
	stream_pieces_init(&p);
	for (i = 0; i < 1000; i++) {
		if (i % 3 == 0) {
			stream_pieces_add_file(&p, file_fd, (long long)i * 7, (long long)(i % 5) + 1);
			(void)strbuf_append(&want, file_data + i * 7, i % 5 + 1);
		} else {
			stream_pieces_add_mem(&p, mem_data + i, i % 4 + 1);
			(void)strbuf_append(&want, mem_data + i, i % 4 + 1);
		}
	}
	tap_ok(reads_as(&p.s, 4096, want.data, want.len), "pieces: 1000 pieces read (%zu octets)",
	    want.len);
	tap_ok(stream_rewind(&p.s) == 0 && reads_as(&p.s, 3, want.data, want.len),
	    "pieces: 1000 pieces again, reads of 3");
	stream_pieces_free(&p);
	strbuf_free(&want);
}

/* ---- base64 ---- */

static char *
encoded(const char *data, size_t len)
{
	struct strbuf b;

	strbuf_init(&b, OUT_LIMIT);
	if (base64_encode(&b, data, len) < 0) {
		strbuf_free(&b);
		return xstrdup("(base64_encode failed)");
	}
	return strbuf_take(&b);
}

static void
test_base64_size(void)
{
	static const struct { long long n, want; } sizes[] = {
		{ 0, 0 }, { 1, 4 }, { 2, 4 }, { 3, 4 }, { 4, 8 }, { 5, 8 }, { 6, 8 }, { 7, 12 },
		{ 3096576, 4128768 }, { 3096577, 4128772 },
		{ 157286400, 209715200 }, { 10000000000LL, 13333333336LL },
	};
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		tap_is_int((long)stream_base64_size(sizes[i].n), (long)sizes[i].want,
		    "base64 size of %lld", sizes[i].n);
}

/* Inputs of 0 to 300 octets, half memory half file, every buffer size. */
static void
test_base64_lengths(void)
{
	struct strbuf in;
	size_t len, k;

	strbuf_init(&in, OUT_LIMIT);
	for (len = 0; len <= 300; len++) {
		struct stream_pieces p;
		struct stream_base64 b;
		char *want;
		bool ok = true;

		strbuf_reset(&in);
		stream_pieces_init(&p);
		stream_pieces_add_mem(&p, mem_data, len / 2);
		stream_pieces_add_file(&p, file_fd, 333, (long long)(len - len / 2));
		(void)strbuf_append(&in, mem_data, len / 2);
		(void)strbuf_append(&in, file_data + 333, len - len / 2);
		want = encoded(in.data, in.len);
		stream_base64_init(&b, &p.s);
		for (k = 0; k < NSIZES && ok; k++) {
			ok = reads_as(&b.s, read_sizes[k], want, strlen(want)) &&
			    stream_rewind(&b.s) == 0;
		}
		tap_ok(ok && b.s.size == stream_base64_size((long long)len),
		    "base64 of %zu octets, all buffer sizes, rewound between", len);
		free(want);
		stream_pieces_free(&p);
	}
	strbuf_free(&in);
}

/* An inner stream that gives one or two octets per read. */
static void
test_base64_short_inner(void)
{
	struct stream_pieces p;
	struct stream_base64 b;
	struct strbuf in;
	char *want;
	size_t i, k;

	strbuf_init(&in, OUT_LIMIT);
	stream_pieces_init(&p);
	for (i = 0; i < 700; i++) {
		size_t n = i % 2 + 1;

		stream_pieces_add_mem(&p, mem_data + 3 * i, n);
		(void)strbuf_append(&in, mem_data + 3 * i, n);
	}
	want = encoded(in.data, in.len);
	stream_base64_init(&b, &p.s);
	for (k = 0; k < NSIZES; k++) {
		tap_ok(reads_as(&b.s, read_sizes[k], want, strlen(want)),
		    "base64 of one-octet inner reads, reads of %zu", read_sizes[k]);
		tap_ok(stream_rewind(&b.s) == 0, "base64 of one-octet inner reads: rewind");
	}
	free(want);
	stream_pieces_free(&p);
	strbuf_free(&in);
}

/* 1 MB of random octets from the file, through base64. */
static void
test_base64_megabyte(void)
{
	static const size_t odd[] = { 4096, 1, 7, 65536, 3, 5000 };
	struct stream_pieces p;
	struct stream_base64 b;
	struct strbuf out;
	char *want = encoded(file_data, 1024 * 1024);
	size_t wlen = strlen(want);

	stream_pieces_init(&p);
	stream_pieces_add_file(&p, file_fd, 0, 1024 * 1024);
	stream_base64_init(&b, &p.s);
	tap_is_int((long)b.s.size, (long)wlen, "base64 of 1 MB: size");
	tap_ok(reads_as(&b.s, 4096, want, wlen), "base64 of 1 MB: reads of 4096");
	tap_ok(stream_rewind(&b.s) == 0 && reads_as(&b.s, 7, want, wlen),
	    "base64 of 1 MB: rewound, reads of 7");
	strbuf_init(&out, OUT_LIMIT);
	tap_ok(stream_rewind(&b.s) == 0 &&
	    read_all(&b.s, odd, sizeof(odd) / sizeof(odd[0]), &out) == (long long)wlen &&
	    memcmp(out.data, want, wlen) == 0, "base64 of 1 MB: mixed read sizes");
	tap_ok(memchr(out.data, '\n', out.len) == NULL && memchr(out.data, '\r', out.len) == NULL,
	    "base64 of 1 MB: one line");
	strbuf_free(&out);
	free(want);
	stream_pieces_free(&p);
}

/* A rewind with a quantum half given out starts the text over. */
static void
test_base64_rewind_midway(void)
{
	struct stream_pieces p;
	struct stream_base64 b;
	char buf[8];
	char *want = encoded(mem_data, 100);

	stream_pieces_init(&p);
	stream_pieces_add_mem(&p, mem_data, 100);
	stream_base64_init(&b, &p.s);
	tap_ok(stream_read(&b.s, buf, 6) == 6 && memcmp(buf, want, 6) == 0,
	    "base64: first 6 octets");
	tap_ok(stream_rewind(&b.s) == 0 && reads_as(&b.s, 5, want, strlen(want)),
	    "base64: rewound mid-quantum, read from the start");
	free(want);
	stream_pieces_free(&p);
}

/* ---- chains ---- */

static void
test_chain(void)
{
	static const char prefix[] = "{\"@odata.type\":\"#microsoft.graph.fileAttachment\","
	    "\"contentBytes\":\"";
	static const char suffix[] = "\"}";
	struct stream_pieces pre, body, suf;
	struct stream_base64 b;
	struct stream_chain c;
	struct strbuf in, want;
	char *b64;
	char buf[20];
	size_t n;

	strbuf_init(&in, OUT_LIMIT);
	strbuf_init(&want, OUT_LIMIT);
	stream_pieces_init(&pre);
	stream_pieces_add_mem(&pre, prefix, strlen(prefix));
	stream_pieces_init(&suf);
	stream_pieces_add_mem(&suf, suffix, strlen(suffix));
	build_pieces((const struct piece_spec[]){ { 'm', 0, 500 }, { 'f', 9000, 1001 } }, 2, &body,
	    &in);
	b64 = encoded(in.data, in.len);
	(void)strbuf_appendf(&want, "%s%s%s", prefix, b64, suffix);
	stream_base64_init(&b, &body.s);
	stream_chain_init(&c);
	stream_chain_add(&c, &pre.s);
	stream_chain_add(&c, &b.s);
	stream_chain_add(&c, &suf.s);
	tap_is_int((long)c.s.size, (long)want.len, "chain: size is the sum");
	for (n = 1; n <= 8; n++) {
		tap_ok(reads_as(&c.s, n == 8 ? 4096 : n, want.data, want.len),
		    "chain: prefix, base64, suffix with reads of %zu", n == 8 ? 4096 : n);
		tap_ok(stream_rewind(&c.s) == 0, "chain: rewind (%zu)", n);
	}
	tap_ok(stream_read(&c.s, buf, sizeof(buf)) == (long)sizeof(buf) &&
	    memcmp(buf, want.data, sizeof(buf)) == 0, "chain: partial read");
	tap_ok(stream_rewind(&c.s) == 0 && reads_as(&c.s, 3, want.data, want.len),
	    "chain: rewound midway, read from the start");
	free(b64);
	stream_pieces_free(&pre);
	stream_pieces_free(&body);
	stream_pieces_free(&suf);
	strbuf_free(&in);
	strbuf_free(&want);
}

/* Empty streams in a chain are passed over; an empty chain reads nothing. */
static void
test_chain_empty_parts(void)
{
	struct stream_pieces e1, a, e2, z;
	struct stream_chain c;
	char buf[8];

	stream_chain_init(&c);
	tap_is_int(stream_read(&c.s, buf, sizeof(buf)), 0, "chain: empty chain reads 0");
	tap_is_int((long)c.s.size, 0, "chain: empty chain size 0");
	stream_pieces_init(&e1);
	stream_pieces_init(&e2);
	stream_pieces_init(&a);
	stream_pieces_init(&z);
	stream_pieces_add_mem(&a, "ab", 2);
	stream_pieces_add_mem(&z, "cd", 2);
	stream_chain_add(&c, &e1.s);
	stream_chain_add(&c, &a.s);
	stream_chain_add(&c, &e2.s);
	stream_chain_add(&c, &z.s);
	tap_ok(reads_as(&c.s, 1, "abcd", 4), "chain: empty parts passed over");
	tap_ok(stream_rewind(&c.s) == 0 && reads_as(&c.s, 4096, "abcd", 4),
	    "chain: empty parts, rewound");
	stream_pieces_free(&a);
	stream_pieces_free(&z);
}

/* A fifth part is a caller bug: abort(). */
static void
test_chain_overflow(void)
{
	pid_t pid;
	int status = 0;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct stream_pieces p;
		struct stream_chain c;
		int i;

		stream_pieces_init(&p);
		stream_chain_init(&c);
		for (i = 0; i <= STREAM_CHAIN_MAX; i++)
			stream_chain_add(&c, &p.s);
		_exit(0);
	}
	tap_ok(pid > 0 && waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) &&
	    WTERMSIG(status) == SIGABRT, "chain: part %d aborts", STREAM_CHAIN_MAX + 1);
}

/* ---- read errors ---- */

/* A descriptor that was open and is now closed. */
static int
closed_fd(void)
{
	int fd = dup(file_fd);

	close(fd);
	return fd;
}

static void
test_errors(void)
{
	struct stream_pieces p, pre;
	struct stream_base64 b;
	struct stream_chain c;
	char buf[4096];
	int bad = closed_fd();

	stream_pieces_init(&p);
	stream_pieces_add_mem(&p, "abc", 3);
	stream_pieces_add_file(&p, bad, 0, 10);
	tap_is_int(stream_read(&p.s, buf, sizeof(buf)), 3, "error: memory before the bad piece");
	tap_is_int(stream_read(&p.s, buf, sizeof(buf)), -1, "error: closed fd: -1");
	tap_is_int(p.s.err.exit, EX_IOERR, "error: closed fd: EX_IOERR");
	tap_ok(strncmp(p.s.err.msg, "cannot read the spool file: ", 28) == 0,
	    "error: message (%s)", p.s.err.msg);

	tap_ok(stream_rewind(&p.s) == 0, "error: pieces rewind");
	stream_base64_init(&b, &p.s);
	tap_is_int(stream_read(&b.s, buf, sizeof(buf)), -1, "error: through base64: -1");
	tap_is_int(b.s.err.exit, EX_IOERR, "error: through base64: EX_IOERR");
	tap_is_str(b.s.err.msg, p.s.err.msg, "error: through base64: same message");

	tap_ok(stream_rewind(&b.s) == 0, "error: base64 rewind");
	stream_pieces_init(&pre);
	stream_pieces_add_mem(&pre, "{\"x\":\"", 6);
	stream_chain_init(&c);
	stream_chain_add(&c, &pre.s);
	stream_chain_add(&c, &b.s);
	tap_is_int(stream_read(&c.s, buf, sizeof(buf)), 6, "error: chain gives the prefix first");
	tap_is_int(stream_read(&c.s, buf, sizeof(buf)), -1, "error: through chain: -1");
	tap_is_int(c.s.err.exit, EX_IOERR, "error: through chain: EX_IOERR");
	tap_is_str(c.s.err.msg, p.s.err.msg, "error: through chain: same message");
	stream_pieces_free(&p);
	stream_pieces_free(&pre);
}

/* A file range beyond the end of the file. */
static void
test_short_file(void)
{
	struct stream_pieces p;
	struct stream_base64 b;
	char buf[64];

	stream_pieces_init(&p);
	stream_pieces_add_file(&p, file_fd, FILE_SIZE - 5, 10);
	tap_is_int(stream_read(&p.s, buf, sizeof(buf)), 5, "short file: what is there");
	tap_is_int(stream_read(&p.s, buf, sizeof(buf)), -1, "short file: then -1");
	tap_is_int(p.s.err.exit, EX_IOERR, "short file: EX_IOERR");
	tap_ok(strstr(p.s.err.msg, "shorter than written") != NULL, "short file: message (%s)",
	    p.s.err.msg);
	stream_rewind(&p.s);
	stream_base64_init(&b, &p.s);
	tap_is_int(stream_read(&b.s, buf, sizeof(buf)), -1, "short file: through base64: -1");
	tap_is_int(b.s.err.exit, EX_IOERR, "short file: through base64: EX_IOERR");
	stream_pieces_free(&p);
}

/* ---- the body source for http.h ---- */

static void
test_body_source(void)
{
	struct stream_pieces p, bad;
	struct stream_base64 b;
	struct http_body_source src;
	struct strbuf out;
	char buf[5];
	char *want = encoded(mem_data, 1000);
	long got;
	int round;

	stream_pieces_init(&p);
	stream_pieces_add_mem(&p, mem_data, 1000);
	stream_base64_init(&b, &p.s);
	memset(&src, 0, sizeof(src));
	stream_body_source(&b.s, &src);
	tap_is_int((long)src.size, (long)strlen(want), "source: size");
	tap_ok(src.ctx == &b.s, "source: ctx is the stream");
	strbuf_init(&out, OUT_LIMIT);
	for (round = 0; round < 2; round++) {
		strbuf_reset(&out);
		while ((got = src.read(src.ctx, buf, sizeof(buf))) > 0)
			(void)strbuf_append(&out, buf, (size_t)got);
		tap_ok(got == 0 && strcmp(out.data, want) == 0, "source: read through it (%d)", round);
		tap_is_int(src.rewind(src.ctx), 0, "source: rewind through it (%d)", round);
	}
	stream_pieces_init(&bad);
	stream_pieces_add_file(&bad, closed_fd(), 0, 1);
	stream_body_source(&bad.s, &src);
	tap_is_int(src.read(src.ctx, buf, sizeof(buf)), -1, "source: read error is -1");
	strbuf_free(&out);
	free(want);
	stream_pieces_free(&p);
	stream_pieces_free(&bad);
}

/* ---- a MIME part's decoded body ---- */

struct mem_msg {
	const char *data;
	size_t len;
	bool fail;	/* read_at fails (after the parse) */
};

static long
mem_read_at(void *ctx, long long offset, char *buf, size_t n)
{
	const struct mem_msg *mm = ctx;

	if (mm->fail)
		return -1;
	if (offset < 0 || (size_t)offset >= mm->len)
		return 0;
	if (n > mm->len - (size_t)offset)
		n = mm->len - (size_t)offset;
	memcpy(buf, mm->data + offset, n);
	return (long)n;
}

#define ATTACH_SIZE 10000

static const char qp_decoded[] =
    "caf\xc3\xa9 softbreak line=\r\nsecond line with a =tab\there\r\n"
    "long soft break across many words in one paragraph";

/* A multipart/mixed message: quoted-printable text, a base64 attachment
   of ATTACH_SIZE octets of mem_data (lines of 76), a 7bit attachment. */
static char *
build_message(void)
{
	struct strbuf m;
	char *b64 = encoded(mem_data, ATTACH_SIZE);
	size_t i, len = strlen(b64);

	strbuf_init(&m, OUT_LIMIT);
	(void)strbuf_append_str(&m,
	    "From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"BOUND\"\r\n\r\n"
	    "preamble\r\n--BOUND\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
	    "caf=C3=A9 soft=\r\nbreak line=3D\r\nsecond line with a =3Dtab=09here\r\n"
	    "long soft break across =\r\nmany words =\r\nin one paragraph\r\n"
	    "--BOUND\r\n"
	    "Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
	    "Content-Disposition: attachment; filename=\"data.bin\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n");
	for (i = 0; i < len; i += 76) {
		(void)strbuf_append(&m, b64 + i, len - i < 76 ? len - i : 76);
		(void)strbuf_append_str(&m, "\r\n");
	}
	(void)strbuf_append_str(&m,
	    "--BOUND\r\n"
	    "Content-Type: text/csv\r\nContent-Disposition: attachment; filename=\"t.csv\"\r\n\r\n"
	    "a,b\r\n1,2\r\n"
	    "--BOUND--\r\nepilogue\r\n");
	free(b64);
	return strbuf_take(&m);
}

/* The index of the part of type type, or -1. */
static long
part_of_type(const struct mime_tree *t, const char *type)
{
	size_t i;

	for (i = 0; i < t->count; i++) {
		if (strcmp(t->parts[i].type, type) == 0)
			return (long)i;
	}
	return -1;
}

/* The decoded body of part index read through stream_mime_part with every
   size from 1 to 5 (and 4096), then through base64 of it. */
static void
check_mime_part(const struct mime_reader *r, const struct mime_tree *t, const char *type,
    const char *want, size_t len)
{
	long idx = part_of_type(t, type);
	struct stream_mime_part m;
	struct stream_base64 b;
	struct tm_err err;
	long long size = -1;
	char *b64 = encoded(want, len);
	size_t n;

	tm_err_clear(&err);
	if (idx < 0 || mime_part_decoded_size(r, &t->parts[idx], &size, &err) < 0) {
		tap_ok(0, "mime %s: part found and measured (%s)", type, err.msg);
		free(b64);
		return;
	}
	tap_is_int((long)size, (long)len, "mime %s: decoded size", type);
	stream_mime_part_init(&m, r, &t->parts[idx], size);
	for (n = 1; n <= 6; n++) {
		tap_ok(reads_as(&m.s, n == 6 ? 4096 : n, want, len), "mime %s: reads of %zu", type,
		    n == 6 ? 4096 : n);
		tap_ok(stream_rewind(&m.s) == 0, "mime %s: rewind", type);
	}
	stream_base64_init(&b, &m.s);
	for (n = 0; n < NSIZES; n++) {
		tap_ok(reads_as(&b.s, read_sizes[n], b64, strlen(b64)),
		    "mime %s: base64 of the part, reads of %zu", type, read_sizes[n]);
		tap_ok(stream_rewind(&b.s) == 0, "mime %s: base64 rewind", type);
	}
	free(b64);
}

/* Mixed read sizes so that held octets meet big and small buffers. */
static void
check_mime_mixed(const struct mime_reader *r, const struct mime_tree *t)
{
	static const size_t mixed[] = { 1, 5, 2, 4096, 3, 3, 1, 4, 7 };
	long idx = part_of_type(t, "application/octet-stream");
	struct stream_mime_part m;
	struct strbuf out;

	if (idx < 0)
		return;
	strbuf_init(&out, OUT_LIMIT);
	stream_mime_part_init(&m, r, &t->parts[idx], ATTACH_SIZE);
	tap_ok(read_all(&m.s, mixed, sizeof(mixed) / sizeof(mixed[0]), &out) == ATTACH_SIZE &&
	    memcmp(out.data, mem_data, ATTACH_SIZE) == 0, "mime: mixed read sizes");
	tap_ok(stream_rewind(&m.s) == 0 && stream_read(&m.s, out.data, 2) == 2 &&
	    stream_rewind(&m.s) == 0 && reads_as(&m.s, 4, mem_data, ATTACH_SIZE),
	    "mime: rewound with octets held");
	strbuf_free(&out);
}

static void
check_mime_error(struct mem_msg *mm, const struct mime_reader *r, const struct mime_tree *t)
{
	long idx = part_of_type(t, "application/octet-stream");
	struct stream_mime_part m;
	struct stream_base64 b;
	char buf[4096];

	if (idx < 0)
		return;
	stream_mime_part_init(&m, r, &t->parts[idx], ATTACH_SIZE);
	mm->fail = true;
	tap_is_int(stream_read(&m.s, buf, 1), -1, "mime: reader failure: -1 (short read)");
	tap_is_int(m.s.err.exit, EX_IOERR, "mime: reader failure: EX_IOERR");
	stream_rewind(&m.s);
	stream_base64_init(&b, &m.s);
	tap_is_int(stream_read(&b.s, buf, sizeof(buf)), -1, "mime: reader failure through base64");
	tap_is_int(b.s.err.exit, EX_IOERR, "mime: reader failure through base64: EX_IOERR");
	mm->fail = false;
}

static void
test_mime_part(void)
{
	char *text = build_message();
	struct mem_msg mm = { text, strlen(text), false };
	struct mime_reader r = { &mm, mem_read_at, (long long)strlen(text) };
	struct mime_tree t;
	struct tm_err err;

	memset(&t, 0, sizeof(t));
	tm_err_clear(&err);
	if (mime_parse(&r, &t, &err) < 0) {
		tap_ok(0, "mime: message parses (%s)", err.msg);
	} else {
		tap_is_int((long)t.count, 4, "mime: four parts");
		check_mime_part(&r, &t, "text/plain", qp_decoded, sizeof(qp_decoded) - 1);
		check_mime_part(&r, &t, "application/octet-stream", mem_data, ATTACH_SIZE);
		check_mime_part(&r, &t, "text/csv", "a,b\r\n1,2", 8);
		check_mime_mixed(&r, &t);
		check_mime_error(&mm, &r, &t);
	}
	mime_tree_free(&t);
	free(text);
}

int
main(void)
{
	size_t i;

	if (make_file() < 0) {
		tap_ok(0, "temp file in /tmp: %s", strerror(errno));
		return tap_done();
	}
	for (i = 0; i < sizeof(pieces_cases) / sizeof(pieces_cases[0]); i++)
		run_pieces_case(&pieces_cases[i]);
	test_pieces_rewind_midway();
	test_many_pieces();
	test_base64_size();
	test_base64_lengths();
	test_base64_short_inner();
	test_base64_megabyte();
	test_base64_rewind_midway();
	test_chain();
	test_chain_empty_parts();
	test_chain_overflow();
	test_errors();
	test_short_file();
	test_body_source();
	test_mime_part();
	close(file_fd);
	free(file_data);
	return tap_done();
}
