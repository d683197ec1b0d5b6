/* Project error codes. Functions return >= 0 on success or a negative code: either -errno or one
 * of the FLT_E* values below (all <= -1000 so they never collide with errno). */
#ifndef FLT_ERR_H
#define FLT_ERR_H

enum flt_err {
	FLT_EBASE = -1000,
	FLT_ECORRUPT = -1001,   /* on-disk data failed its checksum or does not parse */
	FLT_ENOTLEADER = -1002, /* this node cannot accept the proposal now */
	FLT_EPROTO = -1003,     /* a peer or client broke the protocol */
	FLT_ETOOBIG = -1004,    /* a limit was exceeded */
	FLT_ESTOPPED = -1005,   /* the module is shutting down */
	FLT_EINVAL = -1006,     /* bad input (see the module's own error detail) */
	FLT_EVERSION = -1007,   /* incompatible version (on-disk format, ABI) */
};

/* Message for a negative code from either space; never NULL, static storage. */
const char *flt_strerror(int code);

#endif
