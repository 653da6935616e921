/*  =========================================================================
    scadactl ping: one request to a process on its own socket, answered or not.

    The request is one a process answers without changing anything:
      I/O server  IoRequest STATUS on its control socket
      resolver    ResolverMsg RESOLVE of no names
      broker      ClientRequest EXISTS of no names
      alarm       AlarmRequest LIST of an area no alarm has
      devsim      "ping" on its control socket
    Any well-formed answer counts: even an ERROR proves the process is up and
    its event loop turns, which is what a health check asks.
    ========================================================================= */

#include "ping.h"

#include "ctlsec.h"

#include "mclock.h"
#include "scada.pb-c.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>

typedef enum { P_IOSERVER, P_RESOLVER, P_BROKER, P_ALARM, P_DEVSIM } s_kind_t;

static const char *s_kind_name[] = {"ioserver", "resolver", "broker", "alarm", "devsim"};

//  The request bytes for a kind; *len set. Caller frees.
static uint8_t *s_request(s_kind_t kind, size_t *len)
{
    uint8_t *buf = NULL;
    if (kind == P_IOSERVER) {
        Scada__IoRequest r = SCADA__IO_REQUEST__INIT;
        r.id = 1;
        r.kind = SCADA__IO_REQUEST__KIND__STATUS;
        *len = scada__io_request__get_packed_size(&r);
        buf = (uint8_t *)zmalloc(*len + 1);
        scada__io_request__pack(&r, buf);
    } else if (kind == P_RESOLVER) {
        Scada__ResolverMsg r = SCADA__RESOLVER_MSG__INIT;
        r.kind = SCADA__RESOLVER_MSG__KIND__RESOLVE;
        r.has_id = true;
        r.id = 1;
        r.name = (char *)"scadactl-ping";
        *len = scada__resolver_msg__get_packed_size(&r);
        buf = (uint8_t *)zmalloc(*len + 1);
        scada__resolver_msg__pack(&r, buf);
    } else if (kind == P_BROKER) {
        Scada__ClientRequest r = SCADA__CLIENT_REQUEST__INIT;
        r.kind = SCADA__CLIENT_REQUEST__KIND__EXISTS;
        r.has_id = true;
        r.id = 1;
        *len = scada__client_request__get_packed_size(&r);
        buf = (uint8_t *)zmalloc(*len + 1);
        scada__client_request__pack(&r, buf);
    } else if (kind == P_ALARM) {
        Scada__AlarmRequest r = SCADA__ALARM_REQUEST__INIT;
        r.id = 1;
        r.kind = SCADA__ALARM_REQUEST__KIND__LIST;
        r.area = (char *)"\x01ping"; //  no alarm has this area: the answer is empty
        *len = scada__alarm_request__get_packed_size(&r);
        buf = (uint8_t *)zmalloc(*len + 1);
        scada__alarm_request__pack(&r, buf);
    } else {
        *len = 4;
        buf = (uint8_t *)zmalloc(5);
        memcpy(buf, "ping", 4);
    }
    return buf;
}

//  Does the reply parse as the protocol's answer?
static bool s_answer_ok(s_kind_t kind, zframe_t *frame)
{
    const uint8_t *d = zframe_data(frame);
    size_t n = zframe_size(frame);
    switch (kind) {
    case P_IOSERVER: {
        Scada__IoReply *r = scada__io_reply__unpack(NULL, n, d);
        scada__io_reply__free_unpacked(r, NULL);
        return r != NULL;
    }
    case P_RESOLVER: {
        Scada__ResolverMsg *r = scada__resolver_msg__unpack(NULL, n, d);
        scada__resolver_msg__free_unpacked(r, NULL);
        return r != NULL;
    }
    case P_BROKER: {
        Scada__BrokerMsg *r = scada__broker_msg__unpack(NULL, n, d);
        bool ok = r && r->kind != SCADA__BROKER_MSG__KIND__HEARTBEAT;
        scada__broker_msg__free_unpacked(r, NULL);
        return ok;
    }
    case P_ALARM: {
        Scada__AlarmReply *r = scada__alarm_reply__unpack(NULL, n, d);
        scada__alarm_reply__free_unpacked(r, NULL);
        return r != NULL;
    }
    default:
        return n >= 2 && memcmp(d, "ok", 2) == 0;
    }
}

//  One ping; true when answered. *ms is the round trip, *why the failure.
static bool s_ping_one(s_kind_t kind, const char *peer, const char *endpoint, int timeout_ms,
                       int64_t *ms, char *why, size_t whylen)
{
    zsock_t *sock = zsock_new(kind == P_DEVSIM ? ZMQ_REQ : ZMQ_DEALER);
    if (!sock) {
        snprintf(why, whylen, "cannot create a socket");
        return false;
    }
    zsock_set_linger(sock, 0);
    zsock_set_sndtimeo(sock, timeout_ms);
    bool ok = false;
    int64_t start = mclock_mono_ms();
    if (ctlsec_client(sock, peer) != 0) {
        snprintf(why, whylen, "no key to reach %s with", peer);
        zsock_destroy(&sock);
        return false;
    }
    if (zsock_connect(sock, "%s", endpoint) < 0) {
        snprintf(why, whylen, "cannot connect to %s: %s", endpoint, zmq_strerror(errno));
        zsock_destroy(&sock);
        return false;
    }
    size_t len;
    uint8_t *req = s_request(kind, &len);
    zframe_t *frame = zframe_new(req, len);
    free(req);
    if (zframe_send(&frame, sock, 0) < 0) {
        zframe_destroy(&frame);
        snprintf(why, whylen, "no connection to %s within %d ms", endpoint, timeout_ms);
        zsock_destroy(&sock);
        return false;
    }
    snprintf(why, whylen, "no answer from %s within %d ms", endpoint, timeout_ms);
    zpoller_t *poller = zpoller_new(sock, NULL);
    for (;;) {
        int64_t left = start + timeout_ms - mclock_mono_ms();
        if (left <= 0 || !zpoller_wait(poller, (int)left))
            break;
        zmsg_t *msg = zmsg_recv(sock);
        if (!msg)
            break;
        //  The body is the last frame (a broker or alarm reply may have a
        //  leading empty delimiter; a REQ reply has none left).
        zframe_t *body = zmsg_last(msg);
        bool good = body && s_answer_ok(kind, body);
        zmsg_destroy(&msg);
        if (good) {
            ok = true;
            break;
        }
        //  An unsolicited frame (a broker heartbeat) or noise: keep waiting.
        snprintf(why, whylen, "%s answered with something that is not a %s reply", endpoint,
                 s_kind_name[kind]);
    }
    *ms = mclock_mono_ms() - start;
    zpoller_destroy(&poller);
    zsock_destroy(&sock);
    return ok;
}

int scadactl_ping(const site_t *site, const char *const *names, size_t nnames, int timeout_ms,
                  bool json)
{
    //  Resolve every name first: a typo is a usage error, not a dead process.
    s_kind_t *kinds = (s_kind_t *)zmalloc((nnames + 1) * sizeof *kinds);
    const char **eps = (const char **)zmalloc((nnames + 1) * sizeof *eps);
    for (size_t i = 0; i < nnames; i++) {
        const char *n = names[i];
        const site_ioserver_t *io = site_ioserver(site, n);
        const site_broker_t *b = NULL;
        for (size_t k = 0; k < site->nbrokers && !b; k++)
            if (streq(site->brokers[k].name, n))
                b = &site->brokers[k];
        if (!b && site->nbrokers == 0 && streq(site->default_broker.name, n))
            b = &site->default_broker;
        if (io) {
            kinds[i] = P_IOSERVER;
            eps[i] = io->control;
        } else if (b) {
            kinds[i] = P_BROKER;
            eps[i] = b->endpoint;
        } else if (streq(n, "resolver")) {
            kinds[i] = P_RESOLVER;
            eps[i] = site->resolver.endpoint;
        } else if (streq(n, "alarm")) {
            kinds[i] = P_ALARM;
            eps[i] = site->alarm.control;
        } else if (streq(n, "devsim")) {
            kinds[i] = P_DEVSIM;
            eps[i] = site->devsim_control;
        } else {
            fprintf(stderr,
                    "scadactl: ping: site %s has no process \"%s\" (give an I/O server or "
                    "broker name, resolver, alarm or devsim)\n",
                    site->site, n);
            free(kinds);
            free(eps);
            return 2;
        }
    }
    int rc = 0;
    if (json)
        printf("{");
    for (size_t i = 0; i < nnames; i++) {
        char why[256] = "";
        int64_t ms = 0;
        bool ok = s_ping_one(kinds[i], names[i], eps[i], timeout_ms, &ms, why, sizeof why);
        if (!ok)
            rc = 1;
        if (json)
            printf("%s\"%s\": {\"kind\": \"%s\", \"alive\": %s, \"ms\": %lld%s%s%s}", i ? ", " : "",
                   names[i], s_kind_name[kinds[i]], ok ? "true" : "false", (long long)ms,
                   ok ? "" : ", \"error\": \"", ok ? "" : why, ok ? "" : "\"");
        else if (ok)
            printf("%s (%s at %s): alive, answered in %lld ms\n", names[i], s_kind_name[kinds[i]],
                   eps[i], (long long)ms);
        else
            printf("%s (%s): NOT ANSWERING: %s\n", names[i], s_kind_name[kinds[i]], why);
    }
    if (json)
        printf("}\n");
    free(kinds);
    free(eps);
    return rc;
}
