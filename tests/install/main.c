#include <coil/coil.h>
static void *m(void *a) { coil_sleep(0.001); return a; }
int main(void) { void *r; int e = coil_run(m, (void *)42, &r); return e || r != (void *)42; }
