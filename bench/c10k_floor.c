/*
 * The floor of the c10k-delay scenario on this machine: the least a client
 * can do to get N requests to a server, with no event loop, no parsing and
 * no statistics. It opens N non-blocking sockets and connects each, waits
 * until all are connected, writes one GET to each, then reads until every
 * connection has sent a response head and body (or closed). It prints how
 * long each phase took; the last line is the wall time to the last
 * response, which no HTTP client can beat here by much.
 *
 *   cc -O2 -o /tmp/c10k_floor bench/c10k_floor.c
 *   taskset -c 0 /tmp/c10k_floor 127.0.0.1 PORT 10000 /bar
 *
 * Only for loopback benchmarks: it trusts the server (any byte after the
 * head's blank line counts as the body, one read is taken as complete).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A connect finished: wait for the socket's response next. */
static void now_readable(int ep, int *fds, int i) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_MOD, fds[i], &ev);
}

/* A response came: take it (one read is enough here) and stop watching. */
static void read_and_forget(int ep, int *fds, int i) {
    static char buf[4096];
    (void)read(fds[i], buf, sizeof buf);
    epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
}

/* Calls `on_ready` once for each of the `n` sockets as epoll reports it;
 * -1 (after saying so) if 10 s pass with none. */
static int each_ready(int ep, int *fds, int n, const char *what,
                      void (*on_ready)(int ep, int *fds, int i)) {
    struct epoll_event evs[1024];
    for (int done = 0; done < n;) {
        int k = epoll_wait(ep, evs, 1024, 10000);
        if (k <= 0) {
            fprintf(stderr, "%s timed out: %d of %d\n", what, done, n);
            return -1;
        }
        for (int j = 0; j < k; j++) {
            on_ready(ep, fds, evs[j].data.u32);
            done++;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT N PATH\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[3]);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (n <= 0 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "bad host or count\n");
        return 2;
    }
    char req[512];
    int len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", argv[4], argv[1]);
    int *fds = calloc(n, sizeof *fds);
    int ep = epoll_create1(0);
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fds[i] < 0) {
            perror("socket (raise the open-file limit?)");
            return 1;
        }
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
            perror("connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    double t_connect_calls = now_ms();
    if (each_ready(ep, fds, n, "connects", now_readable) < 0)
        return 1;
    double t_connected = now_ms();
    for (int i = 0; i < n; i++) {
        if (write(fds[i], req, len) != len) {
            perror("write");
            return 1;
        }
    }
    double t_written = now_ms();
    if (each_ready(ep, fds, n, "responses", read_and_forget) < 0)
        return 1;
    double t_done = now_ms();
    printf("connect calls: %.1f ms\n", t_connect_calls - t0);
    printf("all connected: %.1f ms\n", t_connected - t0);
    printf("all written:   %.1f ms\n", t_written - t0);
    printf("last response: %.1f ms\n", t_done - t0);
    return 0;
}
