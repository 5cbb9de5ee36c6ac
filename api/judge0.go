package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"microbox/languages"
	"microbox/sandbox"
)

// Judge0's language ids for the languages microbox has.
var judge0IDs = map[int]string{46: "bash", 50: "c", 54: "cpp", 63: "javascript", 71: "python3", 72: "ruby"}

// judge0Names are Judge0's display names; the version comes from the image.
var judge0Names = map[string]string{
	"bash": "Bash (%s)", "c": "C (GCC %s)", "cpp": "C++ (GCC %s)", "javascript": "JavaScript (Node.js %s)",
	"python3": "Python (%s)", "ruby": "Ruby (%s)",
}

func judge0ID(lang string) int {
	for id, l := range judge0IDs {
		if l == lang {
			return id
		}
	}
	return 0
}

// Limits are the defaults and maxima of the submission limits, in Judge0's
// units (seconds, kilobytes).
type Limits struct {
	CPUTime, CPUExtraTime, WallTime float64 // seconds
	Memory, Stack, FileSize         int64   // KB
	Processes                       int
}

// DefaultLimits and MaxLimits are Judge0 CE's.
var (
	DefaultLimits = Limits{CPUTime: 5, CPUExtraTime: 1, WallTime: 10, Memory: 128000, Stack: 64000, FileSize: 1024, Processes: 60}
	MaxLimits     = Limits{CPUTime: 15, CPUExtraTime: 5, WallTime: 20, Memory: 512000, Stack: 128000, FileSize: 4096, Processes: 120}
)

// fieldErrors is Judge0's 422 body: field → messages.
type fieldErrors map[string][]string

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

// validate turns a request into a submission, or the field errors Judge0
// would answer with 422. maxSource bounds the source in bytes.
func validate(r *request, b64 bool, maxSource int, built map[string]bool) (*submission, fieldErrors) {
	fe := fieldErrors{}
	s := &submission{}
	// Language.
	id, ok, err := number(r.LanguageID)
	switch {
	case err != nil:
		fe.add("language_id", "is not a number")
	case !ok:
		fe.add("language_id", "can't be blank")
	default:
		lang, known := judge0IDs[int(id)]
		if !known || id != math.Trunc(id) {
			fe.add("language_id", "language with id %v doesn't exist", id)
		} else if !built[lang] {
			fe.add("language_id", "language with id %v is not available on this server (its image is not built)", id)
		} else {
			s.LanguageID, s.Job.Language = int(id), lang
		}
	}
	// Source.
	if r.SourceCode == nil || *r.SourceCode == "" {
		fe.add("source_code", "can't be blank")
	} else {
		s.Job.Source = decodeText(fe, "source_code", r.SourceCode, b64)
		if len(s.Job.Source) > maxSource {
			fe.add("source_code", "is too long (maximum is %d bytes)", maxSource)
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
		fe.add("compiler_options", "are not supported by this server yet")
	}
	if r.EnableNetwork != nil && *r.EnableNetwork {
		fe.add("enable_network", "must be false: microVMs have no network")
	}
	if len(r.NumberOfRuns) > 0 && string(r.NumberOfRuns) != "null" {
		if n, ok, err := number(r.NumberOfRuns); err != nil || (ok && n != 1) {
			fe.add("number_of_runs", "must be 1")
		}
	}
	if r.AdditionalFiles != nil && *r.AdditionalFiles != "" {
		// A zip is binary: it always comes base64-encoded (Judge0).
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*r.AdditionalFiles))
		if err != nil {
			fe.add("additional_files", "is not valid base64")
		} else if s.Job.Language != "" {
			lang, _ := languages.Lookup(s.Job.Language)
			files, err := unzipFiles(raw, lang.SourceFile)
			if err != nil {
				fe.add("additional_files", "%v", err)
			}
			s.Job.Files = files
		}
	}
	if r.CallbackURL != nil {
		s.CallbackURL = *r.CallbackURL
	}
	s.RedirectStderr = r.RedirectStderr != nil && *r.RedirectStderr

	// Limits, in Judge0's units, each between 0 (exclusive) and its maximum.
	seconds := func(field string, raw json.RawMessage, def, maxv float64) float64 {
		v, ok, err := number(raw)
		switch {
		case err != nil:
			fe.add(field, "is not a number")
		case !ok:
			return def
		case v <= 0 && field != "cpu_extra_time":
			fe.add(field, "must be greater than 0")
		case v < 0:
			fe.add(field, "must be greater than or equal to 0")
		case v > maxv:
			fe.add(field, "must be less than or equal to %v", maxv)
		default:
			return v
		}
		return def
	}
	cpu := seconds("cpu_time_limit", r.CPUTimeLimit, DefaultLimits.CPUTime, MaxLimits.CPUTime)
	extra := seconds("cpu_extra_time", r.CPUExtraTime, DefaultLimits.CPUExtraTime, MaxLimits.CPUExtraTime)
	wall := seconds("wall_time_limit", r.WallTimeLimit, DefaultLimits.WallTime, MaxLimits.WallTime)
	mem := seconds("memory_limit", r.MemoryLimit, float64(DefaultLimits.Memory), float64(MaxLimits.Memory))
	stack := seconds("stack_limit", r.StackLimit, float64(DefaultLimits.Stack), float64(MaxLimits.Stack))
	procs := seconds("max_processes_and_or_threads", r.MaxProcesses, float64(DefaultLimits.Processes), float64(MaxLimits.Processes))
	fsize := seconds("max_file_size", r.MaxFileSize, float64(DefaultLimits.FileSize), float64(MaxLimits.FileSize))
	if mem < 4096 && fe["memory_limit"] == nil {
		fe.add("memory_limit", "must be at least 4096 (KB)")
	}
	if procs < 2 && fe["max_processes_and_or_threads"] == nil {
		fe.add("max_processes_and_or_threads", "must be at least 2")
	}
	if len(fe) > 0 {
		return nil, fe
	}
	s.CPULimit = cpu
	s.Job.Limits = sandbox.Limits{
		CPUTime:   dur(cpu + extra),
		WallTime:  dur(wall),
		Memory:    int64(mem) << 10,
		Stack:     int64(stack) << 10,
		Processes: int(procs),
		FileSize:  int64(fsize) << 10,
	}
	return s, nil
}

func dur(sec float64) time.Duration { return time.Duration(sec * float64(time.Second)) }

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
	norm := func(b []byte) []byte {
		lines := bytes.Split(b, []byte("\n"))
		for i, l := range lines {
			lines[i] = bytes.TrimRight(l, " \t\r")
		}
		return bytes.TrimRight(bytes.Join(lines, []byte("\n")), "\n")
	}
	return bytes.Equal(norm(got), norm([]byte(want)))
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
	if err := text("source_code", sub.Job.Source, true); err != nil {
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
