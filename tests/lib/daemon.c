/* tests/lib/daemon.c — the end-to-end fixture: a real daemon on an ephemeral loopback port. */
#include "daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int td_test_daemon_start(struct td_test_daemon *d, const char *name, const char *const *args)
{
    memset(d, 0, sizeof *d);
    const char *bin = getenv("TENSORD_BIN");
    if (bin == NULL || bin[0] == '\0') {
        bin = "build/tensord";
    }
    mkdir("build", 0755);
    mkdir("build/tests", 0755);
    mkdir("build/tests/logs", 0755);
    snprintf(d->log_path, sizeof d->log_path, "build/tests/logs/%s.%d.log", name, (int)getpid());
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    for (int i = 0; args != NULL && args[i] != NULL && n < 62; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int fd = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    /* The daemon binds its listeners in turn (TCP first, then --unix) and logs each: poll the
    ** log until every one is listening; the TCP line carries the real port. */
    bool want_unix = false;
    for (int i = 0; args != NULL && args[i] != NULL; i++) {
        want_unix = want_unix || strcmp(args[i], "--unix") == 0;
    }
    for (int tries = 0; tries < 1000; tries++) {
        FILE *f = fopen(d->log_path, "r");
        char line[512];
        bool unix_up = false;
        while (f != NULL && fgets(line, sizeof line, f) != NULL) {
            const char *ev = strstr(line, "event=listening");
            const char *ad = strstr(line, "addr=127.0.0.1:");
            if (ev != NULL && ad != NULL) {
                d->port = atoi(ad + strlen("addr=127.0.0.1:"));
                snprintf(d->addr, sizeof d->addr, "127.0.0.1:%d", d->port);
            }
            unix_up = unix_up || (ev != NULL && strstr(line, "addr=unix:") != NULL);
        }
        if (d->port != 0 && (unix_up || !want_unix)) {
            fclose(f);
            return 0;
        }
        if (f != NULL) {
            fclose(f);
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = 0;
            return -1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    td_test_daemon_stop(d);
    return -1;
}

int td_test_daemon_stop(struct td_test_daemon *d)
{
    if (d->pid <= 0) {
        return -1;
    }
    kill(d->pid, SIGTERM);
    int st;
    pid_t r;
    do {
        r = waitpid(d->pid, &st, 0);
    } while (r < 0 && errno == EINTR);
    d->pid = 0;
    if (r < 0 || !WIFEXITED(st)) {
        return -1;
    }
    return WEXITSTATUS(st);
}

int td_test_dial(const struct td_test_daemon *d)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}
