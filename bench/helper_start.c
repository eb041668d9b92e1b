/* helper_start — how soon a second thread starts helping a busy one, and on which CPU (issue 19,
** fourth round: td_parallel_blocks' helpers). Each of `rounds` rounds (default 200, 2 ms apart):
** the caller hands a helper one block of spinning work (~`block_us`, default 500 us of this
** CPU), runs one block itself, and waits for the helper's. Modes:
**   new      the helper is a thread created for the round (the daemon before the fourth round)
**   parked   one thread started once, woken through a condition variable
**   steered  parked, and excluded from the caller's CPU while it is woken (it restores its
**            affinity once it runs), as td_parallel_blocks does now
** Prints, per mode, the helper's start latency (hand-over to its first instruction), how often
** it started on the caller's CPU, and the round's wall time against one block's (1x: the two
** blocks ran side by side; 2x: one after the other). `helper_start [rounds] [block_us]`;
** `make build/bench/helper_start` builds it. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static long iters;
static volatile double sink;

static void work(void)
{
    double x = 1.0;
    for (long i = 0; i < iters; i++) {
        x = x * 1.0000001 + 1e-9;
    }
    sink = x;
}

static double t_handed;              /* when the caller handed the block over */
static _Atomic double started_after; /* the helper's start, us after t_handed */
static _Atomic int helper_cpu;
static _Atomic int helper_done;

static void helper_block(void)
{
    atomic_store(&started_after, now_us() - t_handed);
    atomic_store(&helper_cpu, sched_getcpu());
    work();
    atomic_store(&helper_done, 1);
}

static void *fresh_helper(void *arg)
{
    (void)arg;
    helper_block();
    return NULL;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int go, steered;
static cpu_set_t allowed;
static _Atomic int parked_tid;

static void *parked_helper(void *arg)
{
    (void)arg;
    atomic_store(&parked_tid, (int)syscall(SYS_gettid));
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!go) {
            pthread_cond_wait(&wake, &mu);
        }
        go = 0;
        int unsteer = steered;
        steered = 0;
        pthread_mutex_unlock(&mu);
        if (unsteer) {
            sched_setaffinity(0, sizeof allowed, &allowed);
        }
        helper_block();
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    double block_us = argc > 2 ? atof(argv[2]) : 500;
    if (rounds < 10 || rounds > 100000 || block_us <= 0) {
        fprintf(stderr, "usage: helper_start [rounds >= 10] [block_us]\n");
        return 2;
    }
    /* calibrate: the fastest of a few runs of 2M iterations */
    iters = 2000000;
    double best = 1e30;
    for (int i = 0; i < 5; i++) {
        double t0 = now_us();
        work();
        double t = now_us() - t0;
        best = t < best ? t : best;
    }
    iters = (long)((double)iters * block_us / best);
    sched_getaffinity(0, sizeof allowed, &allowed);
    pthread_t parked;
    if (pthread_create(&parked, NULL, parked_helper, NULL) != 0) {
        return 1;
    }
    double *wall = malloc(sizeof(double) * (size_t)rounds);
    double *start = malloc(sizeof(double) * (size_t)rounds);
    if (wall == NULL || start == NULL) {
        return 1;
    }
    const char *names[] = {"new", "parked", "steered"};
    for (int mode = 0; mode < 3; mode++) {
        int same = 0;
        double one = 1e30;
        for (int r = 0; r < rounds; r++) {
            usleep(2000);
            atomic_store(&helper_done, 0);
            atomic_store(&started_after, -1.0);
            int cpu = sched_getcpu();
            t_handed = now_us();
            if (mode == 0) {
                pthread_attr_t attr;
                pthread_t tid;
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                if (pthread_create(&tid, &attr, fresh_helper, NULL) != 0) {
                    return 1;
                }
                pthread_attr_destroy(&attr);
            } else {
                pthread_mutex_lock(&mu);
                if (mode == 2) {
                    cpu_set_t others = allowed;
                    CPU_CLR(cpu, &others);
                    if (CPU_COUNT(&others) > 0 &&
                        sched_setaffinity(atomic_load(&parked_tid), sizeof others, &others) == 0) {
                        steered = 1;
                    }
                }
                go = 1;
                pthread_cond_signal(&wake);
                pthread_mutex_unlock(&mu);
            }
            double t0 = now_us();
            work();
            double mine = now_us() - t0;
            one = mine < one ? mine : one;
            while (!atomic_load(&helper_done)) {
            }
            wall[r] = now_us() - t_handed;
            start[r] = atomic_load(&started_after);
            same += atomic_load(&helper_cpu) == cpu;
        }
        qsort(wall, (size_t)rounds, sizeof(double), cmp_double);
        qsort(start, (size_t)rounds, sizeof(double), cmp_double);
        int p10 = rounds / 10, p50 = rounds / 2, p90 = rounds * 9 / 10;
        printf("%-8s helper starts after p10 %6.0f p50 %6.0f p90 %6.0f us; on the caller's CPU "
               "%d/%d; two blocks' wall p50 %.2fx one block (p10 %.2fx, p90 %.2fx; block %.0f "
               "us)\n",
               names[mode], start[p10], start[p50], start[p90], same, rounds, wall[p50] / one,
               wall[p10] / one, wall[p90] / one, one);
    }
    free(wall);
    free(start);
    return 0;
}
