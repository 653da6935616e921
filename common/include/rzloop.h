/*  rzloop: hiredis's asynchronous API on a czmq zloop.

    Redis holds the live state operators read, but it is never in the data
    path: commands are fire-and-forget, nothing waits for a reply, and while
    Redis is down commands are dropped (counted) instead of queued. The
    connection is retried every second; on each (re)connect the owner's
    `on_connect` callback runs so it can rewrite its whole state.

    The adapter follows hiredis's event contract (addRead, delRead, addWrite,
    delWrite, cleanup): one zloop poller per connection whose events are the
    union of what hiredis asked for.
*/
#ifndef RZLOOP_H_INCLUDED
#define RZLOOP_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _rzloop_t rzloop_t;
typedef void(rzloop_connect_fn)(rzloop_t *self, void *arg);

//  Create a client for host (an address, or a name: resolved on glibc's
//  lookup thread, never on the loop, and again before every reconnect, so a
//  Redis that comes back at a new address is found) and port on `loop`; it
//  connects at once and keeps reconnecting. Caller owns the return value.
rzloop_t *rzloop_new(zloop_t *loop, const char *host, int port, rzloop_connect_fn *on_connect,
                     void *arg);

//  Authenticate every connection with AUTH [user] password before anything
//  else is sent (Redis `requirepass` or an ACL user); NULL or "" password: no
//  AUTH. Call right after rzloop_new, before the loop runs. A refusal is
//  logged once per reason, the connection dropped and tried again every
//  second; on_connect runs only once Redis has accepted.
void rzloop_set_auth(rzloop_t *self, const char *user, const char *password);

//  AUTH refusals so far.
uint64_t rzloop_auth_failures(rzloop_t *self);

//  Destroy; tolerates NULL, sets *self_p to NULL.
void rzloop_destroy(rzloop_t **self_p);

//  True while connected.
bool rzloop_connected(rzloop_t *self);

//  Send one command (argv form, binary safe). Returns 0 if queued, -1 if it was
//  dropped (not connected, or more than the output limit is already waiting).
int rzloop_command_argv(rzloop_t *self, int argc, const char **argv, const size_t *argvlen);

//  Send one command (printf form as hiredis's redisAsyncCommand: %s, %b and
//  integer conversions with hh, h, l, ll length modifiers; hiredis 0.14 does
//  not know %zu). Same returns.
int rzloop_command(rzloop_t *self, const char *format, ...);

//  Commands dropped so far.
uint64_t rzloop_dropped(rzloop_t *self);

//  Run the loop until every queued command has been written, at most
//  timeout_ms. For shutdown: the last state must reach Redis.
void rzloop_flush(rzloop_t *self, int timeout_ms);

#endif
