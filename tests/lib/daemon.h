/* tests/lib/daemon.h — start and stop a real tensord for end-to-end tests.
**
** The daemon is $TENSORD_BIN (set by `make test-c`; build/tensord otherwise) on 127.0.0.1 with an
** ephemeral port, its log in build/tests/logs/<name>.log. Only the PID started here is signalled.
*/
#ifndef TD_TESTS_DAEMON_H
#define TD_TESTS_DAEMON_H

#include <sys/types.h>

struct td_test_daemon {
    pid_t pid;
    int port;
    char addr[64]; /* "127.0.0.1:PORT" */
    char log_path[256];
};

/* Starts the daemon with extra flags (NULL-terminated list); returns 0 once it listens, -1 on
** failure (after 10 s). */
int td_test_daemon_start(struct td_test_daemon *d, const char *name, const char *const *args);

/* SIGTERM, wait; returns the exit status (0 for a clean exit), or -1 if it died by a signal. */
int td_test_daemon_stop(struct td_test_daemon *d);

/* A raw TCP connection to the daemon with a 10 s receive timeout; -1 on failure. */
int td_test_dial(const struct td_test_daemon *d);

#endif
