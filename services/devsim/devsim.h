/*  devsim: the simulated plant's server.

    Serves the local devices of a site file over Modbus TCP from one epoll
    loop: one listening socket per `network` device, one per `tcp` gateway
    channel (requests dispatched by unit id), non-blocking connections with
    their own framing, a timer queue for delayed answers, a 100 ms tick that
    moves the tags' values, and the ZeroMQ control socket. libmodbus builds
    the answers (mbserve); it never reads a socket, so there is no select()
    and no limit at descriptor 1024.

    Threads: libzmq starts its own; devsim_new() blocks SIGINT and SIGTERM
    first so they inherit the mask and the signals reach devsim_run() through
    a signalfd. Call devsim_new() before anything else starts a thread.
*/
#ifndef DEVSIM_H_INCLUDED
#define DEVSIM_H_INCLUDED

#include "simdev.h"
#include "site.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _devsim_t devsim_t;

typedef struct {
    const char *control; //  ZeroMQ endpoint of the control socket (REP, bound)
    const char *only;    //  comma-separated device names to serve, or NULL for all
    uint64_t seed;       //  noise and garbage
} devsim_config_t;

//  devsim_new() failures: the first is the site's or the caller's fault
//  (exit 2), the second the machine's (exit 1).
typedef enum { DEVSIM_EBADCONFIG = 2, DEVSIM_ERUNTIME = 1 } devsim_error_t;

//  Open every local device's listening socket and the control socket.
//  The site must outlive the server. Returns NULL with a message in err and
//  the kind of failure in *error. Caller owns the return value.
devsim_t *devsim_new(const site_t *site, const devsim_config_t *config, char *err, size_t errlen,
                     devsim_error_t *error);

//  Close every socket and free everything; tolerates NULL, sets *self_p NULL.
void devsim_destroy(devsim_t **self_p);

//  Run the loop until SIGINT or SIGTERM. Returns 0, or -1 on a failure of
//  the loop itself (epoll), which is logged.
int devsim_run(devsim_t *self);

//  --- For the control commands (control.c) --------------------------------

//  The site being served.
const site_t *devsim_site(const devsim_t *self);

//  Served devices, in site order; NULL past the end.
simdev_t *devsim_device_at(devsim_t *self, size_t index);
size_t devsim_device_count(const devsim_t *self);

//  A served device by name, or NULL when the site has no such device or this
//  process does not serve it.
simdev_t *devsim_device(devsim_t *self, const char *name);

//  Put a device in a mode (see simdev_mode_t; arg is the delay or exception
//  code). Opens or closes its listening socket as the mode needs: a
//  listening socket closes when every device on it is refused (closing its
//  connections) and reopens when one is not. Returns 0, or -1 with a reason
//  in err when the socket cannot be reopened (the mode is set anyway).
int devsim_set_mode(devsim_t *self, simdev_t *dev, simdev_mode_t mode, int arg, char *err,
                    size_t errlen);

//  Close the device's current connections (all of its gateway's, behind a
//  gateway); keep listening. Returns the number closed.
size_t devsim_disconnect(devsim_t *self, simdev_t *dev);

//  What the transport knows about a device's listening socket.
typedef struct {
    const char *host; //  listening address as written in the site
    uint16_t port;
    bool gateway;       //  shared by the units of a tcp channel
    bool listening;     //  socket open
    size_t connections; //  open now (shared behind a gateway)
    uint64_t accepted;  //  since start
    uint64_t malformed; //  connections dropped for a non-Modbus stream
    uint64_t unknown;   //  requests for unit ids nobody serves (gateway)
} devsim_endpoint_t;

void devsim_endpoint(devsim_t *self, simdev_t *dev, devsim_endpoint_t *out);

//  Sums over every listening socket (not per device, so shared gateway
//  sockets count once).
void devsim_totals(devsim_t *self, devsim_endpoint_t *out, size_t *listeners);

#endif
