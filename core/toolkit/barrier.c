/* coil core: asyncio.Barrier (3.11+), built like CPython's on a Condition: the barrier fills until
 * `parties` tasks wait, then drains (newcomers wait for the last of the round to leave), and can
 * be reset (waiters get COIL_EBROKENBARRIER, then it fills again) or aborted (broken until reset). */
#include <errno.h>
#include <stdlib.h>

#include "engine/internal.h"

enum { FILLING, DRAINING, RESETTING, BROKEN };

struct coil_barrier {
    coil_condition *cond;
    unsigned parties;
    unsigned count;   /* tasks inside the barrier this round */
    unsigned busy;    /* tasks inside any suspending call */
    int state;
};

int coil_barrier_new(coil_barrier **out, unsigned parties)
{
    if (!out || parties < 1)
        return -EINVAL;
    coil_barrier *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    int r = coil_condition_new(&b->cond, NULL);
    if (r) {
        free(b);
        return r;
    }
    b->parties = parties;
    b->state = FILLING;
    *out = b;
    return 0;
}

int coil_barrier_free(coil_barrier *b)
{
    if (!b)
        return 0;
    if (b->busy)
        return -EBUSY;
    int r = coil_condition_free(b->cond);
    if (r)
        return r;
    free(b);
    return 0;
}

static bool not_draining(void *arg)
{
    const coil_barrier *b = arg;
    return b->state != DRAINING && b->state != RESETTING;
}

static bool not_filling(void *arg) { return ((const coil_barrier *)arg)->state != FILLING; }

/* The last task out of a draining or resetting barrier lets it fill again. */
static void leave(coil_barrier *b)
{
    if (--b->count == 0) {
        if (b->state == RESETTING || b->state == DRAINING)
            b->state = FILLING;
        coil_condition_notify_all(b->cond);
    }
}

/* With the lock held: wait out a drain or reset, then join the round. */
static int join_round(coil_barrier *b, unsigned *index)
{
    int r = coil_condition_wait_for(b->cond, not_draining, b);
    if (r)
        return r;
    if (b->state == BROKEN)
        return COIL_EBROKENBARRIER;
    unsigned idx = b->count++;
    if (idx + 1 == b->parties) {
        b->state = DRAINING;
        coil_condition_notify_all(b->cond);
    } else {
        r = coil_condition_wait_for(b->cond, not_filling, b);
        if (!r && (b->state == BROKEN || b->state == RESETTING))
            r = COIL_EBROKENBARRIER;
    }
    leave(b);
    if (!r)
        *index = idx;
    return r;
}

int coil_barrier_wait(coil_barrier *b, unsigned *index)
{
    if (!b)
        return -EINVAL;
    b->busy++;
    int r = coil_condition_acquire(b->cond);
    if (!r) {
        unsigned idx = 0;
        r = join_round(b, &idx);
        coil_condition_release(b->cond);
        if (!r && index)
            *index = idx;
    }
    b->busy--;
    return r;
}

/* reset and abort take the lock as asyncio's coroutines do, so they serialize with waiters. */
static int set_state(coil_barrier *b, bool abort)
{
    if (!b)
        return -EINVAL;
    b->busy++;
    int r = coil_condition_acquire(b->cond);
    if (!r) {
        if (abort)
            b->state = BROKEN;
        else if (b->count > 0)
            b->state = RESETTING;
        else
            b->state = FILLING;
        coil_condition_notify_all(b->cond);
        coil_condition_release(b->cond);
    }
    b->busy--;
    return r;
}

int coil_barrier_reset(coil_barrier *b) { return set_state(b, false); }
int coil_barrier_abort(coil_barrier *b) { return set_state(b, true); }

unsigned coil_barrier_n_waiting(const coil_barrier *b)
{
    return b && b->state == FILLING ? b->count : 0;
}

unsigned coil_barrier_parties(const coil_barrier *b) { return b ? b->parties : 0; }
bool coil_barrier_broken(const coil_barrier *b) { return b && b->state == BROKEN; }
