/*
 * util.h: allocation that never returns NULL, bounded string copies, a
 * growable buffer with a hard cap, and number parsing that checks range.
 * Running out of memory is fatal (EX_OSERR): a sendmail cannot do anything
 * useful without memory, and checking every allocation hides the real logic.
 */
#ifndef TM_UTIL_H
#define TM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Like asprintf, but fatal on failure. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copy src into dst[size]; returns -1 (dst holds a truncated copy) if it did not fit. */
int str_copy(char *dst, size_t size, const char *src);
/* Copy n bytes of src into dst[size] and terminate; -1 if it did not fit. */
int str_copy_n(char *dst, size_t size, const char *src, size_t n);
/* Append with the same rule as str_copy. */
int str_append(char *dst, size_t size, const char *src);
/* snprintf that reports truncation as -1. */
int str_format(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

bool str_eq_nocase(const char *a, const char *b);
bool str_starts_nocase(const char *s, const char *prefix);
/* Parse a decimal integer in [min, max]; -1 on anything else. */
int parse_long(const char *s, long min, long max, long *out);
/* The value of hex digit c (either case), or -1. */
int hex_value(char c);
/* Length of the valid UTF-8 sequence at s (avail bytes left, avail >= 1),
   0 if invalid: overlong forms, surrogates and code points above U+10FFFF
   are refused. An ASCII byte, NUL and controls included, is 1. */
size_t utf8_len(const unsigned char *s, size_t avail);

/* Overwrite a secret before it is freed (explicit_bzero survives optimisation). */
void secret_wipe(void *p, size_t n);
/* Wipe and free a NUL-terminated secret string. */
void secret_free(char *s);

/* A growable byte buffer that refuses to grow beyond limit. data is always NUL-terminated. */
struct strbuf {
	char *data;
	size_t len;
	size_t cap;
	size_t limit;
};

void strbuf_init(struct strbuf *b, size_t limit);
/* -1 if the result would exceed the limit (b is unchanged then). */
int strbuf_append(struct strbuf *b, const void *data, size_t n);
int strbuf_append_str(struct strbuf *b, const char *s);
int strbuf_appendf(struct strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void strbuf_reset(struct strbuf *b);
/*
 * Make room for n more octets (and the terminator) in b, moving its
 * contents to a new block and wiping the old one, so that a buffer holding
 * a secret leaves no copy in freed memory. -1 if b's limit forbids it.
 */
int strbuf_reserve_wiped(struct strbuf *b, size_t n);
/* Give the caller ownership of the data (never NULL); b is reset. */
char *strbuf_take(struct strbuf *b);
void strbuf_free(struct strbuf *b);

/*
 * Read fd until EOF or until buf[cap] is full; *len gets the count.
 * -1 with errno on a read error. *len == cap means the data may go on:
 * callers size cap one past what they accept to notice that.
 */
int read_fd_bounded(int fd, char *buf, size_t cap, size_t *len);

/*
 * One read(2) of up to size bytes from fd, waiting at most idle_seconds
 * for data (EINTR and EAGAIN are waited through). The count, 0 at EOF, or
 * -1 with errno (ETIMEDOUT when nothing came in time).
 */
ssize_t read_idle(int fd, void *buf, size_t size, int idle_seconds);

/* Random bytes from getrandom(2); fatal if the kernel cannot provide them. */
void random_bytes(void *buf, size_t n);
/* n random bytes as 2n lowercase hex digits into out[size]. */
void random_hex(char *out, size_t size, size_t n);

#endif
