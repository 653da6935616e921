/*  rzloop: hiredis's asynchronous API on a czmq zloop. See rzloop.h. */
#include "rzloop.h"

#include "mclock.h"
#include "slog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdarg.h>
#include <string.h>

//  Commands beyond this many bytes of unsent output are dropped: a slow
//  Redis must not grow our memory.
#define RZ_MAX_OBUF (8 * 1024 * 1024)

//  A host name is resolved on glibc's lookup thread (getaddrinfo_a), polled
//  this often; the thread exits about a second after its last lookup.
#define RZ_LOOKUP_POLL_MS   20
#define RZ_LOOKUP_LINGER_MS 1500

//  A resolution in flight: what getaddrinfo_a reads and writes until it is
//  done, so it lives on the heap until then.
typedef struct {
    struct gaicb cb;
    struct addrinfo hints;
    char service[8];
} s_lookup_t;

struct _rzloop_t {
    zloop_t *loop;
    char *host;
    int port;
    redisAsyncContext *ac; //  NULL while disconnected
    bool connected;        //  the connect completed
    int events;            //  ZMQ_POLLIN | ZMQ_POLLOUT the poller waits for
    int fd;                //  fd of the poller, -1 if none
    int retry_timer;       //  zloop timer id, -1 if none
    rzloop_connect_fn *on_connect;
    void *arg;
    uint64_t dropped;
    bool warned;    //  the "Redis unreachable" warning was logged
    char *user;     //  AUTH user (ACL), or NULL for the default user
    char *password; //  AUTH password, or NULL: no AUTH
    bool authing;   //  AUTH sent, its answer not in yet
    uint64_t auth_failures;
    char auth_error[160];            //  the last refusal, logged once per change
    bool numeric;                    //  host is an address: no lookup
    s_lookup_t *lookup;              //  the resolution of host in flight, or NULL
    int lookup_timer;                //  zloop timer polling it, -1 if none
    int64_t lookup_last;             //  mono ms the last lookup ended, 0 if none ever ran
    int lookup_rc;                   //  how the last one ended, logged once per change
    char addrs[4][INET6_ADDRSTRLEN]; //  what it gave, tried in turn
    size_t naddrs, next_addr;
};

static void s_connect(rzloop_t *self);

static int s_on_ready(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    rzloop_t *self = (rzloop_t *)arg;
    if (!self->ac || self->fd != item->fd)
        return 0; //  a stale poll result for a connection already gone
    if (item->revents & (ZMQ_POLLIN | ZMQ_POLLERR))
        redisAsyncHandleRead(self->ac);
    //  The read may have freed the context (disconnect).
    if (self->ac && (item->revents & ZMQ_POLLOUT))
        redisAsyncHandleWrite(self->ac);
    return 0;
}

static void s_update_poller(rzloop_t *self, int events)
{
    if (self->fd >= 0) {
        zmq_pollitem_t old = {NULL, self->fd, 0, 0};
        zloop_poller_end(self->loop, &old);
        self->fd = -1;
    }
    self->events = events;
    if (events && self->ac) {
        zmq_pollitem_t item = {NULL, self->ac->c.fd, (short)events, 0};
        if (zloop_poller(self->loop, &item, s_on_ready, self) == 0) {
            zloop_poller_set_tolerant(self->loop, &item);
            self->fd = self->ac->c.fd;
        }
    }
}

static void s_add_read(void *arg)
{
    rzloop_t *self = (rzloop_t *)arg;
    if (!(self->events & ZMQ_POLLIN))
        s_update_poller(self, self->events | ZMQ_POLLIN);
}
static void s_del_read(void *arg)
{
    rzloop_t *self = (rzloop_t *)arg;
    if (self->events & ZMQ_POLLIN)
        s_update_poller(self, self->events & ~ZMQ_POLLIN);
}
static void s_add_write(void *arg)
{
    rzloop_t *self = (rzloop_t *)arg;
    if (!(self->events & ZMQ_POLLOUT))
        s_update_poller(self, self->events | ZMQ_POLLOUT);
}
static void s_del_write(void *arg)
{
    rzloop_t *self = (rzloop_t *)arg;
    if (self->events & ZMQ_POLLOUT)
        s_update_poller(self, self->events & ~ZMQ_POLLOUT);
}
static void s_cleanup(void *arg)
{
    rzloop_t *self = (rzloop_t *)arg;
    s_update_poller(self, 0);
}

static int s_retry(zloop_t *loop, int timer_id, void *arg)
{
    rzloop_t *self = (rzloop_t *)arg;
    self->retry_timer = -1;
    s_connect(self);
    return 0;
}

static void s_schedule_retry(rzloop_t *self)
{
    if (self->retry_timer < 0)
        self->retry_timer = zloop_timer(self->loop, 1000, 1, s_retry, self);
}

//  Connected (and authenticated): commands flow, the owner writes its state.
static void s_ready(rzloop_t *self)
{
    self->connected = true;
    slog_info("redis %s:%d connected%s", self->host, self->port,
              self->password ? " and authenticated" : "");
    self->auth_error[0] = 0;
    if (self->on_connect)
        self->on_connect(self, self->arg);
}

static void s_on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    rzloop_t *self = (rzloop_t *)ac->data;
    redisReply *reply = (redisReply *)r;
    if (!self)
        return;
    self->authing = false;
    if (reply && reply->type != REDIS_REPLY_ERROR) {
        s_ready(self);
        return;
    }
    //  Refused (wrong password, unknown user) or no answer: say why once per
    //  reason, drop the connection and try again in a second, as when Redis
    //  is away. The password itself is never logged.
    self->auth_failures++;
    char why[160];
    snprintf(why, sizeof why, "%s", reply && reply->str ? reply->str : "no answer to AUTH");
    if (strcmp(why, self->auth_error) != 0)
        slog_error("redis %s:%d refused %s%s%s: %s (state keys are not written until it "
                   "accepts%s)",
                   self->host, self->port, self->password ? "AUTH" : "us",
                   self->user ? " for user " : "", self->user ? self->user : "", why,
                   self->password ? "" : "; the site file's redis: gives no password");
    snprintf(self->auth_error, sizeof self->auth_error, "%s", why);
    if (self->ac)
        redisAsyncDisconnect(self->ac);
}

static void s_on_connected(const redisAsyncContext *ac, int status)
{
    rzloop_t *self = (rzloop_t *)ac->data;
    if (status != REDIS_OK) {
        //  hiredis frees the context after this callback.
        if (!self->warned)
            slog_warn("redis %s:%d unreachable (%s); state keys will be written when it returns",
                      self->host, self->port, ac->errstr);
        self->warned = true;
        self->ac = NULL;
        self->connected = false;
        s_schedule_retry(self);
        return;
    }
    self->warned = false;
    //  Nothing else is sent until Redis has accepted us: AUTH with a password,
    //  else a PING, so a Redis that wants a password says so (NOAUTH) instead
    //  of silently refusing every state write.
    self->authing = true;
    int rc;
    if (!self->password)
        rc = redisAsyncCommand(self->ac, s_on_auth, NULL, "PING");
    else if (self->user)
        rc = redisAsyncCommand(self->ac, s_on_auth, NULL, "AUTH %s %s", self->user, self->password);
    else
        rc = redisAsyncCommand(self->ac, s_on_auth, NULL, "AUTH %s", self->password);
    if (rc != REDIS_OK)
        redisAsyncDisconnect(self->ac);
}

static void s_on_disconnected(const redisAsyncContext *ac, int status)
{
    rzloop_t *self = (rzloop_t *)ac->data;
    if (!self)
        return;
    if (self->connected)
        slog_warn("redis %s:%d connection lost%s%s", self->host, self->port,
                  status == REDIS_OK ? "" : ": ", status == REDIS_OK ? "" : ac->errstr);
    self->ac = NULL;
    self->connected = false;
    self->authing = false;
    s_schedule_retry(self);
}

static void s_connect_to(rzloop_t *self, const char *addr);

//  Forget the lookup: done, or in flight. One glibc cannot cancel is left
//  running (its thread still writes into *lk, so *lk stays): destroying
//  while a name server does not answer must not wait for its timeouts.
static void s_lookup_free(rzloop_t *self)
{
    s_lookup_t *lk = self->lookup;
    if (!lk)
        return;
    self->lookup = NULL;
    if (self->lookup_timer >= 0) {
        zloop_timer_end(self->loop, self->lookup_timer);
        self->lookup_timer = -1;
    }
    if (gai_cancel(&lk->cb) == EAI_NOTCANCELED && gai_error(&lk->cb) == EAI_INPROGRESS) {
        slog_info("redis %s: the lookup of the name is still running; left to it", self->host);
        return;
    }
    if (gai_error(&lk->cb) == 0 && lk->cb.ar_result)
        freeaddrinfo(lk->cb.ar_result);
    free(lk);
    self->lookup_last = mclock_mono_ms();
}

static int s_lookup_poll(zloop_t *loop, int timer_id, void *arg)
{
    rzloop_t *self = (rzloop_t *)arg;
    s_lookup_t *lk = self->lookup;
    int rc = lk ? gai_error(&lk->cb) : EAI_SYSTEM;
    if (rc == EAI_INPROGRESS)
        return 0;
    self->naddrs = self->next_addr = 0;
    for (struct addrinfo *ai = rc == 0 ? lk->cb.ar_result : NULL; ai && self->naddrs < 4;
         ai = ai->ai_next) {
        char *addr = self->addrs[self->naddrs];
        if (ai->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, addr,
                      INET6_ADDRSTRLEN);
        else if (ai->ai_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, addr,
                      INET6_ADDRSTRLEN);
        else
            continue;
        size_t k = 0;
        while (k < self->naddrs && strcmp(self->addrs[k], addr) != 0)
            k++;
        if (k == self->naddrs) //  glibc lists an address once per socket type asked
            self->naddrs++;
    }
    s_lookup_free(self); //  ends this timer too
    if (!self->naddrs) {
        if (rc == 0)
            rc = EAI_NONAME;
        if (rc != self->lookup_rc)
            slog_warn("redis %s:%d: cannot resolve %s: %s; state keys will be written when it "
                      "resolves and answers",
                      self->host, self->port, self->host, gai_strerror(rc));
        self->lookup_rc = rc;
        self->warned = true;
        s_schedule_retry(self);
        return 0;
    }
    self->lookup_rc = 0;
    s_connect_to(self, self->addrs[self->next_addr++]);
    return 0;
}

//  Connect: an address at once, a name once glibc's thread has resolved it
//  (the loop never waits for a name server).
static void s_connect(rzloop_t *self)
{
    if (self->numeric) {
        s_connect_to(self, self->host);
        return;
    }
    if (self->lookup)
        return;
    if (self->next_addr < self->naddrs) {
        //  The name's next address; after the last, the name again.
        s_connect_to(self, self->addrs[self->next_addr++]);
        return;
    }
    s_lookup_t *lk = (s_lookup_t *)zmalloc(sizeof *lk);
    lk->hints.ai_family = AF_UNSPEC;
    lk->hints.ai_socktype = SOCK_STREAM;
    lk->hints.ai_flags = AI_NUMERICSERV;
    snprintf(lk->service, sizeof lk->service, "%d", self->port);
    lk->cb.ar_name = self->host;
    lk->cb.ar_service = lk->service;
    lk->cb.ar_request = &lk->hints;
    struct gaicb *list[1] = {&lk->cb};
    int rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    if (rc != 0) {
        if (rc != self->lookup_rc)
            slog_warn("redis %s:%d: cannot start resolving the name: %s", self->host, self->port,
                      gai_strerror(rc));
        self->lookup_rc = rc;
        free(lk);
        s_schedule_retry(self);
        return;
    }
    self->lookup = lk;
    self->lookup_timer = zloop_timer(self->loop, RZ_LOOKUP_POLL_MS, 0, s_lookup_poll, self);
}

static void s_connect_to(rzloop_t *self, const char *addr)
{
    redisAsyncContext *ac = redisAsyncConnect(addr, self->port);
    if (!ac || ac->err) {
        if (!self->warned)
            slog_warn("redis %s:%d: %s", self->host, self->port, ac ? ac->errstr : "out of memory");
        self->warned = true;
        if (ac)
            redisAsyncFree(ac);
        s_schedule_retry(self);
        return;
    }
    self->ac = ac;
    ac->data = self;
    ac->ev.data = self;
    ac->ev.addRead = s_add_read;
    ac->ev.delRead = s_del_read;
    ac->ev.addWrite = s_add_write;
    ac->ev.delWrite = s_del_write;
    ac->ev.cleanup = s_cleanup;
    redisAsyncSetConnectCallback(ac, s_on_connected);
    redisAsyncSetDisconnectCallback(ac, s_on_disconnected);
    //  The connect is in progress: its completion shows as writable.
    s_add_write(self);
}

rzloop_t *rzloop_new(zloop_t *loop, const char *host, int port, rzloop_connect_fn *on_connect,
                     void *arg)
{
    rzloop_t *self = (rzloop_t *)zmalloc(sizeof *self);
    self->loop = loop;
    self->host = strdup(host);
    self->port = port;
    self->fd = -1;
    self->retry_timer = -1;
    self->lookup_timer = -1;
    self->on_connect = on_connect;
    self->arg = arg;
    unsigned char buf[sizeof(struct in6_addr)];
    self->numeric = inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
    s_connect(self);
    return self;
}

void rzloop_destroy(rzloop_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rzloop_t *self = *self_p;
    if (self->retry_timer >= 0)
        zloop_timer_end(self->loop, self->retry_timer);
    s_lookup_free(self);
    //  glibc's lookup thread lingers a second after its last lookup; waiting
    //  for it keeps its memory out of a leak checker's report at exit.
    int64_t linger =
        self->lookup_last ? self->lookup_last + RZ_LOOKUP_LINGER_MS - mclock_mono_ms() : 0;
    if (linger > 0)
        zclock_sleep((int)linger);
    if (self->ac) {
        redisAsyncContext *ac = self->ac;
        ac->data = NULL; //  no disconnect callback into a freed self
        self->ac = NULL;
        redisAsyncFree(ac);
    }
    s_update_poller(self, 0);
    free(self->host);
    free(self->user);
    if (self->password) {
        explicit_bzero(self->password, strlen(self->password));
        free(self->password);
    }
    free(self);
    *self_p = NULL;
}

bool rzloop_connected(rzloop_t *self)
{
    return self->ac && self->connected;
}

static bool s_can_send(rzloop_t *self)
{
    if (!rzloop_connected(self) || sdslen(self->ac->c.obuf) > RZ_MAX_OBUF) {
        self->dropped++;
        return false;
    }
    return true;
}

int rzloop_command_argv(rzloop_t *self, int argc, const char **argv, const size_t *argvlen)
{
    if (!s_can_send(self))
        return -1;
    return redisAsyncCommandArgv(self->ac, NULL, NULL, argc, argv, argvlen) == REDIS_OK ? 0 : -1;
}

int rzloop_command(rzloop_t *self, const char *format, ...)
{
    if (!s_can_send(self))
        return -1;
    va_list ap;
    va_start(ap, format);
    int rc = redisvAsyncCommand(self->ac, NULL, NULL, format, ap);
    va_end(ap);
    return rc == REDIS_OK ? 0 : -1;
}

void rzloop_set_auth(rzloop_t *self, const char *user, const char *password)
{
    free(self->user);
    if (self->password) {
        explicit_bzero(self->password, strlen(self->password));
        free(self->password);
    }
    self->user = user && *user ? strdup(user) : NULL;
    self->password = password && *password ? strdup(password) : NULL;
}

uint64_t rzloop_auth_failures(rzloop_t *self)
{
    return self->auth_failures;
}

uint64_t rzloop_dropped(rzloop_t *self)
{
    return self->dropped;
}

void rzloop_flush(rzloop_t *self, int timeout_ms)
{
    int64_t end = zclock_mono() + timeout_ms;
    while (self->ac && self->connected && sdslen(self->ac->c.obuf) > 0 && zclock_mono() < end) {
        zmq_pollitem_t item = {NULL, self->ac->c.fd, ZMQ_POLLOUT, 0};
        if (zmq_poll(&item, 1, 50) > 0)
            redisAsyncHandleWrite(self->ac);
    }
}
