// libfuse3 low-level API for Swift: pins FUSE_USE_VERSION before the headers so the
// Swift importer sees it (a cSettings define would not reach the importer).
#ifndef CFUSE3_H
#define CFUSE3_H
#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>
#include <sys/xattr.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <errno.h>

#define CFUSE3_RENAME_NOREPLACE 1
#define CFUSE3_RENAME_EXCHANGE 2
#endif
