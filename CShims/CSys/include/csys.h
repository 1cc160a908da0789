// System calls and libc settings Glibc's Swift module does not export (extended attributes,
// syncfs, mallopt, O_DIRECT).
#ifndef CSYS_H
#define CSYS_H
#include <sys/xattr.h>
#include <malloc.h>

// syncfs(2) and sync_file_range(2) need _GNU_SOURCE, which Glibc's module map does not define.
int syncfs(int fd);
int sync_file_range(int fd, long long offset, long long nbytes, unsigned int flags);
#define CSYS_SYNC_FILE_RANGE_WRITE 2
// O_DIRECT's value differs between architectures and needs _GNU_SOURCE too.
int csys_o_direct(void);
#endif
