// Out-of-line anchors for the exception hierarchy, so that in a shared build each class's vtable and
// type_info live in libmproc once (and catch clauses in user code match them reliably).
#include "mproc/error.hpp"
