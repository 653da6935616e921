/*  devsim: the simulated plant's server.

    Serves the local devices of a site file from one epoll loop: over
    Modbus TCP one listening socket per `network` device and one per `tcp`
    gateway channel (requests dispatched by unit id), non-blocking
    connections with their own framing; over Modbus RTU one serial port per
    `serial` channel (a tty or one end of a pty pair; requests framed by
    rtuframe, dispatched by unit address, garbage skipped, a port that
    cannot be opened retried every second). Also a timer queue for delayed
    answers, a 100 ms tick that moves the tags' values, and the ZeroMQ
    control socket. libmodbus builds the answers (mbserve); it never reads
    a descriptor, so there is no select() and no limit at descriptor 1024.

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
    const char *control; //  ZeroMQ endpoint of the control socket (bound; answers as a REP)
    const char *only;    //  comma-separated device names to serve, or NULL for all
    uint64_t seed;       //  noise and garbage
    //  "CHANNEL=PATH": open PATH for that serial channel instead of its
    //  serial_port, so one site file can name the I/O server's end of a pty
    //  pair and devsim be given the other end. Each must name a serial
    //  channel of the site, once (else DEVSIM_EBADCONFIG).
    const char *const *serial;
    size_t nserial;
} devsim_config_t;

//  devsim_new() failures: the first is the site's or the caller's fault
//  (exit 2), the second the machine's (exit 1).
typedef enum { DEVSIM_EBADCONFIG = 2, DEVSIM_ERUNTIME = 1 } devsim_error_t;

//  Open every local device's listening socket, every serial channel's port
//  (one that cannot be opened yet is retried from the loop), apply the
//  site's devsim.start commands in order (one that fails is
//  DEVSIM_EBADCONFIG, its site line and reply in err) and bind the control
//  socket (with site_bind(): a host name binds every interface).
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
//  code). Opens or closes its listening socket or serial port as the mode
//  needs: it closes when every device on it is refused (closing its
//  connections, dropping delayed answers) and reopens when one is not.
//  Returns 0, or -1 with a reason in err when a listening socket cannot be
//  reopened (the mode is set anyway). A serial port that cannot be
//  reopened is not a failure: it is retried every second.
int devsim_set_mode(devsim_t *self, simdev_t *dev, simdev_mode_t mode, int arg, char *err,
                    size_t errlen);

//  Make a device intermittent (see simdev_set_flap()) from now on; opens its
//  socket or port if it was refused. Returns as devsim_set_mode().
int devsim_set_flap(devsim_t *self, simdev_t *dev, uint32_t up_ms, uint32_t down_ms, int delay_ms,
                    char *err, size_t errlen);

//  The loop's clock: monotonic ms, read once per turn.
int64_t devsim_now(const devsim_t *self);

//  Close the device's current connections (all of its gateway's, behind a
//  gateway); keep listening. On a serial channel close the port and reopen
//  it at once (retried every second if that fails). Returns the number of
//  connections or ports closed.
size_t devsim_disconnect(devsim_t *self, simdev_t *dev);

//  What the transport knows about a device's listening socket or serial port.
typedef struct {
    const char *host;       //  listening address as written in the site; serial: the path opened
    uint16_t port;          //  0 for serial
    const char *channel;    //  serial: the channel's name; else NULL
    bool serial;            //  a serial port (Modbus RTU), shared by the units of its channel
    bool gateway;           //  shared by the units of a tcp channel
    bool listening;         //  socket or port open
    size_t connections;     //  open now (shared behind a gateway); serial: 1 while open
    uint64_t accepted;      //  since start; serial: times the port was opened
    uint64_t malformed;     //  connections dropped for a non-Modbus stream
    uint64_t unknown;       //  requests for unit ids nobody serves (gateway, serial)
    uint64_t frames;        //  serial: request frames with a good CRC, any address
    uint64_t crc_errors;    //  serial: frames whose CRC failed
    uint64_t garbage_bytes; //  serial: bytes skipped while resynchronising
} devsim_endpoint_t;

void devsim_endpoint(devsim_t *self, simdev_t *dev, devsim_endpoint_t *out);

//  Sums over every listening socket and serial port (not per device, so
//  shared sockets and ports count once); the number of listening sockets
//  and of open serial ports.
void devsim_totals(devsim_t *self, devsim_endpoint_t *out, size_t *listeners, size_t *ports);

//  A served serial channel.
typedef struct {
    const char *channel; //  its name
    const char *path;    //  what devsim opens: serial_port or its --serial override
    uint32_t baud;
    char parity;
    int data_bits, stop_bits;
    const char *line; //  framing the port kept when last opened ("8N1"; "" before):
                      //  a pty drops parity and data bits
    bool open;
    size_t units;           //  served devices on the bus
    uint64_t opens;         //  times the port was opened
    uint64_t frames;        //  request frames with a good CRC, any address
    uint64_t crc_errors;    //  frames whose CRC failed
    uint64_t garbage_bytes; //  bytes skipped: bad frames, noise, unfinished frames
    uint64_t unknown;       //  frames for addresses no served device has (left unanswered)
    uint64_t broadcasts;    //  frames for address 0 (applied, never answered)
    uint64_t write_errors;  //  replies the port did not take whole (lost)
} devsim_serial_t;

//  Served serial channels, in site order; devsim_serial_at() returns -1
//  past the end.
size_t devsim_serial_count(const devsim_t *self);
int devsim_serial_at(devsim_t *self, size_t index, devsim_serial_t *out);

#endif
