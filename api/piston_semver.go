package api

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Piston's version selectors are node-semver ranges; this is the part of
// node-semver they use, for /api/v2/execute's "version".

// semverSatisfies says whether version satisfies a node-semver range, as
// Piston's version selectors are: "3.11.2", "3", "3.x", "*", "^3.9",
// "~3.11", ">=3.10 <4", "3.9 || 3.11", "3.9 - 3.12". A selector that does
// not parse matches nothing, as in node-semver.
func semverSatisfies(version, rng string) bool {
	v, ok := parseSemver(version)
	if !ok {
		return false
	}
	for _, set := range strings.Split(rng, "||") {
		cmps, ok := semverSet(strings.TrimSpace(set))
		if !ok {
			continue
		}
		all := true
		for _, c := range cmps {
			all = all && c.holds(v)
		}
		if all {
			return true
		}
	}
	return false
}

type semver [3]int

func (a semver) cmp(b semver) int { return slices.Compare(a[:], b[:]) }

// parseSemver reads a version, missing parts 0, a pre-release or build
// suffix ignored.
func parseSemver(s string) (semver, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	var v semver
	parts := strings.Split(s, ".")
	if len(parts) > 3 || s == "" {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

// partial is a version of a range, some parts possibly missing or x.
type partial struct {
	v semver
	n int // parts given before the first wildcard: 0 to 3
}

func parsePartial(s string) (partial, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	var p partial
	if s == "" {
		return p, true
	}
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return p, false
	}
	for _, part := range parts {
		if part == "x" || part == "X" || part == "*" {
			break
		}
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return p, false
		}
		p.v[p.n] = n
		p.n++
	}
	return p, true
}

// next is the first version past every version the partial covers.
func (p partial) next() semver {
	v := p.v
	if p.n == 0 {
		return semver{math.MaxInt32, 0, 0}
	}
	v[p.n-1]++
	for i := p.n; i < 3; i++ {
		v[i] = 0
	}
	return v
}

type comparator struct {
	op string // ">=", ">", "<", "<="
	v  semver
}

func (c comparator) holds(v semver) bool {
	d := v.cmp(c.v)
	switch c.op {
	case ">=":
		return d >= 0
	case ">":
		return d > 0
	case "<":
		return d < 0
	}
	return d <= 0
}

// semverSet turns one set of a range into comparators that must all hold.
func semverSet(set string) ([]comparator, bool) {
	if lo, hi, ok := strings.Cut(set, " - "); ok {
		a, ok1 := parsePartial(lo)
		b, ok2 := parsePartial(hi)
		if !ok1 || !ok2 {
			return nil, false
		}
		out := []comparator{{">=", a.v}}
		if b.n == 3 {
			return append(out, comparator{"<=", b.v}), true
		}
		return append(out, comparator{"<", b.next()}), true
	}
	var out []comparator
	for _, word := range strings.Fields(set) {
		op := ""
		for _, o := range []string{">=", "<=", ">", "<", "=", "^", "~"} {
			if rest, ok := strings.CutPrefix(word, o); ok {
				op, word = o, rest
				break
			}
		}
		p, ok := parsePartial(word)
		if !ok {
			return nil, false
		}
		switch op {
		case "", "=":
			out = append(out, comparator{">=", p.v}, comparator{"<", p.next()})
			if p.n == 3 {
				out = out[:len(out)-1]
				out = append(out, comparator{"<=", p.v})
			}
		case ">=":
			out = append(out, comparator{">=", p.v})
		case ">":
			if p.n == 3 {
				out = append(out, comparator{">", p.v})
			} else {
				out = append(out, comparator{">=", p.next()})
			}
		case "<":
			out = append(out, comparator{"<", p.v})
		case "<=":
			if p.n == 3 {
				out = append(out, comparator{"<=", p.v})
			} else {
				out = append(out, comparator{"<", p.next()})
			}
		case "~":
			// Patch changes: ~1.2.3 is <1.3.0, ~1 is <2.0.0.
			up := partial{v: p.v, n: min(max(p.n, 1), 2)}
			out = append(out, comparator{">=", p.v}, comparator{"<", up.next()})
		case "^":
			// Changes that keep the first non-zero part: ^1.2 is <2.0.0,
			// ^0.2.3 is <0.3.0, ^0.0.3 is <0.0.4.
			n := 1
			for n < p.n && p.v[n-1] == 0 {
				n++
			}
			if p.n == 0 {
				n = 0
			}
			out = append(out, comparator{">=", p.v}, comparator{"<", partial{v: p.v, n: n}.next()})
		}
	}
	return out, true
}

// pistonVersion is a language's version as Piston shows one: always
// major.minor.patch, which its clients parse and compare. The leading
// numbers of ours are kept ("3.1.2.0" is 3.1.2, "8.2" is 8.2.0); a
// language with none (Plain Text, Executable) is 0.0.0.
func pistonVersion(v string) string {
	var n semver
	parts := strings.FieldsFunc(v, func(r rune) bool { return r == '.' })
	for i := 0; i < len(parts) && i < 3; i++ {
		d := parts[i]
		end := 0
		for end < len(d) && d[end] >= '0' && d[end] <= '9' {
			end++
		}
		x, err := strconv.Atoi(d[:end])
		if err != nil {
			break
		}
		n[i] = x
		if end < len(d) {
			break // "2rc1": what follows the number is not a version part
		}
	}
	return fmt.Sprintf("%d.%d.%d", n[0], n[1], n[2])
}
