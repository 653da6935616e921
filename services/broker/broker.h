/*  broker: the subscription broker (scada-broker). See README "Broker".

    Clients (DEALER) subscribe pages of tags by name or id, get every tag's
    first value right after subscribing and then its changes, coalesced per
    client, and write tags. The broker learns tags and best offers from the
    resolver, subscribes each tag once at its best offer's I/O server however
    many clients want it, releases it when none does, and moves
    subscriptions when a best offer changes. One zloop, nothing blocks.
*/
#ifndef BROKER_H_INCLUDED
#define BROKER_H_INCLUDED

#include "site.h"

#include <czmq.h>

typedef struct _broker_t broker_t;

//  Create broker `name` of `site` (not owned; must outlive it): binds its
//  client endpoint. NULL and a log line on failure. Caller owns the result.
broker_t *broker_new(site_t *site, const char *name);

//  Destroy; tolerates NULL, sets *self_p to NULL.
void broker_destroy(broker_t **self_p);

//  The actor body: zactor_new(broker_actor, engine). Runs until $TERM.
void broker_actor(zsock_t *pipe, void *engine);

#endif
