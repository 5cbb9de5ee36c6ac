package sandbox

import (
	"strings"
	"testing"
)

func TestComparison(t *testing.T) {
	long := strings.Repeat("é", 40)
	tests := []struct {
		name      string
		cmp       Comparison
		got, want string
		ok        bool
		why       string // a part of the message, when not ok
	}{
		{"default, same", Comparison{}, "1 2\n", "1 2", true, ""},
		{"default, trailing blanks", Comparison{}, "1 2  \r\n\n\n", "1 2\n", true, ""},
		{"default, leading blank", Comparison{}, " 1 2", "1 2", false, ""},
		{"default, inner blanks", Comparison{}, "1  2", "1 2", false, ""},
		{"trailing-whitespace named", Comparison{Mode: CompareTrailingWhitespace}, "a \n", "a", true, ""},
		{"exact, same", Comparison{Mode: CompareExact}, "a\n", "a\n", true, ""},
		{"exact, newline", Comparison{Mode: CompareExact}, "a\n", "a", false, ""},
		{"exact, CR", Comparison{Mode: CompareExact}, "a\r\n", "a\n", false, ""},
		{"tokens, layout", Comparison{Mode: CompareTokens}, "1\n2\t 3\n\n", " 1 2\n3", true, ""},
		{"tokens, differ", Comparison{Mode: CompareTokens}, "1 2 4", "1 2 3", false, `token 3: got "4", expected "3"`},
		{"tokens, fewer", Comparison{Mode: CompareTokens}, "1 2", "1 2 3", false, "2 tokens, expected 3"},
		{"tokens, more", Comparison{Mode: CompareTokens}, "1 2 3 4", "1 2 3", false, "4 tokens, expected 3"},
		{"tokens, numbers are words", Comparison{Mode: CompareTokens}, "1.0", "1", false, "token 1"},
		{"tokens, long token cut", Comparison{Mode: CompareTokens}, long, "x", false, `"` + strings.Repeat("é", 16) + `"…`},
		{"tokens, empty", Comparison{Mode: CompareTokens}, " \n", "", true, ""},
		{"float, default tolerance", Comparison{Mode: CompareFloat}, "0.3333333", "0.33333333333", true, ""},
		{"float, beyond default", Comparison{Mode: CompareFloat}, "0.33332", "0.33333333333", false, `token 1: got "0.33332"`},
		{"float, abs", Comparison{Mode: CompareFloat, Abs: 0.01}, "1.005 7", "1 7", true, ""},
		{"float, abs beyond", Comparison{Mode: CompareFloat, Abs: 0.01}, "1.02", "1", false, "token 1"},
		{"float, abs alone ignores rel", Comparison{Mode: CompareFloat, Abs: 1e-9}, "1000000.5", "1000000", false, "token 1"},
		{"float, rel", Comparison{Mode: CompareFloat, Rel: 1e-6}, "1000000.5", "1000000", true, ""},
		{"float, exponent", Comparison{Mode: CompareFloat}, "1e3", "1000.0000001", true, ""},
		{"float, words equal", Comparison{Mode: CompareFloat}, "YES 1.0000001", "YES 1", true, ""},
		{"float, words differ", Comparison{Mode: CompareFloat}, "NO 1", "YES 1", false, `got "NO", expected "YES"`},
		{"float, nan never near", Comparison{Mode: CompareFloat, Abs: 1}, "nan", "0", false, "token 1"},
		{"float, inf never near", Comparison{Mode: CompareFloat, Rel: 1}, "inf", "1e308", false, "token 1"},
		{"float, same word nan", Comparison{Mode: CompareFloat}, "nan", "nan", true, ""},
		{"float, count", Comparison{Mode: CompareFloat}, "1", "1 2", false, "1 tokens, expected 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := tt.cmp.Match([]byte(tt.got), []byte(tt.want))
			if ok != tt.ok || !strings.Contains(why, tt.why) || (ok && why != "") {
				t.Fatalf("Match(%q, %q) = %v %q, want %v and a message with %q", tt.got, tt.want, ok, why, tt.ok, tt.why)
			}
		})
	}
}
