#include "cfuse3.h"
