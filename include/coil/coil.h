/* coil: Python's asyncio for C, thread-per-core on io_uring. One header for all of it. */
#ifndef COIL_H
#define COIL_H

#include "errors.h"
#include "loop.h"
#include "task.h"
#include "runner.h"
#include "io.h"
#include "signal.h"
#include "net.h"
#include "stream.h"
#include "file.h"
#include "subprocess.h"
#include "combinators.h"
#include "timeout.h"
#include "taskgroup.h"
#include "sync.h"
#include "queue.h"
#include "runtime.h"
#include "threadsafe.h"
#include "executor.h"
#include "introspect.h"

#endif
