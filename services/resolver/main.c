/*  scada-resolver: parse arguments and the site file, start the resolver
    actor, wait for a signal. Exit codes: 0 ok, 1 runtime failure, 2 bad
    usage or bad site file. */
#include "resolver.h"
#include "slog.h"

#include <czmq.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static void s_usage(FILE *out)
{
    fprintf(out, "usage: scada-resolver --config SITE.yaml [--name NAME] [--log-level LEVEL]\n"
                 "\n"
                 "Learns the offers of the site's I/O servers, keeps the best offer of every\n"
                 "device, tells the brokers when it changes and resolves tag names. Binds\n"
                 "resolver.endpoint of the site file (default tcp://127.0.0.1:5500).\n"
                 "\n"
                 "  --config FILE      the site file (required)\n"
                 "  --name NAME        a name for its logs (default \"resolver\")\n"
                 "  --log-level LEVEL  debug, info (default), warn, error\n"
                 "  --help             this text\n");
}

int main(int argc, char **argv)
{
    static struct option options[] = {{"config", required_argument, NULL, 'c'},
                                      {"name", required_argument, NULL, 'n'},
                                      {"log-level", required_argument, NULL, 'l'},
                                      {"help", no_argument, NULL, 'h'},
                                      {NULL, 0, NULL, 0}};
    const char *config = NULL, *name = "resolver";
    int level = SLOG_INFO, opt;
    while ((opt = getopt_long(argc, argv, "c:n:l:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 'n':
            name = optarg;
            if (!name[0]) {
                fprintf(stderr, "scada-resolver: --name: empty name\n");
                return 2;
            }
            break;
        case 'l':
            level = slog_parse_level(optarg);
            if (level < 0) {
                fprintf(stderr, "scada-resolver: --log-level: unknown level \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "scada-resolver: unexpected argument \"%s\"\n", argv[optind]);
        s_usage(stderr);
        return 2;
    }
    if (!config) {
        fprintf(stderr, "scada-resolver: --config is required\n");
        s_usage(stderr);
        return 2;
    }
    slog_init(name, (slog_level_t)level);
    char err[1024];
    site_t *site = site_load(config, err, sizeof err);
    if (!site) {
        fprintf(stderr, "scada-resolver: %s\n", err);
        return 2;
    }
    zsys_init();
    zsys_set_linger(0);
    resolver_t *engine = resolver_new(site, name);
    if (!engine) {
        site_destroy(&site);
        return 1;
    }
    zactor_t *actor = zactor_new(resolver_actor, engine);
    //  czmq's handler sets zsys_interrupted on SIGINT and SIGTERM.
    while (!zsys_interrupted)
        zclock_sleep(100);
    zactor_destroy(&actor);
    resolver_destroy(&engine);
    site_destroy(&site);
    slog_info("stopped");
    return 0;
}
