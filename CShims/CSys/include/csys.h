// System headers Glibc's Swift module does not export (extended attributes).
#ifndef CSYS_H
#define CSYS_H
#include <sys/xattr.h>
#endif
