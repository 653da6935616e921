/*  scada-broker: svcmain (parse arguments and the site file, run the engine
    actor, wait for a signal) with the broker's engine. */
#include "broker.h"
#include "svcmain.h"

static const char *s_default_name(const site_t *site)
{
    return site_broker(site, NULL)->name;
}

static void *s_create(site_t *site, const char *name)
{
    return broker_new(site, name);
}

static void s_destroy(void *engine)
{
    broker_t *self = (broker_t *)engine;
    broker_destroy(&self);
}

int main(int argc, char **argv)
{
    static const svcmain_t svc = {
        .binary = "scada-broker",
        .usage = "usage: scada-broker --config SITE.yaml [--name NAME] [--log-level "
                 "LEVEL]\n"
                 "\n"
                 "Serves clients pages of tags: subscriptions, first values, coalesced\n"
                 "updates and writes, routed to each tag's best offer (see README).\n"
                 "\n"
                 "  --config FILE      the site file (required)\n"
                 "  --name NAME        which broker of the site this is (default: the "
                 "first\n"
                 "                     under brokers:, or b1 on tcp://127.0.0.1:5700)\n"
                 "  --log-level LEVEL  debug, info (default), warn, error\n"
                 "  --check            check the site file (and the name), say so and exit\n"
                 "  --help             this text\n",
        .default_name = s_default_name,
        .create = s_create,
        .destroy = s_destroy,
        .actor = broker_actor};
    return svcmain(argc, argv, &svc);
}
