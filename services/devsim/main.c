/*  scada-devsim: the simulated plant.

    Parses the command line, loads the site, raises the descriptor limit and
    runs the server (devsim) until SIGINT or SIGTERM.
    Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad site file.
*/
#include "devsim.h"
#include "mbframe.h"
#include "mbserve.h"
#include "rtuframe.h"
#include "site.h"
#include "slog.h"
#include "tagsim.h"
#include "timerq.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define S_DEFAULT_CONTROL "tcp://127.0.0.1:5590"
#define S_MAX_SERIAL      256 //  --serial options

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: scada-devsim --config SITE.yaml [--only NAME,NAME...] [--control ENDPOINT]\n"
            "                    [--serial CHANNEL=PATH]... [--seed N]\n"
            "                    [--log-level debug|info|warn|error] [--help]\n"
            "\n"
            "Serves the site's Modbus TCP devices whose address is on this machine\n"
            "(network devices on their own host:port, tcp gateway channels on the\n"
            "channel's host:port by unit id) and its serial channels in Modbus RTU\n"
            "on their serial_port (a tty or one end of a pty pair; by unit address),\n"
            "with values moved by each tag's sim.\n"
            "\n"
            "  --config FILE     the site file (required)\n"
            "  --only LIST       serve only these devices (comma-separated names)\n"
            "  --control EP      ZeroMQ endpoint of the control socket\n"
            "                    (default: the site's devsim_control, else %s)\n"
            "  --serial CH=PATH  open PATH for serial channel CH instead of its serial_port\n"
            "                    (the other end of the I/O server's pty pair); repeatable\n"
            "  --seed N          random seed for noise sims and garbage (default 1)\n"
            "  --log-level L     debug, info (default), warn or error\n"
            "  --selftest        run the built-in unit tests and exit\n"
            "  --help            this text\n"
            "\n"
            "Control commands (one text frame each): ping, silent DEV, refuse DEV,\n"
            "normal DEV, delay DEV MS, exception DEV CODE, garbage DEV,\n"
            "flap DEV UP_MS DOWN_MS [delay MS], disconnect DEV, set TAG VALUE, get TAG,\n"
            "stats [DEV], help. The site's devsim: {start: [...]} commands are applied\n"
            "at start. See docs/devsim.md.\n"
            "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad site file.\n",
            S_DEFAULT_CONTROL);
}

//  Serve thousands of sockets: take the whole hard limit.
static void s_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            slog_warn("cannot raise the descriptor limit: %s", strerror(errno));
    }
    slog_debug("descriptor limit %llu", (unsigned long long)rl.rlim_cur);
}

static int s_selftest(void)
{
    int failed = tagsim_test(true) + timerq_test(true) + mbframe_test(true) + rtuframe_test(true) +
                 mbserve_test(true);
    fprintf(stderr, "selftest: %s\n", failed ? "FAILED" : "OK");
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"config", required_argument, NULL, 'c'},
                                            {"only", required_argument, NULL, 'o'},
                                            {"control", required_argument, NULL, 'C'},
                                            {"serial", required_argument, NULL, 'S'},
                                            {"seed", required_argument, NULL, 's'},
                                            {"log-level", required_argument, NULL, 'l'},
                                            {"selftest", no_argument, NULL, 'T'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *only = NULL, *control = NULL;
    const char *serial[S_MAX_SERIAL]; //  --serial values, pointing into argv
    size_t nserial = 0;
    unsigned long long seed = 1;
    int level = SLOG_INFO;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        char *end = NULL;
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'o':
            only = optarg;
            break;
        case 'C':
            control = optarg;
            break;
        case 'S':
            if (nserial == S_MAX_SERIAL) {
                fprintf(stderr, "scada-devsim: --serial: more than %d\n", S_MAX_SERIAL);
                return 2;
            }
            serial[nserial++] = optarg;
            break;
        case 's':
            errno = 0;
            seed = strtoull(optarg, &end, 0);
            if (errno || !*optarg || *end || *optarg == '-') {
                fprintf(stderr, "scada-devsim: --seed: not a number: %s\n", optarg);
                return 2;
            }
            break;
        case 'l':
            level = slog_parse_level(optarg);
            if (level < 0) {
                fprintf(stderr,
                        "scada-devsim: --log-level: expected debug, info, warn or "
                        "error, not %s\n",
                        optarg);
                return 2;
            }
            break;
        case 'T':
            return s_selftest();
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            //  getopt_long leaves the offending word just before optind.
            fprintf(stderr, "scada-devsim: unknown option or missing argument: %s\n",
                    argv[optind - 1]);
            s_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "scada-devsim: unexpected argument: %s\n", argv[optind]);
        s_usage(stderr);
        return 2;
    }
    if (!config_path) {
        fprintf(stderr, "scada-devsim: --config is required\n");
        s_usage(stderr);
        return 2;
    }
    slog_init("devsim", (slog_level_t)level);

    char err[1024] = "";
    site_t *site = site_load(config_path, err, sizeof err);
    if (!site) {
        fprintf(stderr, "scada-devsim: %s\n", err[0] ? err : config_path);
        return 2;
    }
    s_raise_fd_limit();
    devsim_config_t config = {
        .control = control                ? control
                   : site->devsim_control ? site->devsim_control
                                          : S_DEFAULT_CONTROL,
        .only = only,
        .seed = seed,
        .serial = serial,
        .nserial = nserial,
    };
    devsim_error_t error = DEVSIM_ERUNTIME;
    devsim_t *devsim = devsim_new(site, &config, err, sizeof err, &error);
    if (!devsim) {
        slog_error("%s", err);
        site_destroy(&site);
        return error == DEVSIM_EBADCONFIG ? 2 : 1;
    }
    int rc = devsim_run(devsim);
    devsim_destroy(&devsim);
    site_destroy(&site);
    slog_info("stopped");
    return rc == 0 ? 0 : 1;
}
