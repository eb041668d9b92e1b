/* tests/session/test_session_queue.c — a session's FIFO: cancellation, holds, shutdown drops,
** the per-turn work budget, and the charge for handle table entries.
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
    int owner; /* for match_owner */
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
    assert_int_equal(nevents, 0); /* nothing overtakes the running job */
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

/* An empty session stays small (the bench's RSS per empty session): its generator and its
** suspended-backward slots are made on first use, and manual_seed before the first draw makes
** nothing but still decides the stream. */
static void test_generator_and_walks_made_on_first_use(void **state)
{
    (void)state;
    assert_true(sizeof(struct td_session) <= 512);
    struct td_store st;
    struct td_session *s = open_session(&st);
    assert_null(s->rng);
    assert_null(s->walks);
    td_session_seed(s, 42);
    assert_null(s->rng);
    struct td_rng *r = td_session_rng(s);
    assert_non_null(r);
    assert_ptr_equal(td_session_rng(s), r);
    struct td_rng want;
    td_rng_seed(&want, 42);
    assert_int_equal(td_rng_u32(r), td_rng_u32(&want));
    td_session_seed(s, 7); /* a made generator restarts */
    td_rng_seed(&want, 7);
    assert_int_equal(td_rng_u32(r), td_rng_u32(&want));
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
    assert_false(s->closed); /* before the close: its identity is still whole */
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
    td_session_attach(s[3]); /* connected: it never expires */
    for (int i = 0; i < 3; i++) {
        td_session_unref(s[i]); /* the store keeps its own reference */
    }
    assert_int_equal(td_store_sweep(&st, 500), 0); /* not idle long enough */
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
    td_store_close(&st); /* shutdown ends no session for good: no call */
    assert_int_equal(expired_calls, 3);
}

/* ---- the turn budget (cooperative scheduling) ----
**
** Each test job costs WORK plus TD_JOB_BASE_WORK; a budget of two jobs lets two run per turn.
** td_store_turn stands for the loop's per-turn hook. */
#define WORK 100
#define TWO_JOBS (2 * (WORK + TD_JOB_BASE_WORK))

static struct td_session *open_budgeted(struct td_store *st, int64_t turn_work)
{
    struct td_store_config cfg = {.session_ttl_ms = 1000, .turn_work = turn_work};
    td_store_init(st, &cfg, &later);
    struct td_session *s;
    assert_int_equal(td_store_open(st, &s, NULL), 0);
    nevents = 0;
    deferred = NULL;
    return s;
}

static void light(struct tjob *t, char name, int owner)
{
    tjob_init(t, name, owner, false);
    t->job.work = WORK;
}

/* Five inline jobs submitted in one turn run two per turn, in order, none lost; the session
** waits on the deferred list in between, and leaves it when its queue is empty. */
static void test_turn_budget_spreads_inline_jobs_over_turns(void **state)
{
    (void)state;
    struct td_store st;
    struct td_session *s = open_budgeted(&st, TWO_JOBS);
    struct tjob j[5];
    for (int i = 0; i < 5; i++) {
        light(&j[i], (char)('a' + i), 1);
        td_session_submit(s, &j[i].job);
    }
    assert_int_equal(nevents, 4);
    assert_string_equal(log_str(), "run a, done a, run b, done b");
    assert_true(td_store_has_deferred(&st));
    assert_true(td_store_busy(&st));
    td_store_turn(&st);
    assert_string_equal(log_str(), "run a, done a, run b, done b, run c, done c, run d, done d");
    assert_true(td_store_has_deferred(&st));
    td_store_turn(&st);
    assert_string_equal(log_str(), "run a, done a, run b, done b, run c, done c, run d, done d, "
                                   "run e, done e");
    assert_false(td_store_has_deferred(&st));
    assert_false(td_store_busy(&st));
    /* one job over the whole budget still runs (a turn always makes progress), alone */
    struct tjob big, after;
    light(&big, 'f', 1);
    big.job.work = 10 * TWO_JOBS;
    light(&after, 'g', 1);
    td_store_turn(&st);
    nevents = 0;
    td_session_submit(s, &big.job);
    td_session_submit(s, &after.job);
    assert_string_equal(log_str(), "run f, done f");
    td_store_turn(&st);
    assert_string_equal(log_str(), "run f, done f, run g, done g");
    assert_false(td_store_has_deferred(&st));
    close_session(&st, s);
}

/* Two sessions over budget take turns: the one not reached in a turn goes first in the next. */
static void test_turn_budget_is_round_robin(void **state)
{
    (void)state;
    struct td_store st;
    struct td_session *s1 = open_budgeted(&st, TWO_JOBS);
    struct td_session *s2;
    assert_int_equal(td_store_open(&st, &s2, NULL), 0);
    struct tjob a[6], b[4];
    for (int i = 0; i < 6; i++) {
        light(&a[i], (char)('a' + i), 1);
        td_session_submit(s1, &a[i].job);
    }
    for (int i = 0; i < 4; i++) {
        light(&b[i], (char)('u' + i), 2);
        td_session_submit(s2, &b[i].job);
    }
    assert_string_equal(log_str(), "run a, done a, run b, done b");
    nevents = 0;
    td_store_turn(&st);
    assert_string_equal(log_str(), "run c, done c, run d, done d");
    nevents = 0;
    td_store_turn(&st);
    assert_string_equal(log_str(), "run u, done u, run v, done v");
    nevents = 0;
    td_store_turn(&st);
    assert_string_equal(log_str(), "run e, done e, run f, done f");
    nevents = 0;
    td_store_turn(&st);
    assert_string_equal(log_str(), "run w, done w, run x, done x");
    assert_false(td_store_has_deferred(&st));
    td_session_unref(s2);
    close_session(&st, s1);
}

/* A deferred session that is cancelled, closed or held: its queued jobs are dropped (they cost
** no budget), the list's reference keeps it alive until the next turn lets it go, and a held
** one is not resumed until released. */
static void test_deferred_session_cancelled_closed_or_held(void **state)
{
    (void)state;
    struct td_store st;
    struct td_session *s = open_budgeted(&st, 1); /* one job per turn */
    struct tjob a, b, c;
    light(&a, 'a', 1);
    light(&b, 'b', 1);
    light(&c, 'c', 2);
    td_session_submit(s, &a.job);
    td_session_submit(s, &b.job);
    td_session_submit(s, &c.job);
    assert_string_equal(log_str(), "run a, done a");
    int owner = 1;
    td_session_cancel(s, match_owner, &owner, TD_CANCEL_CONN_LOST);
    assert_string_equal(log_str(), "run a, done a, drop b"); /* c still waits for its turn */
    td_store_turn(&st);
    assert_string_equal(log_str(), "run a, done a, drop b, run c, done c");
    /* held while deferred: the turn lets it go, the release runs it */
    struct tjob d, e;
    light(&d, 'd', 1);
    light(&e, 'e', 1);
    nevents = 0;
    td_store_turn(&st); /* a fresh budget */
    td_session_submit(s, &d.job);
    td_session_submit(s, &e.job);
    assert_string_equal(log_str(), "run d, done d");
    td_session_hold(s);
    td_store_turn(&st);
    assert_string_equal(log_str(), "run d, done d");
    assert_false(td_store_has_deferred(&st));
    td_session_release(s);
    assert_string_equal(log_str(), "run d, done d, run e, done e");
    /* closed while deferred, with the caller's reference gone: only the list holds it */
    struct tjob f, g;
    light(&f, 'f', 1);
    light(&g, 'g', 1);
    nevents = 0;
    td_store_turn(&st);
    td_session_submit(s, &f.job);
    td_session_submit(s, &g.job);
    assert_true(td_store_has_deferred(&st));
    td_session_close(s);
    assert_string_equal(log_str(), "run f, done f, drop g");
    assert_int_equal(atomic_load(&g.job.cancel.reason), TD_CANCEL_SESSION_CLOSED);
    assert_int_equal(s->refs, 2); /* the caller's and the list's */
    td_session_unref(s);
    td_store_turn(&st); /* gives the list's reference back: the session is freed here */
    assert_false(td_store_has_deferred(&st));
    assert_false(td_store_busy(&st));
    td_store_close(&st);
}

/* Shutdown with deferred sessions: cancel_all and stop drop what waits (the budget does not
** hold them back), and td_store_close lets the list's references go. */
static void test_deferred_sessions_at_shutdown(void **state)
{
    (void)state;
    struct td_store st;
    struct td_session *s = open_budgeted(&st, 1);
    struct tjob a, b, c;
    light(&a, 'a', 1);
    light(&b, 'b', 1);
    light(&c, 'c', 1);
    td_session_submit(s, &a.job);
    td_session_submit(s, &b.job);
    assert_true(td_store_busy(&st));
    td_store_cancel_all(&st);
    assert_string_equal(log_str(), "run a, done a, drop b");
    assert_false(td_store_busy(&st));
    td_store_turn(&st);
    td_store_turn(&st); /* the budget is spent: c waits on the list */
    nevents = 0;
    struct tjob d;
    light(&d, 'd', 1);
    td_session_submit(s, &c.job);
    td_session_submit(s, &d.job);
    assert_string_equal(log_str(), "run c, done c");
    td_store_stop(&st);
    assert_string_equal(log_str(), "run c, done c, drop d");
    assert_true(td_store_has_deferred(&st)); /* listed until a turn or the close */
    td_session_unref(s);
    td_store_close(&st); /* frees s through the list's reference */
    assert_false(td_store_has_deferred(&st));
}

/* ---- handle table entries are charged ---- */

static void test_entries_are_charged_to_the_quota(void **state)
{
    (void)state;
    struct td_store st;
    struct td_store_config cfg = {.session_ttl_ms = 1000,
                                  .session_max_bytes = 250,
                                  .entry_bytes = 100};
    td_store_init(&st, &cfg, &later);
    struct td_session *s;
    assert_int_equal(td_store_open(&st, &s, NULL), 0);
    const int64_t empty[] = {0};
    struct td_tensor *t;
    struct td_err err;
    for (uint64_t h = 1; h <= 2; h++) {
        assert_int_equal(td_tensor_empty(&t, TD_DTYPE_F32, empty, 1, &s->quota, NULL), 0);
        assert_int_equal(td_session_put(s, h, t, NULL), 0);
    }
    assert_int_equal(td_session_bytes(s), 200);
    assert_int_equal(td_tensor_empty(&t, TD_DTYPE_F32, empty, 1, &s->quota, NULL), 0);
    assert_int_equal(td_session_put(s, 3, t, &err), TD_EQUOTA); /* t is released */
    assert_string_equal(err.msg, "session memory quota exceeded: 250 bytes");
    td_err_set(&err, TD_EINVAL, "bad");
    td_session_put_failure(s, 3, &err); /* cannot be charged: not recorded */
    assert_int_equal(td_session_count(s), 2);
    assert_int_equal(td_session_bytes(s), 200);
    td_session_free_handle(s, 1);
    assert_int_equal(td_session_bytes(s), 100);
    td_session_put_failure(s, 4, &err); /* charged like any entry */
    assert_int_equal(td_session_count(s), 2);
    assert_int_equal(td_session_bytes(s), 200);
    assert_int_equal(atomic_load(&st.global.used), 200);
    td_session_close(s);
    assert_int_equal(td_session_bytes(s), 0);
    assert_int_equal(atomic_load(&st.global.used), 0);
    td_session_unref(s);
    td_store_close(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_matched_jobs_in_order),
        cmocka_unit_test(test_generator_and_walks_made_on_first_use),
        cmocka_unit_test(test_cancel_when_idle_drops_now),
        cmocka_unit_test(test_hold_and_release),
        cmocka_unit_test(test_store_cancel_all_and_stop),
        cmocka_unit_test(test_close_outside_a_job_drops_the_queue),
        cmocka_unit_test(test_sweep_calls_on_expire_and_bounds_its_work),
        cmocka_unit_test(test_turn_budget_spreads_inline_jobs_over_turns),
        cmocka_unit_test(test_turn_budget_is_round_robin),
        cmocka_unit_test(test_deferred_session_cancelled_closed_or_held),
        cmocka_unit_test(test_deferred_sessions_at_shutdown),
        cmocka_unit_test(test_entries_are_charged_to_the_quota),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
