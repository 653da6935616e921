/*  devsim: the simulated plant's server. See devsim.h.

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
#include "slog.h"
#include "timerq.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
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
#include <unistd.h>

#define S_TICK_MS     100  //  how often the sims move
#define S_MAX_PENDING 1024 //  delayed requests per connection before it stops being read
#define S_MAX_EVENTS  256  //  epoll events per turn
#define S_ACCEPT_MAX  64   //  accepts per listener per turn, so one busy port cannot starve

typedef enum { S_FD_NONE = 0, S_FD_LISTENER, S_FD_CONN, S_FD_SIGNAL, S_FD_CONTROL } s_kind_t;

typedef struct {
    s_kind_t kind;
    uint32_t serial; //  0 when the slot is free
    void *ptr;       //  s_listener_t or s_conn_t
} s_fdent_t;

typedef struct _s_listener_t s_listener_t;
typedef struct _s_conn_t s_conn_t;

//  A request waiting for its delayed answer.
typedef struct _s_pending_t {
    struct _s_pending_t *next;
    int64_t due; //  monotonic ms
    int len;
    uint8_t adu[MBFRAME_MAX];
} s_pending_t;

struct _s_conn_t {
    int fd;
    uint32_t serial;
    s_listener_t *listener;
    s_conn_t *prev, *next;       //  in listener->conns
    uint8_t in[2 * MBFRAME_MAX]; //  bytes read, not yet framed
    size_t inlen;
    s_pending_t *head, *tail; //  delayed requests, in arrival order
    size_t npending;
    int64_t last_due; //  due time of tail: answers never overtake
    bool reading;     //  EPOLLIN wanted (off while too much is pending)
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

//  A served device and its socket.
typedef struct {
    simdev_t *dev;
    s_listener_t *listener;
} s_served_t;

struct _devsim_t {
    const site_t *site;
    int epfd;
    int sigfd;
    zsock_t *control;
    modbus_t *mbctx; //  never connected; lends its TCP backend to mbserve
    timerq_t *timers;
    s_fdent_t *fdtab;
    size_t fdcap;
    uint32_t serial;    //  last serial handed out
    s_served_t *served; //  in site order
    size_t nserved;
    zhashx_t *by_name; //  device name -> s_served_t (not owned)
    s_listener_t **listeners;
    size_t nlisteners;
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
    while (conn->head) {
        s_pending_t *next = conn->head->next;
        free(conn->head);
        conn->head = next;
    }
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

//  Queue a request behind the connection's earlier delayed ones.
static int s_conn_defer(devsim_t *self, s_conn_t *conn, const uint8_t *adu, int len, int delay)
{
    s_pending_t *p = malloc(sizeof *p);
    if (!p)
        return -1;
    p->next = NULL;
    p->due = self->now + delay;
    if (conn->head && p->due < conn->last_due)
        p->due = conn->last_due;
    p->len = len;
    memcpy(p->adu, adu, (size_t)len);
    if (timerq_push(self->timers, p->due, s_key(conn->fd, conn->serial)) != 0) {
        free(p);
        return -1;
    }
    if (conn->tail)
        conn->tail->next = p;
    else
        conn->head = p;
    conn->tail = p;
    conn->npending++;
    conn->last_due = p->due;
    return 0;
}

//  Act on one request ADU. `queued` is true when it comes out of the delay
//  queue, so it is neither counted nor delayed again. Returns 0, or -1 when
//  the connection must be dropped (a reply could not be written).
static int s_conn_serve(devsim_t *self, s_conn_t *conn, const uint8_t *adu, int len, bool queued)
{
    s_listener_t *listener = conn->listener;
    simdev_t *dev = listener->gateway ? listener->units[adu[6]] : listener->devs[0];
    if (!queued) {
        if (dev)
            simdev_stats(dev)->requests++;
        else
            listener->unknown++;
        //  Behind a queued answer everything queues, so answers stay in order.
        int delay = dev ? simdev_delay_ms(dev) : 0;
        if (conn->head || (dev && simdev_mode(dev) == SIMDEV_DELAY))
            return s_conn_defer(self, conn, adu, len, delay);
    }
    if (!dev) //  a gateway whose target does not exist
        return mbserve_exception(self->mbctx, conn->fd, adu, MODBUS_EXCEPTION_GATEWAY_TARGET);

    simdev_stats_t *stats = simdev_stats(dev);
    mbserve_kind_t kind = MBSERVE_DATA;
    int rc = 0;
    switch (simdev_mode(dev)) {
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
    while (conn->npending < S_MAX_PENDING) {
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
    bool want = conn->npending < S_MAX_PENDING;
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
    while (conn->head && conn->head->due <= self->now) {
        s_pending_t *p = conn->head;
        conn->head = p->next;
        if (!conn->head)
            conn->tail = NULL;
        conn->npending--;
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

//  Make the devices and sockets of one channel. Returns 0, or -1 with err
//  and *error set. Devices whose address is not on this machine are skipped.
static int s_add_channel(devsim_t *self, const site_channel_t *ch, const devsim_config_t *config,
                         size_t *skipped, char *err, size_t errlen, devsim_error_t *error)
{
    bool gateway = ch->type == SITE_CH_TCP;
    s_listener_t *shared = NULL;
    for (size_t d = 0; d < ch->ndevices; d++) {
        const site_device_t *device = &ch->devices[d];
        if (config->only && !s_listed(config->only, device->name))
            continue;
        if (ch->type == SITE_CH_SERIAL || ch->type == SITE_CH_LISTEN) {
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

devsim_t *devsim_new(const site_t *site, const devsim_config_t *config, char *err, size_t errlen,
                     devsim_error_t *error)
{
    *error = DEVSIM_EBADCONFIG;
    if (config->only && s_check_only(site, config->only, err, errlen) != 0)
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
    self->mbctx = modbus_new_tcp("127.0.0.1", 502);
    self->now = self->start = mclock_mono_ms();
    self->next_tick = self->start + S_TICK_MS;
    if (self->epfd < 0 || self->sigfd < 0 || !self->timers || !self->by_name || !self->served ||
        !self->listeners || !self->mbctx ||
        s_fd_add(self, self->sigfd, S_FD_SIGNAL, NULL, EPOLLIN, NULL) != 0) {
        snprintf(err, errlen, "cannot set up the event loop: %s", strerror(errno));
        devsim_destroy(&self);
        return NULL;
    }
    //  Defence in depth: mbserve keeps libmodbus off its flush-and-sleep
    //  paths, but should one be reached the sleep is 1 us, not 0.5 s.
    modbus_set_response_timeout(self->mbctx, 0, 1);

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
    self->control = zsock_new(ZMQ_REP);
    if (self->control) {
        zsock_set_linger(self->control, 0);
        //  Commands are short; libzmq drops a peer that sends more.
        zsock_set_maxmsgsize(self->control, 65536);
    }
    if (!self->control || zsock_bind(self->control, "%s", config->control) < 0) {
        snprintf(err, errlen, "cannot bind the control socket at %s: %s", config->control,
                 zmq_strerror(zmq_errno()));
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
    slog_info("serving %zu device(s) on %zu socket(s); control at %s", self->nserved,
              self->nlisteners, config->control);
    return self;
}

void devsim_destroy(devsim_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    devsim_t *self = *self_p;
    for (size_t i = 0; i < self->nlisteners; i++)
        s_listener_destroy(self, &self->listeners[i]);
    for (size_t i = 0; i < self->nserved; i++)
        simdev_destroy(&self->served[i].dev);
    //  The control socket's ZMQ_FD belongs to libzmq: never close() it.
    zsock_destroy(&self->control);
    if (self->sigfd >= 0)
        close(self->sigfd);
    if (self->epfd >= 0)
        close(self->epfd);
    if (self->mbctx) {
        modbus_set_socket(self->mbctx, -1);
        modbus_free(self->mbctx);
    }
    timerq_destroy(&self->timers);
    zhashx_destroy(&self->by_name);
    free(self->served);
    free(self->listeners);
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
        zmsg_t *msg = zmsg_recv(self->control);
        if (!msg)
            break;
        char *reply = NULL;
        if (zmsg_size(msg) != 1)
            reply = strdup("error: expected one frame");
        else {
            char *request = zmsg_popstr(msg);
            reply = control_handle(self, request ? request : "");
            free(request);
        }
        zmsg_destroy(&msg);
        if (zstr_send(self->control, reply ? reply : "error: out of memory") != 0)
            slog_warn("control: reply not sent: %s", zmq_strerror(zmq_errno()));
        free(reply);
    }
}

static void s_tick(devsim_t *self)
{
    for (size_t i = 0; i < self->nserved; i++)
        simdev_tick(self->served[i].dev, self->now - self->start);
    for (size_t i = 0; i < self->nlisteners; i++) {
        s_listener_t *listener = self->listeners[i];
        if (listener->paused && listener->fd >= 0) {
            listener->paused = false;
            s_fd_mod(self, listener->fd, EPOLLIN);
        }
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
            s_conn_t *conn = s_fd_lookup(self, key, &kind);
            if (conn && kind == S_FD_CONN)
                s_conn_due(self, conn);
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

static s_listener_t *s_listener_of(devsim_t *self, simdev_t *dev)
{
    s_served_t *served = zhashx_lookup(self->by_name, simdev_device(dev)->name);
    assert(served && served->dev == dev);
    return served->listener;
}

int devsim_set_mode(devsim_t *self, simdev_t *dev, simdev_mode_t mode, int arg, char *err,
                    size_t errlen)
{
    s_listener_t *listener = s_listener_of(self, dev);
    if (simdev_mode(dev) != mode || mode == SIMDEV_DELAY || mode == SIMDEV_EXCEPTION)
        slog_info("device %s: %s", simdev_device(dev)->name, simdev_mode_name(mode));
    simdev_set_mode(dev, mode, arg);
    if (s_listener_sync(self, listener) != 0) {
        snprintf(err, errlen, "device %s: cannot listen on %s:%u again: %s",
                 simdev_device(dev)->name, listener->host, listener->port, strerror(errno));
        slog_warn("%s", err);
        return -1;
    }
    return 0;
}

size_t devsim_disconnect(devsim_t *self, simdev_t *dev)
{
    s_listener_t *listener = s_listener_of(self, dev);
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

void devsim_endpoint(devsim_t *self, simdev_t *dev, devsim_endpoint_t *out)
{
    s_listener_t *listener = s_listener_of(self, dev);
    memset(out, 0, sizeof *out);
    out->host = listener->host;
    out->port = listener->port;
    out->gateway = listener->gateway;
    out->listening = listener->fd >= 0;
    s_endpoint_add(listener, out);
}

void devsim_totals(devsim_t *self, devsim_endpoint_t *out, size_t *listeners)
{
    memset(out, 0, sizeof *out);
    *listeners = 0;
    for (size_t i = 0; i < self->nlisteners; i++) {
        s_endpoint_add(self->listeners[i], out);
        if (self->listeners[i]->fd >= 0)
            (*listeners)++;
    }
}
