/* coil-bench: run one workload and print its JSON line, or (`summary`) run every workload in its
 * own process several times and print the medians as a table. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <coil/coil.h>
#include <coil/stats_shm.h>

#include "bench.h"

static bench_workload *workloads;

void bench_register(bench_workload *w)
{
    /* Keep registration order stable by name so `list` and `summary` read the same every time. */
    bench_workload **p = &workloads;
    while (*p && strcmp((*p)->name, w->name) < 0)
        p = &(*p)->next;
    w->next = *p;
    *p = w;
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_extra(bench_result *out, const char *key, double value)
{
    size_t len = strlen(out->extra);
    snprintf(out->extra + len, sizeof out->extra - len, "%s\"%s\": %.6g", len ? ", " : "", key, value);
}

void bench_extra_str(bench_result *out, const char *key, const char *value)
{
    size_t len = strlen(out->extra);
    snprintf(out->extra + len, sizeof out->extra - len, "%s\"%s\": \"%s\"", len ? ", " : "", key, value);
}

uint64_t bench_faults(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

void bench_faults_per_op(bench_result *out, uint64_t before, uint64_t after, long n)
{
    bench_extra(out, "faults_per_op", n > 0 ? (double)(after - before) / (double)n : 0.0);
}

static char used_backend[16]; /* see bench_note_loop; "" = not noted */

static void note_backend(const char *name)
{
    if (!name || !*name)
        return;
    if (!used_backend[0]) {
        strncpy(used_backend, name, sizeof used_backend - 1);
        used_backend[sizeof used_backend - 1] = '\0';
    } else if (strcmp(used_backend, name) != 0) {
        strcpy(used_backend, "mixed");
    }
}

void bench_note_loop(void) { note_backend(coil_loop_backend(coil_get_running_loop())); }

int bench_note_server(int pid)
{
    char name[64];
    coil_stats_shm_name(name, sizeof name, pid);
    int fd = shm_open(name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
    if (fd < 0)
        return -ENOENT;
    struct stat st;
    void *p = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
        (size_t)st.st_size >= sizeof(coil_stats_shm_segment))
        p = mmap(NULL, sizeof(coil_stats_shm_segment), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return -ENOENT;
    const coil_stats_shm_segment *seg = p;
    int found = 0;
    if (__atomic_load_n(&seg->magic, __ATOMIC_ACQUIRE) == COIL_STATS_SHM_MAGIC &&
        seg->version == COIL_STATS_SHM_VERSION && seg->slot_size == sizeof(coil_stats_shm_slot) &&
        seg->pid == (uint64_t)pid)
        for (unsigned i = 0; i < COIL_STATS_SHM_SLOTS; i++) {
            const coil_stats_shm_slot *l = &seg->slots[i];
            if (!__atomic_load_n(&l->in_use, __ATOMIC_ACQUIRE))
                continue;
            char b[sizeof l->backend + 1];
            memcpy(b, l->backend, sizeof l->backend);
            b[sizeof l->backend] = '\0';
            note_backend(b);
            found = 1;
        }
    munmap(p, sizeof(coil_stats_shm_segment));
    return found ? 0 : -ENOENT;
}

static bench_workload *find(const char *name)
{
    for (bench_workload *w = workloads; w; w = w->next)
        if (strcmp(w->name, name) == 0)
            return w;
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: coil-bench WORKLOAD [--n N] [--shards N] [--port N] [--seconds S] [--mode M] [--loaded|--hog]\n"
               "                          [--backend io_uring|epoll|auto]\n"
               "       coil-bench summary [--runs R] [--backend B] [WORKLOAD...]   (each run in its own process;\n"
               "                                                      medians; every form, the runs alternating)\n"
               "       coil-bench list\n"
               "--backend: the backend of every loop the run makes, the example servers' too (it sets\n"
               "           COIL_BACKEND, which they inherit); the JSON line names the one used\n"
               "forms: --loaded  one timer armed and one stream read in flight on the loop meanwhile\n"
               "       --hog     a nice-19 busy thread on every CPU meanwhile\n"
               "workloads:\n");
    for (bench_workload *w = workloads; w; w = w->next)
        fprintf(f, "  %-16s %s%s%s\n", w->name, w->summary, w->forms & BENCH_FORM_LOADED ? " [--loaded]" : "",
                w->forms & BENCH_FORM_HOG ? " [--hog]" : "");
}

static int run_one(bench_workload *w, const bench_args *a)
{
    bench_result r;
    memset(&r, 0, sizeof r);
    long n = a->n ? a->n : (a->loaded || a->hog) && w->form_n ? w->form_n : w->default_n;
    bench_args args = *a;
    args.n = n;
    if ((a->loaded && !(w->forms & BENCH_FORM_LOADED)) || (a->hog && !(w->forms & BENCH_FORM_HOG))) {
        fprintf(stderr, "coil-bench: %s has no %s form\n", w->name, a->loaded ? "--loaded" : "--hog");
        return 2;
    }
    bench_hog *hog = NULL;
    int err = a->hog ? bench_hog_start(&hog) : 0;
    if (!err)
        err = w->fn(&args, &n, &r);
    bench_hog_stop(hog);
    if (err) {
        fprintf(stderr, "coil-bench: %s failed: %d (%s)\n", w->name, err, coil_strerror(err < 0 ? err : -err));
        return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"workload\": \"%s\", \"form\": \"%s\", \"impl\": \"coil\", \"backend\": \"%s\", \"n\": %ld, "
           "\"metric\": \"%s\", \"value\": %.4g, \"unit\": \"%s\", \"peak_rss_kb\": %ld%s%s}\n",
           w->name, a->loaded ? "loaded" : a->hog ? "hog" : "quiet", used_backend[0] ? used_backend : "unknown", n,
           r.metric, r.value, r.unit, ru.ru_maxrss, r.extra[0] ? ", " : "", r.extra);
    fflush(stdout);
    return 0;
}

/* ---- summary: run each workload in a child process, take medians ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { MAX_EXTRA = 8 };
typedef struct extra_set {
    int n;
    char key[MAX_EXTRA][48];
    double val[MAX_EXTRA];
} extra_set;

/* Every numeric member after peak_rss_kb is a workload's extra figure. */
static void parse_extras(const char *json, extra_set *x)
{
    x->n = 0;
    const char *p = strstr(json, "\"peak_rss_kb\"");
    if (!p)
        return;
    p = strchr(p, ',');
    while (p && x->n < MAX_EXTRA) {
        const char *k = strchr(p, '"');
        if (!k)
            return;
        const char *ke = strchr(k + 1, '"');
        if (!ke)
            return;
        const char *colon = strchr(ke, ':');
        if (!colon)
            return;
        char *end;
        double v = strtod(colon + 1, &end);
        if (end != colon + 1 && (size_t)(ke - k - 1) < sizeof x->key[0]) {
            memcpy(x->key[x->n], k + 1, (size_t)(ke - k - 1));
            x->key[x->n][ke - k - 1] = 0;
            x->val[x->n++] = v;
        }
        p = strchr(colon, ',');
    }
}

/* Copy the JSON string member `key` of json into out (outsz bytes), "" when there is none. */
static void json_string(const char *json, const char *key, char *out, size_t outsz)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *v = strstr(json, pat);
    size_t i = 0;
    if (v)
        for (v += strlen(pat); v[i] && v[i] != '"' && i + 1 < outsz; i++)
            out[i] = v[i];
    out[i] = 0;
}

static int run_child(const char *self, const char *name, const char *flag, double *value, long *rss, char *unit,
                     size_t unitsz, char *backend, size_t backendsz, extra_set *extras)
{
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        execl(self, self, name, flag, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char buf[4096];
    size_t len = 0;
    ssize_t k;
    while ((k = read(pipefd[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)k;
    buf[len] = 0;
    close(pipefd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -EIO;
    char *v = strstr(buf, "\"value\": "), *r = strstr(buf, "\"peak_rss_kb\": "), *u = strstr(buf, "\"unit\": \"");
    if (!v || !r || !u)
        return -EIO;
    *value = strtod(v + 9, NULL);
    *rss = strtol(r + 15, NULL, 10);
    parse_extras(buf, extras);
    json_string(buf, "backend", backend, backendsz);
    u += 9;
    size_t i = 0;
    while (u[i] && u[i] != '"' && i + 1 < unitsz) {
        unit[i] = u[i];
        i++;
    }
    unit[i] = 0;
    return 0;
}

/* One form of a workload over the summary's runs. */
typedef struct form_runs {
    const char *flag;  /* the child's option, NULL for the quiet form */
    const char *label;
    int ok;
    long rss;
    char unit[32];
    char backend[16];  /* the backend the runs named ("mixed" if they differed) */
    double vals[32];
    extra_set extras[32];
} form_runs;

static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return v[n / 2];
}

static void print_form(const char *name, form_runs *f, double quiet)
{
    if (!f->ok) {
        printf("%-16s %-7s %12s\n", name, f->label, "FAILED");
        return;
    }
    double med = median_of(f->vals, f->ok);
    char ratio[16] = "";
    if (f->flag && quiet > 0)
        snprintf(ratio, sizeof ratio, "%.2fx", med / quiet);
    printf("%-16s %-7s %12.4g %-8s %8s %12ld", name, f->label, med, f->unit, ratio, f->rss);
    for (int k = 0; k < f->extras[0].n; k++) {
        double ev[32];
        int m = 0;
        for (int i = 0; i < f->ok; i++)
            if (f->extras[i].n > k)
                ev[m++] = f->extras[i].val[k];
        printf("  %s=%.4g", f->extras[0].key[k], median_of(ev, m));
    }
    printf("  backend=%s\n", f->backend[0] ? f->backend : "unknown");
}

static int summary(const char *self, int runs, char **names, int nnames)
{
    printf("coil-bench summary: median of %d runs, one process per run; a workload's forms alternate run by run\n",
           runs);
    printf("%-16s %-7s %12s %-8s %8s %12s  %s\n", "workload", "form", "median", "unit", "vs quiet", "peak_rss_kb",
           "other figures (medians)");
    int failed = 0;
    static form_runs forms[3];
    for (bench_workload *w = workloads; w; w = w->next) {
        if (nnames) {
            int found = 0;
            for (int i = 0; i < nnames; i++)
                found |= strcmp(names[i], w->name) == 0;
            if (!found)
                continue;
        }
        int nf = 0;
        forms[nf++] = (form_runs){ .flag = NULL, .label = "quiet" };
        if (w->forms & BENCH_FORM_LOADED)
            forms[nf++] = (form_runs){ .flag = "--loaded", .label = "loaded" };
        if (w->forms & BENCH_FORM_HOG)
            forms[nf++] = (form_runs){ .flag = "--hog", .label = "hog" };
        /* Alternating the forms run by run puts each twin in the same minutes as its quiet run,
         * so a slow spell of the machine shows in both instead of in one. */
        for (int i = 0; i < runs && i < 32; i++)
            for (int k = 0; k < nf; k++) {
                form_runs *f = &forms[k];
                long r = 0;
                char b[16];
                if (run_child(self, w->name, f->flag, &f->vals[f->ok], &r, f->unit, sizeof f->unit, b, sizeof b,
                              &f->extras[f->ok]) == 0) {
                    if (!f->ok)
                        memcpy(f->backend, b, sizeof b);
                    else if (strcmp(f->backend, b) != 0)
                        snprintf(f->backend, sizeof f->backend, "mixed");
                    f->ok++;
                    if (r > f->rss)
                        f->rss = r;
                }
            }
        double quiet = forms[0].ok ? median_of(forms[0].vals, forms[0].ok) : 0;
        for (int k = 0; k < nf; k++) {
            print_form(w->name, &forms[k], quiet);
            failed += !forms[k].ok;
        }
        fflush(stdout);
    }
    return failed ? 1 : 0;
}

/* --backend: every loop of this process and of the processes it starts (summary's runs, the
 * example servers) takes it from COIL_BACKEND, set before any loop exists. */
static int set_backend(const char *v)
{
    if (!v || (strcmp(v, "io_uring") != 0 && strcmp(v, "epoll") != 0 && strcmp(v, "auto") != 0)) {
        fprintf(stderr, "coil-bench: --backend takes io_uring, epoll or auto, not '%s'\n", v ? v : "");
        return 2;
    }
    return setenv("COIL_BACKEND", v, 1) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "list") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "summary") == 0) {
        int runs = 5, i = 2;
        for (; i + 1 < argc && (strcmp(argv[i], "--runs") == 0 || strcmp(argv[i], "--backend") == 0); i += 2) {
            if (argv[i][2] == 'r')
                runs = atoi(argv[i + 1]);
            else if (set_backend(argv[i + 1]))
                return 2;
        }
        if (runs < 1 || runs > 32) {
            fprintf(stderr, "coil-bench: --runs must be 1..32\n");
            return 2;
        }
        return summary("/proc/self/exe", runs, argv + i, argc - i);
    }
    bench_workload *w = find(argv[1]);
    if (!w) {
        fprintf(stderr, "coil-bench: unknown workload '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    bench_args a = { 0 };
    for (int i = 2; i < argc; i += 2) { /* --option value pairs, and the form flags alone */
        const char *opt = argv[i];
        if (strcmp(opt, "--loaded") == 0 || strcmp(opt, "--hog") == 0) {
            *(opt[2] == 'l' ? &a.loaded : &a.hog) = true;
            if (a.loaded && a.hog) {
                fprintf(stderr, "coil-bench: one form at a time: --loaded or --hog\n");
                return 2;
            }
            i--;
            continue;
        }
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            fprintf(stderr, "coil-bench: %s needs a value\n", opt);
            return 2;
        }
        char *end;
        if (strcmp(opt, "--n") == 0) {
            a.n = strtol(val, &end, 10);
            if (*end || a.n <= 0) {
                fprintf(stderr, "coil-bench: --n takes a positive integer, not '%s'\n", val);
                return 2;
            }
        } else if (strcmp(opt, "--shards") == 0) {
            a.shards = atoi(val);
        } else if (strcmp(opt, "--port") == 0) {
            a.port = atoi(val);
        } else if (strcmp(opt, "--seconds") == 0) {
            a.seconds = strtod(val, NULL);
        } else if (strcmp(opt, "--mode") == 0) {
            a.mode = val;
        } else if (strcmp(opt, "--backend") == 0) {
            if (set_backend(val))
                return 2;
            a.backend = val;
        } else {
            fprintf(stderr, "coil-bench: unknown option '%s'\n", opt);
            return 2;
        }
    }
    return run_one(w, &a);
}
