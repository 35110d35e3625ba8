#include "config.h"
typedef int batcher_placeholder;
