/*
 * envelope.h: make the header's recipient fields name exactly the envelope
 * recipients, for a transport that delivers to the header's recipients
 * (Microsoft Graph takes them from To:, Cc: and Bcc: and has no envelope).
 *
 * To: and Cc: addresses are resolved as recipients are (aliases, local
 * names); an address that resolves to envelope recipients is written as
 * those addresses, one that does not is removed, and a field left with no
 * address is removed. A field whose addresses all stay as they are is left
 * byte for byte. Every envelope recipient not named in To:/Cc: goes in one
 * added Bcc: field (the -t Bcc recipients, and command-line recipients the
 * header does not name); Graph removes Bcc: from the copies it delivers.
 */
#ifndef TM_ENVELOPE_H
#define TM_ENVELOPE_H

#include "address.h"
#include "config.h"
#include "message.h"

/* m's Bcc fields must already be dropped (message_drop_bcc). local_domains:
   as account_resolve_recipients takes them. */
void envelope_fit_header(const struct config *cfg, const char *const *local_domains,
    const struct address_list *rcpts, struct message *m);

#endif
