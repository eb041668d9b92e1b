/* gemm_step — the MLP step's five GEMMs (workload 8: 784-256-10, batch 256), each timed alone,
** in the layouts tensord and torch 1.13 both use (linear forward addmm(b, x, W^T) with the bias
** in C and beta = 1; backward dx = g W, dW = g^T x). `gemm_step [--threads T] [reps]` sets
** OpenBLAS's thread count (default: as loaded) and prints, per GEMM, the median wall and
** process CPU (all threads) microseconds per call over `reps` calls (after 20 untimed). Under callgrind it
** gives each call's instructions (run with reps = 1, then 2, and subtract). `make
** build/bench/gemm_step` builds it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

static double clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static float *filled(size_t n, unsigned seed)
{
    float *p = malloc(n * sizeof *p);
    if (p == NULL) {
        exit(1);
    }
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        p[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int arg = 1;
    if (argc > 2 && strcmp(argv[1], "--threads") == 0) {
        openblas_set_num_threads(atoi(argv[2]));
        arg = 3;
    }
    int reps = arg < argc ? atoi(argv[arg]) : 200;
    if (reps < 1 || reps > 100000) {
        fprintf(stderr, "usage: gemm_step [--threads T] [reps]\n");
        return 2;
    }
    enum { NB = 256, NI = 784, NH = 256, NO = 10 };
    float *x = filled((size_t)NB * NI, 1), *w1 = filled((size_t)NH * NI, 2),
          *w2 = filled(NO * NH, 3);
    float *h = filled((size_t)NB * NH, 4), *g2 = filled(NB * NO, 5),
          *g1 = filled((size_t)NB * NH, 6);
    float *c1 = filled((size_t)NB * NH, 7), *c2 = filled(NB * NO, 8),
          *dh = filled((size_t)NB * NH, 9);
    float *dw2 = filled(NO * NH, 10), *dw1 = filled((size_t)NH * NI, 11);
    double *wall = malloc((size_t)reps * sizeof *wall), *cpu = malloc((size_t)reps * sizeof *cpu);
    const char *names[5] = {"fwd1 x.W1^T+b (256x784x256)", "fwd2 h.W2^T+b (256x256x10)",
                            "dh = g2.W2 (256x10x256)", "dW2 = g2^T.h (10x256x256)",
                            "dW1 = g1^T.x (256x256x784)"};
    printf("openblas %s, core %s, %d threads\n", openblas_get_config(), openblas_get_corename(),
           openblas_get_num_threads());
    double total_wall = 0, total_cpu = 0;
    for (int g = 0; g < 5; g++) {
        for (int r = -20; r < reps; r++) {
            double w0 = clock_us(CLOCK_MONOTONIC), p0 = clock_us(CLOCK_PROCESS_CPUTIME_ID);
            switch (g) {
            case 0:
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, NB, NH, NI, 1, x, NI, w1, NI,
                            1, c1, NH);
                break;
            case 1:
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, NB, NO, NH, 1, h, NH, w2, NH,
                            1, c2, NO);
                break;
            case 2:
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, NB, NH, NO, 1, g2, NO, w2,
                            NH, 0, dh, NH);
                break;
            case 3:
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, NO, NH, NB, 1, g2, NO, h, NH,
                            0, dw2, NH);
                break;
            default:
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, NH, NI, NB, 1, g1, NH, x, NI,
                            0, dw1, NI);
                break;
            }
            if (r >= 0) {
                wall[r] = clock_us(CLOCK_MONOTONIC) - w0;
                cpu[r] = clock_us(CLOCK_PROCESS_CPUTIME_ID) - p0;
            }
        }
        qsort(wall, (size_t)reps, sizeof *wall, cmp_double);
        qsort(cpu, (size_t)reps, sizeof *cpu, cmp_double);
        printf("  %-30s wall %8.1f us  cpu %8.1f us (medians; min wall %.1f)\n", names[g],
               wall[reps / 2], cpu[reps / 2], wall[0]);
        total_wall += wall[reps / 2];
        total_cpu += cpu[reps / 2];
    }
    printf("  %-30s wall %8.1f us  cpu %8.1f us\n", "sum of medians", total_wall, total_cpu);
    return 0;
}
