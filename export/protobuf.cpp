#include "export/protobuf.h"
