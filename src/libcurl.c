/*
 * libcurl.c: dlopen and dlsym for libcurl.h. The handle is never closed:
 * libcurl and GnuTLS keep global state until exit.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "libcurl.h"
#include "tm_autoconf.h"
#include "util.h"

#ifndef TM_LIBCURL_SONAME
#define TM_LIBCURL_SONAME	"libcurl-gnutls.so.4"
#endif

struct libcurl_api libcurl;

static const struct {
	const char *name;
	size_t offset;
} libcurl_symbols[] = {
	{ "curl_global_init_mem", offsetof(struct libcurl_api, global_init_mem) },
	{ "curl_global_cleanup", offsetof(struct libcurl_api, global_cleanup) },
	{ "curl_easy_init", offsetof(struct libcurl_api, easy_init) },
	{ "curl_easy_setopt", offsetof(struct libcurl_api, easy_setopt) },
	{ "curl_easy_perform", offsetof(struct libcurl_api, easy_perform) },
	{ "curl_easy_getinfo", offsetof(struct libcurl_api, easy_getinfo) },
	{ "curl_easy_cleanup", offsetof(struct libcurl_api, easy_cleanup) },
	{ "curl_easy_strerror", offsetof(struct libcurl_api, easy_strerror) },
	{ "curl_share_init", offsetof(struct libcurl_api, share_init) },
	{ "curl_share_setopt", offsetof(struct libcurl_api, share_setopt) },
	{ "curl_share_cleanup", offsetof(struct libcurl_api, share_cleanup) },
	{ "curl_slist_append", offsetof(struct libcurl_api, slist_append) },
	{ "curl_slist_free_all", offsetof(struct libcurl_api, slist_free_all) },
	{ "curl_url", offsetof(struct libcurl_api, url) },
	{ "curl_url_dup", offsetof(struct libcurl_api, url_dup) },
	{ "curl_url_get", offsetof(struct libcurl_api, url_get) },
	{ "curl_url_set", offsetof(struct libcurl_api, url_set) },
	{ "curl_url_cleanup", offsetof(struct libcurl_api, url_cleanup) },
	{ "curl_free", offsetof(struct libcurl_api, free) },
};

static bool libcurl_loaded;

void
libcurl_free(void *p)
{
	if (p != NULL)
		secret_wipe(p, malloc_usable_size(p));
	free(p);
}

/* Never realloc in place: a moved block would leave its old copy behind. */
void *
libcurl_realloc(void *p, size_t n)
{
	size_t old = p != NULL ? malloc_usable_size(p) : 0;
	void *q = malloc(n > 0 ? n : 1);

	if (q == NULL)
		return NULL;
	if (old > 0)
		memcpy(q, p, old < n ? old : n);
	libcurl_free(p);
	return q;
}

int
libcurl_load(struct tm_err *err)
{
	struct libcurl_api api;
	void *so, *sym;
	size_t i;

	if (libcurl_loaded)
		return 0;
	so = dlopen(TM_LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (so == NULL) {
		tm_err_set(err, TM_ERR_INTERNAL, EX_UNAVAILABLE, "cannot load %s: %s",
		    TM_LIBCURL_SONAME, dlerror());
		tm_err_hint(err, "install libcurl3-gnutls");
		return -1;
	}
	memset(&api, 0, sizeof(api));
	for (i = 0; i < sizeof(libcurl_symbols) / sizeof(libcurl_symbols[0]); i++) {
		sym = dlsym(so, libcurl_symbols[i].name);
		if (sym == NULL) {
			tm_err_set(err, TM_ERR_INTERNAL, EX_UNAVAILABLE, "%s has no %s",
			    TM_LIBCURL_SONAME, libcurl_symbols[i].name);
			tm_err_hint(err, "install libcurl3-gnutls 7.68 or later");
			return -1;
		}
		/* ISO C has no cast from void * to a function pointer; POSIX
		   guarantees the representation is the same. */
		memcpy((char *)&api + libcurl_symbols[i].offset, &sym, sizeof(sym));
	}
	libcurl = api;
	libcurl_loaded = true;
	return 0;
}
