/*  scada-resolver: svcmain (parse arguments and the site file, run the engine
    actor, wait for a signal) with the resolver's engine. */
#include "resolver.h"
#include "svcmain.h"

static const char *s_default_name(const site_t *site)
{
    return "resolver";
}

static void *s_create(site_t *site, const char *name)
{
    return resolver_new(site, name);
}

static void s_destroy(void *engine)
{
    resolver_t *self = (resolver_t *)engine;
    resolver_destroy(&self);
}

int main(int argc, char **argv)
{
    static const svcmain_t svc = {
        .binary = "scada-resolver",
        .usage = "usage: scada-resolver --config SITE.yaml [--name NAME] [--log-level LEVEL]\n"
                 "\n"
                 "Learns the offers of the site's I/O servers, keeps the best offer of every\n"
                 "device, tells the brokers when it changes and resolves tag names. Binds\n"
                 "resolver.endpoint of the site file (default tcp://127.0.0.1:5500).\n"
                 "\n"
                 "  --config FILE      the site file (required)\n"
                 "  --name NAME        a name for its logs (default \"resolver\")\n"
                 "  --log-level LEVEL  debug, info (default), warn, error\n"
                 "  --check            check the site file (and the name), say so and exit\n"
                 "  --help             this text\n",
        .default_name = s_default_name,
        .create = s_create,
        .destroy = s_destroy,
        .actor = resolver_actor};
    return svcmain(argc, argv, &svc);
}
