// Not including csys.h: with _GNU_SOURCE, fcntl.h declares sync_file_range itself.
#define _GNU_SOURCE
#include <fcntl.h>

int csys_o_direct(void) { return O_DIRECT; }
