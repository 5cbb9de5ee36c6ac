package languages

import (
	"bufio"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const (
	// DefaultMirror is used when neither Builder.Mirror nor the host's apt
	// sources name a Debian mirror.
	DefaultMirror = "http://deb.debian.org/debian"
	// DefaultSuite is the Debian release images are built from.
	DefaultSuite = "bookworm"
)

// resolveMirror is the one place that decides which mirror a recipe uses:
// Build and Find must agree, because the mirror is part of the base key.
// An explicit mirror wins, then the host's apt sources under root, then
// DefaultMirror.
func resolveMirror(explicit, root string) string {
	if explicit != "" {
		return strings.TrimRight(explicit, "/")
	}
	if m := hostMirror(root); m != "" {
		return m
	}
	return DefaultMirror
}

// hostMirror returns the first http(s) Debian archive URI in the apt
// sources under root (normally "/"): sources.list first, then
// sources.list.d/*.list and *.sources in name order. It returns "" when
// there is none.
func hostMirror(root string) string {
	files := []string{filepath.Join(root, "etc/apt/sources.list")}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d", pat))
		files = append(files, m...)
	}
	slices.Sort(files[1:])
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // a missing or unreadable file just names no mirror
		}
		var uris []string
		if strings.HasSuffix(f, ".sources") {
			uris = deb822URIs(string(data))
		} else {
			uris = oneLineURIs(string(data))
		}
		for _, u := range uris {
			if isDebianArchive(u) {
				return strings.TrimRight(u, "/")
			}
		}
	}
	return ""
}

// oneLineURIs returns the URIs of the "deb" lines of a sources.list file:
// "deb [ options ] uri suite [component…]".
func oneLineURIs(content string) []string {
	var uris []string
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			// Options may hold spaces: skip up to the closing bracket.
			i := slices.IndexFunc(f, func(s string) bool { return strings.HasSuffix(s, "]") })
			if i < 0 || i+1 >= len(f) {
				continue
			}
			f = f[i+1:]
		}
		uris = append(uris, f[0])
	}
	return uris
}

// deb822URIs returns the URIs of the enabled "deb" stanzas of a .sources
// file (deb822 format: stanzas separated by blank lines).
func deb822URIs(content string) []string {
	var uris []string
	stanza := map[string]string{}
	flush := func() {
		types := strings.Fields(stanza["types"])
		if slices.Contains(types, "deb") && !strings.EqualFold(stanza["enabled"], "no") {
			uris = append(uris, strings.Fields(stanza["uris"])...)
		}
		clear(stanza)
	}
	last := ""
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
			last = ""
		case strings.HasPrefix(line, "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last != "" { // continuation of a multi-line field
				stanza[last] += " " + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			stanza[last] = strings.TrimSpace(v)
		}
	}
	flush()
	return uris
}

// isDebianArchive reports whether u is an http(s) URI of the main Debian
// archive: one path segment is "debian" (so debian-security, third-party
// repositories and ports do not count).
func isDebianArchive(u string) bool {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") {
		return false
	}
	return slices.Contains(strings.Split(p.Path, "/"), "debian")
}
