// Package packaging tests what otpgate ships besides its programs: the
// manual pages (docs/man, rendered by go-md2man and checked with man
// --warnings) and the Debian package (make deb: lintian, then installed,
// enabled, used for a login, removed and purged inside a throwaway Debian
// container). It has no code of its own.
package packaging
