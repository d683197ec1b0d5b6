/* flt_strerror: one message function for errno values and the project's own codes. */
#include "util/err.h"

#include <string.h>

const char *flt_strerror(int code)
{
	switch (code) {
	case FLT_ECORRUPT:
		return "data is corrupt";
	case FLT_ENOTLEADER:
		return "not the leader";
	case FLT_EPROTO:
		return "protocol error";
	case FLT_ETOOBIG:
		return "limit exceeded";
	case FLT_ESTOPPED:
		return "shutting down";
	case FLT_EINVAL:
		return "invalid input";
	case FLT_EVERSION:
		return "incompatible version";
	default:
		break;
	}
	if (code < 0 && code > FLT_EBASE)
		return strerror(-code);
	return "unknown error";
}
