/* coil core: coil_subprocess_communicate (coil/subprocess.h).
 *
 * The stdin stream never blocks its writer (the loop sends in the background), so feeding input
 * needs no task of its own. stdout and stderr must be read at the same time, or a child that
 * fills the one we are not reading stalls forever: when both are pipes, a helper task drains
 * stderr while the caller drains stdout. The helper never outlives the call, so its state (on
 * the heap: the caller may be a compact task) needs no reference count. */
#include <errno.h>
#include <stdlib.h>

#include "coil/subprocess.h"
#include "engine/internal.h"

typedef struct drain_job {
    coil_stream *s;
    char *data;
    size_t len;
    int err;
} drain_job;

static void *drain_main(void *arg)
{
    drain_job *j = arg;
    j->err = coil_stream_read_all(j->s, &j->data, &j->len);
    return NULL;
}

/* Wait until h is done, whatever cancels arrive meanwhile (each cancels h too, through the
 * await). Returns -ECANCELED if the caller was cancelled while waiting, else 0. */
static int join(coil_task *h)
{
    int cancelled = 0;
    while (!coil_task_done(h))
        if (coil_task_await(h, NULL) == -ECANCELED && !coil_task_done(h))
            cancelled = -ECANCELED;
    /* Done by now; an await that returned -ECANCELED on a helper nobody else cancels means the
     * cancel was ours. */
    if (!cancelled && coil_task_cancelled(h))
        cancelled = -ECANCELED;
    return cancelled;
}

int coil_subprocess_communicate(coil_subprocess *p, const void *input, size_t len, char **out, size_t *outlen,
                                char **err, size_t *errlen)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (!p || (len && !input))
        return -EINVAL;
    coil_stream *in = coil_subprocess_stdin(p), *so = coil_subprocess_stdout(p), *se = coil_subprocess_stderr(p);
    if (len && !in)
        return -EINVAL;
    int r = coil__task_check_cancel(t);
    if (r)
        return r;
    if (in) {
        /* A child that exits without reading its input is no error (asyncio ignores
         * BrokenPipeError and ConnectionResetError here); anything else is. Closing flushes
         * first, then the child reads EOF. */
        r = len ? coil_stream_write(in, input, len) : 0;
        coil_stream_close(in);
        if (r && r != -EPIPE && r != -ECONNRESET && r != COIL_ECLOSED)
            return r;
        r = 0;
    }
    drain_job *job = NULL;
    coil_task *helper = NULL;
    if (so && se) {
        job = calloc(1, sizeof *job);
        if (!job)
            return -ENOMEM;
        job->s = se;
        r = coil_create_task(&helper, drain_main, job, &(coil_task_opts){ .name = "communicate-stderr" });
        if (r) {
            free(job);
            return r;
        }
    }
    char *o = NULL, *e = NULL;
    size_t ol = 0, el = 0;
    if (so)
        r = coil_stream_read_all(so, &o, &ol);
    else if (se)
        r = coil_stream_read_all(se, &e, &el);
    if (helper) {
        if (r)
            coil_task_cancel(helper, NULL);
        int j = join(helper);
        if (!r)
            r = j ? j : job->err;
        if (r)
            free(job->data);
        else {
            e = job->data;
            el = job->len;
        }
        coil_task_free(helper);
        free(job);
    }
    if (!r)
        r = coil_subprocess_wait(p, NULL);
    if (r) {
        free(o);
        free(e);
        return r;
    }
    if (out)
        *out = o;
    else
        free(o);
    if (outlen)
        *outlen = ol;
    if (err)
        *err = e;
    else
        free(e);
    if (errlen)
        *errlen = el;
    return 0;
}
