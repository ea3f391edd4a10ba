/*
 * fuzz.h: what the harnesses in tests/fuzz/ share. Each fuzz_TARGET.c
 * defines LLVMFuzzerTestOneInput() for one parser. Built with clang and
 * -fsanitize=fuzzer it is a libFuzzer target (`make fuzz`); linked with
 * replay_main.c and libtokenmail.a it replays the seed corpus and the
 * regressions in `make check`. A harness frees everything it allocates
 * (the fuzzers run with LeakSanitizer) and keeps no state between inputs.
 * An invariant that does not hold is a finding: fuzz_check() aborts, which
 * libFuzzer reports as a crash and the replay as a failed test.
 */
#ifndef TM_FUZZ_H
#define TM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with what broke when cond is false. */
#define fuzz_check(cond, what) \
	fuzz_check_at((cond), (what), __FILE__, __LINE__)

static inline void
fuzz_check_at(int ok, const char *what, const char *file, int line)
{
	if (ok)
		return;
	fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
	abort();
}

/* data[size] as a NUL-terminated string, cut at its first NUL; free() it. */
static inline char *
fuzz_cstr(const uint8_t *data, size_t size)
{
	const void *nul = size > 0 ? memchr(data, '\0', size) : NULL;
	size_t n = nul != NULL ? (size_t)((const uint8_t *)nul - data) : size;

	return xstrndup(size > 0 ? (const char *)data : "", n);
}

/* true if s[n] holds no CR, LF or NUL: one header line, one SMTP command. */
static inline int
fuzz_one_line(const char *s, size_t n)
{
	return memchr(s, '\r', n) == NULL && memchr(s, '\n', n) == NULL &&
	    memchr(s, '\0', n) == NULL;
}

#endif
