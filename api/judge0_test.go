package api

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"a b  c", []string{"a", "b", "c"}, false},
		{`"two words" 'single $HOME' x"y"z`, []string{"two words", "single $HOME", "xyz"}, false},
		{`"esc \" quote"`, []string{`esc " quote`}, false},
		{`; rm -rf / $(id)`, []string{";", "rm", "-rf", "/", "$(id)"}, false},
		{`"open`, nil, true},
	}
	for _, tt := range tests {
		got, err := splitArgs(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestSameOutput(t *testing.T) {
	tests := []struct {
		got, want string
		same      bool
	}{
		{"1 2\n3\n", "1 2\n3", true},
		{"1 2   \n3\t\n\n\n", "1 2\n3\n", true},
		{"1 2\n3\n", "1  2\n3\n", false},
		{"a\n", "b\n", false},
		{"a\r\n", "a\n", true},
	}
	for _, tt := range tests {
		if got := sameOutput([]byte(tt.got), tt.want); got != tt.same {
			t.Errorf("sameOutput(%q, %q) = %v", tt.got, tt.want, got)
		}
	}
}

func TestValidate(t *testing.T) {
	built := map[string]bool{"python3": true, "bash": true}
	tests := []struct {
		name, body string
		b64        bool
		field      string // "" means valid
	}{
		{"valid", `{"source_code":"print(1)","language_id":71}`, false, ""},
		{"numeric string id", `{"source_code":"print(1)","language_id":"71"}`, false, ""},
		{"missing source", `{"language_id":71}`, false, "source_code"},
		{"empty source", `{"source_code":"","language_id":71}`, false, "source_code"},
		{"missing language", `{"source_code":"x"}`, false, "language_id"},
		{"unknown language", `{"source_code":"x","language_id":9999}`, false, "language_id"},
		{"language not built", `{"source_code":"x","language_id":50}`, false, "language_id"},
		{"archived language", `{"source_code":"x","language_id":4}`, false, "language_id"},
		{"Judge0 language Debian lacks", `{"source_code":"x","language_id":83}`, false, "language_id"},
		{"non-numeric language", `{"source_code":"x","language_id":"python"}`, false, "language_id"},
		{"bad base64", `{"source_code":"%%%","language_id":71}`, true, "source_code"},
		{"negative cpu", `{"source_code":"x","language_id":71,"cpu_time_limit":-1}`, false, "cpu_time_limit"},
		{"cpu over max", `{"source_code":"x","language_id":71,"cpu_time_limit":100}`, false, "cpu_time_limit"},
		{"non-numeric memory", `{"source_code":"x","language_id":71,"memory_limit":"lots"}`, false, "memory_limit"},
		{"memory over max", `{"source_code":"x","language_id":71,"memory_limit":9999999}`, false, "memory_limit"},
		{"network", `{"source_code":"x","language_id":71,"enable_network":true}`, false, "enable_network"},
		{"unterminated quote", `{"source_code":"x","language_id":71,"command_line_arguments":"\"a"}`, false, "command_line_arguments"},
		{"source too large", `{"source_code":"` + strings.Repeat("x", 2<<20) + `","language_id":71}`, false, "source_code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r request
			if err := json.Unmarshal([]byte(tt.body), &r); err != nil {
				t.Fatal(err)
			}
			sub, fe := validate(&r, tt.b64, policy{maxSource: 1 << 20, maxRuns: 3, maxTests: 10}, built)
			if tt.field == "" {
				if fe != nil || sub == nil {
					t.Fatalf("valid request refused: %v", fe)
				}
				return
			}
			if len(fe[tt.field]) == 0 {
				t.Fatalf("errors %v, want one for %s", fe, tt.field)
			}
		})
	}
}

// Judge0's words for a language it archived or never had, and microbox's
// for one this server did not build.
func TestLanguageMessages(t *testing.T) {
	built := map[string]bool{"python3": true, "cpp-clang": true}
	tests := []struct {
		id   int
		want string
	}{
		{71, ""},
		{76, ""}, // runs in c-clang's image, built for cpp-clang
		{4, "language with id 4 is archived and cannot be used anymore"},
		{83, "language with id 83 doesn't exist"},
		{12345, "language with id 12345 doesn't exist"},
		{62, "language with id 62 is not available on this server (the java image is not built)"},
	}
	for _, tt := range tests {
		l, msg := byJudge0ID(tt.id, built)
		if msg != tt.want || (msg == "" && l.judge0ID != tt.id) {
			t.Errorf("byJudge0ID(%d) = %+v, %q; want %q", tt.id, l, msg, tt.want)
		}
	}
	if l, msg := byName("java", map[string]bool{"java": true}); msg != "" || l.judge0ID != 62 {
		t.Errorf("byName(java) = %+v, %q", l, msg)
	}
}

// compiler_options, number_of_runs and the Multi-file program (89).
func TestValidateJudge0Extras(t *testing.T) {
	built := map[string]bool{"python3": true, "c": true, "cpp": true}
	zip := func(files map[string]string) string {
		return base64.StdEncoding.EncodeToString(makeZip(t, files))
	}
	withRun := zip(map[string]string{"run": "./a", "compile": "gcc -o a main.c", "main.c": "int main(){}"})
	tests := []struct {
		name, body string
		field      string // "" means valid
		check      func(t *testing.T, s *submission)
	}{
		{"options for C", `{"source_code":"x","language_id":50,"compiler_options":"-DA=1 '-DB=two words' -O0"}`, "", func(t *testing.T, s *submission) {
			if want := []string{"-DA=1", "-DB=two words", "-O0"}; !reflect.DeepEqual(s.Job.CompilerOptions, want) {
				t.Errorf("options %q, want %q", s.Job.CompilerOptions, want)
			}
		}},
		{"blank options for python", `{"source_code":"x","language_id":71,"compiler_options":"  "}`, "", nil},
		{"options for python", `{"source_code":"x","language_id":71,"compiler_options":"-O"}`, "compiler_options", nil},
		{"options too long", `{"source_code":"x","language_id":50,"compiler_options":"` + strings.Repeat("-O ", 200) + `"}`, "compiler_options", nil},
		{"options with control characters", `{"source_code":"x","language_id":50,"compiler_options":"-DA=\u0007"}`, "compiler_options", nil},
		{"options unterminated", `{"source_code":"x","language_id":50,"compiler_options":"'-DA"}`, "compiler_options", nil},
		{"three runs", `{"source_code":"x","language_id":71,"number_of_runs":"3"}`, "", func(t *testing.T, s *submission) {
			if s.NumberOfRuns != 3 {
				t.Errorf("number_of_runs %d", s.NumberOfRuns)
			}
		}},
		{"zero runs", `{"source_code":"x","language_id":71,"number_of_runs":0}`, "number_of_runs", nil},
		{"runs over max", `{"source_code":"x","language_id":71,"number_of_runs":4}`, "number_of_runs", nil},
		{"fractional runs", `{"source_code":"x","language_id":71,"number_of_runs":2.5}`, "number_of_runs", nil},
		{"runs times stdin too large", `{"source_code":"x","language_id":71,"number_of_runs":3,"stdin":"` + strings.Repeat("x", 6<<20) + `"}`, "number_of_runs", nil},
		{"multi-file", `{"language_id":89,"additional_files":"` + withRun + `","command_line_arguments":"a b"}`, "", func(t *testing.T, s *submission) {
			if s.Job.Language != "cpp" || !reflect.DeepEqual(s.Job.Command, []string{"bash", "run", "a", "b"}) ||
				!reflect.DeepEqual(s.Job.CompileCommand, []string{"bash", "compile"}) || s.Job.Source != nil {
				t.Errorf("job %+v", s.Job)
			}
		}},
		{"multi-file without zip", `{"language_id":89,"source_code":"x"}`, "additional_files", nil},
		{"multi-file without run script", `{"language_id":89,"additional_files":"` + zip(map[string]string{"compile": "true"}) + `"}`, "additional_files", nil},
		{"multi-file options", `{"language_id":89,"additional_files":"` + withRun + `","compiler_options":"-O2"}`, "compiler_options", nil},
		{"zip over the source limit", `{"source_code":"x","language_id":71,"additional_files":"` + zip(map[string]string{"big": strings.Repeat("x", 1<<20)}) + `"}`, "additional_files", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r request
			if err := json.Unmarshal([]byte(tt.body), &r); err != nil {
				t.Fatal(err)
			}
			sub, fe := validate(&r, false, policy{maxSource: 1 << 20, maxRuns: 3, maxTests: 10}, built)
			if tt.field == "" {
				if fe != nil || sub == nil {
					t.Fatalf("valid request refused: %v", fe)
				}
				if tt.check != nil {
					tt.check(t, sub)
				}
				return
			}
			if len(fe[tt.field]) == 0 {
				t.Fatalf("errors %v, want one for %s", fe, tt.field)
			}
		})
	}
}
