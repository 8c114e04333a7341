/* Passwords as vdimotiond's auth file keeps them: crypt(3) hashes made
 * with libxcrypt's preferred method and a fresh salt (yescrypt on
 * Debian), read from one line, and checked without leaking through
 * timing how much of a hash matched.  vdimotiond --hash-password,
 * vdimotion hash-password and the daemon's login all use these, so the
 * two commands print the same kind of hash for the same input.
 * Include only where libxcrypt is linked ($(CRYPT_LIBS)). */
#ifndef VDM_PASSWORD_H
#define VDM_PASSWORD_H

#include <crypt.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first line of IN into BUF (LEN bytes), its line end ("\n" or
 * "\r\n") cut off; a longer line is cut at LEN - 1 bytes.  false at end
 * of file or on a read error.  The caller wipes BUF (explicit_bzero)
 * when done with it. */
static inline bool
password_read_line (FILE *in, char *buf, int len)
{
  if (fgets (buf, len, in) == NULL)
    return false;
  buf[strcspn (buf, "\r\n")] = '\0';
  return true;
}

/* The crypt(3) hash of PASSWORD with a fresh salt (crypt_gensalt_ra
 * with no prefix: the preferred method, its salt from the kernel's
 * random source).  Returns a new string (free it), or NULL with WHY (of
 * WHY_LEN bytes) saying what failed. */
static inline char *
password_hash (const char *password, char *why, size_t why_len)
{
  char *salt = crypt_gensalt_ra (NULL, 0, NULL, 0);
  void *data = NULL; /* crypt_ra's work area */
  int size = 0;
  const char *hash;
  char *out = NULL;

  if (salt == NULL) {
    snprintf (why, why_len, "crypt_gensalt: %s", strerror (errno));
    return NULL;
  }
  hash = crypt_ra (password, salt, &data, &size);
  /* libxcrypt fails with NULL or a string starting with '*'. */
  if (hash == NULL || hash[0] == '*')
    snprintf (why, why_len, "crypt failed");
  else if ((out = strdup (hash)) == NULL)
    snprintf (why, why_len, "out of memory");
  free (salt);
  free (data);
  return out;
}

/* Whether PASSWORD hashes to HASH (a crypt(3) hash, which names its
 * method and salt).  The hashes are compared in constant time. */
static inline bool
password_matches (const char *password, const char *hash)
{
  void *data = NULL;
  int size = 0;
  const char *got = crypt_ra (password, hash, &data, &size);
  unsigned char diff = 1;

  if (got != NULL && got[0] != '*') {
    size_t la = strlen (got), lb = strlen (hash);

    diff = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
      diff |= (unsigned char)got[i] ^ (unsigned char)hash[i];
  }
  free (data);
  return diff == 0;
}

#endif /* VDM_PASSWORD_H */
