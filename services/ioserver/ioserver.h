/*  ioserver: the I/O server engine.

    Owns the devices of the site that name this I/O server, connects to them
    through the connect window, polls their tags over Modbus TCP with
    non-blocking sockets on one zloop, publishes value changes and device
    events, serves writes and status on its control socket, and keeps its
    state in Redis. Nothing in it ever waits on one device, one peer or Redis.
*/
#ifndef IOSERVER_H_INCLUDED
#define IOSERVER_H_INCLUDED

#include "site.h"

#include <czmq.h>

typedef struct _ioserver_t ioserver_t;

//  Create the engine for I/O server `name` of `site` (not owned; must outlive
//  the engine): binds its publish and control sockets. Returns NULL and logs
//  why on failure (unknown name, endpoint in use). Caller owns the result.
ioserver_t *ioserver_new(site_t *site, const char *name);

//  Destroy; tolerates NULL, sets *self_p to NULL. Marks the Redis keys
//  stopped on the way out.
void ioserver_destroy(ioserver_t **self_p);

//  The actor body: zactor_new(ioserver_actor, engine). Runs the loop until
//  $TERM arrives on the pipe.
void ioserver_actor(zsock_t *pipe, void *engine);

#endif
