/*  rmsg: the resolver's wire messages. See rmsg.h. */
#include "rmsg.h"

#include <stdio.h>
#include <string.h>

const char *rmsg_kind_name(int kind)
{
    switch (kind) {
    case SCADA__RESOLVER_MSG__KIND__REGISTER:
        return "REGISTER";
    case SCADA__RESOLVER_MSG__KIND__HEARTBEAT:
        return "HEARTBEAT";
    case SCADA__RESOLVER_MSG__KIND__UNIT_STATE:
        return "UNIT_STATE";
    case SCADA__RESOLVER_MSG__KIND__REREGISTER:
        return "REREGISTER";
    case SCADA__RESOLVER_MSG__KIND__HELLO:
        return "HELLO";
    case SCADA__RESOLVER_MSG__KIND__RESOLVE:
        return "RESOLVE";
    case SCADA__RESOLVER_MSG__KIND__RESOLVED:
        return "RESOLVED";
    case SCADA__RESOLVER_MSG__KIND__BEST_OFFERS:
        return "BEST_OFFERS";
    case SCADA__RESOLVER_MSG__KIND__ERROR:
        return "ERROR";
    default:
        return "unknown";
    }
}

//  A name field: present, not empty, not too long.
static bool s_name_ok(const char *s)
{
    return s && s[0] && strnlen(s, RMSG_NAME_MAX + 1) <= RMSG_NAME_MAX;
}

//  The offers all name a device.
static bool s_offers_ok(const Scada__ResolverMsg *m)
{
    for (size_t i = 0; i < m->n_offers; i++)
        if (!s_name_ok(m->offers[i]->device))
            return false;
    return true;
}

//  Whether `m` is a message the resolver serves; if not, the reason in why.
static bool s_check(const Scada__ResolverMsg *m, char *why, size_t whylen)
{
    const char *kind = rmsg_kind_name((int)m->kind);
    bool peer = s_name_ok(m->name) && m->has_incarnation;
    const char *bad = NULL;
    switch (m->kind) {
    case SCADA__RESOLVER_MSG__KIND__REGISTER:
        if (!peer)
            bad = "needs name and incarnation";
        else if (!m->publish || !m->publish[0] || !m->control || !m->control[0])
            bad = "needs publish and control endpoints";
        else if (!s_offers_ok(m))
            bad = "has an offer without a valid device name";
        break;
    case SCADA__RESOLVER_MSG__KIND__UNIT_STATE:
        if (!peer)
            bad = "needs name and incarnation";
        else if (!s_offers_ok(m))
            bad = "has an offer without a valid device name";
        break;
    case SCADA__RESOLVER_MSG__KIND__HEARTBEAT:
    case SCADA__RESOLVER_MSG__KIND__HELLO:
        if (!peer)
            bad = "needs name and incarnation";
        break;
    case SCADA__RESOLVER_MSG__KIND__RESOLVE:
        if (!m->has_id)
            bad = "needs an id";
        break;
    case SCADA__RESOLVER_MSG__KIND__ERROR:
        break;
    case SCADA__RESOLVER_MSG__KIND__REREGISTER:
    case SCADA__RESOLVER_MSG__KIND__RESOLVED:
    case SCADA__RESOLVER_MSG__KIND__BEST_OFFERS:
        bad = "is sent by the resolver, not to it";
        break;
    default:
        snprintf(why, whylen, "unknown kind %d", (int)m->kind);
        return false;
    }
    if (bad)
        snprintf(why, whylen, "%s %s", kind, bad);
    return bad == NULL;
}

Scada__ResolverMsg *rmsg_decode(const void *data, size_t size, int *kind, char *why, size_t whylen)
{
    *kind = -1;
    Scada__ResolverMsg *m = scada__resolver_msg__unpack(NULL, size, (const uint8_t *)data);
    if (!m) {
        snprintf(why, whylen, "not a scada.ResolverMsg (%zu bytes)", size);
        return NULL;
    }
    *kind = (int)m->kind;
    if (!s_check(m, why, whylen)) {
        scada__resolver_msg__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

void rmsg_free(Scada__ResolverMsg **msg_p)
{
    if (msg_p && *msg_p) {
        scada__resolver_msg__free_unpacked(*msg_p, NULL);
        *msg_p = NULL;
    }
}

int rmsg_send(zsock_t *router, zframe_t *rid, const Scada__ResolverMsg *msg)
{
    void *handle = zsock_resolve(router);
    size_t len = scada__resolver_msg__get_packed_size(msg);
    zmq_msg_t body;
    if (zmq_msg_init_size(&body, len) != 0)
        return -1;
    scada__resolver_msg__pack(msg, (uint8_t *)zmq_msg_data(&body));
    //  A ROUTER drops, rather than blocks on, a message for a peer whose
    //  queue is full or who is gone.
    if (zmq_send(handle, zframe_data(rid), zframe_size(rid), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&body);
        return -1;
    }
    if (zmq_msg_send(&body, handle, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&body);
        return -1;
    }
    return 0;
}

int rmsg_send_error(zsock_t *router, zframe_t *rid, const char *text)
{
    Scada__ResolverMsg m = SCADA__RESOLVER_MSG__INIT;
    m.kind = SCADA__RESOLVER_MSG__KIND__ERROR;
    m.error = (char *)text;
    return rmsg_send(router, rid, &m);
}
