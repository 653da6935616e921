/*  resolver: the resolver engine (seed 001, issue 4).

    Learns every offer of the site's I/O servers (REGISTER, UNIT_STATE,
    HEARTBEAT), keeps the best offer of every device (offer_table), tells the
    brokers (BEST_OFFERS: the whole table on HELLO, the changes as they
    happen) and answers tag resolves from the site file's catalog. One ROUTER
    at the site's resolver endpoint; the protocol is in proto/scada.proto
    ("Resolver"). Its state goes to Redis, fire-and-forget.
*/
#ifndef RESOLVER_H_INCLUDED
#define RESOLVER_H_INCLUDED

#include "site.h"

#include <czmq.h>

typedef struct _resolver_t resolver_t;

//  Create the engine for `site` (not owned; must outlive the engine); `name`
//  only names it in logs and answers. Binds the ROUTER at
//  site->resolver.endpoint. Returns NULL and logs why (which endpoint, what
//  failed) on failure. Caller owns the result.
resolver_t *resolver_new(site_t *site, const char *name);

//  Destroy; tolerates NULL, sets *self_p to NULL.
void resolver_destroy(resolver_t **self_p);

//  The actor body: zactor_new(resolver_actor, engine). Runs the loop until
//  $TERM arrives on the pipe, then marks the Redis state stopped.
void resolver_actor(zsock_t *pipe, void *engine);

#endif
