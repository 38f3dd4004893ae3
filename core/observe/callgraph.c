/* coil core: the call graph. Which task awaits which task or future, built from what every
 * suspended task records anyway: wait_ops->what names the kind of wait, and wait_ops->awaits
 * lists the awaitables its wait_obj still waits on. Each waiter kind describes itself through
 * that hook, so this file knows none of them by name and a new combinator never edits it. Edges
 * go from the awaiting task to the awaited awaitable; "awaited by" is the same edge list read
 * backwards. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"
#include "observe/stats.h"

typedef struct edge {
    size_t from, to;
} edge;

typedef struct graph {
    coil__aw **nodes;
    size_t n, cap;
    size_t *slots;              /* open addressing: node index + 1, 0 = empty */
    size_t nslots;
    edge *fwd, *rev;            /* sorted by from, and by to */
    size_t nedges, ecap;
    size_t *fwd_start, *rev_start; /* CSR offsets, n + 1 each */
} graph;

static size_t hash_ptr(const void *p) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull); }

static bool grow_slots(graph *g)
{
    size_t ns = g->nslots ? g->nslots * 2 : 64;
    size_t *s = calloc(ns, sizeof *s);
    if (!s)
        return false;
    for (size_t i = 0; i < g->n; i++) {
        size_t h = hash_ptr(g->nodes[i]) & (ns - 1);
        while (s[h])
            h = (h + 1) & (ns - 1);
        s[h] = i + 1;
    }
    free(g->slots);
    g->slots = s;
    g->nslots = ns;
    return true;
}

/* The node of aw, added if new. SIZE_MAX when out of memory. */
static size_t node_of(graph *g, coil__aw *aw)
{
    if ((g->n + 1) * 2 > g->nslots && !grow_slots(g))
        return SIZE_MAX;
    size_t h = hash_ptr(aw) & (g->nslots - 1);
    while (g->slots[h]) {
        if (g->nodes[g->slots[h] - 1] == aw)
            return g->slots[h] - 1;
        h = (h + 1) & (g->nslots - 1);
    }
    if (g->n == g->cap) {
        coil__aw **a = coil__grow_array(g->nodes, &g->cap, sizeof *a, 64);
        if (!a)
            return SIZE_MAX;
        g->nodes = a;
    }
    g->nodes[g->n] = aw;
    g->slots[h] = g->n + 1;
    return g->n++;
}

static bool add_edge(graph *g, size_t from, size_t to)
{
    if (g->nedges == g->ecap) {
        edge *e = coil__grow_array(g->fwd, &g->ecap, sizeof *e, 64);
        if (!e)
            return false;
        g->fwd = e;
    }
    g->fwd[g->nedges++] = (edge){ from, to };
    return true;
}

/* What a suspended task waits on, as awaitables. */
static size_t awaits_of(coil_task *t, coil__aw **out, size_t max)
{
    if (t->tstate != COIL__T_SUSPENDED || !t->wait_ops || !t->wait_ops->awaits || !t->wait_obj)
        return 0;
    return t->wait_ops->awaits(t->wait_obj, out, max);
}

static int cmp_from(const void *a, const void *b)
{
    const edge *x = a, *y = b;
    return x->from < y->from ? -1 : x->from > y->from ? 1 : x->to < y->to ? -1 : x->to > y->to;
}

static int cmp_to(const void *a, const void *b)
{
    const edge *x = a, *y = b;
    return x->to < y->to ? -1 : x->to > y->to ? 1 : x->from < y->from ? -1 : x->from > y->from;
}

static size_t *offsets(const edge *e, size_t ne, size_t n, bool by_from)
{
    size_t *o = calloc(n + 1, sizeof *o);
    if (!o)
        return NULL;
    for (size_t i = 0; i < ne; i++)
        o[(by_from ? e[i].from : e[i].to) + 1]++;
    for (size_t i = 0; i < n; i++)
        o[i + 1] += o[i];
    return o;
}

static void graph_free(graph *g)
{
    free(g->nodes);
    free(g->slots);
    free(g->fwd);
    free(g->rev);
    free(g->fwd_start);
    free(g->rev_start);
}

static int graph_build(coil_loop *loop, graph *g)
{
    memset(g, 0, sizeof *g);
    size_t nt = coil_all_tasks(loop, NULL, 0);
    coil_task **ts = malloc((nt ? nt : 1) * sizeof *ts);
    size_t amax = 16;
    coil__aw **aws = malloc(amax * sizeof *aws);
    int err = -ENOMEM;
    if (!ts || !aws)
        goto out;
    nt = coil_all_tasks(loop, ts, nt);
    /* Tasks first, so node i < nt is task ts[i] in creation-pool order. */
    for (size_t i = 0; i < nt; i++)
        if (node_of(g, &ts[i]->aw) == SIZE_MAX)
            goto out;
    for (size_t i = 0; i < nt; i++) {
        size_t k = awaits_of(ts[i], aws, amax);
        if (k > amax) {
            coil__aw **a = realloc(aws, k * sizeof *a);
            if (!a)
                goto out;
            aws = a;
            amax = k;
            k = awaits_of(ts[i], aws, amax);
        }
        size_t from = node_of(g, &ts[i]->aw);
        for (size_t j = 0; j < k; j++) {
            size_t to = node_of(g, aws[j]);
            if (to == SIZE_MAX || !add_edge(g, from, to))
                goto out;
        }
    }
    if (g->nedges)
        qsort(g->fwd, g->nedges, sizeof *g->fwd, cmp_from);
    g->rev = malloc((g->nedges ? g->nedges : 1) * sizeof *g->rev);
    if (!g->rev)
        goto out;
    if (g->nedges) {
        memcpy(g->rev, g->fwd, g->nedges * sizeof *g->rev);
        qsort(g->rev, g->nedges, sizeof *g->rev, cmp_to);
    }
    g->fwd_start = offsets(g->fwd, g->nedges, g->n, true);
    g->rev_start = offsets(g->rev, g->nedges, g->n, false);
    if (g->fwd_start && g->rev_start)
        err = 0;
out:
    free(ts);
    free(aws);
    if (err)
        graph_free(g);
    return err;
}

static size_t find_node(const graph *g, const coil__aw *aw)
{
    if (!g->nslots)
        return SIZE_MAX;
    size_t h = hash_ptr(aw) & (g->nslots - 1);
    while (g->slots[h]) {
        if (g->nodes[g->slots[h] - 1] == aw)
            return g->slots[h] - 1;
        h = (h + 1) & (g->nslots - 1);
    }
    return SIZE_MAX;
}

static const char *state_of(coil__aw *aw)
{
    if (aw->h.kind != COIL__RQ_TASK)
        return aw->h.state == COIL__PENDING ? "pending" : "done";
    switch (((coil_task *)aw)->tstate) {
    case COIL__T_NEW:
        return "new";
    case COIL__T_READY:
        return "ready";
    case COIL__T_RUNNING:
        return "running";
    case COIL__T_SUSPENDED:
        return "suspended";
    default:
        return "done";
    }
}

static void fill_entry(coil_call_graph_entry *e, coil__aw *aw, int depth, int parent, bool cycle)
{
    coil_task *t = aw->h.kind == COIL__RQ_TASK ? (coil_task *)aw : NULL;
    *e = (coil_call_graph_entry){
        .future = (coil_future *)(void *)aw,
        .task = t,
        .name = t ? coil__task_name(t) : "Future",
        .state = state_of(aw),
        .awaiting = t && t->tstate == COIL__T_SUSPENDED && t->wait_ops ? t->wait_ops->what : NULL,
        .file = t && t->ext ? t->ext->file : NULL,
        .line = t && t->ext ? t->ext->line : 0,
        .depth = depth,
        .parent = parent,
        .cycle = cycle,
    };
}

/* ---- capture: t and who awaits it ---- */

typedef struct capture {
    const graph *g;
    coil_call_graph_entry *out;
    size_t max, n;
    size_t *path;               /* node indices from entry 0 down to the current one */
} capture;

static void capture_from(capture *c, size_t node, int depth, int parent)
{
    bool cycle = false;
    for (int i = 0; i < depth; i++)
        if (c->path[i] == node)
            cycle = true;
    size_t me = c->n++;
    if (me < c->max)
        fill_entry(&c->out[me], c->g->nodes[node], depth, parent, cycle);
    if (cycle)
        return;
    c->path[depth] = node;
    for (size_t i = c->g->rev_start[node]; i < c->g->rev_start[node + 1]; i++)
        capture_from(c, c->g->rev[i].from, depth + 1, (int)me);
}

int coil_task_capture_call_graph(coil_task *t, coil_call_graph_entry *out, size_t max, size_t *n)
{
    if (!t || !n || (max && !out))
        return -EINVAL;
    graph g;
    int err = graph_build(t->loop, &g);
    if (err)
        return err;
    capture c = { &g, out, max, 0, calloc(g.n + 1, sizeof(size_t)) };
    if (!c.path) {
        graph_free(&g);
        return -ENOMEM;
    }
    size_t root = find_node(&g, &t->aw);
    if (root == SIZE_MAX) {
        /* Done: not in the graph, and nobody can await it any more. */
        if (max)
            fill_entry(&out[0], &t->aw, 0, -1, false);
        c.n = 1;
    } else {
        capture_from(&c, root, 0, -1);
    }
    *n = c.n;
    free(c.path);
    graph_free(&g);
    return 0;
}

/* ---- printing ---- */

static void print_label(FILE *f, coil__aw *aw)
{
    coil_call_graph_entry e;
    fill_entry(&e, aw, 0, -1, false);
    if (e.task)
        fprintf(f, "Task '%s' [%s", e.name, e.state);
    else
        fprintf(f, "Future %p [%s", (void *)aw, e.state);
    if (e.awaiting)
        fprintf(f, ": %s", e.awaiting);
    fputc(']', f);
    if (e.file)
        fprintf(f, " created at %s:%d", e.file, e.line);
}

static void print_indent(FILE *f, const char *prefix, bool last)
{
    fprintf(f, "%s%s", prefix, last ? "└── " : "├── ");
}

int coil_task_print_call_graph(coil_task *t, FILE *f)
{
    if (!t || !f)
        return -EINVAL;
    size_t n = 0;
    int err = coil_task_capture_call_graph(t, NULL, 0, &n);
    if (err)
        return err;
    coil_call_graph_entry *es = malloc(n * sizeof *es);
    if (!es)
        return -ENOMEM;
    err = coil_task_capture_call_graph(t, es, n, &n);
    if (!err) {
        print_label(f, &t->aw);
        fputc('\n', f);
        /* What it awaits, one level: the rest of the graph is "awaited by". */
        coil__aw *aws[8];
        size_t k = awaits_of(t, aws, 8);
        for (size_t i = 0; i < k && i < 8; i++) {
            fputs("  awaits: ", f);
            print_label(f, aws[i]);
            fputc('\n', f);
        }
        if (k > 8)
            fprintf(f, "  awaits: ... and %zu more\n", k - 8);
        for (size_t i = 1; i < n; i++) {
            fprintf(f, "%*s", 2 * es[i].depth, "");
            fputs("awaited by ", f);
            print_label(f, &((coil_future *)es[i].future)->aw);
            fputs(es[i].cycle ? " (await cycle)\n" : "\n", f);
        }
    }
    free(es);
    return err;
}

typedef struct tree {
    const graph *g;
    FILE *f;
    bool *seen;
    size_t *path;
    char prefix[512];
} tree;

static void print_tree(tree *tr, size_t node, int depth, bool last)
{
    const graph *g = tr->g;
    bool cycle = false;
    for (int i = 0; i < depth; i++)
        if (tr->path[i] == node)
            cycle = true;
    print_indent(tr->f, tr->prefix, last);
    print_label(tr->f, g->nodes[node]);
    size_t nparents = g->rev_start[node + 1] - g->rev_start[node];
    if (nparents > 1) {
        fputs(" (awaited by", tr->f);
        for (size_t i = g->rev_start[node]; i < g->rev_start[node + 1]; i++) {
            coil__aw *p = g->nodes[g->rev[i].from];
            fprintf(tr->f, " '%s'", p->h.kind == COIL__RQ_TASK ? coil__task_name((coil_task *)p) : "Future");
        }
        fputc(')', tr->f);
    }
    if (cycle) {
        fputs(" (await cycle: already shown above)\n", tr->f);
        return;
    }
    fputc('\n', tr->f);
    tr->seen[node] = true;
    tr->path[depth] = node;
    size_t len = strlen(tr->prefix);
    if (len + 8 < sizeof tr->prefix)
        strcat(tr->prefix, last ? "    " : "│   ");
    for (size_t i = g->fwd_start[node]; i < g->fwd_start[node + 1]; i++)
        print_tree(tr, g->fwd[i].to, depth + 1, i + 1 == g->fwd_start[node + 1]);
    tr->prefix[len] = '\0';
}

int coil_loop_print_call_graph(coil_loop *loop, FILE *f)
{
    if (!loop || !f)
        return -EINVAL;
    graph g;
    int err = graph_build(loop, &g);
    if (err)
        return err;
    tree tr = { .g = &g, .f = f, .seen = calloc(g.n + 1, sizeof(bool)), .path = calloc(g.n + 1, sizeof(size_t)) };
    if (!tr.seen || !tr.path) {
        free(tr.seen);
        free(tr.path);
        graph_free(&g);
        return -ENOMEM;
    }
    /* Roots: tasks nobody awaits. Then whatever is left, which can only be in an await cycle. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < g.n; i++) {
            if (tr.seen[i] || g.nodes[i]->h.kind != COIL__RQ_TASK)
                continue;
            if (pass == 0 && g.rev_start[i + 1] != g.rev_start[i])
                continue;
            print_tree(&tr, i, 0, true);
        }
    free(tr.seen);
    free(tr.path);
    graph_free(&g);
    return 0;
}

int coil__stats_dump_tasks(coil_loop *loop, int fd)
{
    /* A duplicate for the stream, so closing the stream leaves the caller's fd open. */
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return -errno;
    FILE *f = fdopen(dfd, "w");
    if (!f) {
        close(dfd);
        return -ENOMEM;
    }
    fprintf(f, "shard %llu (thread %llu): %u tasks\n", (unsigned long long)coil__stat_get(&loop->stats->shard),
            (unsigned long long)coil__stat_get(&loop->stats->tid), loop->ntasks_alive);
    int err = coil_loop_print_call_graph(loop, f);
    if (fclose(f) != 0 && !err)
        err = -EIO;
    return err;
}
