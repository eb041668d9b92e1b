/* tests/session/test_persist_layout.c — where empty tensors go in a file, and when a session is
** written at shutdown.
**
** A regression: a shutdown snapshot of a session holding an empty tensor (shape [0, 5]) was
** refused by its own reader about half the time ("tensor 'h7' starts at byte 88, not 91: the
** buffer has a hole or an overlap"), so the session could not be resumed. An empty tensor laid
** out between two others starts where the next one does; the reader ordered entries by start
** alone, after ordering them by name, so the tie went by name, and the handle table's order
** (keyed per process) decided whether the file read back. The reader now breaks the tie by end
** (an empty range first), and the writer puts empty tensors at the end of the buffer, where no
** reader can mistake them for an overlap.
**
** The files here are written by hand where the reader is under test, and the offsets expected
** of the writer are derived by hand from the tensors' sizes, never from the code's own output.
** Last, a session whose job is still out on a worker is not written: its table is the job's.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "core/ops.h"
#include "session/persist.h"
#include "../core/helpers.h"

static char dir[64]; /* a mkdtemp directory, emptied and removed after each test */

/* Writes a safetensors file: 8-byte little-endian length, `json` padded with spaces to a
** multiple of 8, then `data_len` bytes 0, 1, 2, ... */
static void put_file(const char *path, const char *json, size_t data_len)
{
    size_t j = strlen(json), padded = (j + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) {
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    }
    assert_int_equal(fwrite(len8, 1, 8, f), 8);
    assert_int_equal(fwrite(json, 1, j, f), j);
    for (size_t i = j; i < padded; i++) {
        assert_int_equal(fputc(' ', f), ' ');
    }
    for (size_t i = 0; i < data_len; i++) {
        assert_int_equal(fputc((int)(i & 0xff), f), (int)(i & 0xff));
    }
    assert_int_equal(fclose(f), 0);
}

/* The index of entry `name` in an open file. */
static int entry(const struct td_persist_file *f, const char *name)
{
    for (int i = 0; i < f->h.n; i++) {
        if (strcmp(f->h.e[i].name, name) == 0) {
            return i;
        }
    }
    fail_msg("no entry '%s'", name);
    return -1;
}

/* An empty tensor that starts where a non-empty one does is valid wherever the header lists
** it, and whatever the names: "a" sorts before "b", and "a" is listed first in one file and
** last in the other. Before the fix the first file was refused ("'b' starts at byte 0, not
** 8") and the second accepted: the tie went by name. */
static void test_an_empty_tensor_sharing_a_start_is_read_whatever_the_order(void **state)
{
    (void)state;
    static const char *const jsons[] = {
        /* non-empty "a" [0, 8] then empty "b" [0, 0], then "c" [8, 11] and empty "d" [11, 11]
        ** (the end of the buffer) */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
        "\"c\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[8,11]},"
        "\"d\":{\"dtype\":\"I64\",\"shape\":[4,0],\"data_offsets\":[11,11]}}",
        /* the same tensors, the empty ones named first and listed first: "a" [8, 16] */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"c\":{\"dtype\":\"I64\",\"shape\":[4,0],\"data_offsets\":[8,8]},"
        "\"d\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[8,11]}}",
        /* the empty one listed after the tensor it shares a start with, and named after it
        ** too, in the middle of the buffer */
        "{\"c\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[8,11]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"d\":{\"dtype\":\"I64\",\"shape\":[4,0],\"data_offsets\":[8,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]}}",
    };
    for (size_t k = 0; k < sizeof jsons / sizeof jsons[0]; k++) {
        char path[128];
        snprintf(path, sizeof path, "%s/t%zu.safetensors", dir, k);
        put_file(path, jsons[k], 11);
        struct td_persist_file f;
        struct td_err err;
        if (td_persist_open(path, &f, &err) != 0) {
            fail_msg("file %zu refused: %s", k, err.msg);
        }
        assert_int_equal(f.h.n, 4);
        for (int i = 0; i < 4; i++) {
            struct td_tensor *t = NULL;
            assert_int_equal(td_persist_read(&f, i, NULL, &t, &err), 0);
            const struct td_st_entry *e = &f.h.e[i];
            assert_int_equal(td_tensor_nbytes(t), e->end - e->begin);
            for (uint64_t b = 0; b < e->end - e->begin; b++) {
                assert_int_equal(((const uint8_t *)td_tensor_data(t))[b], e->begin + b);
            }
            td_tensor_unref(t);
        }
        td_persist_close(&f);
        unlink(path);
    }
}

/* What the tie-break must not let through: an empty range inside another tensor's, and two
** non-empty tensors at one start. */
static void test_real_overlaps_are_still_refused(void **state)
{
    (void)state;
    static const char *const jsons[] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        /* an empty range past the end of the buffer */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[9,9]}}",
    };
    for (size_t k = 0; k < sizeof jsons / sizeof jsons[0]; k++) {
        char path[128];
        snprintf(path, sizeof path, "%s/o%zu.safetensors", dir, k);
        put_file(path, jsons[k], 8);
        struct td_persist_file f;
        struct td_err err;
        assert_int_equal(td_persist_open(path, &f, &err), TD_EINVAL);
        unlink(path);
    }
}

/* The writer puts every empty tensor at the end of the buffer, wherever it stands in the list:
** the others are laid out in order, as if the empty ones were not there. */
static void test_the_writer_puts_empty_tensors_at_the_end(void **state)
{
    (void)state;
    const int64_t s2[] = {2}, s3[] = {3}, s05[] = {0, 5}, s40[] = {4, 0};
    const double v[] = {1.5, -2, 1};
    struct td_tensor *f32 = mk(TD_DTYPE_F32, s2, 1, v); /* 8 bytes */
    struct td_tensor *b8 = mk(TD_DTYPE_BOOL, s3, 1, v); /* 3 bytes */
    struct td_tensor *e1 = mk(TD_DTYPE_F32, s05, 2, v); /* 0 bytes */
    struct td_tensor *e2 = mk(TD_DTYPE_I64, s40, 2, v); /* 0 bytes */
    /* Every position of the two empty tensors among the two others. */
    static const char *const orders[] = {"EeFB", "EFeB", "EFBe", "FEeB", "FEBe",
                                         "FBEe", "eEFB", "FBeE", "BEFe"};
    for (size_t k = 0; k < sizeof orders / sizeof orders[0]; k++) {
        struct td_tensor *ts[4];
        const char *names[4];
        for (int i = 0; i < 4; i++) {
            char c = orders[k][i];
            ts[i] = c == 'F' ? f32 : c == 'B' ? b8 : c == 'E' ? e1 : e2;
            names[i] = c == 'F' ? "f" : c == 'B' ? "b" : c == 'E' ? "e1" : "e2";
        }
        char path[128];
        snprintf(path, sizeof path, "%s/w%zu.safetensors", dir, k);
        struct td_err err;
        assert_int_equal(td_persist_write(path, ts, names, 4, NULL, NULL, 0, 0, NULL, 0, &err), 0);
        struct td_persist_file f;
        if (td_persist_open(path, &f, &err) != 0) {
            fail_msg("order %s refused: %s", orders[k], err.msg);
        }
        /* f then b, or b then f, in the order given; the empty ones at [11, 11] */
        bool f_first = strchr(orders[k], 'F') < strchr(orders[k], 'B');
        const struct td_st_entry *ef = &f.h.e[entry(&f, "f")], *eb = &f.h.e[entry(&f, "b")];
        assert_int_equal(ef->begin, f_first ? 0 : 3);
        assert_int_equal(ef->end, f_first ? 8 : 11);
        assert_int_equal(eb->begin, f_first ? 8 : 0);
        assert_int_equal(eb->end, f_first ? 11 : 3);
        for (int i = 0; i < 2; i++) {
            const struct td_st_entry *e = &f.h.e[entry(&f, i == 0 ? "e1" : "e2")];
            assert_int_equal(e->begin, 11);
            assert_int_equal(e->end, 11);
        }
        struct td_tensor *back = NULL;
        assert_int_equal(td_persist_read(&f, entry(&f, "f"), NULL, &back, &err), 0);
        assert_true(at(back, 0) == 1.5 && at(back, 1) == -2);
        td_tensor_unref(back);
        assert_int_equal(td_persist_read(&f, entry(&f, "e1"), NULL, &back, &err), 0);
        assert_int_equal(back->ndim, 2);
        assert_int_equal(back->shape[0], 0);
        assert_int_equal(back->shape[1], 5);
        td_tensor_unref(back);
        td_persist_close(&f);
        /* and the size td_persist_file_size promised is the file's */
        int64_t size = -1;
        struct stat st;
        assert_int_equal(td_persist_file_size(ts, names, 4, NULL, NULL, 0, &size, &err), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(size, st.st_size);
        unlink(path);
    }
    td_tensor_unref(f32);
    td_tensor_unref(b8);
    td_tensor_unref(e1);
    td_tensor_unref(e2);
}

/* The canary of tests/python/test_hostile.py, in one session: every dtype, a 0-dim tensor, an
** empty one, and a requires_grad leaf with its .grad. */
#define CANARY_HANDLES 8
static const double CV[] = {1.5, -2, 3, 0, -0.25, 7, 8, -9, 10, 11, 12, 13};

static struct td_session *canary(struct td_store *st, uint64_t first_handle, uint8_t *token)
{
    static const int64_t s34[] = {3, 4}, s5[] = {5}, s222[] = {2, 2, 2}, s4[] = {4}, s13[] = {1, 3},
                         s05[] = {0, 5}, s3[] = {3};
    struct td_session *s;
    struct td_err err;
    assert_int_equal(td_store_open(st, &s, &err), 0);
    memcpy(token, s->token, TD_TOKEN_BYTES);
    struct td_tensor *ts[CANARY_HANDLES] = {
        mk(TD_DTYPE_F32, s34, 2, CV), mk(TD_DTYPE_F64, s5, 1, CV),   mk(TD_DTYPE_I32, s222, 3, CV),
        mk(TD_DTYPE_I64, s4, 1, CV),  mk(TD_DTYPE_BOOL, s13, 2, CV), mk(TD_DTYPE_F64, s5, 0, CV),
        mk(TD_DTYPE_F32, s05, 2, CV), mk(TD_DTYPE_F32, s3, 1, CV),
    };
    ts[7]->requires_grad = true;
    ts[7]->grad = mk(TD_DTYPE_F32, s3, 1, CV + 3);
    for (int i = 0; i < CANARY_HANDLES; i++) {
        assert_int_equal(td_session_put(s, first_handle + (uint64_t)i, ts[i], &err), 0);
    }
    return s;
}

/* v as mk stored it in dtype dt (a C cast; bool is v != 0). */
static double as_dtype(enum td_dtype dt, double v)
{
    switch (dt) {
    case TD_DTYPE_F32: return (float)v;
    case TD_DTYPE_I32: return (int32_t)v;
    case TD_DTYPE_I64: return (double)(int64_t)v;
    case TD_DTYPE_BOOL: return v != 0;
    default: return v;
    }
}

static void expect_canary(struct td_store *st, uint64_t first_handle, const uint8_t *token)
{
    struct td_session *s;
    struct td_err err;
    assert_int_equal(td_store_resume(st, token, TD_TOKEN_BYTES, &s, &err), 0);
    assert_int_equal(td_session_count(s), CANARY_HANDLES);
    static const int want_numel[CANARY_HANDLES] = {12, 5, 8, 4, 3, 1, 0, 3};
    for (int i = 0; i < CANARY_HANDLES; i++) {
        struct td_tensor *t;
        assert_int_equal(td_session_lookup(s, first_handle + (uint64_t)i, &t, &err), 0);
        assert_int_equal(t->numel, want_numel[i]);
        for (int64_t j = 0; j < t->numel; j++) {
            assert_true(at(t, j) == as_dtype(t->dtype, CV[j]));
        }
    }
    struct td_tensor *leaf;
    assert_int_equal(td_session_lookup(s, first_handle + 7, &leaf, &err), 0);
    assert_true(leaf->requires_grad);
    assert_non_null(leaf->grad);
    for (int j = 0; j < 3; j++) {
        assert_true(at(leaf->grad, j) == CV[3 + j]);
    }
    td_session_unref(s);
}

/* Sessions like the canary, their handles numbered from 1 and from elsewhere (the table's
** order, keyed per process, differs), are written at shutdown and all come back. With the
** writer and reader of before, most of these files were refused. */
static void test_canary_sessions_survive_a_snapshot(void **state)
{
    (void)state;
    enum { N = 24 };
    struct td_store st;
    struct td_store_config cfg = {.session_ttl_ms = 60000};
    td_store_init(&st, &cfg, &td_executor_inline);
    uint8_t tokens[N][TD_TOKEN_BYTES];
    struct td_session *ss[N];
    for (int i = 0; i < N; i++) {
        ss[i] = canary(&st, 1 + (uint64_t)i * 37, tokens[i]);
    }
    int failed = -1;
    assert_int_equal(td_store_save_all(&st, dir, NULL, &failed), N);
    assert_int_equal(failed, 0);
    for (int i = 0; i < N; i++) {
        td_session_unref(ss[i]);
    }
    td_store_close(&st);

    td_store_init(&st, &cfg, &td_executor_inline);
    assert_int_equal(td_store_restore_all(&st, dir, 1000, &failed), N);
    assert_int_equal(failed, 0);
    for (int i = 0; i < N; i++) {
        expect_canary(&st, 1 + (uint64_t)i * 37, tokens[i]);
    }
    td_store_close(&st);
}

/* Scale-out: a node's tokens are "<node id>.<32 hex>"; a node restarted with its data dir and
** its id restores its sessions under the same tokens. Sessions saved before scale-out (16 raw
** bytes) still restore and resume on a node that has an id. */
static void test_node_tokens_survive_a_snapshot(void **state)
{
    (void)state;
    struct td_store st;
    struct td_store_config legacy = {.session_ttl_ms = 60000};
    struct td_store_config named = {.session_ttl_ms = 60000, .node_id = "tensord-3"};
    struct td_err err;
    /* One session from before scale-out, one of the named node. */
    td_store_init(&st, &legacy, &td_executor_inline);
    uint8_t old_token[TD_TOKEN_BYTES];
    struct td_session *old = canary(&st, 1, old_token);
    assert_int_equal(old->token_len, TD_TOKEN_BYTES);
    int failed = -1;
    assert_int_equal(td_store_save_all(&st, dir, NULL, &failed), 1);
    td_session_unref(old);
    td_store_close(&st);

    td_store_init(&st, &named, &td_executor_inline);
    struct td_session *s;
    assert_int_equal(td_store_open(&st, &s, &err), 0);
    uint8_t tok[TD_TOKEN_MAX];
    size_t n = s->token_len;
    memcpy(tok, s->token, n);
    assert_int_equal(n, strlen("tensord-3.") + 32);
    assert_memory_equal(tok, "tensord-3.", 10);
    static const int64_t s3[] = {3};
    assert_int_equal(td_session_put(s, 5, mk(TD_DTYPE_F64, s3, 1, CV), &err), 0);
    assert_int_equal(td_store_save_all(&st, dir, NULL, &failed), 1); /* the named one */
    td_session_unref(s);
    td_store_close(&st);

    td_store_init(&st, &named, &td_executor_inline);
    assert_int_equal(td_store_restore_all(&st, dir, 1000, &failed), 2);
    assert_int_equal(failed, 0);
    /* Neither a prefix nor the secret alone, nor a changed digit, finds it. */
    assert_int_equal(td_store_resume(&st, tok, n - 1, &s, &err), TD_ESESSION);
    uint8_t other[TD_TOKEN_MAX];
    memcpy(other, tok, n);
    other[n - 1] = other[n - 1] == '0' ? '1' : '0';
    assert_int_equal(td_store_resume(&st, other, n, &s, &err), TD_ESESSION);
    assert_int_equal(td_store_resume(&st, tok, n, &s, &err), 0);
    assert_int_equal(s->token_len, n);
    assert_memory_equal(s->token, tok, n);
    struct td_tensor *t;
    assert_int_equal(td_session_lookup(s, 5, &t, &err), 0);
    assert_int_equal(t->numel, 3);
    td_session_unref(s);
    /* Resumed again, by the same token, from the live session. */
    assert_int_equal(td_store_resume(&st, tok, n, &s, &err), 0);
    td_session_unref(s);
    expect_canary(&st, 1, old_token);
    td_store_close(&st);
}

/* A job out on a worker: submit() keeps it, and the test finishes it later, as a pool would
** (run on a worker, then td_session_job_complete on the loop thread). */
static struct td_job *out_on_worker;

static void keep_submit(struct td_executor *ex, struct td_job *job)
{
    (void)ex;
    assert_null(out_on_worker);
    out_on_worker = job;
}

static bool always_heavy(struct td_job *job)
{
    (void)job;
    return true;
}

static bool job_ran;

static void job_run(struct td_job *job)
{
    (void)job;
    job_ran = true;
}

static void job_done(struct td_job *job)
{
    (void)job;
}

static int snapshot_files(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        n += strstr(e->d_name, ".safetensors") != NULL;
    }
    closedir(d);
    return n;
}

/* While a session's job runs on a worker, the worker owns its table: a snapshot then would race
** the job. Such a session is skipped and counted as failed; the others are written; once the
** job has come back, the session is written too. */
static void test_a_session_with_a_job_on_a_worker_is_not_written(void **state)
{
    (void)state;
    struct td_executor keep = {.submit = keep_submit};
    struct td_store st;
    struct td_store_config cfg = {.session_ttl_ms = 60000};
    td_store_init(&st, &cfg, &keep);
    uint8_t tb[TD_TOKEN_BYTES], ti[TD_TOKEN_BYTES];
    struct td_session *busy = canary(&st, 1, tb), *idle = canary(&st, 100, ti);
    struct td_job job;
    memset(&job, 0, sizeof job);
    job.is_heavy = always_heavy;
    job.run = job_run;
    job.done = job_done;
    td_session_submit(busy, &job);
    assert_ptr_equal(out_on_worker, &job);
    assert_true(busy->running);

    int failed = -1;
    assert_int_equal(td_store_save_all(&st, dir, NULL, &failed), 1);
    assert_int_equal(failed, 1);
    assert_int_equal(snapshot_files(), 1);

    /* the worker returns; the next snapshot has both */
    out_on_worker = NULL;
    job.run(&job);
    td_session_job_complete(&job);
    assert_true(job_ran);
    assert_false(busy->running);
    assert_int_equal(td_store_save_all(&st, dir, NULL, &failed), 2);
    assert_int_equal(failed, 0);
    assert_int_equal(snapshot_files(), 2);
    td_session_unref(busy);
    td_session_unref(idle);
    td_store_close(&st);

    td_store_init(&st, &cfg, &td_executor_inline);
    assert_int_equal(td_store_restore_all(&st, dir, 1000, &failed), 2);
    expect_canary(&st, 1, tb);
    expect_canary(&st, 100, ti);
    td_store_close(&st);
}

static int dir_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/td_test_persist_layout.XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

/* Runs after each test, failed or not, so the directory never outlives the run. */
static int dir_teardown(void **state)
{
    (void)state;
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        char path[sizeof dir + 256 + 1];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    return rmdir(dir);
}

int main(void)
{
    td_log_min_level = TD_LOG_OFF; /* a skipped session logs an error, as it should */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_an_empty_tensor_sharing_a_start_is_read_whatever_the_order, dir_setup,
            dir_teardown),
        cmocka_unit_test_setup_teardown(test_real_overlaps_are_still_refused, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_the_writer_puts_empty_tensors_at_the_end, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_node_tokens_survive_a_snapshot, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_canary_sessions_survive_a_snapshot, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_a_session_with_a_job_on_a_worker_is_not_written,
                                        dir_setup, dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
