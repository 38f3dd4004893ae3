/* coil: Python's asyncio for C, thread-per-core on io_uring. One header for all of it. */
#ifndef COIL_H
#define COIL_H

#include "errors.h"
#include "loop.h"
#include "task.h"
#include "runner.h"
#include "io.h"
#include "signal.h"

#endif
