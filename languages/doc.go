// Package languages holds microbox's language catalog (file names, compile
// and run commands, Debian packages, version commands) and the builder of
// the read-only ext4 root image each language runs from.
//
// Images live under <cache>/images/<id>-<key>/ where key hashes the whole
// recipe (mirror, suite, packages, post-processing), so a changed recipe
// builds a new image and Find never returns a stale one.
package languages
