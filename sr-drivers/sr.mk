# SR drivers (sr.h): the file SR.  Built here once it exists.
