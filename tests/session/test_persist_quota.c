/* tests/session/test_persist_quota.c — disk quotas of server/session/persist.c.
**
** A file is charged at its exact size: 8 bytes of length, the JSON header padded to a multiple
** of 8, then every tensor at its logical size (an expanded view is all its elements). The sizes
** here are derived by hand from the header text, never from the code's own output, and checked
** against both td_persist_file_size and the file td_persist_write leaves on disk. Then the
** limits: a session's quota (its other files plus this one), the data dir's counter (counted
** from what is on disk, exact across overwrite and failure), the per-session file count, and a
** shutdown snapshot that would pass a quota being skipped rather than written.
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

static char dir[64]; /* a mkdtemp directory, removed at the end */

/* The size of a file whose JSON header is `json`: 8 + the JSON padded with spaces to a multiple
** of 8 + the data. */
static int64_t file_size_of(const char *json, int64_t data)
{
    int64_t j = (int64_t)strlen(json);
    return 8 + (j + 7) / 8 * 8 + data;
}

static int64_t size_on_disk(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (int64_t)st.st_size;
}

/* ones(1, dtype).expand(shape): a view of 1 element standing for all of shape's. */
static struct td_tensor *expanded(enum td_dtype dt, const int64_t *shape, int ndim)
{
    const int64_t one[] = {1};
    const double v[] = {1};
    struct td_tensor *base = mk(dt, one, 1, v);
    struct td_op_args a;
    td_op_args_init(&a);
    memcpy(a.dims, shape, sizeof *shape * (size_t)ndim);
    a.ndims = ndim;
    a.has_dims = true;
    struct td_operand in = {.t = base};
    struct td_tensor *out = NULL;
    struct td_err err;
    assert_int_equal(td_op_apply(TD_OP_EXPAND, &in, 1, &a, false, NULL, &out, &err), 0);
    td_tensor_unref(base);
    return out;
}

static void test_size_of_a_contiguous_tensor(void **state)
{
    (void)state;
    const int64_t shape[] = {2, 3};
    const double v[] = {1, 2, 3, 4, 5, 6};
    struct td_tensor *t = mk(TD_DTYPE_F32, shape, 2, v);
    const char *names[] = {"a"};
    const char *keys[] = {"format"}, *vals[] = {"pt"};
    /* 88 characters of JSON, already a multiple of 8; 6 float32 = 24 bytes of data */
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    int64_t want = file_size_of(json, 24);
    assert_int_equal(want, 8 + 88 + 24);
    int64_t size = -1;
    struct td_err err;
    assert_int_equal(td_persist_file_size(&t, names, 1, keys, vals, 1, &size, &err), 0);
    assert_int_equal(size, want);
    char path[128];
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    assert_int_equal(td_persist_write(path, &t, names, 1, keys, vals, 1, 0, NULL, 0, &err), 0);
    assert_int_equal(size_on_disk(path), want);
    td_tensor_unref(t);
}

static void test_size_of_an_expanded_view_is_its_logical_size(void **state)
{
    (void)state;
    const int64_t shape[] = {4, 1 << 20};
    struct td_tensor *t = expanded(TD_DTYPE_F32, shape, 2); /* 4 bytes standing for 16 MiB */
    const char *names[] = {"x"};
    /* 69 characters, padded to 72; 4 * 2^20 float32 = 16777216 bytes */
    const char *json = "{\"x\":{\"dtype\":\"F32\",\"shape\":[4,1048576],"
                       "\"data_offsets\":[0,16777216]}}";
    int64_t want = file_size_of(json, 16777216);
    assert_int_equal(want, 8 + 72 + 16777216);
    int64_t size = -1;
    struct td_err err;
    assert_int_equal(td_persist_file_size(&t, names, 1, NULL, NULL, 0, &size, &err), 0);
    assert_int_equal(size, want);
    char path[128];
    snprintf(path, sizeof path, "%s/v.safetensors", dir);
    assert_int_equal(td_persist_write(path, &t, names, 1, NULL, NULL, 0, 0, NULL, 0, &err), 0);
    assert_int_equal(size_on_disk(path), want);
    td_tensor_unref(t);
}

/* Four int64 views of 2^59 elements: 2^62 bytes each, 2^64 together, which no file size holds
** (summed raw, in 64 bits, they would wrap to 0). */
static void test_sizes_past_int64_are_refused_not_wrapped(void **state)
{
    (void)state;
    const int64_t shape[] = {(int64_t)1 << 29, (int64_t)1 << 30};
    struct td_tensor *t = expanded(TD_DTYPE_I64, shape, 2);
    struct td_tensor *ts[] = {t, t, t, t};
    const char *names[] = {"a", "b", "c", "d"};
    int64_t size = -1;
    struct td_err err;
    assert_int_equal(td_persist_file_size(ts, names, 4, NULL, NULL, 0, &size, &err), TD_ELIMIT);
    assert_non_null(strstr(err.msg, "file too large"));
    char path[128];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    assert_int_equal(td_persist_write(path, ts, names, 4, NULL, NULL, 0, 0, NULL, 0, &err),
                     TD_ELIMIT);
    assert_int_not_equal(access(path, F_OK), 0);
    td_tensor_unref(t);
}

/* Names in dir (temporaries included) and the bytes of its regular files. */
static int listing(const char *d, int64_t *bytes)
{
    DIR *dd = opendir(d);
    assert_non_null(dd);
    int n = 0;
    *bytes = 0;
    struct dirent *e;
    while ((e = readdir(dd)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            char path[512];
            snprintf(path, sizeof path, "%s/%s", d, e->d_name);
            struct stat st;
            assert_int_equal(stat(path, &st), 0);
            if (S_ISREG(st.st_mode)) {
                *bytes += st.st_size;
            }
            n++;
        }
    }
    closedir(dd);
    return n;
}

/* The size of a file of one float32 [n] tensor named "t", from its header text. */
static int64_t one_tensor_file(int64_t n)
{
    char json[160];
    snprintf(json, sizeof json,
             "{\"t\":{\"dtype\":\"F32\",\"shape\":[%lld],"
             "\"data_offsets\":[0,%lld]}}",
             (long long)n, (long long)(4 * n));
    return file_size_of(json, 4 * n);
}

static int write_n(const char *name, int64_t n, const struct td_persist_budget *b,
                   int64_t owner_used, struct td_err *err)
{
    const int64_t shape[] = {n};
    struct td_tensor *t = expanded(TD_DTYPE_F32, shape, 1);
    const char *names[] = {"t"};
    char path[128];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    int rc = td_persist_write(path, &t, names, 1, NULL, NULL, 0, 0, b, owner_used, err);
    td_tensor_unref(t);
    return rc;
}

static void test_session_quota_refuses_before_writing(void **state)
{
    (void)state;
    struct td_disk disk = {0};
    struct td_persist_budget b = {.disk = &disk, .root = dir, .session_max = 4096};
    struct td_err err;
    int64_t f1000 = one_tensor_file(1000); /* 4000 bytes of data */
    assert_int_equal(write_n("a", 1000, &b, 0, &err), 0);
    assert_int_equal(atomic_load(&disk.used), f1000);
    /* 100 bytes already in use, and this file: over 4096 */
    assert_int_equal(write_n("b", 1000, &b, 100, &err), TD_EQUOTA);
    assert_non_null(strstr(err.msg, "disk quota exceeded: session_max_disk_bytes 4096"));
    int64_t bytes;
    assert_int_equal(listing(dir, &bytes), 1); /* nothing written, no temporary left */
    assert_int_equal(atomic_load(&disk.used), f1000);
}

static void test_data_dir_counter_counts_what_is_there_and_stays_exact(void **state)
{
    (void)state;
    struct td_err err;
    /* a file from an earlier run, and one in a per-session subdirectory */
    assert_int_equal(write_n("old", 10, NULL, 0, &err), 0);
    char sub[128], path[192];
    snprintf(sub, sizeof sub, "%s/0123abcd", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof path, "%s/x.safetensors", sub);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite("0123456789", 1, 10, f), 10);
    assert_int_equal(fclose(f), 0);
    int64_t before = one_tensor_file(10) + 10;

    struct td_disk disk = {0};
    int64_t f100 = one_tensor_file(100), f200 = one_tensor_file(200);
    /* Room for the 200-element file beside the 100-element one, as an overwrite needs: the new
    ** file is written next to the old one, and both are on disk until the rename. */
    struct td_persist_budget b = {.disk = &disk, .root = dir, .max = before + f100 + f200 + 16};
    assert_int_equal(write_n("a", 100, &b, 0, &err), 0);
    assert_int_equal(atomic_load(&disk.used), before + f100);
    /* Overwriting "a" with a larger file fits; afterwards only the new one counts. */
    assert_int_equal(write_n("a", 200, &b, 0, &err), 0);
    assert_int_equal(atomic_load(&disk.used), before + f200);
    /* A second file does not fit in the f100 + 16 bytes left... */
    assert_int_equal(write_n("b", 200, &b, 0, &err), TD_EQUOTA);
    char want[96];
    snprintf(want, sizeof want, "disk quota exceeded: max_disk_bytes %lld",
             (long long)(before + f100 + f200 + 16));
    assert_non_null(strstr(err.msg, want));
    /* ...and an overwrite that would need both versions on disk past the limit is refused. */
    struct td_persist_budget tight = b;
    tight.max = before + f200 + f100 - 1;
    assert_int_equal(write_n("a", 100, &tight, 0, &err), TD_EQUOTA);
    assert_int_equal(atomic_load(&disk.used), before + f200);
    /* Overwriting "a" with a smaller file gives bytes back. */
    assert_int_equal(write_n("a", 100, &b, 0, &err), 0);
    assert_int_equal(atomic_load(&disk.used), before + f100);
    /* A write that fails (its directory is gone) charges nothing. */
    const int64_t shape[] = {5};
    struct td_tensor *t = expanded(TD_DTYPE_F32, shape, 1);
    const char *names[] = {"t"};
    snprintf(path, sizeof path, "%s/nodir/y.safetensors", dir);
    assert_int_equal(td_persist_write(path, &t, names, 1, NULL, NULL, 0, 0, &b, 0, &err), TD_EIO);
    td_tensor_unref(t);
    assert_int_equal(atomic_load(&disk.used), before + f100);
    /* and the counter equals what is on disk */
    int64_t top, inside;
    listing(dir, &top);
    listing(sub, &inside);
    assert_int_equal(atomic_load(&disk.used), top + inside);
    unlink(path);
    snprintf(path, sizeof path, "%s/x.safetensors", sub);
    unlink(path);
    rmdir(sub);
}

static void test_session_directory_file_count_and_usage(void **state)
{
    (void)state;
    char sub[128], path[192];
    snprintf(sub, sizeof sub, "%s/s", dir);
    snprintf(path, sizeof path, "%s/f.safetensors", sub);
    int64_t used = -1;
    bool created = false;
    struct td_err err;
    assert_int_equal(td_persist_dir_open(sub, path, &used, &created, &err), 0);
    assert_true(created);
    assert_int_equal(used, 0);
    for (int i = 0; i < TD_PERSIST_MAX_FILES; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/n%d.safetensors", sub, i);
        FILE *f = fopen(p, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite("abc", 1, 3, f), 3);
        assert_int_equal(fclose(f), 0);
    }
    assert_int_equal(td_persist_dir_open(sub, path, &used, &created, &err), TD_ELIMIT);
    assert_non_null(strstr(err.msg, "at most 1024"));
    /* an overwrite is no new file; the file it replaces is not in use */
    snprintf(path, sizeof path, "%s/n7.safetensors", sub);
    assert_int_equal(td_persist_dir_open(sub, path, &used, &created, &err), 0);
    assert_false(created);
    assert_int_equal(used, 3 * (TD_PERSIST_MAX_FILES - 1));
    for (int i = 0; i < TD_PERSIST_MAX_FILES; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/n%d.safetensors", sub, i);
        unlink(p);
    }
    td_persist_dir_drop(sub);
    assert_int_not_equal(access(sub, F_OK), 0);
}

/* A store with one session holding `handle` = ones(1).expand(n), float32. */
static struct td_session *session_with_view(struct td_store *st, int64_t n, uint64_t handle)
{
    struct td_session *s;
    struct td_err err;
    assert_int_equal(td_store_open(st, &s, &err), 0);
    const int64_t shape[] = {n};
    assert_int_equal(td_session_put(s, handle, expanded(TD_DTYPE_F32, shape, 1), &err), 0);
    return s;
}

static void test_snapshot_over_a_quota_is_skipped(void **state)
{
    (void)state;
    struct td_store st;
    struct td_store_config cfg = {.session_ttl_ms = 60000};
    td_store_init(&st, &cfg, &td_executor_inline);
    /* 4 bytes of memory, 4 MiB as a snapshot */
    struct td_session *s = session_with_view(&st, 1 << 20, 1);
    char files[128];
    snprintf(files, sizeof files, "%s/files", dir);
    struct td_disk disk = {0};
    struct td_persist_budget b = {.disk = &disk,
                                  .root = dir,
                                  .session_max = 1 << 20,
                                  .files_dir = files};
    int failed = -1;
    assert_int_equal(td_store_save_all(&st, dir, &b, &failed), 0);
    assert_int_equal(failed, 1);
    int64_t bytes;
    assert_int_equal(listing(dir, &bytes), 0);
    assert_int_equal(atomic_load(&disk.used), 0);

    /* The session's Save files count too: the data, its header's generator state (hex) and
    ** 1 KiB more (the rest of the header is about 300 bytes); with 2000 bytes of files it does
    ** not fit. */
    b.session_max = (4 << 20) + 2 * TD_RNG_STATE_BYTES + 1024;
    char sdir[TD_PERSIST_DIR_NAME], path[320];
    td_persist_session_dir(s, sdir);
    assert_int_equal(mkdir(files, 0700), 0);
    snprintf(path, sizeof path, "%s/%s", files, sdir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/%s/big.safetensors", files, sdir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    char junk[2000] = {0};
    assert_int_equal(fwrite(junk, 1, sizeof junk, f), sizeof junk);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(td_store_save_all(&st, dir, &b, &failed), 0);
    assert_int_equal(failed, 1);
    unlink(path);
    /* Without the file it fits, and it is charged at its logical size. */
    assert_int_equal(td_store_save_all(&st, dir, &b, &failed), 1);
    assert_int_equal(failed, 0);
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, sdir);
    assert_true(size_on_disk(path) > (4 << 20));
    assert_int_equal(atomic_load(&disk.used), size_on_disk(path));
    unlink(path);
    snprintf(path, sizeof path, "%s/%s", files, sdir);
    rmdir(path);
    rmdir(files);
    td_session_unref(s);
    td_store_close(&st);
}

/* The data dir's quota holds across sessions: of two 4 MiB snapshots under a 6 MiB limit,
** one is written and one skipped. */
static void test_snapshots_within_the_data_dir_quota(void **state)
{
    (void)state;
    struct td_store st;
    struct td_store_config cfg = {.session_ttl_ms = 60000};
    td_store_init(&st, &cfg, &td_executor_inline);
    struct td_session *a = session_with_view(&st, 1 << 20, 1);
    struct td_session *b2 = session_with_view(&st, 1 << 20, 2);
    struct td_disk disk = {0};
    struct td_persist_budget b = {.disk = &disk, .root = dir, .max = 6 << 20};
    int failed = -1;
    assert_int_equal(td_store_save_all(&st, dir, &b, &failed), 1);
    assert_int_equal(failed, 1);
    int64_t bytes;
    assert_int_equal(listing(dir, &bytes), 1);
    assert_true(bytes <= 6 << 20);
    assert_int_equal(atomic_load(&disk.used), bytes);
    td_session_unref(a);
    td_session_unref(b2);
    td_store_close(&st);
}

static void put_file(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(fputc('x', f), 'x');
    }
    assert_int_equal(fclose(f), 0);
}

/* A session gone for good takes its files with it, and their bytes off the counter; another
** session's files stay. */
static void test_removing_a_sessions_files_gives_their_bytes_back(void **state)
{
    (void)state;
    struct td_store st;
    struct td_store_config cfg = {.session_ttl_ms = 60000};
    td_store_init(&st, &cfg, &td_executor_inline);
    struct td_session *a, *b;
    struct td_err err;
    assert_int_equal(td_store_open(&st, &a, &err), 0);
    assert_int_equal(td_store_open(&st, &b, &err), 0);
    char files[128], ta[TD_PERSIST_DIR_NAME], tb[TD_PERSIST_DIR_NAME], p[320];
    snprintf(files, sizeof files, "%s/files", dir);
    assert_int_equal(mkdir(files, 0700), 0);
    td_persist_session_dir(a, ta);
    td_persist_session_dir(b, tb);
    snprintf(p, sizeof p, "%s/%s", files, ta);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/%s", files, tb);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/%s/one.safetensors", files, ta);
    put_file(p, 100);
    snprintf(p, sizeof p, "%s/%s/two.safetensors", files, ta);
    put_file(p, 50);
    snprintf(p, sizeof p, "%s/%s/one.safetensors", files, tb);
    put_file(p, 7);
    struct td_disk disk = {0};
    struct td_persist_budget bud = {.disk = &disk, .root = dir, .files_dir = files};
    assert_int_equal(td_persist_remove_session_files(&bud, a), 2);
    assert_int_equal(atomic_load(&disk.used), 7); /* counted (157), then 150 left */
    snprintf(p, sizeof p, "%s/%s", files, ta);
    assert_int_not_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/%s/one.safetensors", files, tb);
    assert_int_equal(access(p, F_OK), 0);
    /* with a shared namespace no file is a session's: nothing is removed */
    bud.shared = true;
    assert_int_equal(td_persist_remove_session_files(&bud, b), 0);
    assert_int_equal(access(p, F_OK), 0);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s", files, tb);
    rmdir(p);
    rmdir(files);
    td_session_unref(a);
    td_session_unref(b);
    td_store_close(&st);
}

/* A crash mid-write leaves temporaries in the per-session directories too. */
static void test_temporaries_in_session_directories_are_removed(void **state)
{
    (void)state;
    char sub[128], p[256];
    snprintf(sub, sizeof sub, "%s/ab12", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(p, sizeof p, "%s/.w.safetensors.tmp.42.0", sub);
    put_file(p, 3);
    snprintf(p, sizeof p, "%s/.x.safetensors.tmp.42.1", dir);
    put_file(p, 3);
    snprintf(p, sizeof p, "%s/w.safetensors", sub); /* a finished file stays */
    put_file(p, 3);
    assert_int_equal(td_persist_remove_temporaries(dir), 2);
    assert_int_equal(access(p, F_OK), 0);
    unlink(p);
    rmdir(sub);
}

static int dir_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/td_test_persist_quota.XXXXXX");
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
    td_log_min_level = TD_LOG_OFF; /* skipped snapshots log warnings, as they should */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_size_of_a_contiguous_tensor, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_size_of_an_expanded_view_is_its_logical_size,
                                        dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_sizes_past_int64_are_refused_not_wrapped, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_session_quota_refuses_before_writing, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_data_dir_counter_counts_what_is_there_and_stays_exact,
                                        dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_session_directory_file_count_and_usage, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_over_a_quota_is_skipped, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_snapshots_within_the_data_dir_quota, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_removing_a_sessions_files_gives_their_bytes_back,
                                        dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_temporaries_in_session_directories_are_removed,
                                        dir_setup, dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
