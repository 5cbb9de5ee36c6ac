package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"microbox/sandbox"
	"microbox/sandbox/protocol"
)

// fieldErrors is Judge0's 422 body: field → messages. As an error, a
// handler returns it and the server answers it with that 422.
type fieldErrors map[string][]string

func (f fieldErrors) Error() string {
	var parts []string
	for k, v := range f {
		parts = append(parts, k+": "+strings.Join(v, "; "))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func (f fieldErrors) add(field, format string, args ...any) {
	f[field] = append(f[field], fmt.Sprintf(format, args...))
}

// submission is a stored, validated request: what the worker runs and what
// the API shows back.
type submission struct {
	Token          string      `json:"token"`
	CreatedAt      time.Time   `json:"created_at"`
	LanguageID     int         `json:"language_id"`
	Job            sandbox.Job `json:"job"`
	ExpectedOutput *string     `json:"expected_output,omitempty"`
	CPULimit       float64     `json:"cpu_limit"` // seconds, before cpu_extra_time
	RedirectStderr bool        `json:"redirect_stderr"`
	CallbackURL    string      `json:"callback_url,omitempty"`
	Base64         bool        `json:"base64,omitempty"` // the callback's encoding, as the request's
	// CompilerOptions are as sent; Job.CompilerOptions has them split.
	CompilerOptions string `json:"compiler_options,omitempty"`
	// NumberOfRuns runs the program that many times (0 means 1).
	NumberOfRuns int `json:"number_of_runs,omitempty"`
	// Source is a multi-file program's source_code: shown back, never
	// written (Judge0 runs the zip's scripts alone).
	Source []byte `json:"source,omitempty"`
}

// request is Judge0's submission body. Numbers may come as JSON numbers or
// numeric strings, as Judge0 accepts both.
type request struct {
	SourceCode           *string         `json:"source_code"`
	LanguageID           json.RawMessage `json:"language_id"`
	CompilerOptions      *string         `json:"compiler_options"`
	CommandLineArguments *string         `json:"command_line_arguments"`
	Stdin                *string         `json:"stdin"`
	ExpectedOutput       *string         `json:"expected_output"`
	CPUTimeLimit         json.RawMessage `json:"cpu_time_limit"`
	CPUExtraTime         json.RawMessage `json:"cpu_extra_time"`
	WallTimeLimit        json.RawMessage `json:"wall_time_limit"`
	MemoryLimit          json.RawMessage `json:"memory_limit"`
	StackLimit           json.RawMessage `json:"stack_limit"`
	MaxProcesses         json.RawMessage `json:"max_processes_and_or_threads"`
	MaxFileSize          json.RawMessage `json:"max_file_size"`
	RedirectStderr       *bool           `json:"redirect_stderr_to_stdout"`
	EnableNetwork        *bool           `json:"enable_network"`
	NumberOfRuns         json.RawMessage `json:"number_of_runs"`
	AdditionalFiles      *string         `json:"additional_files"`
	CallbackURL          *string         `json:"callback_url"`
}

// number reads a JSON number or numeric string; absent or null is ok=false.
func number(raw json.RawMessage) (v float64, ok bool, err error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, false, nil
	}
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, false, err
		}
	}
	v, err = strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false, fmt.Errorf("is not a number")
	}
	return v, true, nil
}

// decodeText decodes a base64 field when the request says so.
func decodeText(fe fieldErrors, field string, s *string, b64 bool) []byte {
	if s == nil {
		return nil
	}
	if !b64 {
		return []byte(*s)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*s))
	if err != nil {
		fe.add(field, "is not valid base64")
	}
	return b
}

// policy is what a server accepts of a request.
type policy struct {
	maxSource int // bytes of source and files together
	maxRuns   int // number_of_runs
	maxTests  int // tests of a native run
}

// validate turns a request into a submission, or the field errors Judge0
// would answer with 422.
func validate(r *request, b64 bool, pol policy, built map[string]bool) (*submission, fieldErrors) {
	fe := fieldErrors{}
	s := &submission{}
	// Language.
	var lang language
	id, ok, err := number(r.LanguageID)
	switch {
	case err != nil:
		fe.add("language_id", "is not a number")
	case !ok:
		fe.add("language_id", "can't be blank")
	case id != math.Trunc(id) || math.Abs(id) > 1e9:
		fe.add("language_id", "language with id %v doesn't exist", id)
	default:
		var msg string
		if lang, msg = byJudge0ID(int(id), built); msg != "" {
			fe.add("language_id", "%s", msg)
		} else {
			s.LanguageID, s.Job.Language = int(id), lang.image.ID
		}
	}
	// Source: a multi-file program's is in its zip.
	switch {
	case lang.multiFile:
		s.Source = decodeText(fe, "source_code", r.SourceCode, b64)
	case r.SourceCode == nil || *r.SourceCode == "":
		fe.add("source_code", "can't be blank")
	default:
		s.Job.Source = decodeText(fe, "source_code", r.SourceCode, b64)
		if len(s.Job.Source) > pol.maxSource {
			fe.add("source_code", "is too long (maximum is %d bytes)", pol.maxSource)
		}
	}
	s.Job.Stdin = decodeText(fe, "stdin", r.Stdin, b64)
	if len(s.Job.Stdin) > sandbox.MaxStdin {
		fe.add("stdin", "is too long (maximum is %d bytes)", sandbox.MaxStdin)
	}
	if r.ExpectedOutput != nil {
		eo := string(decodeText(fe, "expected_output", r.ExpectedOutput, b64))
		s.ExpectedOutput = &eo
	}
	if r.CommandLineArguments != nil {
		args, err := splitArgs(*r.CommandLineArguments)
		if err != nil {
			fe.add("command_line_arguments", "%v", err)
		}
		s.Job.Args = args
	}
	if r.CompilerOptions != nil && strings.TrimSpace(*r.CompilerOptions) != "" {
		opts, err := splitArgs(*r.CompilerOptions)
		switch {
		case len(*r.CompilerOptions) > maxCompilerOptions:
			fe.add("compiler_options", "are too long (maximum is %d characters)", maxCompilerOptions)
		case err != nil:
			fe.add("compiler_options", "%v", err)
		default:
			if msg := checkCompilerOptions(opts, lang); msg != "" {
				fe.add("compiler_options", "%s", msg)
			}
		}
		s.CompilerOptions, s.Job.CompilerOptions = *r.CompilerOptions, opts
	}
	if r.EnableNetwork != nil && *r.EnableNetwork {
		fe.add("enable_network", "must be false: microVMs have no network")
	}
	s.NumberOfRuns = 1
	switch n, ok, err := number(r.NumberOfRuns); {
	case err != nil:
		fe.add("number_of_runs", "is not a number")
	case !ok:
	case n != math.Trunc(n) || n < 1:
		fe.add("number_of_runs", "must be a whole number, at least 1")
	case n > float64(pol.maxRuns):
		fe.add("number_of_runs", "must be less than or equal to %d", pol.maxRuns)
	case int(n)*len(s.Job.Stdin) > sandbox.MaxStdin:
		// Each run gets its own copy of stdin, all in one job.
		fe.add("number_of_runs", "times the %d bytes of stdin is over %d bytes", len(s.Job.Stdin), sandbox.MaxStdin)
	default:
		s.NumberOfRuns = int(n)
	}
	if r.AdditionalFiles != nil && *r.AdditionalFiles != "" {
		// A zip is binary: it always comes base64-encoded (Judge0).
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*r.AdditionalFiles))
		if err != nil {
			fe.add("additional_files", "is not valid base64")
		} else if s.Job.Language != "" {
			reserved := lang.image.SourceFile
			if lang.multiFile {
				reserved = "" // no source file is written
			}
			files, err := unzipFiles(raw, reserved)
			if err != nil {
				fe.add("additional_files", "%v", err)
			}
			s.Job.Files = files
		}
	}
	if size := len(s.Job.Source) + filesSize(s.Job.Files); size > pol.maxSource && fe["source_code"] == nil {
		fe.add("additional_files", "unpack to %d bytes with the source code, more than %d", size, pol.maxSource)
	}
	if lang.multiFile && fe["additional_files"] == nil {
		if len(s.Job.Files) == 0 {
			fe.add("additional_files", "can't be blank for a %s (language %d): send a zip with a run script", multiFileDisplay, multiFileID)
		} else if msg := setMultiFile(&s.Job); msg != "" {
			fe.add("additional_files", "%s", msg)
		}
	}
	if r.CallbackURL != nil {
		s.CallbackURL = *r.CallbackURL
	}
	s.RedirectStderr = r.RedirectStderr != nil && *r.RedirectStderr
	s.Job.MergeStderr = s.RedirectStderr
	s.Job.Limits, s.CPULimit = limitFields{
		CPUTime: r.CPUTimeLimit, CPUExtraTime: r.CPUExtraTime, WallTime: r.WallTimeLimit, Memory: r.MemoryLimit,
		Stack: r.StackLimit, Processes: r.MaxProcesses, FileSize: r.MaxFileSize,
	}.parse(fe, judge0LimitNames)
	if len(fe) > 0 {
		return nil, fe
	}
	return s, nil
}

func filesSize(files []protocol.File) int {
	n := 0
	for _, f := range files {
		n += len(f.Data)
	}
	return n
}

// splitArgs splits a command line into argv the way a shell would split
// words and quotes, without running one: nothing is expanded.
func splitArgs(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord, quote, escaped := false, rune(0), false
	for _, r := range s {
		switch {
		case escaped:
			// Inside double quotes only \, \", \$ and \` escape.
			if !strings.ContainsRune(`"\$`+"`", r) {
				cur.WriteRune('\\')
			}
			cur.WriteRune(r)
			escaped = false
		case quote == '"' && r == '\\':
			escaped = true
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("has an unterminated %c quote", quote)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

// sameOutput compares outputs the way Judge0 does: trailing whitespace of
// each line, and trailing empty lines, do not matter.
func sameOutput(got []byte, want string) bool {
	ok, _ := sandbox.Comparison{}.Match(got, []byte(want))
	return ok
}

// outcome is what the worker stores for a finished submission.
type outcome struct {
	submission
	Stdout        []byte         `json:"stdout"`
	Stderr        []byte         `json:"stderr"`
	CompileOutput []byte         `json:"compile_output"`
	Message       string         `json:"message"`
	ExitCode      *int           `json:"exit_code"`
	ExitSignal    *int           `json:"exit_signal"`
	Status        sandbox.Status `json:"status"`
	FinishedAt    time.Time      `json:"finished_at"`
	Time          float64        `json:"time"`      // seconds of CPU, native-equivalent
	WallTime      float64        `json:"wall_time"` // seconds
	Memory        int64          `json:"memory"`    // KB
	Accel         string         `json:"accel"`
	// TimeScale and CompileTimeScale are the factors the run's and the
	// compile's time limits were multiplied by in the guest (the
	// language's, sandbox.LanguageScales).
	TimeScale        float64 `json:"time_scale,omitempty"`
	CompileTimeScale float64 `json:"compile_time_scale,omitempty"`
	// StartAllowance and CompileStartAllowance are the seconds of guest
	// CPU added to those scaled limits for the language's start-up
	// (sandbox.Scales); time is the guest's CPU less it, scaled.
	StartAllowance        float64 `json:"start_allowance,omitempty"`
	CompileStartAllowance float64 `json:"compile_start_allowance,omitempty"`
}

// render builds Judge0's response object; fields selects attributes ("*"
// for all). Text comes back base64-encoded when b64, else it must be UTF-8.
func render(o *outcome, queued *submission, b64 bool, fields []string) (map[string]any, error) {
	all := map[string]any{}
	text := func(name string, b []byte, present bool) error {
		if !present {
			all[name] = nil
			return nil
		}
		if b64 {
			all[name] = base64.StdEncoding.EncodeToString(b)
			return nil
		}
		if !utf8.Valid(b) {
			return fmt.Errorf("%s is not valid UTF-8: ask with base64_encoded=true", name)
		}
		all[name] = string(b)
		return nil
	}
	sub := queued
	if o != nil {
		sub = &o.submission
	}
	all["token"] = sub.Token
	all["language_id"] = sub.LanguageID
	all["created_at"] = sub.CreatedAt.UTC().Format(time.RFC3339Nano)
	src := sub.Job.Source
	if sub.LanguageID == multiFileID {
		src = sub.Source
	}
	if err := text("source_code", src, true); err != nil {
		return nil, err
	}
	if err := text("stdin", sub.Job.Stdin, sub.Job.Stdin != nil); err != nil {
		return nil, err
	}
	var eo []byte
	if sub.ExpectedOutput != nil {
		eo = []byte(*sub.ExpectedOutput)
	}
	if err := text("expected_output", eo, sub.ExpectedOutput != nil); err != nil {
		return nil, err
	}
	all["cpu_time_limit"] = sub.CPULimit
	all["wall_time_limit"] = sub.Job.Limits.WallTime.Seconds()
	all["memory_limit"] = sub.Job.Limits.Memory >> 10
	all["command_line_arguments"] = strings.Join(sub.Job.Args, " ")
	all["compiler_options"] = nil
	if sub.CompilerOptions != "" {
		all["compiler_options"] = sub.CompilerOptions
	}
	all["number_of_runs"] = max(sub.NumberOfRuns, 1)
	if o == nil {
		all["status"] = sandbox.StatusInQueue
		for _, k := range []string{"stdout", "stderr", "compile_output", "message", "exit_code", "exit_signal", "finished_at", "time", "wall_time", "memory"} {
			all[k] = nil
		}
	} else {
		for _, t := range []struct {
			name string
			b    []byte
			ok   bool
		}{{"stdout", o.Stdout, o.Stdout != nil}, {"stderr", o.Stderr, o.Stderr != nil}, {"compile_output", o.CompileOutput, o.CompileOutput != nil}, {"message", []byte(o.Message), o.Message != ""}} {
			if err := text(t.name, t.b, t.ok); err != nil {
				return nil, err
			}
		}
		all["exit_code"], all["exit_signal"] = o.ExitCode, o.ExitSignal
		all["status"] = o.Status
		all["finished_at"] = o.FinishedAt.UTC().Format(time.RFC3339Nano)
		all["time"] = strconv.FormatFloat(o.Time, 'f', 3, 64)
		all["wall_time"] = strconv.FormatFloat(o.WallTime, 'f', 3, 64)
		all["memory"] = o.Memory
		all["accel"] = o.Accel
		all["time_scale"], all["compile_time_scale"] = o.TimeScale, o.CompileTimeScale
		all["start_allowance"], all["compile_start_allowance"] = o.StartAllowance, o.CompileStartAllowance
	}
	if len(fields) == 1 && fields[0] == "*" {
		return all, nil
	}
	out := map[string]any{}
	for _, f := range fields {
		if v, ok := all[f]; ok {
			out[f] = v
		}
	}
	return out, nil
}

// defaultFields are Judge0's attributes of GET /submissions/{token}.
var defaultFields = []string{"token", "stdout", "stderr", "compile_output", "message", "status", "time", "memory"}
