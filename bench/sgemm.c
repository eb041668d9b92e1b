/* sgemm — the direct-BLAS anchor of `make bench` (workload 5): `sgemm n K` times K calls of
** cblas_sgemm on n x n float32 matrices (after one untimed call, except at n >= 4096) in the same OpenBLAS, thread
** count and environment as the daemon, and prints GFLOP/s and openblas_get_corename().
** `sgemm --threads T n K` sets OpenBLAS's thread count first, as tensord --threads does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int arg = 1;
    if (argc > 2 && strcmp(argv[1], "--threads") == 0) {
        openblas_set_num_threads(atoi(argv[2]));
        arg = 3;
    }
    if (argc - arg != 2) {
        fprintf(stderr, "usage: sgemm [--threads T] n K\n");
        return 2;
    }
    int n = atoi(argv[arg]), k = atoi(argv[arg + 1]);
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    if (a == NULL || b == NULL || c == NULL) {
        return 1;
    }
    srand(1);
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        b[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        c[i] = 0;
    }
    int warm = n < 4096; /* as tdbench mm: no warm-up call where one call takes seconds */
    double t0 = now_s();
    for (int i = 1 - warm; i <= k; i++) {
        if (i == 1 && warm) {
            t0 = now_s();
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
    }
    double dt = now_s() - t0;
    printf("{\"gflops\": %.3f, \"n\": %d, \"k\": %d, \"s_per_mm\": %.6f, \"corename\": \"%s\", "
           "\"threads\": %d}\n",
           2.0 * n * (double)n * n * k / dt * 1e-9, n, k, dt / k, openblas_get_corename(),
           openblas_get_num_threads());
    free(a);
    free(b);
    free(c);
    return 0;
}
