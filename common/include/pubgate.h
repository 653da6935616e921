/*  pubgate: who may subscribe to a publish socket.

    The I/O servers' value streams and the alarm service's event stream go
    out on publish sockets, one stream for every subscriber, so they cannot
    be filtered per area the way the broker filters a page. The gate makes
    such a socket an XPUB in manual mode and decides each subscription
    itself, by the certificate that asked (the `name` its key has in the
    key directory, attached by the CURVE handshake): a process of the site
    named as trusted (the brokers, the alarm service) always gets it; anyone
    else only when the site has no roles or when their role reads every one
    of the socket's areas. A refused subscriber gets nothing from the socket;
    the refusal is counted and logged, once at once for each new certificate
    and then at most once a minute with a count.
*/
#ifndef PUBGATE_H_INCLUDED
#define PUBGATE_H_INCLUDED

#include "site.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _pubgate_t pubgate_t;

//  A gate on `xpub`, a ZMQ_XPUB socket (it is set to manual mode here, so
//  call before it binds). `what` names it in logs ("publish socket");
//  `trusted` are certificate names that always may subscribe; `areas` the
//  plant areas whose reading a subscriber's role must allow (all of them).
//  The strings are copied.
pubgate_t *pubgate_new(zsock_t *xpub, const site_t *site, const char *what,
                       const char *const *trusted, size_t ntrusted, const char *const *areas,
                       size_t nareas);

//  Destroy; tolerates NULL, sets *self_p to NULL. Does not destroy the socket.
void pubgate_destroy(pubgate_t **self_p);

//  Read the subscriptions waiting on the socket and decide each (a zloop
//  reader on the socket calls this). Returns how many were read.
size_t pubgate_handle(pubgate_t *self);

//  Add a reader of the socket to `loop` that calls pubgate_handle().
int pubgate_attach(pubgate_t *self, zloop_t *loop);

//  Would `user` (a certificate name, NULL: unnamed) be let subscribe?
//  When not: false and the reason in why.
bool pubgate_allows(const pubgate_t *self, const char *user, char *why, size_t whylen);

//  Subscriptions refused, and accepted, so far.
uint64_t pubgate_refused(const pubgate_t *self);
uint64_t pubgate_accepted(const pubgate_t *self);

#endif
