/*
 * libcurl.h: libcurl's functions, loaded with dlopen on the first HTTP
 * request rather than linked. A send over SMTP with a cached token never
 * makes one, and then neither maps libcurl and its twenty dependencies
 * (Kerberos, LDAP, SSH, OpenSSL's libcrypto...) nor pays for their
 * relocations: about 3.5 MB of RSS and a fifth of the start-up CPU.
 * Only http.c uses it. The file name is the one the linker would have
 * recorded (configure: TM_LIBCURL_SONAME).
 */
#ifndef TM_LIBCURL_H
#define TM_LIBCURL_H

#include <curl/curl.h>

#include "err.h"

struct libcurl_api {
	__typeof__(curl_global_init_mem) *global_init_mem;
	__typeof__(curl_global_cleanup) *global_cleanup;
	__typeof__(curl_easy_init) *easy_init;
	__typeof__(curl_easy_setopt) *easy_setopt;
	__typeof__(curl_easy_perform) *easy_perform;
	__typeof__(curl_easy_getinfo) *easy_getinfo;
	__typeof__(curl_easy_cleanup) *easy_cleanup;
	__typeof__(curl_easy_strerror) *easy_strerror;
	__typeof__(curl_share_init) *share_init;
	__typeof__(curl_share_setopt) *share_setopt;
	__typeof__(curl_share_cleanup) *share_cleanup;
	__typeof__(curl_slist_append) *slist_append;
	__typeof__(curl_slist_free_all) *slist_free_all;
	__typeof__(curl_url) *url;
	__typeof__(curl_url_dup) *url_dup;
	__typeof__(curl_url_get) *url_get;
	__typeof__(curl_url_set) *url_set;
	__typeof__(curl_url_cleanup) *url_cleanup;
	__typeof__(curl_free) *free;
};

/* The functions; valid once libcurl_load() has returned 0. */
extern struct libcurl_api libcurl;

/*
 * libcurl's free and realloc, given to curl_global_init_mem: memory is wiped
 * before it goes back to malloc, so that the request libcurl assembles (a
 * client secret, a refresh token, an Authorization header) does not stay
 * in freed chunks for the rest of the process.
 */
void libcurl_free(void *p);
void *libcurl_realloc(void *p, size_t n);

/*
 * Load libcurl (once; later calls return 0 at once). A library that is
 * missing or lacks a function is EX_UNAVAILABLE with a hint.
 */
int libcurl_load(struct tm_err *err);

#endif
