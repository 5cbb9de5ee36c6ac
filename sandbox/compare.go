package sandbox

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Comparison modes: how a test's output is compared with its expected
// output.
const (
	// CompareTrailingWhitespace ignores spaces, tabs and carriage returns
	// at the end of each line, and empty lines at the end (Judge0's rule,
	// the default).
	CompareTrailingWhitespace = "trailing-whitespace"
	// CompareExact wants the same bytes.
	CompareExact = "exact"
	// CompareTokens wants the same whitespace-separated words: line breaks
	// and runs of blanks do not matter.
	CompareTokens = "tokens"
	// CompareFloat compares tokens; where both parse as finite numbers
	// they match within Abs or Rel, other tokens must be equal.
	CompareFloat = "float"
)

// CompareModes lists the modes, the default first.
var CompareModes = []string{CompareTrailingWhitespace, CompareExact, CompareTokens, CompareFloat}

// DefaultFloatTolerance is the absolute and relative tolerance of the
// float mode when neither is given (Codeforces' usual 1e-6).
const DefaultFloatTolerance = 1e-6

// Comparison says how to compare output with an expected output. The zero
// value is the default, CompareTrailingWhitespace.
type Comparison struct {
	Mode string `json:"mode,omitempty"`
	// Abs and Rel are the float mode's tolerances: a number matches when
	// |got-want| <= Abs or |got-want| <= Rel*|want|. Zero both mean
	// DefaultFloatTolerance both; one set alone is the only one that
	// applies.
	Abs float64 `json:"abs,omitempty"`
	Rel float64 `json:"rel,omitempty"`
}

// Match compares got with want. When they differ, the tokens and float
// modes say where (for the test's message, with short quotes of both);
// the others say nothing more.
func (c Comparison) Match(got, want []byte) (ok bool, why string) {
	switch c.Mode {
	case CompareExact:
		return bytes.Equal(got, want), ""
	case CompareTokens, CompareFloat:
		return c.tokens(got, want)
	}
	return bytes.Equal(trimTrailing(got), trimTrailing(want)), ""
}

func trimTrailing(b []byte) []byte {
	lines := bytes.Split(b, []byte("\n"))
	for i, l := range lines {
		lines[i] = bytes.TrimRight(l, " \t\r")
	}
	return bytes.TrimRight(bytes.Join(lines, []byte("\n")), "\n")
}

func (c Comparison) tokens(got, want []byte) (bool, string) {
	g, w := bytes.Fields(got), bytes.Fields(want)
	for i := range min(len(g), len(w)) {
		if c.sameToken(g[i], w[i]) {
			continue
		}
		return false, fmt.Sprintf("token %d: got %s, expected %s", i+1, quote(g[i]), quote(w[i]))
	}
	if len(g) != len(w) {
		return false, fmt.Sprintf("%d tokens, expected %d", len(g), len(w))
	}
	return true, ""
}

func (c Comparison) sameToken(g, w []byte) bool {
	if bytes.Equal(g, w) {
		return true
	}
	if c.Mode != CompareFloat {
		return false
	}
	x, err1 := strconv.ParseFloat(string(g), 64)
	y, err2 := strconv.ParseFloat(string(w), 64)
	if err1 != nil || err2 != nil || math.IsInf(x, 0) || math.IsInf(y, 0) || math.IsNaN(x) || math.IsNaN(y) {
		return false
	}
	abs, rel := c.Abs, c.Rel
	if abs == 0 && rel == 0 {
		abs, rel = DefaultFloatTolerance, DefaultFloatTolerance
	}
	d := math.Abs(x - y)
	return d <= abs || d <= rel*math.Abs(y)
}

// quote shows a token in a message: quoted, at most 32 bytes of it.
func quote(b []byte) string {
	const n = 32
	if len(b) <= n {
		return strconv.Quote(string(b))
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return strconv.Quote(string(b[:cut])) + "…"
}
