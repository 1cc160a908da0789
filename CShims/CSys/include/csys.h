// System calls Glibc's Swift module does not export (extended attributes, syncfs).
#ifndef CSYS_H
#define CSYS_H
#include <sys/xattr.h>

// syncfs(2) needs _GNU_SOURCE, which Glibc's module map does not define.
int syncfs(int fd);
#endif
