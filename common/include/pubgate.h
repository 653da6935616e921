/*  pubgate: who may connect to a publish socket.

    The I/O servers' value streams and the alarm service's event stream go
    out on publish sockets, one stream for every subscriber, so they cannot
    be filtered per area the way the broker filters a page. A gate decides
    instead who may connect at all, by the certificate that asks (the `name`
    its key has in the key directory): a process named as trusted (the
    brokers, the alarm service) always; anyone else only when the site has
    no roles or when their role reads every one of the socket's areas. The
    process's authenticator asks the gate during the CURVE handshake
    (sec_server_gated() in sec.h), so a refused peer's handshake fails and
    nothing of the stream reaches it. Refusals are counted and logged, at
    once for each new certificate and then at most once a minute with a
    count.

    pubgate_check() runs in the authenticator's thread; the counters may be
    read from any thread.
*/
#ifndef PUBGATE_H_INCLUDED
#define PUBGATE_H_INCLUDED

#include "site.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pubgate_t pubgate_t;

//  A gate for the socket called `what` in logs ("publish socket"). The
//  site's brokers (or its default broker) always may connect, and so may
//  `also_trusted` (a certificate name, or NULL). `site` must outlive the
//  gate.
pubgate_t *pubgate_new(const site_t *site, const char *what, const char *also_trusted);

//  A plant area whose reading a peer's role must allow (all of them, for
//  anyone not trusted). Repeats and NULL are ignored; the name is copied.
void pubgate_add_area(pubgate_t *self, const char *area);

//  Destroy; tolerates NULL, sets *self_p to NULL.
void pubgate_destroy(pubgate_t **self_p);

//  May `user` (a certificate name, NULL: a key without one) connect?
//  When not: false and the reason in why. Changes nothing.
bool pubgate_allows(const pubgate_t *self, const char *user, char *why, size_t whylen);

//  pubgate_allows(), counted, and a refusal logged.
bool pubgate_check(pubgate_t *self, const char *user);

//  Peers refused, and let in, so far.
uint64_t pubgate_refused(const pubgate_t *self);
uint64_t pubgate_accepted(const pubgate_t *self);

#endif
