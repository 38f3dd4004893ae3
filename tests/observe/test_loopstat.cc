// The loopstat CLI against live processes: JSON and Prometheus snapshots match the child's own
// counters, --tasks shows the child's call graph, and bad targets give one line and status 1.
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "coil_test.h"
extern "C" {
#include "observe/stats.h"
}

namespace {

std::string loopstat_path() { return coil_test::exe_dir() + "/loopstat"; }

struct Out {
    int status;
    std::string out, err;
};

Out run_loopstat_via(const std::string &prefix, const std::string &args)
{
    char errpath[] = "/tmp/coil-loopstat-err-XXXXXX";
    int efd = mkstemp(errpath);
    close(efd);
    std::string cmd = prefix + loopstat_path() + " " + args + " 2>" + errpath;
    FILE *p = popen(cmd.c_str(), "r");
    Out o{ -1, "", "" };
    if (!p)
        return o;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        o.out.append(buf, n);
    int st = pclose(p);
    o.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    FILE *e = fopen(errpath, "r");
    while (e && (n = fread(buf, 1, sizeof buf, e)) > 0)
        o.err.append(buf, n);
    if (e)
        fclose(e);
    unlink(errpath);
    return o;
}

Out run_loopstat(const std::string &args) { return run_loopstat_via("", args); }

// A child process running a loop with known work done, waiting until told to quit.
struct Child {
    pid_t pid = -1;
    int ctl = -1;              // write a byte to make the child finish
    coil_loop_stats stats{};   // its counters after the known work, as it saw them
    std::string backend;       // its loop's backend, as coil_loop_backend named it
    int failed = 0;            // the child's exit status when it could not start its loop
};

struct ChildArgs {
    int ready, quit;
};

// `setup` runs in the child before its loop exists (a mount namespace, a forced watch kind).
Child start_child(void (*setup)() = nullptr)
{
    int ready[2], quit[2];
    Child c;
    if (pipe(ready) || pipe(quit))
        return c;
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        close(quit[1]);
        if (setup)
            setup();
        static ChildArgs a;
        a = { ready[1], quit[0] };
        coil_runner *r = nullptr;
        coil_runner_opts ro{};
        ro.no_sigint = true;
        if (coil_runner_new(&r, &ro) != 0)
            _exit(2);
        int rc = coil_runner_run(r, [](void *) -> void * {
            // Known work: 7 tasks that finish, one that sleeps until we quit.
            for (int i = 0; i < 7; i++) {
                coil_task *t = nullptr;
                coil_create_task(&t, [](void *) -> void * { return nullptr; }, nullptr, nullptr);
                coil_task_await(t, nullptr);
                coil_task_free(t);
            }
            coil_task *sleeper = nullptr;
            coil_task_opts so{};
            so.name = "sleeper-task";
            coil_create_task(&sleeper, [](void *) -> void * {
                coil_sleep(60);
                return nullptr;
            }, nullptr, &so);
            // Gauges are published once per scheduler iteration: yield until they show the
            // sleeper asleep on its timer (bounded: it takes one or two iterations).
            coil_loop_stats s{};
            for (int i = 0; i < 1000; i++) {
                coil_loop_get_stats(coil_get_running_loop(), &s);
                if (s.tasks_alive == 2 && s.timers_armed >= 1)
                    break;
                coil_sleep(0);
            }
            (void)!write(a.ready, &s, sizeof s);
            char name[16] = { 0 };
            strncpy(name, coil_loop_backend(coil_get_running_loop()), sizeof name - 1);
            (void)!write(a.ready, name, sizeof name);
            char b;
            size_t n;
            coil_read(a.quit, &b, 1, &n);
            coil_task_cancel(sleeper, nullptr);
            coil_task_await(sleeper, nullptr);
            coil_task_free(sleeper);
            return nullptr;
        }, nullptr, nullptr);
        coil_runner_close(r);
        _exit(rc == 0 ? 0 : 3); // 3: the loop could not be made (or the run failed)
    }
    close(ready[1]);
    close(quit[0]);
    c.pid = pid;
    c.ctl = quit[1];
    char name[16];
    if (read(ready[0], &c.stats, sizeof c.stats) != (ssize_t)sizeof c.stats ||
        read(ready[0], name, sizeof name) != (ssize_t)sizeof name) {
        int st = 0;
        waitpid(pid, &st, 0);
        c.failed = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        c.pid = -pid;
    } else {
        name[sizeof name - 1] = '\0';
        c.backend = name;
    }
    close(ready[0]);
    return c;
}

int stop_child(Child &c)
{
    if (c.pid < 0)
        return c.failed;
    (void)!write(c.ctl, "q", 1);
    close(c.ctl);
    int st = 0;
    waitpid(c.pid < 0 ? -c.pid : c.pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// A JSON string field's value (no escapes: loopstat prints only plain words there), or "(none)".
std::string json_str(const std::string &line, const std::string &name)
{
    std::string key = "\"" + name + "\":\"";
    size_t p = line.find(key);
    if (p == std::string::npos)
        return "(none)";
    p += key.size();
    size_t e = line.find('"', p);
    return e == std::string::npos ? "(none)" : line.substr(p, e - p);
}

uint64_t json_field(const std::string &line, const std::string &name)
{
    std::string key = "\"" + name + "\":";
    size_t p = line.find(key);
    if (p == std::string::npos)
        return UINT64_MAX;
    return strtoull(line.c_str() + p + key.size(), nullptr, 10);
}

TEST(Loopstat, JsonSnapshotOfALiveProcessMatchesItsCounters)
{
    Child c = start_child();
    ASSERT_GT(c.pid, 0);
    Out o = run_loopstat("--json " + std::to_string(c.pid));
    EXPECT_EQ(0, o.status) << o.err;
    std::vector<std::string> lines;
    std::istringstream in(o.out);
    for (std::string l; std::getline(in, l);)
        lines.push_back(l);
    ASSERT_EQ(1u, lines.size()) << o.out; // one loop, one object, one line
    const std::string &l = lines[0];
    EXPECT_EQ('{', l.front());
    EXPECT_EQ('}', l.back());
    EXPECT_EQ((uint64_t)c.pid, json_field(l, "pid"));
    EXPECT_EQ(c.stats.shard, json_field(l, "shard"));
    // The child is blocked reading its pipe: its counters cannot have moved (an idle loop does
    // not wake up to look at its slot).
    EXPECT_EQ(c.stats.tasks_created, json_field(l, "tasks_created"));
    EXPECT_EQ(1u + 7u + 1u, c.stats.tasks_created); // the main task, 7 workers, the sleeper
    EXPECT_EQ(7u, c.stats.tasks_finished);
    EXPECT_EQ(c.stats.tasks_finished, json_field(l, "tasks_finished"));
    EXPECT_EQ(2u, json_field(l, "tasks_alive"));
    EXPECT_EQ(json_field(l, "iterations"), c.stats.iterations);
    EXPECT_GE(json_field(l, "sqes_submitted"), c.stats.sqes_submitted);
    EXPECT_GE(json_field(l, "timers_armed"), 1u);
    EXPECT_NE(std::string::npos, l.find("\"step_hist_log2_ns\":["));
    EXPECT_TRUE(c.backend == "io_uring" || c.backend == "epoll") << c.backend;
    EXPECT_EQ(c.backend, json_str(l, "backend")) << l;
    EXPECT_EQ(0, stop_child(c));
}

// A format check written from the Prometheus text exposition format: every line is a comment
// (# HELP name text / # TYPE name type) or a sample `name{label="value",...} value`; names and
// label names are valid; HELP and TYPE at most once per family and before its samples; a
// histogram's buckets are cumulative and its +Inf bucket equals its _count.
bool name_char(char c, bool first, bool colon)
{
    return isalpha((unsigned char)c) || c == '_' || (colon && c == ':') || (!first && isdigit((unsigned char)c));
}

// Parse a metric or label name at s[i]; returns its end, or npos.
size_t parse_name(const std::string &s, size_t i, bool colon)
{
    size_t j = i;
    while (j < s.size() && name_char(s[j], j == i, colon))
        j++;
    return j == i ? std::string::npos : j;
}

bool parse_value(const std::string &v)
{
    if (v == "+Inf" || v == "-Inf" || v == "NaN")
        return true;
    char *end = nullptr;
    strtod(v.c_str(), &end);
    return !v.empty() && *end == '\0' && !isspace((unsigned char)v[0]);
}

std::string prometheus_format_errors(const std::string &text)
{
    std::set<std::string> helped, typed, sampled;
    std::map<std::string, std::string> types;
    std::map<std::string, double> last_bucket, inf_bucket;
    static const std::set<std::string> kinds = { "counter", "gauge", "histogram", "summary", "untyped" };
    std::string errs;
    std::istringstream in(text);
    int ln = 0;
    for (std::string l; std::getline(in, l);) {
        ln++;
        std::string at = "line " + std::to_string(ln) + ": ";
        if (l.rfind("# HELP ", 0) == 0 || l.rfind("# TYPE ", 0) == 0) {
            bool help = l[2] == 'H';
            size_t e = parse_name(l, 7, true);
            if (e == std::string::npos || e >= l.size() || l[e] != ' ') {
                errs += at + "bad comment: " + l + "\n";
                continue;
            }
            std::string name = l.substr(7, e - 7), rest = l.substr(e + 1);
            if (!(help ? helped : typed).insert(name).second || sampled.count(name))
                errs += at + "HELP/TYPE repeated or after samples\n";
            if (!help) {
                if (!kinds.count(rest))
                    errs += at + "bad type " + rest + "\n";
                types[name] = rest;
            }
            continue;
        }
        size_t e = parse_name(l, 0, true);
        if (e == std::string::npos) {
            errs += at + "not a valid line: " + l + "\n";
            continue;
        }
        std::string name = l.substr(0, e), labels;
        if (e < l.size() && l[e] == '{') {
            size_t i = e + 1;
            bool ok = true;
            while (ok && i < l.size() && l[i] != '}') {
                size_t ne = parse_name(l, i, false);
                ok = ne != std::string::npos && ne + 1 < l.size() && l[ne] == '=' && l[ne + 1] == '"';
                if (!ok)
                    break;
                size_t j = ne + 2;
                while (j < l.size() && l[j] != '"')
                    j += l[j] == '\\' ? 2 : 1;
                ok = j < l.size();
                i = j + 1;
                if (ok && i < l.size() && l[i] == ',')
                    i++;
            }
            if (!ok || i >= l.size()) {
                errs += at + "bad labels: " + l + "\n";
                continue;
            }
            labels = l.substr(e + 1, i - e - 1);
            e = i + 1;
        }
        if (e >= l.size() || l[e] != ' ' || !parse_value(l.substr(e + 1))) {
            errs += at + "bad value: " + l + "\n";
            continue;
        }
        double v = strtod(l.c_str() + e + 1, nullptr);
        std::string family = name;
        for (std::string suf : { "_bucket", "_sum", "_count" })
            if (name.size() > suf.size() && name.compare(name.size() - suf.size(), std::string::npos, suf) == 0 &&
                types.count(name.substr(0, name.size() - suf.size())))
                family = name.substr(0, name.size() - suf.size());
        if (!types.count(family))
            errs += at + "sample without TYPE: " + l + "\n";
        sampled.insert(family);
        std::string suffix = name.substr(family.size());
        if (suffix == "_bucket") {
            size_t le = labels.find(",le=\"");
            if (le == std::string::npos) {
                errs += at + "bucket without le\n";
                continue;
            }
            std::string series = family + "{" + labels.substr(0, le) + "}";
            if (last_bucket.count(series) && v < last_bucket[series])
                errs += at + "buckets not cumulative\n";
            last_bucket[series] = v;
            if (labels.find("le=\"+Inf\"") != std::string::npos)
                inf_bucket[series] = v;
        } else if (suffix == "_count") {
            std::string series = family + "{" + labels + "}";
            if (!inf_bucket.count(series) || inf_bucket[series] != v)
                errs += at + "_count differs from the +Inf bucket\n";
        }
    }
    return errs;
}

// Does `text` have a line that starts with `first` and whose next two fields are `second` and `third`?
bool has_row(const std::string &text, const std::string &first, const std::string &second, const std::string &third)
{
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) {
        std::istringstream f(l);
        std::string a, b, c;
        f >> a >> b >> c;
        if (a == first && b == second && c == third)
            return true;
    }
    return false;
}

TEST(Loopstat, PrometheusOutputPassesTheExpositionFormatCheck)
{
    Child c = start_child();
    ASSERT_GT(c.pid, 0);
    Out o = run_loopstat("--prometheus " + std::to_string(c.pid));
    EXPECT_EQ(0, o.status) << o.err;
    EXPECT_EQ("", prometheus_format_errors(o.out)) << o.out;
    std::string want = "coil_tasks_created_total{pid=\"" + std::to_string(c.pid) + "\",shard=\"" +
                       std::to_string(c.stats.shard) + "\"} " + std::to_string(c.stats.tasks_created) + "\n";
    EXPECT_NE(std::string::npos, o.out.find(want)) << o.out;
    EXPECT_NE(std::string::npos, o.out.find("# TYPE coil_tasks_alive gauge\n"));
    EXPECT_NE(std::string::npos, o.out.find("# TYPE coil_step_duration_seconds histogram\n"));
    std::string info = "coil_loop_info{pid=\"" + std::to_string(c.pid) + "\",shard=\"" + std::to_string(c.stats.shard) +
                       "\",backend=\"" + c.backend + "\"} 1\n";
    EXPECT_NE(std::string::npos, o.out.find(info)) << o.out;
    // Debian packages promtool (package prometheus): when it is installed, it must agree.
    if (access("/usr/bin/promtool", X_OK) == 0) {
        char path[] = "/tmp/coil-prom-XXXXXX";
        int fd = mkstemp(path);
        ASSERT_GE(fd, 0);
        EXPECT_EQ((ssize_t)o.out.size(), write(fd, o.out.data(), o.out.size()));
        close(fd);
        std::string cmd = std::string("/usr/bin/promtool check metrics < ") + path + " 2>&1";
        FILE *p = popen(cmd.c_str(), "r");
        std::string said;
        char buf[1024];
        size_t n;
        while (p && (n = fread(buf, 1, sizeof buf, p)) > 0)
            said.append(buf, n);
        int st = p ? pclose(p) : -1;
        unlink(path);
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << said;
    }
    EXPECT_EQ(0, stop_child(c));
}

TEST(Loopstat, FormatCheckRejectsMalformedExposition)
{
    // The checker itself must be able to fail.
    EXPECT_NE("", prometheus_format_errors("coil_x{pid=1} 3\n"));
    EXPECT_NE("", prometheus_format_errors("# TYPE a counter\n# TYPE a counter\na 1\n"));
    EXPECT_NE("", prometheus_format_errors("a 1\n"));
    EXPECT_NE("", prometheus_format_errors("# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"+Inf\"} 4\n"
                                           "h_count 4\n"));
    EXPECT_EQ("", prometheus_format_errors("# HELP a x\n# TYPE a gauge\na{k=\"v\"} 1.5\n"));
}

TEST(Loopstat, TasksShowsTheChildsTaskTree)
{
    Child c = start_child();
    ASSERT_GT(c.pid, 0);
    Out o = run_loopstat("--tasks --timeout 5 " + std::to_string(c.pid));
    EXPECT_EQ(0, o.status) << o.err;
    EXPECT_NE(std::string::npos, o.out.find("shard " + std::to_string(c.stats.shard) + " (thread ")) << o.out;
    EXPECT_NE(std::string::npos, o.out.find("2 tasks")) << o.out;
    EXPECT_NE(std::string::npos, o.out.find("└── Task 'sleeper-task' [suspended: sleep]")) << o.out;
    EXPECT_NE(std::string::npos, o.out.find("[suspended: io]")) << o.out; // the main task reads its pipe
    EXPECT_EQ(0, stop_child(c));
}

// What the child process's /tmp holds whose name starts with `prefix`.
std::vector<std::string> tmp_entries(const std::string &prefix)
{
    std::vector<std::string> v;
    DIR *d = opendir("/tmp");
    for (struct dirent *e; d && (e = readdir(d));)
        if (std::string(e->d_name).rfind(prefix, 0) == 0)
            v.push_back(e->d_name);
    if (d)
        closedir(d);
    return v;
}

TEST(Loopstat, TaskDumpGoesThroughNoFileAndAFifoAtTheOldTmpPathChangesNothing)
{
    Child c = start_child();
    ASSERT_GT(c.pid, 0);
    // The name the dump once went to: another user could plant a FIFO there and block the loop.
    std::string old_path = "/tmp/coil." + std::to_string(c.pid) + "." + std::to_string(c.stats.shard) + ".tasks";
    unlink(old_path.c_str());
    ASSERT_EQ(0, mkfifo(old_path.c_str(), 0666));
    Out o = run_loopstat("--tasks --timeout 5 " + std::to_string(c.pid));
    EXPECT_EQ(0, o.status) << o.err;
    EXPECT_NE(std::string::npos, o.out.find("└── Task 'sleeper-task' [suspended: sleep]")) << o.out;
    struct stat st;
    ASSERT_EQ(0, lstat(old_path.c_str(), &st));
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    // Nothing else of the child's in /tmp either.
    std::vector<std::string> left = tmp_entries("coil." + std::to_string(c.pid) + ".");
    EXPECT_EQ(1u, left.size());
    // Had a loop opened the FIFO to write, a reader lets it go, so the child can still stop.
    int unblock = open(old_path.c_str(), O_RDONLY | O_NONBLOCK);
    unlink(old_path.c_str());
    EXPECT_EQ(0, stop_child(c));
    if (unblock >= 0)
        close(unblock);
}

// The child gets a /tmp of its own (a private mount namespace with a fresh tmpfs, as systemd's
// PrivateTmp=yes gives a service): loopstat, outside, cannot see into it.
void give_private_tmp()
{
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", "/tmp", "tmpfs", 0, "size=1m,mode=1777") != 0)
        _exit(77);
}

TEST(Loopstat, TaskDumpWorksForAProcessWithAPrivateTmp)
{
    // Does this machine let us make a mount namespace? (root, or CAP_SYS_ADMIN)
    pid_t probe = fork();
    if (probe == 0) {
        give_private_tmp();
        _exit(0);
    }
    int st = 0;
    waitpid(probe, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        GTEST_SKIP() << "no private mount namespace here (needs CAP_SYS_ADMIN)";
    Child c = start_child(give_private_tmp);
    ASSERT_GT(c.pid, 0);
    Out o = run_loopstat("--tasks --timeout 5 " + std::to_string(c.pid));
    EXPECT_EQ(0, o.status) << o.err;
    EXPECT_NE(std::string::npos, o.out.find("└── Task 'sleeper-task' [suspended: sleep]")) << o.out;
    EXPECT_EQ(0, stop_child(c));
}

// ---- an idle loop: asleep in io_uring_enter with nothing to do, until loopstat asks ----

struct IdleChild {
    pid_t pid = -1;
    pid_t tid = -1;       // the loop's thread
    int quit = -1;        // write a byte: the child stops its loop from another thread
    int alive = -1;       // the child holds the write end: EOF here when it dies
};

struct IdleArgs {
    coil_loop *loop;
    int quit;
};

IdleChild start_idle_child(unsigned watch = COIL__WATCH_NONE)
{
    int ready[2], quit[2], alive[2];
    IdleChild c;
    if (pipe(ready) || pipe(quit) || pipe(alive))
        return c;
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        close(quit[1]);
        close(alive[0]);
        coil__stats_force_watch(watch);
        static IdleArgs a;
        if (coil_new_event_loop(&a.loop, nullptr) != 0)
            _exit(2);
        a.quit = quit[0];
        // No timer, no operation in flight, no source: the loop has nothing that could wake it
        // but loopstat and the stopper thread's threadsafe call.
        pthread_t stopper;
        pthread_create(&stopper, nullptr, [](void *) -> void * {
            char b;
            (void)!read(a.quit, &b, 1);
            coil_loop_call_soon_threadsafe(a.loop, [](void *arg) -> int {
                coil_loop_stop(static_cast<coil_loop *>(arg));
                return 0;
            }, a.loop);
            return nullptr;
        }, nullptr);
        pid_t tid = gettid();
        (void)!write(ready[1], &tid, sizeof tid);
        coil_loop_run_forever(a.loop);
        pthread_join(stopper, nullptr);
        coil_loop_close(a.loop);
        _exit(0);
    }
    close(ready[1]);
    close(quit[0]);
    close(alive[1]);
    c.pid = pid;
    c.quit = quit[1];
    c.alive = alive[0];
    if (read(ready[0], &c.tid, sizeof c.tid) != (ssize_t)sizeof c.tid)
        c.pid = -pid;
    close(ready[0]);
    return c;
}

int stop_idle_child(IdleChild &c)
{
    (void)!write(c.quit, "q", 1);
    close(c.quit);
    close(c.alive);
    int st = 0;
    waitpid(c.pid < 0 ? -c.pid : c.pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string task_file(const IdleChild &c, const char *what)
{
    return "/proc/" + std::to_string(c.pid) + "/task/" + std::to_string(c.tid) + "/" + what;
}

// Is the loop's thread blocked in io_uring_enter? (/proc/.../syscall names the syscall a blocked
// thread is in, "running" otherwise.)
// Asleep in its backend's wait: io_uring_enter, or epoll's.
bool in_backend_wait(const IdleChild &c)
{
    std::ifstream f(task_file(c, "syscall"));
    long nr = -1;
    if (!(f >> nr))
        return false;
#ifdef SYS_epoll_pwait2
    if (nr == SYS_epoll_pwait2)
        return true;
#endif
    return nr == SYS_io_uring_enter || nr == SYS_epoll_wait;
}

using coil_test::mono_ns;

// Wait (bounded) until the loop's thread is asleep in its backend.
bool wait_asleep(const IdleChild &c, double timeout_s = 5)
{
    uint64_t deadline = mono_ns() + (uint64_t)(timeout_s * 1e9);
    while (!in_backend_wait(c)) {
        if (mono_ns() > deadline)
            return false;
        sched_yield();
    }
    return true;
}

// The kernel's count of the thread's voluntary context switches: every time it went to sleep,
// so every wake-up of the loop shows here, whether or not the loop counted an iteration.
uint64_t voluntary_switches(const IdleChild &c)
{
    std::ifstream f(task_file(c, "status"));
    for (std::string line; std::getline(f, line);)
        if (line.rfind("voluntary_ctxt_switches:", 0) == 0)
            return strtoull(line.c_str() + 24, nullptr, 10);
    return UINT64_MAX;
}

// The child's segment, mapped read-only, and its one live slot.
struct ChildSeg {
    coil__stats_seg *seg = nullptr;
    const coil__loop_stats *slot = nullptr;
    explicit ChildSeg(pid_t pid)
    {
        char name[64];
        coil__stats_shm_name(name, sizeof name, pid);
        int fd = shm_open(name, O_RDONLY, 0);
        if (fd < 0)
            return;
        void *p = mmap(nullptr, sizeof(coil__stats_seg), PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
            return;
        seg = static_cast<coil__stats_seg *>(p);
        for (auto &s : seg->slots)
            if (__atomic_load_n(&s.in_use, __ATOMIC_ACQUIRE))
                slot = &s;
    }
    ~ChildSeg()
    {
        if (seg)
            munmap(seg, sizeof *seg);
    }
    uint64_t get(const uint64_t &f) const { return __atomic_load_n(&f, __ATOMIC_RELAXED); }
    unsigned watch() const { return __atomic_load_n(&slot->watch, __ATOMIC_RELAXED); }
};

TEST(Loopstat, AnIdleLoopAnswersATaskDumpAtOnce)
{
    IdleChild c = start_idle_child();
    ASSERT_GT(c.pid, 0);
    ChildSeg seg(c.pid);
    ASSERT_NE(nullptr, seg.slot);
    if (seg.watch() != COIL__WATCH_FUTEX) {
        stop_idle_child(c);
        GTEST_SKIP() << "this kernel has no IORING_OP_FUTEX_WAIT: the loop looks once a second instead";
    }
    // Twice: the first answer re-arms the watch for the second. Each time the loop is asleep
    // first, with nothing that would ever wake it but the request.
    for (int round = 0; round < 2; round++) {
        ASSERT_TRUE(wait_asleep(c)) << "round " << round;
        uint64_t t0 = mono_ns();
        Out o = run_loopstat("--tasks --timeout 2 " + std::to_string(c.pid));
        double took = (double)(mono_ns() - t0) / 1e9;
        EXPECT_EQ(0, o.status) << o.err;
        EXPECT_NE(std::string::npos, o.out.find(" 0 tasks")) << o.out;
        EXPECT_LT(took, 2.0);
    }
    EXPECT_EQ(0, stop_idle_child(c));
}

TEST(Loopstat, WithoutTheFutexWatchAnIdleLoopStillAnswersWithinItsPeriod)
{
    IdleChild c = start_idle_child(COIL__WATCH_TIMER);
    ASSERT_GT(c.pid, 0);
    ChildSeg seg(c.pid);
    ASSERT_NE(nullptr, seg.slot);
    EXPECT_EQ(COIL__WATCH_TIMER, seg.watch());
    ASSERT_TRUE(wait_asleep(c));
    Out o = run_loopstat("--tasks --timeout 5 " + std::to_string(c.pid));
    EXPECT_EQ(0, o.status) << o.err;
    EXPECT_NE(std::string::npos, o.out.find(" 0 tasks")) << o.out;
    EXPECT_EQ(0, stop_idle_child(c));
}

TEST(Loopstat, AnIdleLoopDoesNotWakeUpOnItsOwn)
{
    IdleChild c = start_idle_child();
    ASSERT_GT(c.pid, 0);
    ChildSeg seg(c.pid);
    ASSERT_NE(nullptr, seg.slot);
    if (seg.watch() != COIL__WATCH_FUTEX) {
        stop_idle_child(c);
        GTEST_SKIP() << "this kernel has no IORING_OP_FUTEX_WAIT: the loop looks once a second instead";
    }
    ASSERT_TRUE(wait_asleep(c));
    uint64_t switches = voluntary_switches(c), iterations = seg.get(seg.slot->iterations);
    ASSERT_NE(UINT64_MAX, switches);
    // A wake-up that must not happen cannot be waited for, only watched for over a window. The
    // window is longer than the period at which idle loops used to wake (one second), so that
    // behaviour fails here; it waits on the child's `alive` pipe, which ends early only if the
    // child dies.
    struct pollfd pfd = { c.alive, POLLIN, 0 };
    EXPECT_EQ(0, poll(&pfd, 1, 1500)) << "the child died";
    EXPECT_EQ(switches, voluntary_switches(c)) << "the idle loop's thread woke up";
    EXPECT_EQ(iterations, seg.get(seg.slot->iterations)) << "the idle loop ran an iteration";
    EXPECT_TRUE(in_backend_wait(c));
    EXPECT_EQ(0, stop_idle_child(c));
}

// The cell of `column` in the row of a loopstat table whose first field is `shard`, or "(none)".
std::string table_column(const std::string &table, const std::string &shard, const std::string &column)
{
    std::istringstream in(table);
    int at = -1;
    for (std::string l; std::getline(in, l);) {
        std::istringstream f(l);
        std::vector<std::string> cells;
        for (std::string c; f >> c;)
            cells.push_back(c);
        if (at < 0) {
            for (size_t i = 0; i < cells.size(); i++)
                if (cells[i] == column && !cells.empty() && cells[0] == "SHARD")
                    at = (int)i;
        } else if (!cells.empty() && cells[0] == shard && (size_t)at < cells.size()) {
            return cells[(size_t)at];
        }
    }
    return "(none)";
}

TEST(Loopstat, OnceAndTheProcessListShowALiveProcess)
{
    Child c = start_child();
    ASSERT_GT(c.pid, 0);
    Out once = run_loopstat("--once " + std::to_string(c.pid));
    EXPECT_EQ(0, once.status) << once.err;
    EXPECT_NE(std::string::npos, once.out.find("SHARD")) << once.out;
    EXPECT_NE(std::string::npos, once.out.find("BACKEND")) << once.out;
    EXPECT_EQ(c.backend, table_column(once.out, std::to_string(c.stats.shard), "BACKEND")) << once.out;
    Out list = run_loopstat("");
    EXPECT_EQ(0, list.status);
    EXPECT_TRUE(has_row(list.out, std::to_string(c.pid), "1", "live")) << list.out;
    EXPECT_EQ(0, stop_child(c));
    // Its segment went with its last loop.
    std::string seg = "/dev/shm/coil." + std::to_string(c.pid);
    EXPECT_NE(0, access(seg.c_str(), F_OK));
}

void expect_one_line_failure(const Out &o, const std::string &what)
{
    EXPECT_EQ(1, o.status);
    EXPECT_EQ("", o.out);
    EXPECT_EQ(1, std::count(o.err.begin(), o.err.end(), '\n')) << o.err;
    EXPECT_NE(std::string::npos, o.err.find(what)) << o.err;
}

TEST(Loopstat, ANonexistentPidFailsWithOneLine)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, nullptr, 0); // reaped: the pid names no process now
    expect_one_line_failure(run_loopstat(std::to_string(pid)), "no process with pid");
}

TEST(Loopstat, AProcessWithoutALoopFailsWithOneLine)
{
    // This test process has no loop open, so it publishes nothing.
    expect_one_line_failure(run_loopstat("--json " + std::to_string(getpid())), "publishes no coil counters");
}

TEST(Loopstat, AStaleSegmentOfACrashedProcessIsRecognised)
{
    int ready[2];
    ASSERT_EQ(0, pipe(ready));
    pid_t pid = fork();
    if (pid == 0) {
        coil_loop *loop = nullptr;
        coil_new_event_loop(&loop, nullptr);
        (void)!write(ready[1], "r", 1);
        pause();
        _exit(0);
    }
    char b;
    ASSERT_EQ(1, read(ready[0], &b, 1));
    kill(pid, SIGKILL); // a crash: no atexit, no loop close
    waitpid(pid, nullptr, 0);
    std::string seg = "/dev/shm/coil." + std::to_string(pid);
    EXPECT_EQ(0, access(seg.c_str(), F_OK));
    expect_one_line_failure(run_loopstat("--json " + std::to_string(pid)), "is stale");
    Out list = run_loopstat("");
    EXPECT_TRUE(has_row(list.out, std::to_string(pid), "1", "stale")) << list.out;
    Out clean = run_loopstat("--clean");
    EXPECT_EQ(0, clean.status);
    EXPECT_NE(std::string::npos, clean.out.find("removed /coil." + std::to_string(pid) + " ")) << clean.out;
    EXPECT_NE(0, access(seg.c_str(), F_OK));
    close(ready[0]);
    close(ready[1]);
}

// A segment under our own (live) pid, crafted by hand.
void craft_segment(uint32_t version, uid_t owner)
{
    char name[64];
    coil__stats_shm_name(name, sizeof name, getpid());
    int fd = shm_open(name, O_CREAT | O_RDWR | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(0, ftruncate(fd, sizeof(coil__stats_seg)));
    auto *s = static_cast<coil__stats_seg *>(mmap(nullptr, sizeof(coil__stats_seg), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    ASSERT_NE(MAP_FAILED, (void *)s);
    s->magic = COIL__STATS_MAGIC;
    s->version = version;
    s->slot_size = sizeof(coil__loop_stats);
    s->nslots = COIL__STATS_SLOTS;
    s->pid = (uint64_t)getpid();
    s->start_time = coil__proc_start_time(getpid());
    munmap(s, sizeof *s);
    if (owner != getuid()) {
        ASSERT_EQ(0, fchown(fd, owner, (gid_t)-1));
    }
    close(fd);
}

TEST(Loopstat, AVersionMismatchFailsWithOneLine)
{
    craft_segment(COIL__STATS_VERSION + 1, getuid());
    expect_one_line_failure(run_loopstat("--json " + std::to_string(getpid())), "another layout version");
    char name[64];
    coil__stats_shm_name(name, sizeof name, getpid());
    shm_unlink(name);
}

TEST(Loopstat, ASegmentOfAnotherUserFailsWithOneLine)
{
    // Root hands the file to another user; anyone else makes it unreadable (EACCES on open, as a
    // real foreign 0600 segment gives them).
    craft_segment(COIL__STATS_VERSION, getuid() == 0 ? 65534 : getuid());
    char name[64];
    coil__stats_shm_name(name, sizeof name, getpid());
    if (getuid() != 0)
        chmod(("/dev/shm" + std::string(name)).c_str(), 0);
    expect_one_line_failure(run_loopstat("--json " + std::to_string(getpid())), "belongs to another user");
    shm_unlink(name);
}

// Run loopstat under coreutils' timeout: a loopstat that blocks ends with status 124.
Out run_loopstat_bounded(const std::string &args) { return run_loopstat_via("timeout 10 ", args); }

TEST(Loopstat, AFifoAtTheSegmentNameIsRefusedAtOnceWithOneLine)
{
    // This test process has no loop open: plant a FIFO where its segment would be.
    std::string path = "/dev/shm/coil." + std::to_string(getpid());
    unlink(path.c_str());
    ASSERT_EQ(0, mkfifo(path.c_str(), 0600));
    expect_one_line_failure(run_loopstat_bounded("--json " + std::to_string(getpid())), "not a regular file");
    expect_one_line_failure(run_loopstat_bounded("--tasks " + std::to_string(getpid())), "not a regular file");
    // The process list skips it, without blocking on it either.
    Out list = run_loopstat_bounded("");
    EXPECT_EQ(0, list.status) << list.err;
    EXPECT_FALSE(has_row(list.out, std::to_string(getpid()), "1", "live")) << list.out;
    unlink(path.c_str());
}

TEST(Loopstat, ASymlinkAtTheSegmentNameIsRefused)
{
    std::string path = "/dev/shm/coil." + std::to_string(getpid());
    unlink(path.c_str());
    ASSERT_EQ(0, symlink("/etc/passwd", path.c_str()));
    expect_one_line_failure(run_loopstat_bounded("--json " + std::to_string(getpid())), "symbolic link");
    unlink(path.c_str());
}

// A child that creates two loops (one after the other) while its segment name is taken by
// `plant`, runs a task on each, and exits 0; returns its status and what it wrote on stderr.
struct TakenResult {
    int status = -1;
    std::string err;
};

TakenResult run_with_taken_name(void (*plant)(const std::string &path))
{
    TakenResult r;
    int efd = memfd_create("child-stderr", MFD_CLOEXEC);
    int go[2];
    if (efd < 0 || pipe(go))
        return r;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(efd, 2);
        close(go[1]);
        char b;
        if (read(go[0], &b, 1) != 1)
            _exit(3);
        for (int i = 0; i < 2; i++) {
            coil_loop *loop = nullptr;
            if (coil_new_event_loop(&loop, nullptr) != 0)
                _exit(2);
            coil_task *t = nullptr;
            coil_loop_create_task(loop, &t, [](void *) -> void * { return (void *)1; }, nullptr, nullptr);
            void *res = nullptr;
            if (coil_loop_run_until_complete(loop, (coil_future *)t, &res) != 0 || res != (void *)1)
                _exit(4);
            coil_task_free(t);
            coil_loop_close(loop);
        }
        _exit(0);
    }
    close(go[0]);
    std::string path = "/dev/shm/coil." + std::to_string(pid);
    unlink(path.c_str());
    plant(path);
    (void)!write(go[1], "g", 1);
    close(go[1]);
    int st = 0;
    waitpid(pid, &st, 0);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char buf[4096];
    ssize_t n;
    while ((n = pread(efd, buf, sizeof buf, (off_t)r.err.size())) > 0)
        r.err.append(buf, (size_t)n);
    close(efd);
    struct stat lst;
    EXPECT_EQ(0, lstat(path.c_str(), &lst)) << "the planted entry must be left alone";
    unlink(path.c_str());
    return r;
}

TEST(Loopstat, AProcessWhoseSegmentNameIsTakenSaysSoOnceAndStillRuns)
{
    TakenResult r = run_with_taken_name([](const std::string &path) { ASSERT_EQ(0, mkfifo(path.c_str(), 0666)); });
    EXPECT_EQ(0, r.status);
    EXPECT_EQ(1, std::count(r.err.begin(), r.err.end(), '\n')) << r.err;
    EXPECT_NE(std::string::npos, r.err.find("already exists and is not this process's")) << r.err;
    if (getuid() == 0) {
        // Another user's regular file: root could remove it, but must not take it for its own.
        r = run_with_taken_name([](const std::string &path) {
            int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
            ASSERT_GE(fd, 0);
            ASSERT_EQ(0, fchown(fd, 65534, 65534));
            close(fd);
        });
        EXPECT_EQ(0, r.status);
        EXPECT_EQ(1, std::count(r.err.begin(), r.err.end(), '\n')) << r.err;
        EXPECT_NE(std::string::npos, r.err.find("already exists")) << r.err;
    }
}

TEST(Loopstat, BadArgumentsPrintUsageAndFail)
{
    Out o = run_loopstat("--json");
    EXPECT_EQ(1, o.status);
    EXPECT_NE(std::string::npos, o.err.find("usage: loopstat"));
    EXPECT_EQ(1, run_loopstat("notapid").status);
    EXPECT_EQ(1, run_loopstat("--interval 0 1").status);
}

// ---- the backend each loop runs on ----

// loopstat shows, for every shard in `want` (shard -> backend) and no other, that backend: in
// its JSON, its Prometheus info metric and its table.
void expect_backends_shown(pid_t pid, const std::map<std::string, std::string> &want)
{
    Out j = run_loopstat("--json " + std::to_string(pid));
    EXPECT_EQ(0, j.status) << j.err;
    std::istringstream in(j.out);
    size_t n = 0;
    for (std::string l; std::getline(in, l); n++) {
        std::string shard = std::to_string(json_field(l, "shard"));
        ASSERT_TRUE(want.count(shard)) << "a shard nobody opened: " << l;
        EXPECT_EQ(want.at(shard), json_str(l, "backend")) << l;
    }
    EXPECT_EQ(want.size(), n) << j.out;
    Out p = run_loopstat("--prometheus " + std::to_string(pid));
    EXPECT_EQ(0, p.status) << p.err;
    EXPECT_EQ("", prometheus_format_errors(p.out)) << p.out;
    Out t = run_loopstat("--once " + std::to_string(pid));
    EXPECT_EQ(0, t.status) << t.err;
    for (const auto &w : want) {
        std::string info = "coil_loop_info{pid=\"" + std::to_string(pid) + "\",shard=\"" + w.first + "\",backend=\"" +
                           w.second + "\"} 1\n";
        EXPECT_NE(std::string::npos, p.out.find(info)) << info << p.out;
        EXPECT_EQ(w.second, table_column(t.out, w.first, "BACKEND")) << t.out;
    }
}

void expect_forced_backend_shown(const char *backend)
{
    static const char *env;
    env = backend;
    Child c = start_child([] { setenv("COIL_BACKEND", env, 1); });
    ASSERT_GT(c.pid, 0) << "the child could not start a loop on " << backend << " (exit status " << c.failed << ")";
    EXPECT_EQ(backend, c.backend);
    expect_backends_shown(c.pid, { { std::to_string(c.stats.shard), backend } });
    EXPECT_EQ(0, stop_child(c));
}

TEST(Loopstat, ALoopForcedToIoUringShowsIoUring) { expect_forced_backend_shown("io_uring"); }

TEST(Loopstat, ALoopForcedToEpollShowsEpoll) { expect_forced_backend_shown("epoll"); }

// A child that opens loops its own way and keeps them open until told to quit. `body` writes one
// line "SHARD BACKEND" per loop it opened (or "error WHAT") to its first fd, closes it, waits
// for a byte on the second, then closes what it opened; it returns the child's exit status.
struct LoopsChild {
    pid_t pid = -1;
    int ctl = -1;
    std::map<std::string, std::string> opened; // shard -> backend, as the child saw them
    std::string said;
};

LoopsChild start_loops_child(const std::function<int(int, int)> &body)
{
    LoopsChild c;
    int ready[2], quit[2];
    if (pipe(ready) || pipe(quit))
        return c;
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        close(quit[1]);
        unsetenv("COIL_BACKEND"); // each loop here names its backend; the test's environment must not
        _exit(body(ready[1], quit[0]));
    }
    close(ready[1]);
    close(quit[0]);
    c.pid = pid;
    c.ctl = quit[1];
    uint64_t deadline = coil_test::mono_ns() + (uint64_t)(10e9 * coil_test::time_scale());
    char buf[256];
    for (;;) {
        struct pollfd pf = { ready[0], POLLIN, 0 };
        uint64_t now = coil_test::mono_ns();
        if (now >= deadline || poll(&pf, 1, (int)((deadline - now) / 1000000u) + 1) <= 0)
            break;
        ssize_t n = read(ready[0], buf, sizeof buf);
        if (n <= 0)
            break;
        c.said.append(buf, (size_t)n);
    }
    close(ready[0]);
    std::istringstream in(c.said);
    for (std::string shard, backend; in >> shard >> backend;)
        if (shard != "error")
            c.opened[shard] = backend;
    return c;
}

int stop_loops_child(LoopsChild &c)
{
    (void)!write(c.ctl, "q", 1);
    close(c.ctl);
    int st = coil_test::wait_child(c.pid, 10, " (the child did not close its loops)");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void say(int fd, const std::string &line) { (void)!write(fd, line.data(), line.size()); }

TEST(Loopstat, EveryLoopShowsItsOwnBackendInOneProcess)
{
    LoopsChild c = start_loops_child([](int ready, int quit) {
        coil_loop *loops[2] = { nullptr, nullptr };
        const coil_backend which[2] = { COIL_BACKEND_IO_URING, COIL_BACKEND_EPOLL };
        for (int i = 0; i < 2; i++) {
            coil_loop_opts o{};
            o.backend = which[i];
            int rc = coil_new_event_loop(&loops[i], &o);
            if (rc != 0) {
                say(ready, "error backend " + std::to_string((int)which[i]) + " gave " + std::to_string(rc) + "\n");
                continue;
            }
            coil_loop_stats st{};
            coil_loop_get_stats(loops[i], &st);
            say(ready, std::to_string(st.shard) + " " + coil_loop_backend(loops[i]) + "\n");
        }
        close(ready);
        char b;
        (void)!read(quit, &b, 1);
        for (coil_loop *l : loops)
            if (l)
                coil_loop_close(l);
        return 0;
    });
    ASSERT_GT(c.pid, 0);
    EXPECT_EQ(2u, c.opened.size()) << c.said;
    std::set<std::string> backends;
    for (const auto &o : c.opened)
        backends.insert(o.second);
    EXPECT_EQ((std::set<std::string>{ "epoll", "io_uring" }), backends) << c.said;
    expect_backends_shown(c.pid, c.opened);
    EXPECT_EQ(0, stop_loops_child(c));
}

// A runtime's shards all take the loop options it was given, the backend among them.
void expect_runtime_shards_shown(coil_backend which, const char *name)
{
    static coil_backend want;
    want = which;
    LoopsChild c = start_loops_child([](int ready, int quit) {
        coil_loop_opts lo{};
        lo.backend = want;
        coil_runtime_opts ro{};
        ro.shards = 2;
        ro.no_pin = true;
        ro.loop = &lo;
        coil_runtime *rt = nullptr;
        int rc = coil_runtime_new(&rt, &ro);
        if (rc != 0) {
            say(ready, "error coil_runtime_new gave " + std::to_string(rc) + "\n");
            close(ready);
            return 1;
        }
        for (unsigned i = 0; i < 2; i++)
            say(ready, std::to_string(i) + " " + coil_loop_backend(coil_runtime_loop(rt, i)) + "\n");
        close(ready);
        char b;
        (void)!read(quit, &b, 1);
        coil_runtime_free(rt);
        return 0;
    });
    ASSERT_GT(c.pid, 0);
    ASSERT_EQ(2u, c.opened.size()) << c.said;
    for (const auto &o : c.opened)
        EXPECT_EQ(name, o.second) << "shard " << o.first;
    expect_backends_shown(c.pid, c.opened);
    EXPECT_EQ(0, stop_loops_child(c));
}

TEST(Loopstat, ARuntimesShardsOnIoUringShowIoUring) { expect_runtime_shards_shown(COIL_BACKEND_IO_URING, "io_uring"); }

TEST(Loopstat, ARuntimesShardsOnEpollShowEpoll) { expect_runtime_shards_shown(COIL_BACKEND_EPOLL, "epoll"); }

} // namespace
