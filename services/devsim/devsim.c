/*  devsim: the simulated plant's server. See devsim.h.

    Two transports share the loop: Modbus TCP (listeners and their
    connections, MBAP framing) and Modbus RTU (one serial port per `serial`
    channel, rtuframe framing, dispatch by unit address). Both hand whole
    request ADUs to mbserve, through a libmodbus context of their backend.

    Every descriptor the loop watches is recorded in a table indexed by the
    descriptor, with a serial number that changes each time a descriptor is
    registered. epoll events and timers carry (serial << 32 | fd), so an event
    or timer for an object closed earlier in the same turn finds a different
    serial and is ignored; nothing is freed while a stale pointer to it could
    still be used.
*/
#include "devsim.h"
#include "control.h"
#include "mbframe.h"
#include "mbserve.h"
#include "mclock.h"
#include "rtuframe.h"
#include "sec.h"
#include "slog.h"
#include "timerq.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#define S_TICK_MS     100  //  how often the sims move
#define S_MAX_PENDING 1024 //  delayed requests per connection before it stops being read
#define S_MAX_EVENTS  256  //  epoll events per turn
#define S_ACCEPT_MAX  64   //  accepts per listener per turn, so one busy port cannot starve
#define S_RTU_BUF     1024 //  bytes read from a serial line, not yet framed
#define S_RTU_QUIET   50   //  ms; floor of a serial line's inter-frame silence (see s_port_t)
#define S_RETRY_MS    1000 //  reopen a serial port that could not be opened

typedef enum {
    S_FD_NONE = 0,
    S_FD_LISTENER,
    S_FD_CONN,
    S_FD_PORT,
    S_FD_SIGNAL,
    S_FD_CONTROL
} s_kind_t;

typedef struct {
    s_kind_t kind;
    uint32_t serial; //  0 when the slot is free
    void *ptr;       //  s_listener_t, s_conn_t or s_port_t
} s_fdent_t;

typedef struct _s_listener_t s_listener_t;
typedef struct _s_conn_t s_conn_t;
typedef struct _s_port_t s_port_t;

//  A request waiting for its delayed answer.
typedef struct _s_pending_t {
    struct _s_pending_t *next;
    int64_t due; //  monotonic ms
    int len;
    uint8_t adu[MBFRAME_MAX]; //  an MBAP or an RTU ADU (RTUFRAME_MAX fits)
} s_pending_t;

//  Delayed requests of one connection or serial line, in arrival order.
typedef struct {
    s_pending_t *head, *tail;
    size_t count;
    int64_t last_due; //  due time of tail: answers never overtake
} s_queue_t;

struct _s_conn_t {
    int fd;
    uint32_t serial;
    s_listener_t *listener;
    s_conn_t *prev, *next;       //  in listener->conns
    uint8_t in[2 * MBFRAME_MAX]; //  bytes read, not yet framed
    size_t inlen;
    s_queue_t queue; //  delayed requests
    bool reading;    //  EPOLLIN wanted (off while too much is pending)
};

//  A serial channel: its port and the units on its bus. The line is a byte
//  stream without framing of its own: bytes gather in `in` and rtuframe cuts
//  requests out, skipping garbage a byte at a time until the next frame
//  whose CRC checks. A partial frame is dropped once the line has been
//  quiet for `quiet_ms`: the RTU t3.5, floored at S_RTU_QUIET because ptys
//  and USB adapters deliver bytes in bursts and the loop counts in ms.
struct _s_port_t {
    int fd; //  -1 while closed (refused, or not openable yet)
    uint32_t serial;
    const site_channel_t *ch;
    const char *path; //  the channel's serial_port, or the --serial override
    simdev_t **devs;  //  the devices on the bus
    size_t ndevs;
    simdev_t *units[256]; //  by unit address; 0 is broadcast, never a device's slot
    uint8_t in[S_RTU_BUF];
    size_t inlen;
    int quiet_ms;
    int64_t last_rx;   //  when bytes last arrived
    int64_t quiet_due; //  the silence timer, 0 when not armed
    bool resync;       //  skipping bytes since the last good frame (logged once)
    size_t bad_left;   //  bytes of the last counted bad-CRC frame not skipped yet
    char line[8];      //  framing the port kept, read back after setting it: "8N1"
    s_queue_t queue;   //  delayed requests
    bool reading;      //  EPOLLIN wanted (off while too much is pending)
    int64_t retry_at;  //  next open attempt while closed and wanted
    int open_errno;    //  of the last failed open: each new reason is logged once
    uint64_t opens, frames, crc_errors, garbage_bytes, unknown, broadcasts, write_errors;
};

struct _s_listener_t {
    int fd; //  -1 while closed (refused)
    uint32_t serial;
    bool gateway;     //  tcp channel: dispatch by unit id
    bool paused;      //  accept() hit the descriptor limit
    const char *host; //  as written in the site
    uint16_t port;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    simdev_t **devs; //  the devices behind this socket
    size_t ndevs;
    simdev_t **units; //  gateway: 256 slots by unit id
    s_conn_t *conns;  //  open connections
    size_t nconns;
    uint64_t accepted, malformed, unknown;
};

//  A served device and its socket or serial port (exactly one of them).
typedef struct {
    simdev_t *dev;
    s_listener_t *listener;
    s_port_t *port;
} s_served_t;

struct _devsim_t {
    const site_t *site;
    int epfd;
    int sigfd;
    zsock_t *control;
    sec_t *sec; //  CURVE on the control socket (or plain, said at start)
    modbus_t *mbctx;  //  never connected; lends its TCP backend to mbserve
    modbus_t *rtuctx; //  never connected; lends its RTU backend to mbserve
    timerq_t *timers;
    s_fdent_t *fdtab;
    size_t fdcap;
    uint32_t serial;    //  last serial handed out
    s_served_t *served; //  in site order
    size_t nserved;
    zhashx_t *by_name; //  device name -> s_served_t (not owned)
    s_listener_t **listeners;
    size_t nlisteners;
    s_port_t **ports; //  one per served serial channel
    size_t nports;
    int64_t start; //  monotonic ms at start: sim time 0
    int64_t now;   //  cached once per turn
    int64_t next_tick;
    int64_t last_fd_warning;
    bool stop;
};

//  --------------------------------------------------------------------------
//  Descriptor table

static uint64_t s_key(int fd, uint32_t serial)
{
    return (uint64_t)serial << 32 | (uint32_t)fd;
}

//  Register fd with epoll for `events`. Returns 0 or -1 (errno).
static int s_fd_add(devsim_t *self, int fd, s_kind_t kind, void *ptr, uint32_t events,
                    uint32_t *serial)
{
    if ((size_t)fd >= self->fdcap) {
        size_t cap = self->fdcap ? self->fdcap : 1024;
        while (cap <= (size_t)fd)
            cap *= 2;
        s_fdent_t *tab = realloc(self->fdtab, cap * sizeof *tab);
        if (!tab) {
            errno = ENOMEM;
            return -1;
        }
        memset(tab + self->fdcap, 0, (cap - self->fdcap) * sizeof *tab);
        self->fdtab = tab;
        self->fdcap = cap;
    }
    if (++self->serial == 0) //  0 means free
        self->serial = 1;
    struct epoll_event ev = {.events = events, .data.u64 = s_key(fd, self->serial)};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return -1;
    self->fdtab[fd] = (s_fdent_t){kind, self->serial, ptr};
    if (serial)
        *serial = self->serial;
    return 0;
}

static void s_fd_mod(devsim_t *self, int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u64 = s_key(fd, self->fdtab[fd].serial)};
    if (epoll_ctl(self->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
        slog_warn("epoll_ctl(MOD, %d): %s", fd, strerror(errno));
}

//  Forget fd and close it.
static void s_fd_close(devsim_t *self, int fd)
{
    epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL);
    self->fdtab[fd] = (s_fdent_t){S_FD_NONE, 0, NULL};
    close(fd);
}

static void *s_fd_lookup(devsim_t *self, uint64_t key, s_kind_t *kind)
{
    int fd = (int)(uint32_t)key;
    uint32_t serial = (uint32_t)(key >> 32);
    if (fd < 0 || (size_t)fd >= self->fdcap || self->fdtab[fd].serial != serial)
        return NULL;
    *kind = self->fdtab[fd].kind;
    return self->fdtab[fd].ptr;
}

//  --------------------------------------------------------------------------
//  Delay queues

//  Queue a request `delay` ms from now, behind the earlier ones; its timer
//  carries `key`. Returns 0, or -1 when memory runs out.
static int s_queue_push(devsim_t *self, s_queue_t *queue, uint64_t key, const uint8_t *adu, int len,
                        int delay)
{
    s_pending_t *p = malloc(sizeof *p);
    if (!p)
        return -1;
    p->next = NULL;
    p->due = self->now + delay;
    if (queue->head && p->due < queue->last_due)
        p->due = queue->last_due;
    p->len = len;
    memcpy(p->adu, adu, (size_t)len);
    if (timerq_push(self->timers, p->due, key) != 0) {
        free(p);
        return -1;
    }
    if (queue->tail)
        queue->tail->next = p;
    else
        queue->head = p;
    queue->tail = p;
    queue->count++;
    queue->last_due = p->due;
    return 0;
}

//  The first request if it is due; the caller frees it.
static s_pending_t *s_queue_pop_due(s_queue_t *queue, int64_t now)
{
    s_pending_t *p = queue->head;
    if (!p || p->due > now)
        return NULL;
    queue->head = p->next;
    if (!queue->head)
        queue->tail = NULL;
    queue->count--;
    return p;
}

static void s_queue_clear(s_queue_t *queue)
{
    while (queue->head) {
        s_pending_t *next = queue->head->next;
        free(queue->head);
        queue->head = next;
    }
    *queue = (s_queue_t){0};
}

//  --------------------------------------------------------------------------
//  Connections

static void s_conn_close(devsim_t *self, s_conn_t *conn)
{
    s_listener_t *listener = conn->listener;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        listener->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    listener->nconns--;
    s_fd_close(self, conn->fd);
    s_queue_clear(&conn->queue);
    free(conn);
}

static void s_conn_close_all(devsim_t *self, s_listener_t *listener)
{
    while (listener->conns)
        s_conn_close(self, listener->conns);
}

//  Write a malformed answer. Returns 0, or -1 when it could not be written whole.
static int s_send_garbage(simdev_t *dev, int fd, const uint8_t *adu, int len)
{
    uint8_t out[MBFRAME_MAX + 40];
    size_t n = mbframe_garbage(adu, (size_t)len, simdev_rng(dev), out, sizeof out);
    ssize_t rc = send(fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return rc == (ssize_t)n ? 0 : -1;
}

//  Act on one request ADU. `queued` is true when it comes out of the delay
//  queue, so it is neither counted nor delayed again. Returns 0, or -1 when
//  the connection must be dropped (a reply could not be written).
static int s_conn_serve(devsim_t *self, s_conn_t *conn, const uint8_t *adu, int len, bool queued)
{
    s_listener_t *listener = conn->listener;
    simdev_t *dev = listener->gateway ? listener->units[adu[6]] : listener->devs[0];
    //  A flapping device acts as normal, delay or silent, by the time.
    simdev_mode_t mode = dev ? simdev_acting(dev, self->now) : SIMDEV_NORMAL;
    if (!queued) {
        if (dev)
            simdev_stats(dev)->requests++;
        else
            listener->unknown++;
        //  Behind a queued answer everything queues, so answers stay in order.
        int delay = mode == SIMDEV_DELAY ? simdev_delay_ms(dev) : 0;
        if (conn->queue.head || mode == SIMDEV_DELAY)
            return s_queue_push(self, &conn->queue, s_key(conn->fd, conn->serial), adu, len, delay);
    }
    if (!dev) //  a gateway whose target does not exist
        return mbserve_exception(self->mbctx, conn->fd, adu, MODBUS_EXCEPTION_GATEWAY_TARGET);

    simdev_stats_t *stats = simdev_stats(dev);
    mbserve_kind_t kind = MBSERVE_DATA;
    int rc = 0;
    switch (mode) {
    case SIMDEV_SILENT:
        stats->ignored++;
        return 0;
    case SIMDEV_REFUSE:
        //  Only reachable behind a gateway that still listens for other units.
        kind = MBSERVE_EXCEPTION;
        rc = mbserve_exception(self->mbctx, conn->fd, adu, MODBUS_EXCEPTION_GATEWAY_TARGET);
        break;
    case SIMDEV_EXCEPTION:
        kind = MBSERVE_EXCEPTION;
        rc = mbserve_exception(self->mbctx, conn->fd, adu, simdev_exception_code(dev));
        break;
    case SIMDEV_GARBAGE:
        stats->garbage++;
        rc = s_send_garbage(dev, conn->fd, adu, len);
        break;
    case SIMDEV_NORMAL:
    case SIMDEV_DELAY:
    default:
        rc = mbserve_reply(self->mbctx, conn->fd, adu, len, 0, simdev_mapping(dev), &kind);
        break;
    }
    if (rc == 0) {
        stats->replies++;
        if (kind == MBSERVE_EXCEPTION)
            stats->exceptions++;
    }
    return rc;
}

//  Frame and act on the bytes read so far. Returns 0, or -1 after the
//  connection was closed.
static int s_conn_parse(devsim_t *self, s_conn_t *conn)
{
    size_t used = 0;
    while (conn->queue.count < S_MAX_PENDING) {
        int n = mbframe_length(conn->in + used, conn->inlen - used);
        if (n == 0)
            break;
        if (n < 0) {
            conn->listener->malformed++;
            slog_debug("%s:%u: not Modbus TCP from fd %d, dropped", conn->listener->host,
                       conn->listener->port, conn->fd);
            s_conn_close(self, conn);
            return -1;
        }
        if (s_conn_serve(self, conn, conn->in + used, n, false) != 0) {
            slog_debug("%s:%u: reply to fd %d failed (%s), dropped", conn->listener->host,
                       conn->listener->port, conn->fd, strerror(errno));
            s_conn_close(self, conn);
            return -1;
        }
        used += (size_t)n;
    }
    if (used) {
        memmove(conn->in, conn->in + used, conn->inlen - used);
        conn->inlen -= used;
    }
    //  Backpressure: a client that floods a delayed device waits in the kernel.
    bool want = conn->queue.count < S_MAX_PENDING;
    if (want != conn->reading) {
        conn->reading = want;
        s_fd_mod(self, conn->fd, want ? EPOLLIN : 0);
    }
    return 0;
}

static void s_conn_readable(devsim_t *self, s_conn_t *conn, uint32_t events)
{
    if (!conn->reading) {
        //  Not reading, so only HUP or ERR: the peer is gone altogether.
        s_conn_close(self, conn);
        return;
    }
    ssize_t n = recv(conn->fd, conn->in + conn->inlen, sizeof conn->in - conn->inlen, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        s_conn_close(self, conn);
        return;
    }
    if (n > 0) {
        conn->inlen += (size_t)n;
        s_conn_parse(self, conn);
    }
}

//  A timer of this connection fired: answer what is due.
static void s_conn_due(devsim_t *self, s_conn_t *conn)
{
    s_pending_t *p;
    while ((p = s_queue_pop_due(&conn->queue, self->now))) {
        int rc = s_conn_serve(self, conn, p->adu, p->len, true);
        free(p);
        if (rc != 0) {
            s_conn_close(self, conn);
            return;
        }
    }
    //  Frames left in the buffer while reading was off.
    if (!conn->reading)
        s_conn_parse(self, conn);
}

//  --------------------------------------------------------------------------
//  Listeners

static void s_listener_accept(devsim_t *self, s_listener_t *listener)
{
    for (int i = 0; i < S_ACCEPT_MAX; i++) {
        int fd = accept4(listener->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                //  Level-triggered: the backlog would wake us forever. Pause
                //  this socket until the next tick.
                if (self->now - self->last_fd_warning >= 1000) {
                    slog_warn("accept on %s:%u: %s; pausing accepts", listener->host,
                              listener->port, strerror(errno));
                    self->last_fd_warning = self->now;
                }
                listener->paused = true;
                s_fd_mod(self, listener->fd, 0);
            }
            return; //  EAGAIN, or aborted connections: try again on the next event
        }
        s_conn_t *conn = calloc(1, sizeof *conn);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!conn || s_fd_add(self, fd, S_FD_CONN, conn, EPOLLIN, &conn->serial) != 0) {
            slog_warn("accept on %s:%u: %s", listener->host, listener->port, strerror(errno));
            free(conn);
            close(fd);
            continue;
        }
        conn->fd = fd;
        conn->listener = listener;
        conn->reading = true;
        conn->next = listener->conns;
        if (conn->next)
            conn->next->prev = conn;
        listener->conns = conn;
        listener->nconns++;
        listener->accepted++;
    }
}

//  Open the listening socket. Returns 0, or -1 with errno.
static int s_listener_open(devsim_t *self, s_listener_t *listener)
{
    int fd = socket(listener->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    //  Reopening after `refuse` must not wait for TIME_WAIT connections.
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&listener->addr, listener->addrlen) != 0 ||
        listen(fd, SOMAXCONN) != 0 ||
        s_fd_add(self, fd, S_FD_LISTENER, listener, EPOLLIN, &listener->serial) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    listener->fd = fd;
    listener->paused = false;
    return 0;
}

static void s_listener_close(devsim_t *self, s_listener_t *listener)
{
    s_conn_close_all(self, listener);
    if (listener->fd >= 0)
        s_fd_close(self, listener->fd);
    listener->fd = -1;
}

static void s_listener_destroy(devsim_t *self, s_listener_t **listener_p)
{
    s_listener_t *listener = *listener_p;
    if (!listener)
        return;
    s_listener_close(self, listener);
    free(listener->devs);
    free(listener->units);
    free(listener);
    *listener_p = NULL;
}

//  Open or close the socket as its devices' modes want. Returns 0 or -1 (errno).
static int s_listener_sync(devsim_t *self, s_listener_t *listener)
{
    bool want = false;
    for (size_t i = 0; i < listener->ndevs; i++)
        if (simdev_mode(listener->devs[i]) != SIMDEV_REFUSE)
            want = true;
    if (want && listener->fd < 0)
        return s_listener_open(self, listener);
    if (!want && listener->fd >= 0)
        s_listener_close(self, listener);
    return 0;
}

//  --------------------------------------------------------------------------
//  Serial ports (Modbus RTU)

static speed_t s_speed(uint32_t baud)
{
    static const struct {
        uint32_t baud;
        speed_t speed;
    } rates[] = {{50, B50},           {75, B75},           {110, B110},         {134, B134},
                 {150, B150},         {200, B200},         {300, B300},         {600, B600},
                 {1200, B1200},       {1800, B1800},       {2400, B2400},       {4800, B4800},
                 {9600, B9600},       {19200, B19200},     {38400, B38400},     {57600, B57600},
                 {115200, B115200},   {230400, B230400},   {460800, B460800},   {500000, B500000},
                 {576000, B576000},   {921600, B921600},   {1000000, B1000000}, {1152000, B1152000},
                 {1500000, B1500000}, {2000000, B2000000}, {2500000, B2500000}, {3000000, B3000000},
                 {3500000, B3500000}, {4000000, B4000000}};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
        if (rates[i].baud == baud)
            return rates[i].speed;
    return B0;
}

//  Open the port non-blocking and set its line as the site says: speed,
//  data bits, parity, stop bits, raw (no echo, no flow control, no
//  translation). Input that arrived while it was closed is discarded.
//  Returns 0, or -1 with errno (ENOTTY: not a terminal).
static int s_port_open(devsim_t *self, s_port_t *port)
{
    const site_channel_t *ch = port->ch;
    int fd = open(port->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct termios tio;
    if (tcgetattr(fd, &tio) != 0)
        goto failed;
    cfmakeraw(&tio);
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
    tio.c_cflag |= CREAD | CLOCAL | (ch->data_bits == 7 ? CS7 : CS8);
    if (ch->parity == 'E' || ch->parity == 'O') {
        tio.c_cflag |= PARENB | (ch->parity == 'O' ? PARODD : 0);
        tio.c_iflag |= INPCK; //  a parity error reads as 0: the CRC then fails
    }
    if (ch->stop_bits == 2)
        tio.c_cflag |= CSTOPB;
    tio.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY);
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    speed_t speed = s_speed(ch->baud);
    if (speed != B0 && (cfsetispeed(&tio, speed) != 0 || cfsetospeed(&tio, speed) != 0))
        goto failed;
    if (tcsetattr(fd, TCSANOW, &tio) != 0)
        goto failed;
    //  tcsetattr() succeeds when any of the settings took: read them back.
    //  (A pty keeps the speed and stop bits but always says 8 data bits and
    //  no parity; it carries bytes, not characters.)
    struct termios got;
    if (tcgetattr(fd, &got) == 0)
        snprintf(port->line, sizeof port->line, "%d%c%d",
                 (got.c_cflag & CSIZE) == CS7   ? 7
                 : (got.c_cflag & CSIZE) == CS8 ? 8
                                                : 0,
                 !(got.c_cflag & PARENB)  ? 'N'
                 : (got.c_cflag & PARODD) ? 'O'
                                          : 'E',
                 (got.c_cflag & CSTOPB) ? 2 : 1);
    tcflush(fd, TCIFLUSH);
    if (s_fd_add(self, fd, S_FD_PORT, port, EPOLLIN, &port->serial) != 0)
        goto failed;
    port->fd = fd;
    port->reading = true;
    port->inlen = 0;
    port->resync = false;
    port->bad_left = 0;
    port->quiet_due = 0;
    port->opens++;
    return 0;
failed:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

//  Close the port; requests waiting for a delayed answer are dropped.
static void s_port_close(devsim_t *self, s_port_t *port)
{
    if (port->fd >= 0)
        s_fd_close(self, port->fd);
    port->fd = -1;
    port->inlen = 0;
    port->quiet_due = 0;
    port->resync = false;
    port->bad_left = 0;
    s_queue_clear(&port->queue);
}

static bool s_port_wanted(const s_port_t *port)
{
    for (size_t i = 0; i < port->ndevs; i++)
        if (simdev_mode(port->devs[i]) != SIMDEV_REFUSE)
            return true;
    return false;
}

static void s_port_opened(s_port_t *port)
{
    char want[8];
    snprintf(want, sizeof want, "%u%c%u", port->ch->data_bits, port->ch->parity,
             port->ch->stop_bits);
    if (strcmp(want, port->line) == 0)
        slog_info("serial port %s (channel %s): open, %u %s", port->path, port->ch->name,
                  port->ch->baud, want);
    else
        slog_info("serial port %s (channel %s): open, %u %s; the port keeps %s (a pty has no "
                  "parity and always 8 data bits)",
                  port->path, port->ch->name, port->ch->baud, want, port->line);
    port->open_errno = 0;
}

//  An open failed with `error`: log it (once per new reason) and try again
//  in S_RETRY_MS.
static void s_port_failed(devsim_t *self, s_port_t *port, int error)
{
    if (error != port->open_errno)
        slog_warn("serial port %s (channel %s): cannot open: %s; retrying every second", port->path,
                  port->ch->name, strerror(error));
    port->open_errno = error;
    port->retry_at = self->now + S_RETRY_MS;
}

//  Open the port now, or schedule the next attempt. Returns 0 or -1.
static int s_port_try_open(devsim_t *self, s_port_t *port)
{
    if (s_port_open(self, port) == 0) {
        s_port_opened(port);
        return 0;
    }
    s_port_failed(self, port, errno);
    return -1;
}

//  The far end is gone (a pty whose other side closed, a USB adapter
//  unplugged): close, and reopen from the tick while the port is wanted.
static void s_port_lost(devsim_t *self, s_port_t *port, const char *why)
{
    slog_warn("serial port %s (channel %s): %s; reopening every second", port->path, port->ch->name,
              why);
    s_port_close(self, port);
    port->open_errno = 0;
    port->retry_at = self->now + S_RETRY_MS;
}

//  Write a malformed answer. Returns 0, or -1 when it could not be written whole.
static int s_port_garbage(s_port_t *port, simdev_t *dev, const uint8_t *adu, int len)
{
    uint8_t out[RTUFRAME_MAX + 40];
    size_t n = rtuframe_garbage(adu, (size_t)len, simdev_rng(dev), out, sizeof out);
    ssize_t rc = write(port->fd, out, n);
    return rc == (ssize_t)n ? 0 : -1;
}

//  Act on one request frame (CRC checked). `queued` as in s_conn_serve(). A
//  reply that cannot be written is counted and lost: a serial line has no
//  connection to drop.
static void s_port_serve(devsim_t *self, s_port_t *port, const uint8_t *adu, int len, bool queued)
{
    uint8_t unit = adu[0];
    simdev_t *dev = unit ? port->units[unit] : NULL;
    simdev_mode_t mode = dev ? simdev_acting(dev, self->now) : SIMDEV_NORMAL;
    if (!queued) {
        if (unit == 0) {
            port->broadcasts++;
            for (size_t i = 0; i < port->ndevs; i++)
                simdev_stats(port->devs[i])->requests++;
        } else if (!dev) {
            //  Nobody on this bus has the address: silence, as on a real line.
            port->unknown++;
            return;
        } else
            simdev_stats(dev)->requests++;
        //  Behind a queued answer everything queues, so the bus stays in order.
        int delay = mode == SIMDEV_DELAY ? simdev_delay_ms(dev) : 0;
        if (port->queue.head || mode == SIMDEV_DELAY) {
            if (s_queue_push(self, &port->queue, s_key(port->fd, port->serial), adu, len, delay) !=
                0)
                slog_warn("serial port %s: out of memory, request dropped", port->path);
            return;
        }
    }
    if (unit == 0) {
        //  Broadcast: every device that would answer applies it; nobody answers.
        for (size_t i = 0; i < port->ndevs; i++) {
            simdev_mode_t acting = simdev_acting(port->devs[i], self->now);
            if (acting == SIMDEV_NORMAL || acting == SIMDEV_DELAY)
                mbserve_broadcast(self->rtuctx, adu, len, 2, simdev_mapping(port->devs[i]));
            else
                simdev_stats(port->devs[i])->ignored++;
        }
        return;
    }
    simdev_stats_t *stats = simdev_stats(dev);
    mbserve_kind_t kind = MBSERVE_DATA;
    int rc = 0;
    switch (mode) {
    case SIMDEV_SILENT:
    case SIMDEV_REFUSE: //  only while another unit keeps the port open: absent from the bus
        stats->ignored++;
        return;
    case SIMDEV_EXCEPTION:
        kind = MBSERVE_EXCEPTION;
        rc = mbserve_exception(self->rtuctx, port->fd, adu, simdev_exception_code(dev));
        break;
    case SIMDEV_GARBAGE:
        stats->garbage++;
        rc = s_port_garbage(port, dev, adu, len);
        break;
    case SIMDEV_NORMAL:
    case SIMDEV_DELAY:
    default:
        rc = mbserve_reply(self->rtuctx, port->fd, adu, len, 2, simdev_mapping(dev), &kind);
        break;
    }
    if (rc == 0) {
        stats->replies++;
        if (kind == MBSERVE_EXCEPTION)
            stats->exceptions++;
    } else {
        port->write_errors++;
        slog_debug("serial port %s: reply to unit %u not written: %s", port->path, unit,
                   strerror(errno));
    }
}

//  Cut frames out of the bytes read and act on them. `quiet`: the line has
//  been silent for t3.5, so an unfinished frame at the end is garbage.
static void s_port_parse(devsim_t *self, s_port_t *port, bool quiet)
{
    size_t used = 0;
    while (used < port->inlen && port->queue.count < S_MAX_PENDING) {
        size_t n = 0;
        rtuframe_scan_t scan = rtuframe_scan(port->in + used, port->inlen - used, &n);
        if (scan == RTUFRAME_FRAME) {
            port->frames++;
            port->resync = false;
            port->bad_left = 0;
            s_port_serve(self, port, port->in + used, (int)n, false);
            used += n;
            continue;
        }
        if (scan == RTUFRAME_MORE && !quiet)
            break;
        //  Skip one byte and look again: the next good frame resynchronises.
        //  A bad CRC counts once for the bytes of that frame, not again for
        //  frame-like bytes inside it.
        if (scan == RTUFRAME_BADCRC && port->bad_left == 0) {
            port->crc_errors++;
            port->bad_left = n;
        }
        if (port->bad_left)
            port->bad_left--;
        if (!port->resync) {
            slog_debug("serial port %s: %s; resynchronising", port->path,
                       scan == RTUFRAME_BADCRC ? "bad CRC"
                       : scan == RTUFRAME_JUNK ? "not a request"
                                               : "unfinished frame");
        }
        port->resync = true;
        port->garbage_bytes++;
        used++;
    }
    if (used) {
        memmove(port->in, port->in + used, port->inlen - used);
        port->inlen -= used;
    }
    if (quiet && port->inlen == 0)
        port->resync = false; //  the next noise is logged again
    if (port->inlen && !port->quiet_due && port->queue.count < S_MAX_PENDING) {
        port->quiet_due = port->last_rx + port->quiet_ms;
        if (timerq_push(self->timers, port->quiet_due, s_key(port->fd, port->serial)) != 0)
            port->quiet_due = 0; //  no memory: the next bytes try again
    }
    //  Backpressure, as on a connection.
    bool want = port->queue.count < S_MAX_PENDING;
    if (want != port->reading) {
        port->reading = want;
        s_fd_mod(self, port->fd, want ? EPOLLIN : 0);
    }
}

//  Read what the line holds. Returns the bytes read (0: none waiting), or
//  -1 after the port was lost and closed.
static ssize_t s_port_fill(devsim_t *self, s_port_t *port)
{
    if (port->inlen == sizeof port->in)
        return 0; //  only while frames wait behind a full delay queue
    ssize_t n = read(port->fd, port->in + port->inlen, sizeof port->in - port->inlen);
    if (n > 0) {
        port->inlen += (size_t)n;
        port->last_rx = self->now;
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    char why[128];
    snprintf(why, sizeof why, "%s", n == 0 ? "end of file" : strerror(errno));
    s_port_lost(self, port, why);
    return -1;
}

static void s_port_readable(devsim_t *self, s_port_t *port, uint32_t events)
{
    if (!port->reading) {
        //  Not reading, so only HUP or ERR: the far end is gone.
        s_port_lost(self, port, "hung up");
        return;
    }
    ssize_t n = s_port_fill(self, port);
    if (n > 0)
        s_port_parse(self, port, false);
    else if (n == 0 && (events & (EPOLLHUP | EPOLLERR)))
        s_port_lost(self, port, "hung up");
}

//  A timer of this port fired: answer what is due, and drop an unfinished
//  frame once the line has been quiet long enough.
static void s_port_due(devsim_t *self, s_port_t *port)
{
    if (port->fd < 0)
        return; //  not reached: a closed port's timers find no descriptor entry
    s_pending_t *p;
    while (port->fd >= 0 && (p = s_queue_pop_due(&port->queue, self->now))) {
        s_port_serve(self, port, p->adu, p->len, true);
        free(p);
    }
    if (port->quiet_due && self->now >= port->quiet_due) {
        port->quiet_due = 0;
        //  Bytes that arrived since epoll_wait() returned are not silence.
        if (port->reading && s_port_fill(self, port) < 0)
            return;
        bool quiet = self->now - port->last_rx >= port->quiet_ms;
        s_port_parse(self, port, quiet);
        return;
    }
    //  Frames left in the buffer while reading was off.
    if (!port->reading)
        s_port_parse(self, port, false);
}

static void s_port_destroy(devsim_t *self, s_port_t **port_p)
{
    s_port_t *port = *port_p;
    if (!port)
        return;
    s_port_close(self, port);
    free(port->devs);
    free(port);
    *port_p = NULL;
}

//  Open or close the port as its devices' modes want. A port that cannot be
//  opened is retried from the tick, so this never fails.
static void s_port_sync(devsim_t *self, s_port_t *port)
{
    bool want = s_port_wanted(port);
    if (want && port->fd < 0) {
        port->open_errno = 0; //  say why, if it fails
        s_port_try_open(self, port);
    } else if (!want && port->fd >= 0) {
        slog_info("serial port %s (channel %s): closed (every unit refused)", port->path,
                  port->ch->name);
        s_port_close(self, port);
    }
}

//  --------------------------------------------------------------------------
//  Setup

//  Resolve a site host for binding. "localhost" is IPv4 loopback, so the
//  socket does not depend on the order of /etc/hosts. Returns 0 or -1.
static int s_resolve(const char *host, uint16_t port, struct sockaddr_storage *addr,
                     socklen_t *addrlen)
{
    if (!host || !*host || strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, service, &hints, &res) != 0 || !res)
        return -1;
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

//  True when name is in the comma-separated list.
static bool s_listed(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && memcmp(p, name, n) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

//  Check every name of --only exists in the site.
static int s_check_only(const site_t *site, const char *only, char *err, size_t errlen)
{
    for (const char *p = only; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(n < 255 ? n : 255), p);
        if (n == 0 || !site_device(site, name)) {
            snprintf(err, errlen, "--only: no device \"%s\" in %s", name, site->path);
            return -1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

//  Check every --serial CHANNEL=PATH names a serial channel of the site, once.
static int s_check_serial(const site_t *site, const devsim_config_t *config, char *err,
                          size_t errlen)
{
    for (size_t i = 0; i < config->nserial; i++) {
        const char *spec = config->serial[i];
        const char *eq = strchr(spec, '=');
        if (!eq || eq == spec || !eq[1]) {
            snprintf(err, errlen, "--serial: expected CHANNEL=PATH, not \"%.200s\"", spec);
            return -1;
        }
        size_t n = (size_t)(eq - spec);
        const site_channel_t *ch = NULL;
        for (size_t c = 0; c < site->nchannels && !ch; c++)
            if (strlen(site->channels[c].name) == n && memcmp(site->channels[c].name, spec, n) == 0)
                ch = &site->channels[c];
        if (!ch || ch->type != SITE_CH_SERIAL) {
            snprintf(err, errlen, "--serial: %s has no serial channel \"%.*s\"", site->path,
                     (int)(n < 200 ? n : 200), spec);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strncmp(config->serial[j], spec, n + 1) == 0) {
                snprintf(err, errlen, "--serial: channel %s given twice", ch->name);
                return -1;
            }
    }
    return 0;
}

//  The path devsim opens for a serial channel: its --serial override, else
//  the site's serial_port.
static const char *s_serial_path(const devsim_config_t *config, const site_channel_t *ch)
{
    size_t n = strlen(ch->name);
    for (size_t i = 0; i < config->nserial; i++)
        if (strncmp(config->serial[i], ch->name, n) == 0 && config->serial[i][n] == '=')
            return config->serial[i] + n + 1;
    return ch->serial_port;
}

static s_listener_t *s_listener_new(const char *host, uint16_t port, bool gateway, size_t ndevs)
{
    s_listener_t *listener = calloc(1, sizeof *listener);
    if (!listener)
        return NULL;
    listener->fd = -1;
    listener->host = host ? host : "127.0.0.1";
    listener->port = port;
    listener->gateway = gateway;
    listener->devs = calloc(ndevs ? ndevs : 1, sizeof(simdev_t *));
    if (gateway)
        listener->units = calloc(256, sizeof(simdev_t *));
    if (!listener->devs || (gateway && !listener->units)) {
        free(listener->devs);
        free(listener->units);
        free(listener);
        return NULL;
    }
    return listener;
}

//  Make the devices and the port of a serial channel. Returns 0, or -1 with
//  err and *error set. A path that is there but not a terminal (ENOTTY)
//  is not a serial line of this machine: the channel is skipped. Any other
//  failure to open (no such file yet, busy, no permission) is logged and
//  retried every second from the tick: a pty may appear later.
static int s_add_serial(devsim_t *self, const site_channel_t *ch, const devsim_config_t *config,
                        char *err, size_t errlen, devsim_error_t *error)
{
    size_t count = 0;
    for (size_t d = 0; d < ch->ndevices; d++)
        if (!config->only || s_listed(config->only, ch->devices[d].name))
            count++;
    if (count == 0)
        return 0;
    *error = DEVSIM_ERUNTIME;
    s_port_t *port = calloc(1, sizeof *port);
    if (port)
        port->devs = calloc(count, sizeof(simdev_t *));
    if (!port || !port->devs) {
        free(port);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    port->fd = -1;
    port->ch = ch;
    port->path = s_serial_path(config, ch);
    int bits = rtuframe_char_bits(ch->parity, ch->data_bits, ch->stop_bits);
    int quiet_ms = (int)((rtuframe_silence_us(ch->baud, bits) + 999) / 1000);
    port->quiet_ms = quiet_ms > S_RTU_QUIET ? quiet_ms : S_RTU_QUIET;
    if (s_port_open(self, port) == 0)
        s_port_opened(port);
    else if (errno == ENOTTY) {
        slog_warn("channel %s: %s is not a serial port (not a terminal); its %zu device(s) are "
                  "skipped",
                  ch->name, port->path, count);
        s_port_destroy(self, &port);
        return 0;
    } else
        s_port_failed(self, port, errno);
    if (s_speed(ch->baud) == B0)
        slog_warn("channel %s: %u baud is not a standard rate; %s keeps the speed it has", ch->name,
                  ch->baud, port->path);
    for (size_t i = 0; i < self->nports; i++)
        if (strcmp(self->ports[i]->path, port->path) == 0)
            slog_warn("channels %s and %s both use %s: they will take each other's bytes",
                      self->ports[i]->ch->name, ch->name, port->path);
    self->ports[self->nports++] = port;

    for (size_t d = 0; d < ch->ndevices; d++) {
        const site_device_t *device = &ch->devices[d];
        if (config->only && !s_listed(config->only, device->name))
            continue;
        if (device->unit && port->units[device->unit]) {
            snprintf(err, errlen, "%s:%d: channel %s: devices %s and %s share unit id %u",
                     self->site->path, device->line, ch->name,
                     simdev_device(port->units[device->unit])->name, device->name, device->unit);
            *error = DEVSIM_EBADCONFIG;
            return -1;
        }
        simdev_t *dev = simdev_new(device, config->seed, err, errlen);
        if (!dev)
            return -1;
        if (device->unit)
            port->units[device->unit] = dev;
        else
            slog_warn("device %s: unit 0 is the broadcast address of serial channel %s: it gets "
                      "broadcast writes and is never asked",
                      device->name, ch->name);
        port->devs[port->ndevs++] = dev;
        s_served_t *served = &self->served[self->nserved++];
        served->dev = dev;
        served->port = port;
        zhashx_insert(self->by_name, device->name, served);
    }
    return 0;
}

//  Make the devices and sockets of one channel. Returns 0, or -1 with err
//  and *error set. Devices whose address is not on this machine are skipped.
static int s_add_channel(devsim_t *self, const site_channel_t *ch, const devsim_config_t *config,
                         size_t *skipped, char *err, size_t errlen, devsim_error_t *error)
{
    if (ch->type == SITE_CH_SERIAL)
        return s_add_serial(self, ch, config, err, errlen, error);
    bool gateway = ch->type == SITE_CH_TCP;
    s_listener_t *shared = NULL;
    for (size_t d = 0; d < ch->ndevices; d++) {
        const site_device_t *device = &ch->devices[d];
        if (config->only && !s_listed(config->only, device->name))
            continue;
        if (ch->type == SITE_CH_LISTEN) {
            slog_info("device %s: channel %s is %s, not simulated yet; skipped", device->name,
                      ch->name, site_chtype_name(ch->type));
            continue;
        }
        *error = DEVSIM_ERUNTIME;
        s_listener_t *listener = shared;
        if (!listener) {
            const char *host = gateway ? ch->host : device->host;
            uint16_t port = gateway ? ch->port : device->port;
            listener = s_listener_new(host, port, gateway, gateway ? ch->ndevices : 1);
            if (!listener) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            if (s_resolve(host, port, &listener->addr, &listener->addrlen) != 0 ||
                s_listener_open(self, listener) != 0) {
                int saved = errno;
                bool remote = saved == EADDRNOTAVAIL || listener->addrlen == 0;
                s_listener_destroy(self, &listener);
                if (remote) {
                    //  Not an address of this machine: another host serves it.
                    slog_debug("device %s: %s is not an address of this machine; skipped",
                               device->name, host ? host : "?");
                    (*skipped)++;
                    if (gateway)
                        return 0;
                    continue;
                }
                snprintf(err, errlen, "device %s: cannot listen on %s:%u: %s", device->name,
                         host ? host : "?", port, strerror(saved));
                return -1;
            }
            self->listeners[self->nlisteners++] = listener;
            if (gateway)
                shared = listener;
        }
        simdev_t *dev = simdev_new(device, config->seed, err, errlen);
        if (!dev)
            return -1;
        if (gateway) {
            if (listener->units[device->unit]) {
                snprintf(err, errlen, "%s:%d: channel %s: devices %s and %s share unit id %u",
                         self->site->path, device->line, ch->name,
                         simdev_device(listener->units[device->unit])->name, device->name,
                         device->unit);
                *error = DEVSIM_EBADCONFIG;
                simdev_destroy(&dev);
                return -1;
            }
            listener->units[device->unit] = dev;
        }
        listener->devs[listener->ndevs++] = dev;
        s_served_t *served = &self->served[self->nserved++];
        served->dev = dev;
        served->listener = listener;
        zhashx_insert(self->by_name, device->name, served);
    }
    return 0;
}

//  The site's devsim.start commands, in order, as if they came on the
//  control socket. Returns 0, or -1 with the first failure in err.
static int s_start_commands(devsim_t *self, char *err, size_t errlen)
{
    const site_t *site = self->site;
    for (size_t i = 0; i < site->ndevsim_start; i++) {
        const char *command = site->devsim_start[i];
        char *reply = control_handle(self, command);
        if (!reply) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (strncmp(reply, "ok", 2) != 0) {
            snprintf(err, errlen, "%s:%d: devsim.start[%zu]: \"%s\" failed: %s", site->path,
                     site->devsim_start_line[i], i, command, reply);
            free(reply);
            return -1;
        }
        slog_info("start: %s: %.200s", command, reply);
        free(reply);
    }
    return 0;
}

devsim_t *devsim_new(const site_t *site, const devsim_config_t *config, char *err, size_t errlen,
                     devsim_error_t *error)
{
    *error = DEVSIM_EBADCONFIG;
    if (config->only && s_check_only(site, config->only, err, errlen) != 0)
        return NULL;
    if (s_check_serial(site, config, err, errlen) != 0)
        return NULL;
    //  Its control socket is a link of the site like any other: CURVE
    //  unless the site is plain, with the certificate "devsim".
    if (sec_check(site, "devsim", err, errlen) != 0)
        return NULL;
    *error = DEVSIM_ERUNTIME;

    //  Before any thread exists (libzmq's), so every thread inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    devsim_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->site = site;
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    self->sigfd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    self->timers = timerq_new();
    self->by_name = zhashx_new();
    self->served = calloc(site->ndevices ? site->ndevices : 1, sizeof *self->served);
    self->listeners = calloc(site->ndevices ? site->ndevices : 1, sizeof *self->listeners);
    self->ports = calloc(site->nchannels ? site->nchannels : 1, sizeof *self->ports);
    self->mbctx = modbus_new_tcp("127.0.0.1", 502);
    //  The device name is never opened: the context only builds RTU frames.
    self->rtuctx = modbus_new_rtu("/dev/null", 9600, 'N', 8, 1);
    self->now = self->start = mclock_mono_ms();
    self->next_tick = self->start + S_TICK_MS;
    if (self->epfd < 0 || self->sigfd < 0 || !self->timers || !self->by_name || !self->served ||
        !self->listeners || !self->ports || !self->mbctx || !self->rtuctx ||
        s_fd_add(self, self->sigfd, S_FD_SIGNAL, NULL, EPOLLIN, NULL) != 0) {
        snprintf(err, errlen, "cannot set up the event loop: %s", strerror(errno));
        devsim_destroy(&self);
        return NULL;
    }
    //  Defence in depth: mbserve keeps libmodbus off its flush-and-sleep
    //  paths, but should one be reached the sleep is 1 us, not 0.5 s.
    modbus_set_response_timeout(self->mbctx, 0, 1);
    modbus_set_response_timeout(self->rtuctx, 0, 1);

    size_t skipped = 0;
    for (size_t c = 0; c < site->nchannels; c++)
        if (s_add_channel(self, &site->channels[c], config, &skipped, err, errlen, error) != 0) {
            devsim_destroy(&self);
            return NULL;
        }
    if (skipped)
        slog_info("skipped %zu device(s) or gateway(s) whose address is not on this machine",
                  skipped);
    if (self->nserved == 0)
        slog_warn("no device of %s is served by this process", site->path);

    zsys_handler_set(NULL); //  signals are ours (signalfd), not czmq's
    //  Options first: a bound socket copies them into its listener at bind.
    //  A ROUTER that answers as a REP would (s_control_drain): libzmq's REP
    //  loses its next reply after a request without an envelope from a peer
    //  that is already gone (garbage on the port does that).
    self->control = zsock_new(ZMQ_ROUTER);
    if (self->control) {
        zsock_set_linger(self->control, 0);
        //  Commands are short (64 KB: a list of some 5,000 device names);
        //  libzmq drops a peer that sends more. One request at a time.
        zsock_set_maxmsgsize(self->control, 65536);
        zsock_set_sndhwm(self->control, 100);
        zsock_set_rcvhwm(self->control, 100);
    }
    if (s_start_commands(self, err, errlen) != 0) {
        *error = DEVSIM_EBADCONFIG;
        devsim_destroy(&self);
        return NULL;
    }
    char why[512] = "out of memory";
    if (self->control && !(self->sec = sec_new(site, "devsim", NULL, why, sizeof why)))
        zsock_destroy(&self->control);
    if (!self->control || sec_server(self->sec, self->control, "control socket", why, sizeof why) ||
        site_bind(self->control, config->control, why, sizeof why) < 0) {
        snprintf(err, errlen, "control socket: %s", why);
        devsim_destroy(&self);
        return NULL;
    }
    //  ZMQ_FD is edge-like: it says "look at ZMQ_EVENTS", and the loop
    //  drains the socket every turn, so edge-triggered is what it means.
    if (s_fd_add(self, zsock_fd(self->control), S_FD_CONTROL, NULL, EPOLLIN | EPOLLET, NULL) != 0) {
        snprintf(err, errlen, "cannot watch the control socket: %s", strerror(errno));
        devsim_destroy(&self);
        return NULL;
    }
    slog_info("serving %zu device(s) on %zu socket(s) and %zu serial port(s); control at %s",
              self->nserved, self->nlisteners, self->nports, config->control);
    return self;
}

void devsim_destroy(devsim_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    devsim_t *self = *self_p;
    for (size_t i = 0; i < self->nlisteners; i++)
        s_listener_destroy(self, &self->listeners[i]);
    for (size_t i = 0; i < self->nports; i++)
        s_port_destroy(self, &self->ports[i]);
    for (size_t i = 0; i < self->nserved; i++)
        simdev_destroy(&self->served[i].dev);
    //  The control socket's ZMQ_FD belongs to libzmq: never close() it.
    zsock_destroy(&self->control);
    sec_destroy(&self->sec);
    if (self->sigfd >= 0)
        close(self->sigfd);
    if (self->epfd >= 0)
        close(self->epfd);
    if (self->mbctx) {
        modbus_set_socket(self->mbctx, -1);
        modbus_free(self->mbctx);
    }
    if (self->rtuctx) {
        modbus_set_socket(self->rtuctx, -1);
        modbus_free(self->rtuctx);
    }
    timerq_destroy(&self->timers);
    zhashx_destroy(&self->by_name);
    free(self->served);
    free(self->listeners);
    free(self->ports);
    free(self->fdtab);
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  The loop

//  Answer every control request waiting; never blocks.
static void s_control_drain(devsim_t *self)
{
    while (zsock_events(self->control) & ZMQ_POLLIN) {
        zmsg_t *msg = zmsg_recv_nowait(self->control);
        if (!msg)
            break;
        //  The envelope as a REP keeps it: routing id, frames up to the
        //  empty delimiter. A request without one (from a DEALER that sent
        //  none, or garbage) cannot be answered: dropped.
        zmsg_t *out = zmsg_new();
        bool delimited = false;
        zframe_t *f;
        while (!delimited && (f = zmsg_pop(msg))) {
            delimited = zmsg_size(out) > 0 && zframe_size(f) == 0;
            zmsg_append(out, &f);
        }
        if (!delimited) {
            slog_debug("control: a request without an envelope dropped");
            zmsg_destroy(&out);
            zmsg_destroy(&msg);
            continue;
        }
        char *reply = NULL;
        if (zmsg_size(msg) != 1)
            reply = strdup("error: expected one frame");
        else {
            char *request = zmsg_popstr(msg);
            reply = control_handle(self, request ? request : "");
            free(request);
        }
        zmsg_destroy(&msg);
        zmsg_addstr(out, reply ? reply : "error: out of memory");
        if (zmsg_send(&out, self->control) != 0) {
            slog_warn("control: reply not sent: %s", zmq_strerror(zmq_errno()));
            zmsg_destroy(&out);
        }
        free(reply);
    }
}

#define S_FLAP_LOG 8 //  flapping devices turning in one tick logged by name; more are counted

static void s_tick(devsim_t *self)
{
    size_t turned[2] = {0, 0}; //  went down, went up
    for (size_t i = 0; i < self->nserved; i++) {
        simdev_t *dev = self->served[i].dev;
        simdev_tick(dev, self->now - self->start);
        bool up = false;
        simdev_flap_t flap;
        if (!simdev_flap_turned(dev, self->now, &up) || !simdev_flap(dev, self->now, &flap))
            continue;
        if (turned[0] + turned[1] < S_FLAP_LOG)
            slog_info("device %s: flap: %s for %lld ms", simdev_device(dev)->name,
                      up ? "up, answering" : "down, silent", (long long)flap.next_ms);
        turned[up]++;
    }
    if (turned[0] + turned[1] > S_FLAP_LOG)
        slog_info("flap: %zu device(s) went down and %zu up in this tick (%d logged)", turned[0],
                  turned[1], S_FLAP_LOG);
    for (size_t i = 0; i < self->nlisteners; i++) {
        s_listener_t *listener = self->listeners[i];
        if (listener->paused && listener->fd >= 0) {
            listener->paused = false;
            s_fd_mod(self, listener->fd, EPOLLIN);
        }
    }
    for (size_t i = 0; i < self->nports; i++) {
        s_port_t *port = self->ports[i];
        if (port->fd < 0 && self->now >= port->retry_at && s_port_wanted(port))
            s_port_try_open(self, port);
    }
}

int devsim_run(devsim_t *self)
{
    struct epoll_event events[S_MAX_EVENTS];
    while (!self->stop) {
        self->now = mclock_mono_ms();
        s_control_drain(self);
        self->now = mclock_mono_ms();
        int64_t wake = timerq_next(self->timers);
        if (self->next_tick < wake)
            wake = self->next_tick;
        int timeout = wake <= self->now ? 0 : (int)(wake - self->now);
        int n = epoll_wait(self->epfd, events, S_MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            slog_error("epoll_wait: %s", strerror(errno));
            return -1;
        }
        self->now = mclock_mono_ms();
        for (int i = 0; i < n; i++) {
            s_kind_t kind = S_FD_NONE;
            void *ptr = s_fd_lookup(self, events[i].data.u64, &kind);
            if (kind == S_FD_LISTENER)
                s_listener_accept(self, ptr);
            else if (kind == S_FD_CONN)
                s_conn_readable(self, ptr, events[i].events);
            else if (kind == S_FD_PORT)
                s_port_readable(self, ptr, events[i].events);
            else if (kind == S_FD_SIGNAL) {
                struct signalfd_siginfo info;
                if (read(self->sigfd, &info, sizeof info) == (ssize_t)sizeof info) {
                    slog_info("signal %u: stopping", info.ssi_signo);
                    self->stop = true;
                }
            }
            //  S_FD_CONTROL: drained at the top of every turn.
        }
        uint64_t key;
        while (timerq_pop_due(self->timers, self->now, &key)) {
            s_kind_t kind = S_FD_NONE;
            void *ptr = s_fd_lookup(self, key, &kind);
            if (ptr && kind == S_FD_CONN)
                s_conn_due(self, ptr);
            else if (ptr && kind == S_FD_PORT)
                s_port_due(self, ptr);
        }
        if (self->now >= self->next_tick) {
            s_tick(self);
            self->next_tick += S_TICK_MS;
            if (self->next_tick <= self->now) //  fell behind: do not tick in a burst
                self->next_tick = self->now + S_TICK_MS;
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  For the control commands

const site_t *devsim_site(const devsim_t *self)
{
    return self->site;
}

simdev_t *devsim_device_at(devsim_t *self, size_t index)
{
    return index < self->nserved ? self->served[index].dev : NULL;
}

size_t devsim_device_count(const devsim_t *self)
{
    return self->nserved;
}

simdev_t *devsim_device(devsim_t *self, const char *name)
{
    s_served_t *served = zhashx_lookup(self->by_name, name);
    return served ? served->dev : NULL;
}

static s_served_t *s_served_of(devsim_t *self, simdev_t *dev)
{
    s_served_t *served = zhashx_lookup(self->by_name, simdev_device(dev)->name);
    assert(served && served->dev == dev);
    return served;
}

//  Open or close the device's socket or port as its new mode wants.
static int s_sync(devsim_t *self, simdev_t *dev, char *err, size_t errlen)
{
    s_served_t *served = s_served_of(self, dev);
    if (served->port) {
        s_port_sync(self, served->port);
        return 0;
    }
    s_listener_t *listener = served->listener;
    if (s_listener_sync(self, listener) != 0) {
        snprintf(err, errlen, "device %s: cannot listen on %s:%u again: %s",
                 simdev_device(dev)->name, listener->host, listener->port, strerror(errno));
        slog_warn("%s", err);
        return -1;
    }
    return 0;
}

int devsim_set_mode(devsim_t *self, simdev_t *dev, simdev_mode_t mode, int arg, char *err,
                    size_t errlen)
{
    if (simdev_mode(dev) != mode || mode == SIMDEV_DELAY || mode == SIMDEV_EXCEPTION)
        slog_info("device %s: %s", simdev_device(dev)->name, simdev_mode_name(mode));
    simdev_set_mode(dev, mode, arg);
    return s_sync(self, dev, err, errlen);
}

int devsim_set_flap(devsim_t *self, simdev_t *dev, uint32_t up_ms, uint32_t down_ms, int delay_ms,
                    char *err, size_t errlen)
{
    if (delay_ms > 0)
        slog_info("device %s: flap, up %u ms (answers %d ms late), down %u ms",
                  simdev_device(dev)->name, up_ms, delay_ms, down_ms);
    else
        slog_info("device %s: flap, up %u ms, down %u ms", simdev_device(dev)->name, up_ms,
                  down_ms);
    simdev_set_flap(dev, up_ms, down_ms, delay_ms, self->now);
    return s_sync(self, dev, err, errlen);
}

int64_t devsim_now(const devsim_t *self)
{
    return self->now;
}

size_t devsim_disconnect(devsim_t *self, simdev_t *dev)
{
    s_served_t *served = s_served_of(self, dev);
    s_port_t *port = served->port;
    if (port) {
        if (port->fd < 0)
            return 0;
        slog_info("serial port %s (channel %s): closed and reopened (disconnect)", port->path,
                  port->ch->name);
        s_port_close(self, port);
        port->open_errno = 0;
        s_port_try_open(self, port);
        return 1;
    }
    s_listener_t *listener = served->listener;
    size_t n = listener->nconns;
    s_conn_close_all(self, listener);
    return n;
}

static void s_endpoint_add(const s_listener_t *listener, devsim_endpoint_t *out)
{
    out->connections += listener->nconns;
    out->accepted += listener->accepted;
    out->malformed += listener->malformed;
    out->unknown += listener->unknown;
}

static void s_serial_add(const s_port_t *port, devsim_endpoint_t *out)
{
    out->connections += port->fd >= 0;
    out->accepted += port->opens;
    out->unknown += port->unknown;
    out->frames += port->frames;
    out->crc_errors += port->crc_errors;
    out->garbage_bytes += port->garbage_bytes;
}

void devsim_endpoint(devsim_t *self, simdev_t *dev, devsim_endpoint_t *out)
{
    s_served_t *served = s_served_of(self, dev);
    memset(out, 0, sizeof *out);
    if (served->port) {
        out->host = served->port->path;
        out->channel = served->port->ch->name;
        out->serial = true;
        out->listening = served->port->fd >= 0;
        s_serial_add(served->port, out);
        return;
    }
    s_listener_t *listener = served->listener;
    out->host = listener->host;
    out->port = listener->port;
    out->gateway = listener->gateway;
    out->listening = listener->fd >= 0;
    s_endpoint_add(listener, out);
}

void devsim_totals(devsim_t *self, devsim_endpoint_t *out, size_t *listeners, size_t *ports)
{
    memset(out, 0, sizeof *out);
    *listeners = 0;
    *ports = 0;
    for (size_t i = 0; i < self->nlisteners; i++) {
        s_endpoint_add(self->listeners[i], out);
        if (self->listeners[i]->fd >= 0)
            (*listeners)++;
    }
    for (size_t i = 0; i < self->nports; i++) {
        s_serial_add(self->ports[i], out);
        if (self->ports[i]->fd >= 0)
            (*ports)++;
    }
}

size_t devsim_serial_count(const devsim_t *self)
{
    return self->nports;
}

int devsim_serial_at(devsim_t *self, size_t index, devsim_serial_t *out)
{
    if (index >= self->nports)
        return -1;
    const s_port_t *port = self->ports[index];
    *out = (devsim_serial_t){.channel = port->ch->name,
                             .path = port->path,
                             .baud = port->ch->baud,
                             .parity = port->ch->parity,
                             .line = port->line,
                             .data_bits = port->ch->data_bits,
                             .stop_bits = port->ch->stop_bits,
                             .open = port->fd >= 0,
                             .units = port->ndevs,
                             .opens = port->opens,
                             .frames = port->frames,
                             .crc_errors = port->crc_errors,
                             .garbage_bytes = port->garbage_bytes,
                             .unknown = port->unknown,
                             .broadcasts = port->broadcasts,
                             .write_errors = port->write_errors};
    return 0;
}
