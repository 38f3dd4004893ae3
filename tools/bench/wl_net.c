/* coil-bench: the network workloads (WORKLOADS.md): `echo` and `http`. The server is the
 * example program (tools/examples), started as its own process, so the figures are the server's
 * alone: its CPU time (user + system from /proc/PID/stat) over the run, per message. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "echo_client.h"

extern char **environ;

typedef struct server {
    pid_t pid;
    int out;     /* its stdout */
    int port;
} server;

/* Start tools/examples' `name` (built next to coil-bench) on an ephemeral port. */
static int server_start(const char *name, server *s)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 64);
    if (n <= 0)
        return -errno;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    snprintf(slash + 1, sizeof self - (size_t)(slash + 1 - self), "example-%s", name);
    if (access(self, X_OK) != 0) {
        fprintf(stderr, "coil-bench: %s not found (build with COIL_BUILD_TOOLS=ON)\n", self);
        return -ENOENT;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -errno;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    char *argv[] = { self, "--port", "0", NULL };
    int rc = posix_spawn(&s->pid, self, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc) {
        close(p[0]);
        return -rc;
    }
    s->out = p[0];
    char banner[256];
    size_t got = 0;
    while (got < sizeof banner - 1 && !memchr(banner, '\n', got)) {
        ssize_t k = read(p[0], banner + got, sizeof banner - 1 - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    banner[got] = 0;
    char *at = strstr(banner, "port ");
    s->port = at ? atoi(at + 5) : -1;
    if (s->port <= 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        close(p[0]);
        return -EIO;
    }
    /* Listening: its loop exists and publishes the backend it runs on. */
    bench_note_server((int)s->pid);
    return 0;
}

static void server_stop(server *s)
{
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    close(s->out);
}

/* User + system CPU seconds of a process so far. */
static double cpu_of(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return 0;
    unsigned long ut = 0, st = 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int echo(const bench_args *a, long *n, bench_result *out)
{
    server s;
    int err = server_start("echo_server", &s);
    if (err)
        return err;
    double secs = a->seconds > 0 ? a->seconds : 5.0;
    double cpu0 = cpu_of(s.pid);
    echo_load load;
    err = echo_client_run(s.port, 64, 64, secs, &load);
    double cpu = cpu_of(s.pid) - cpu0;
    server_stop(&s);
    if (err)
        return err;
    if (load.messages == 0 || load.errors)
        return -EIO;
    *n = (long)load.messages;
    out->metric = "messages_per_s";
    out->unit = "msg/s";
    out->value = (double)load.messages / load.wall_s;
    bench_extra(out, "server_cpu_us_per_msg", cpu * 1e6 / (double)load.messages);
    bench_extra(out, "server_cpu_s", cpu);
    bench_extra(out, "wall_s", load.wall_s);
    return 0;
}
COIL_BENCH_WORKLOAD(echo, echo, 0, "TCP echo, 64 conns x 64-byte messages for 5 s (msg/s, server CPU us/msg)")

static int http(const bench_args *a, long *n, bench_result *out)
{
    if (a->shards > 1) {
        fprintf(stderr, "coil-bench http: only 1 shard until the multi-shard runtime serves HTTP\n");
        return -EINVAL;
    }
    server s;
    int err = server_start("http_server", &s);
    if (err)
        return err;
    double secs = a->seconds > 0 ? a->seconds : 5.0;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "wrk -t1 -c64 -d%ds http://127.0.0.1:%d/ 2>&1", (int)(secs + 0.5), s.port);
    double cpu0 = cpu_of(s.pid);
    FILE *w = popen(cmd, "re");
    char text[8192];
    size_t len = w ? fread(text, 1, sizeof text - 1, w) : 0;
    int wst = w ? pclose(w) : -1;
    double cpu = cpu_of(s.pid) - cpu0;
    server_stop(&s);
    text[len] = 0;
    char *rq = strstr(text, " requests in ");
    char *rps = strstr(text, "Requests/sec:");
    if (wst != 0 || !rq || !rps) {
        fprintf(stderr, "coil-bench http: wrk failed:\n%s\n", text);
        return -EIO;
    }
    char *line = rq;
    while (line > text && line[-1] != '\n')
        line--;
    long requests = atol(line);
    if (requests <= 0 || strstr(text, "Socket errors") || strstr(text, "Non-2xx")) {
        fprintf(stderr, "coil-bench http: errors under load:\n%s\n", text);
        return -EIO;
    }
    *n = requests;
    out->metric = "requests_per_s";
    out->unit = "req/s";
    out->value = atof(rps + strlen("Requests/sec:"));
    bench_extra(out, "server_cpu_us_per_req", cpu * 1e6 / (double)requests);
    bench_extra(out, "server_cpu_s", cpu);
    return 0;
}
COIL_BENCH_WORKLOAD(http, http, 0, "HTTP/1.1 hello server under wrk -t1 -c64 (req/s, server CPU us/req)")
