/* coil: COIL_API, the mark of a function the library exports. The library is compiled with
 * hidden visibility, so a function leaves libcoil.so only when its declaration carries this
 * mark: every function declared in include/coil/ does, and nothing else (the runtime's internal
 * coil__* functions stay inside the library; tests/layers/check_public.sh checks both). */
#ifndef COIL_API_H
#define COIL_API_H

#if defined(__GNUC__) || defined(__clang__)
#define COIL_API __attribute__((visibility("default")))
#else
#define COIL_API
#endif

#endif
