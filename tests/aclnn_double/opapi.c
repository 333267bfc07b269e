/* The double's libopapi.so. In CANN 8.5-era installs the transformer ops live in libopapi_transformer.so next
 * to libopapi.so (acl_abi.md section 1); the double puts its ops there, so the backend's search order over
 * libopapi_*.so before libopapi.so is exercised. */
#include "opdiff_double.h"

const char *opdiff_double_opapi_version(void) { return "opdiff CANN double"; }
