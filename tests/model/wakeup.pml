/* The sleep/wake handshake of a loop's inbox (shards/inbox.c), as a Promela model for spin.
 *
 * What is modelled, and where it is in the code:
 *
 *  - A producer's publish of a message: the release store of a lane's tail (shards/lane.c,
 *    coil__lane_push) or of a ring slot's seq (shards/mpsc.c, coil__mpsc_push; its slot claim is a
 *    CAS, but the store that makes the message visible is a plain release store). On x86 (TSO)
 *    and weaker machines that store can wait in the producer's store buffer while the producer's
 *    later loads already read memory: the one reordering that loses wake-ups here. buf[p] counts
 *    messages producer p published whose store is still in its buffer; vis[p] those the loop can
 *    see. The store_buffers process drains buffers at arbitrary moments.
 *  - The producer's half (after_push): in the asymmetric mode (asym) it only loads the flag and
 *    returns if it reads 0; otherwise it exchanges asleep with 0, a locked instruction that first
 *    drains its store buffer, and sends a wake-up (IORING_OP_MSG_RING, send_wake) if it read 1.
 *  - The loop's half (src_before_block, src_after_block): with nothing visible it exchanges
 *    asleep with 1, fences with membarrier(PRIVATE_EXPEDITED) if it was in the asymmetric mode
 *    (shards/fence.c, coil__fence_heavy: it drains every other thread's store buffer), looks at
 *    the queues again, and only then
 *    sleeps in io_uring_enter until a CQE arrives. A wake-up CQE that arrives while the loop is
 *    awake waits in the completion queue and ends the next sleep at once. Waking clears the flag.
 *  - The mode: a drain may switch the producers to the asymmetric mode (a flood); the first sleep
 *    after a quiet spell switches back, fencing once more for producers still in the old mode.
 *
 * The loop's own relaxed stores (asym, the flag's clearing) are modelled as immediately visible:
 * each is followed by the exchange, a locked instruction that drains the loop's buffer, before
 * anything depends on it.
 *
 * The property: no lost wake-up. When nothing in the system can move any more (timeout: the
 * producers are done, every store buffer drained, the loop asleep), every message has been taken.
 * Build variants (tests/model/check.sh runs all three):
 *   (none)        the protocol as implemented: no violation
 *   -DNO_FENCE    the loop sleeps in the asymmetric mode without membarrier: a violation
 *   -DNO_RECHECK  the loop sleeps right after setting the flag, without looking again: a violation
 */

#define NPROD 2
#define MSGS 2 /* per producer */
#define TOTAL (NPROD * MSGS)

byte vis[NPROD];  /* published and visible to the loop */
byte buf[NPROD];  /* published, still in the producer's store buffer */
bit asleep = 0;   /* the inbox's flag (an inbox already hooked into its loop starts at 0) */
bit asym = 0;     /* producers only read the flag (set by the loop after a flood) */
byte wake = 0;    /* wake-up CQEs in the loop's completion queue, not yet reaped */
byte taken = 0;   /* messages the loop has drained */

inline drain_buffer(p) { vis[p] = vis[p] + buf[p]; buf[p] = 0 }

proctype producer(byte p)
{
    byte sent = 0;
    bit mode, flag;
    do
    :: sent < MSGS ->
        buf[p]++; /* push: the publishing store enters the store buffer */
        sent++;
        /* after_push: relaxed loads read memory, possibly ahead of the buffered store */
        mode = asym;
        if
        :: mode ->
            flag = asleep;
            if
            :: !flag -> goto next /* the loop is awake: it will see the message */
            :: else -> skip
            fi
        :: else -> skip
        fi;
        atomic { drain_buffer(p); flag = asleep; asleep = 0 } /* locked xchg */
        if
        :: flag -> wake++ /* send_wake: MSG_RING posts a CQE to the loop's ring */
        :: else -> skip
        fi;
next:   skip
    :: else -> break
    od
}

active proctype store_buffers()
{
end:
    do
    :: atomic { buf[0] > 0 -> buf[0]--; vis[0]++ }
    :: atomic { buf[1] > 0 -> buf[1]--; vis[1]++ }
    od
}

active proctype loop()
{
    bit was_asym;
end:
    do
    :: /* one iteration; a non-blocking poll may reap a wake-up CQE */
        if
        :: wake > 0 -> wake--
        :: skip
        fi;
        if
        :: vis[0] + vis[1] > 0 ->
            /* drain what is visible; a flood may switch producers to the asymmetric mode */
            atomic { taken = taken + vis[0] + vis[1]; vis[0] = 0; vis[1] = 0 };
            if
            :: asym = 1
            :: skip
            fi
        :: else ->
            /* src_before_block */
            was_asym = asym;
            if
            :: was_asym -> asym = 0 /* the flood is over */
            :: skip
            fi;
            asleep = 1; /* atomic_exchange(&asleep, 1): a locked RMW */
#ifndef NO_FENCE
            if
            :: was_asym -> atomic { drain_buffer(0); drain_buffer(1) } /* membarrier */
            :: else -> skip
            fi;
#endif
#ifndef NO_RECHECK
            if
            :: vis[0] + vis[1] > 0 -> asleep = 0; goto again /* look_now; after_block clears it */
            :: else -> skip
            fi;
#endif
end_sleep:  wake > 0 -> wake--; /* io_uring_enter waits for a CQE */
            asleep = 0 /* src_after_block */
        fi;
again:  skip
    od
}

active proctype check()
{
end:
    timeout -> assert(taken == TOTAL)
}

init
{
    atomic {
        run producer(0);
        run producer(1)
    }
}
