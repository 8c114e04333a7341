/* Characters outside the Basic Multilingual Plane through xmlrpc-c.
 *
 * xmlrpc-c 1.33 checks every string it is given (xmlrpc_string_new,
 * struct member names, its parser and serializer) with
 * xmlrpc_validate_utf8, which refuses any 4-byte UTF-8 sequence: an emoji
 * in a name label could be neither sent nor received.  That function is
 * public API of libxmlrpc_util, called through the dynamic linker, so a
 * program that links xmlrpc-utf8.c has its own instead: the same check
 * per RFC 3629 (all of Unicode, no surrogates, no overlong forms), which
 * then serves xmlrpc-c too.  xmlrpc-c keeps strings as bytes, so nothing
 * else in it needs to know.  Both programs that speak XML-RPC (vdimotiond
 * and vdimotion) link it.
 */
#ifndef VDM_XMLRPC_UTF8_H
#define VDM_XMLRPC_UTF8_H

#include <stdbool.h>

/* Whether the override took effect: xmlrpc-c accepts U+1F600.  A program
 * says so in its log if not. */
bool xmlrpc_full_unicode (void);

#endif /* VDM_XMLRPC_UTF8_H */
