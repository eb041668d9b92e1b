/* tests/session/test_session_queue.c — a session's FIFO: cancellation, holds, shutdown drops.
**
** Jobs here are bare td_jobs that log what happened to them (ran, done, cancelled), so the
** order of events can be compared with the rules in session.h: FIFO order always, done()
** without run() for a cancelled job, and nothing dropped while the job before it still runs.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "session/session.h"

#define MAX_EVENTS 64

static char events[MAX_EVENTS][16];
static int nevents;

struct tjob {
    struct td_job job;
    char name;
    int owner;                  /* for match_owner */
    bool heavy;
};

static void note(const char *what, char name)
{
    assert_true(nevents < MAX_EVENTS);
    snprintf(events[nevents++], sizeof events[0], "%s %c", what, name);
}

static bool tjob_heavy(struct td_job *job)
{
    return ((struct tjob *)job)->heavy;
}

static void tjob_run(struct td_job *job)
{
    note("run", ((struct tjob *)job)->name);
}

static void tjob_done(struct td_job *job)
{
    struct tjob *t = (struct tjob *)job;
    note(job->cancelled ? "drop" : "done", t->name);
}

static struct td_job *deferred;

static void defer_submit(struct td_executor *ex, struct td_job *job)
{
    (void)ex;
    assert_null(deferred);
    deferred = job;
}

static struct td_executor later = {.submit = defer_submit};

static void finish_deferred(void)
{
    struct td_job *job = deferred;
    assert_non_null(job);
    deferred = NULL;
    job->run(job);
    td_session_job_complete(job);
}

static void tjob_init(struct tjob *t, char name, int owner, bool heavy)
{
    memset(t, 0, sizeof *t);
    t->name = name;
    t->owner = owner;
    t->heavy = heavy;
    t->job.is_heavy = tjob_heavy;
    t->job.run = tjob_run;
    t->job.done = tjob_done;
    td_cancel_init(&t->job.cancel, 0);
}

static bool match_owner(struct td_job *job, void *arg)
{
    return ((struct tjob *)job)->owner == *(int *)arg;
}

/* The events so far, joined with ", ". */
static const char *log_str(void)
{
    static char buf[MAX_EVENTS * 18];
    buf[0] = '\0';
    for (int i = 0; i < nevents; i++) {
        if (i > 0) {
            strcat(buf, ", ");
        }
        strcat(buf, events[i]);
    }
    return buf;
}

static struct td_session *open_session(struct td_store *st)
{
    struct td_store_config cfg = {.session_ttl_ms = 1000};
    td_store_init(st, &cfg, &later);
    struct td_session *s;
    assert_int_equal(td_store_open(st, &s, NULL), 0);
    nevents = 0;
    deferred = NULL;
    return s;
}

static void close_session(struct td_store *st, struct td_session *s)
{
    assert_false(td_session_busy(s));
    td_session_unref(s);
    td_store_close(st);
}

/* A cancel while a job runs: the running job sees its reason; the matched queued jobs are
** dropped after it is done, in FIFO order, the others run. */
static void test_cancel_matched_jobs_in_order(void **state)
{
    (void)state;
    struct td_store st;
    struct td_session *s = open_session(&st);
    struct tjob a, b, c, d;
    tjob_init(&a, 'a', 1, true);
    tjob_init(&b, 'b', 1, false);
    tjob_init(&c, 'c', 2, false);
    tjob_init(&d, 'd', 1, false);
    td_session_submit(s, &a.job);
    td_session_submit(s, &b.job);
    td_session_submit(s, &c.job);
    td_session_submit(s, &d.job);
    assert_ptr_equal(s->current, &a.job);
    int owner = 1;
    td_session_cancel(s, match_owner, &owner, TD_CANCEL_CONN_LOST);
    assert_int_equal(atomic_load(&a.job.cancel.reason), TD_CANCEL_CONN_LOST);
    assert_int_equal(atomic_load(&c.job.cancel.reason), TD_CANCEL_NONE);
    assert_int_equal(nevents, 0);  /* nothing overtakes the running job */
    finish_deferred();
    assert_string_equal(log_str(), "run a, done a, drop b, run c, done c, drop d");
    assert_null(s->current);
    close_session(&st, s);
}

/* With nothing running, cancelled jobs are dropped at once. */
static void test_cancel_when_idle_drops_now(void **state)
{
    (void)state;
    struct td_store st;
    struct td_session *s = open_session(&st);
    struct tjob a, b;
    tjob_init(&a, 'a', 1, false);
    tjob_init(&b, 'b', 1, false);
    td_session_hold(s);
    td_session_submit(s, &a.job);
    td_session_submit(s, &b.job);
    assert_int_equal(nevents, 0);
    td_session_cancel(s, NULL, NULL, TD_CANCEL_SESSION_CLOSED);
    assert_string_equal(log_str(), "drop a, drop b");
    td_session_release(s);
    close_session(&st, s);
}

/* Holds nest; no job starts while held; the running one finishes; the last release pumps. */
static void test_hold_and_release(void **state)
{
    (void)state;
    struct td_store st;
    struct td_session *s = open_session(&st);
    struct tjob a, b, c;
    tjob_init(&a, 'a', 1, true);
    tjob_init(&b, 'b', 1, false);
    tjob_init(&c, 'c', 1, false);
    td_session_submit(s, &a.job);
    td_session_hold(s);
    td_session_hold(s);
    td_session_submit(s, &b.job);
    finish_deferred();
    assert_string_equal(log_str(), "run a, done a");
    assert_true(td_session_busy(s));
    td_session_release(s);
    td_session_submit(s, &c.job);
    assert_string_equal(log_str(), "run a, done a");
    td_session_release(s);
    assert_string_equal(log_str(), "run a, done a, run b, done b, run c, done c");
    close_session(&st, s);
}

/* SIGTERM: the running job is told, the queued ones are dropped — held or not. */
static void test_store_cancel_all_and_stop(void **state)
{
    (void)state;
    struct td_store st;
    struct td_session *s = open_session(&st);
    struct td_session *s2;
    assert_int_equal(td_store_open(&st, &s2, NULL), 0);
    struct tjob a, b, c;
    tjob_init(&a, 'a', 1, true);
    tjob_init(&b, 'b', 1, false);
    tjob_init(&c, 'c', 2, false);
    td_session_submit(s, &a.job);
    td_session_submit(s, &b.job);
    td_session_hold(s2);
    td_session_submit(s2, &c.job);
    td_store_cancel_all(&st);
    assert_int_equal(atomic_load(&a.job.cancel.reason), TD_CANCEL_SHUTDOWN);
    assert_string_equal(log_str(), "drop c");
    finish_deferred();
    assert_string_equal(log_str(), "drop c, run a, done a, drop b");
    td_session_release(s2);
    /* td_store_stop drops what a held, idle session still queues */
    struct tjob d;
    tjob_init(&d, 'd', 2, false);
    td_session_hold(s2);
    td_session_submit(s2, &d.job);
    td_store_stop(&st);
    assert_string_equal(log_str(), "drop c, run a, done a, drop b, drop d");
    assert_int_equal(atomic_load(&d.job.cancel.reason), TD_CANCEL_SHUTDOWN);
    td_session_release(s2);
    td_session_unref(s2);
    close_session(&st, s);
}

/* td_session_close from outside a job drops what is queued; from a job, later jobs stay. */
static void test_close_outside_a_job_drops_the_queue(void **state)
{
    (void)state;
    struct td_store st;
    struct td_session *s = open_session(&st);
    struct tjob a;
    tjob_init(&a, 'a', 1, false);
    td_session_hold(s);
    td_session_submit(s, &a.job);
    td_session_close(s);
    assert_string_equal(log_str(), "drop a");
    assert_int_equal(atomic_load(&a.job.cancel.reason), TD_CANCEL_SESSION_CLOSED);
    td_session_release(s);
    close_session(&st, s);
}

/* The store's on_expire hook: called once per expiring session before it closes; one sweep stops
** once the work the hook reports reaches TD_STORE_SWEEP_MAX_WORK, and the next sweep goes on. */
static int expired_calls;

static int expire_hook(struct td_session *s, void *arg)
{
    assert_false(s->closed);  /* before the close: its identity is still whole */
    assert_ptr_equal(arg, &expired_calls);
    expired_calls++;
    return TD_STORE_SWEEP_MAX_WORK / 2 + 1;
}

static void test_sweep_calls_on_expire_and_bounds_its_work(void **state)
{
    (void)state;
    struct td_store st;
    struct td_store_config cfg = {.session_ttl_ms = 1000};
    td_store_init(&st, &cfg, &later);
    assert_null(st.on_expire);
    st.on_expire = expire_hook;
    st.on_expire_arg = &expired_calls;
    expired_calls = 0;
    struct td_session *s[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(td_store_open(&st, &s[i], NULL), 0);
    }
    td_session_attach(s[3]);  /* connected: it never expires */
    for (int i = 0; i < 3; i++) {
        td_session_unref(s[i]);  /* the store keeps its own reference */
    }
    assert_int_equal(td_store_sweep(&st, 500), 0);  /* not idle long enough */
    assert_int_equal(expired_calls, 0);
    /* each call reports just over half the bound: two expire, the third waits */
    assert_int_equal(td_store_sweep(&st, 5000), 2);
    assert_int_equal(expired_calls, 2);
    assert_int_equal(td_store_count(&st), 2);
    assert_int_equal(td_store_sweep(&st, 5000), 1);
    assert_int_equal(expired_calls, 3);
    assert_int_equal(td_store_count(&st), 1);
    td_session_detach(s[3], 5000);
    td_session_unref(s[3]);
    td_store_close(&st);  /* shutdown ends no session for good: no call */
    assert_int_equal(expired_calls, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_matched_jobs_in_order),
        cmocka_unit_test(test_cancel_when_idle_drops_now),
        cmocka_unit_test(test_hold_and_release),
        cmocka_unit_test(test_store_cancel_all_and_stop),
        cmocka_unit_test(test_close_outside_a_job_drops_the_queue),
        cmocka_unit_test(test_sweep_calls_on_expire_and_bounds_its_work),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
