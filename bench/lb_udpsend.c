/* Small-packet UDP sender for bench/lb_bench.py: sendmmsg() bursts from several sockets (one flow each).
 *
 *   lb_udpsend DST_IP DST_PORT PAYLOAD_BYTES SECONDS FLOWS
 *
 * Each flow is its own socket (its own source port), so a 5-tuple load balancer spreads them like real
 * clients. Prints the number of datagrams the kernel accepted. iperf3 cannot be used through a 5-tuple
 * LB (its control and data connections land on different targets), see spec/bench-notes.md.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_FLOWS 256

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s DST_IP DST_PORT PAYLOAD_BYTES SECONDS FLOWS\n", argv[0]);
        return 2;
    }
    const char *dst = argv[1];
    int port = atoi(argv[2]), size = atoi(argv[3]), flows = atoi(argv[5]);
    double seconds = atof(argv[4]);
    if (flows < 1 || flows > MAX_FLOWS || size < 1 || size > 1400) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    struct sockaddr_storage addr;
    socklen_t alen;
    memset(&addr, 0, sizeof addr);
    int family = strchr(dst, ':') ? AF_INET6 : AF_INET;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&addr;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, dst, &a->sin_addr);
        alen = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, dst, &a->sin6_addr);
        alen = sizeof *a;
    }
    int socks[MAX_FLOWS];
    for (int i = 0; i < flows; i++) {
        socks[i] = socket(family, SOCK_DGRAM, 0);
        if (socks[i] < 0 || connect(socks[i], (struct sockaddr *)&addr, alen) < 0) {
            perror("socket/connect");
            return 1;
        }
    }
    char payload[1400];
    memset(payload, 'x', sizeof payload);
    struct iovec iov = {.iov_base = payload, .iov_len = (size_t)size};
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    long long sent = 0;
    double end = now() + seconds;
    int f = 0;
    while (now() < end) {
        int n = sendmmsg(socks[f], msgs, BATCH, 0);
        if (n > 0)
            sent += n;
        f = (f + 1) % flows;
    }
    printf("%lld\n", sent);
    return 0;
}
