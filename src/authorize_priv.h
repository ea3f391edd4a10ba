/*
 * authorize_priv.h: what the two sign-in flows share (authorize.c: the
 * device code flow and the pure helpers; authorize_browser.c: the
 * authorization code flow and its loopback listener). Private to them.
 */
#ifndef TM_AUTHORIZE_PRIV_H
#define TM_AUTHORIZE_PRIV_H

#include <stdio.h>

#include "authorize.h"
#include "err.h"
#include "json.h"
#include "token.h"
#include "util.h"

/* A URL printed for the person (authorize or verification URL). */
#define AUTHORIZE_URL_MAX	16384

long long authorize_now_ms(void);
int authorize_write_out(FILE *out, struct tm_err *err);
int authorize_account_check(const struct account *a, struct tm_err *err);
int authorize_form_too_large(struct tm_err *err);
void authorize_form_init(struct strbuf *b);
int authorize_form_add_secret(const struct token_context *c, struct strbuf *form, struct tm_err *err);
int authorize_finish(const struct token_context *c, const struct json_doc *resp, FILE *out, struct tm_err *err);
void authorize_form_free(struct strbuf *b);

#endif
