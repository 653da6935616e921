/*  mbloop: the anchor of the poll-throughput benchmark.

    The plainest possible Modbus TCP poller: one blocking libmodbus context per
    device, and a loop that reads COUNT registers from every device in turn.
    No event loop, no tags, no publishing, no Redis: only the Modbus round
    trips. bench/throughput.py runs it against the same scada-devsim plant as
    the I/O server and compares the CPU each spends per transaction.

        mbloop --host H --port P --devices N --seconds S [--regs R] [--paced MS]

    Devices are host:P .. host:P+N-1. Without --paced it loops flat out; with
    --paced MS it makes one full pass over the devices, then sleeps until the
    next MS boundary (so N devices at --paced 1000 is N transactions/s, the
    I/O server's load at a 1 s scan).

    libmodbus 3.1.6 waits for replies with select(), which breaks on
    descriptors >= FD_SETSIZE (1024): mbloop checks every socket it opened
    and refuses to run if one is that high.

    Prints a few lines for people, then one line
        RESULT {"transactions":...,"values":...,"errors":...,"wall_s":...,"cpu_s":...,...}
    for bench/throughput.py. Exit 0, or 2 on bad usage, 3 on a setup failure.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <modbus.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <time.h>

static double s_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double s_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void s_sleep_until(double t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: mbloop --host H --port P --devices N --seconds S [--regs R] [--paced MS]\n");
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"host", required_argument, NULL, 'h'},
                                            {"port", required_argument, NULL, 'p'},
                                            {"devices", required_argument, NULL, 'n'},
                                            {"seconds", required_argument, NULL, 's'},
                                            {"regs", required_argument, NULL, 'r'},
                                            {"paced", required_argument, NULL, 'P'},
                                            {"help", no_argument, NULL, 'H'},
                                            {NULL, 0, NULL, 0}};
    const char *host = "127.0.0.1";
    long port = 0, ndev = 0, regs = 100, paced_ms = 0;
    double seconds = 30;
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'h':
            host = optarg;
            break;
        case 'p':
            port = strtol(optarg, NULL, 10);
            break;
        case 'n':
            ndev = strtol(optarg, NULL, 10);
            break;
        case 's':
            seconds = strtod(optarg, NULL);
            break;
        case 'r':
            regs = strtol(optarg, NULL, 10);
            break;
        case 'P':
            paced_ms = strtol(optarg, NULL, 10);
            break;
        case 'H':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    if (port < 1 || port > 65535 || ndev < 1 || port + ndev - 1 > 65535 || seconds <= 0 ||
        regs < 1 || regs > MODBUS_MAX_READ_REGISTERS || paced_ms < 0) {
        s_usage(stderr);
        return 2;
    }

    modbus_t **ctx = calloc((size_t)ndev, sizeof *ctx);
    uint16_t *buf = calloc((size_t)regs, sizeof *buf);
    if (!ctx || !buf) {
        fprintf(stderr, "mbloop: out of memory\n");
        return 3;
    }
    int max_fd = -1;
    for (long i = 0; i < ndev; i++) {
        ctx[i] = modbus_new_tcp(host, (int)(port + i));
        if (!ctx[i] || modbus_connect(ctx[i]) != 0) {
            fprintf(stderr, "mbloop: cannot connect to %s:%ld: %s\n", host, port + i,
                    modbus_strerror(errno));
            return 3;
        }
        modbus_set_response_timeout(ctx[i], 2, 0);
        modbus_set_error_recovery(ctx[i], MODBUS_ERROR_RECOVERY_PROTOCOL);
        int fd = modbus_get_socket(ctx[i]);
        if (fd > max_fd)
            max_fd = fd;
        if (fd >= FD_SETSIZE) {
            fprintf(stderr,
                    "mbloop: device %ld got descriptor %d >= FD_SETSIZE %d: libmodbus 3.1.6 "
                    "waits with select() and would overflow its fd_set; refusing to run\n",
                    i, fd, FD_SETSIZE);
            return 3;
        }
    }
    printf("mbloop: %ld libmodbus TCP contexts to %s:%ld..%ld, highest descriptor %d < "
           "FD_SETSIZE %d (libmodbus's select() is safe)\n",
           ndev, host, port, port + ndev - 1, max_fd, FD_SETSIZE);
    if (paced_ms)
        printf("mbloop: paced: one pass over all devices, then sleep to the next %ld ms "
               "boundary\n",
               paced_ms);
    else
        printf("mbloop: flat out: round robin, no pacing\n");
    fflush(stdout);

    unsigned long long transactions = 0, errors = 0, passes = 0, late_passes = 0;
    double cpu0 = s_cpu(), t0 = s_mono(), end = t0 + seconds, next_pass = t0;
    double now = t0;
    while (now < end) {
        for (long i = 0; i < ndev; i++) {
            int rc = modbus_read_registers(ctx[i], 0, (int)regs, buf);
            if (rc == regs)
                transactions++;
            else {
                errors++;
                if (errors <= 5)
                    fprintf(stderr, "mbloop: device %ld: %s\n", i, modbus_strerror(errno));
            }
            if (!paced_ms && (i & 63) == 63 && s_mono() >= end)
                break;
        }
        passes++;
        now = s_mono();
        if (paced_ms) {
            next_pass += paced_ms / 1000.0;
            if (now > next_pass) {
                late_passes++;
                next_pass = now;
            } else {
                //  The last pass sleeps to the end, so the rate is over the whole time.
                s_sleep_until(next_pass < end ? next_pass : end);
                now = s_mono();
            }
        }
    }
    double wall = s_mono() - t0, cpu = s_cpu() - cpu0;
    for (long i = 0; i < ndev; i++) {
        modbus_close(ctx[i]);
        modbus_free(ctx[i]);
    }
    free(ctx);
    free(buf);
    double tps = transactions / wall;
    printf("mbloop: %llu transactions in %.1f s: %.0f transactions/s, %.0f values/s, %llu "
           "errors\n",
           transactions, wall, tps, tps * (double)regs, errors);
    printf("mbloop: own CPU %.2f s = %.1f%% of one core, %.2f us CPU per transaction\n", cpu,
           100.0 * cpu / wall, transactions ? 1e6 * cpu / (double)transactions : 0.0);
    if (paced_ms)
        printf("mbloop: %llu passes, %llu of them late (longer than %ld ms)\n", passes,
               late_passes, paced_ms);
    printf("RESULT {\"transactions\":%llu,\"values\":%llu,\"errors\":%llu,\"wall_s\":%.3f,"
           "\"cpu_s\":%.3f,\"passes\":%llu,\"late_passes\":%llu,\"max_fd\":%d,"
           "\"fd_setsize\":%d,\"paced_ms\":%ld}\n",
           transactions, transactions * (unsigned long long)regs, errors, wall, cpu, passes,
           late_passes, max_fd, FD_SETSIZE, paced_ms);
    return 0;
}
