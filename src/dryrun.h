/*
 * dryrun.h: what --dry-run prints on stdout: the chosen account and method,
 * the envelope, and the message exactly as it would be transmitted.
 *
 *   tokenmail: dry run, nothing sent
 *   account: NAME (CONFIG-FILE)
 *   method: smtp HOST:PORT tls=starttls auth=xoauth2 user=MAILBOX
 *        or graph URL user=MAILBOX save_to_sent_items=yes
 *   mail from: <ADDR>            ("<>" for the null sender)
 *   rcpt to: <ADDR>              (one line per envelope recipient)
 *   size: N                      (octets of the message below)
 *   message:
 *   ...the message, CRLF line ends, not dot-stuffed...
 */
#ifndef TM_DRYRUN_H
#define TM_DRYRUN_H

#include <stdio.h>

#include "account.h"
#include "address.h"
#include "err.h"
#include "message.h"

int dryrun_print(FILE *out, const char *config_path, const struct sender *s,
    const struct address_list *rcpts, const struct message *m, struct tm_err *err);

#endif
