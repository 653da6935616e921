/*  scada-alarm: svcmain (parse arguments and the site file, run the engine
    actor, wait for a signal) with the alarm service's engine. */
#include "alarm.h"
#include "svcmain.h"

static const char *s_default_name(const site_t *site)
{
    return "alarm";
}

static void *s_create(site_t *site, const char *name)
{
    return alarmsvc_new(site, name);
}

static void s_destroy(void *engine)
{
    alarmsvc_t *self = (alarmsvc_t *)engine;
    alarmsvc_destroy(&self);
}

int main(int argc, char **argv)
{
    static const svcmain_t svc = {
        .binary = "scada-alarm",
        .usage = "usage: scada-alarm --config SITE.yaml [--name NAME] [--log-level LEVEL]\n"
                 "\n"
                 "The alarm service: communication alarms from the I/O servers, limit and\n"
                 "state alarms on tags (subscribed through a broker), ISA-18.2 lifecycle,\n"
                 "a journal that survives restarts (see docs/alarms.md).\n"
                 "\n"
                 "  --config FILE      the site file (required)\n"
                 "  --name NAME        a name for logs (default alarm)\n"
                 "  --log-level LEVEL  debug, info (default), warn, error\n"
                 "  --check            check the site file (and the name), say so and exit\n"
                 "  --help             this text\n",
        .default_name = s_default_name,
        .create = s_create,
        .destroy = s_destroy,
        .actor = alarmsvc_actor};
    return svcmain(argc, argv, &svc);
}
