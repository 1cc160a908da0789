// System calls and libc settings Glibc's Swift module does not export (extended attributes,
// syncfs, mallopt).
#ifndef CSYS_H
#define CSYS_H
#include <sys/xattr.h>
#include <malloc.h>

// syncfs(2) needs _GNU_SOURCE, which Glibc's module map does not define.
int syncfs(int fd);
#endif
