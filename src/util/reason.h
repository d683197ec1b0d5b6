/* HTTP reason phrases ("OK", "Not Found"), as Go's http.StatusText names them. */
#ifndef FLT_REASON_H
#define FLT_REASON_H

/* The reason phrase of `status`, or "" for a code it does not know. Static storage. */
const char *reason_phrase(int status);

#endif
