package api

import (
	"fmt"
	"strings"
	"unicode"

	"microbox/languages"
	"microbox/sandbox"
	"microbox/sandbox/protocol"
)

// multiFileID is Judge0's "Multi-file program": the program's files come
// in a zip with a run script and maybe a compile script, run with bash.
const multiFileID = 89

// multiFileImage is the image a multi-file program runs in: bash and the
// coreutils, with GCC's gcc and g++ for a compile script.
const multiFileImage = "cpp"

// multiFileName names multi-file programs in the native API, and in
// /languages (Judge0's name).
const (
	multiFileName    = "multi-file"
	multiFileDisplay = "Multi-file program"
)

// language is what a request's language resolved to.
type language struct {
	judge0ID int
	// image is the catalog language whose image runs the job; its
	// commands, unless multiFile.
	image     languages.Language
	multiFile bool
}

// name is the language as the native API names it.
func (l language) name() string {
	if l.multiFile {
		return multiFileName
	}
	return l.image.ID
}

func (l language) compiled() bool { return !l.multiFile && len(l.image.Compile) > 0 }

// byJudge0ID resolves a Judge0 language id among the built images; the
// message says why it cannot, in Judge0's words where Judge0 has them.
func byJudge0ID(id int, built map[string]bool) (language, string) {
	l, err := languages.ByJudge0ID(id)
	if id == multiFileID {
		l, err = languages.Lookup(multiFileImage)
	}
	if err != nil {
		if _, archived := languages.ArchivedJudge0(id); archived {
			return language{}, fmt.Sprintf("language with id %d is archived and cannot be used anymore", id)
		}
		return language{}, fmt.Sprintf("language with id %d doesn't exist", id)
	}
	if !built[l.ID] {
		return language{}, fmt.Sprintf("language with id %d is not available on this server (the %s image is not built)", id, l.Image())
	}
	return language{judge0ID: id, image: l, multiFile: id == multiFileID}, ""
}

// byName resolves a native API language: a catalog id, "multi-file", or a
// Judge0 id in a string.
func byName(name string, built map[string]bool) (language, string) {
	if name == multiFileName {
		return byJudge0ID(multiFileID, built)
	}
	if l, err := languages.Lookup(name); err == nil {
		return byJudge0ID(l.Judge0ID, built)
	}
	var id int
	if _, err := fmt.Sscanf(name, "%d", &id); err == nil && fmt.Sprint(id) == name {
		return byJudge0ID(id, built)
	}
	return language{}, fmt.Sprintf("unknown language %q: give one of %s, %s, or a Judge0 language_id", name,
		strings.Join(languages.IDs(), ", "), multiFileName)
}

// multiFileScripts finds a multi-file program's scripts in its files as
// Judge0 does: run.sh or run (required), compile.sh or compile.
func multiFileScripts(files []protocol.File) (run, compile string) {
	has := map[string]bool{}
	for _, f := range files {
		has[f.Name] = true
	}
	for _, n := range []string{"run.sh", "run"} {
		if has[n] {
			run = n
			break
		}
	}
	for _, n := range []string{"compile.sh", "compile"} {
		if has[n] {
			compile = n
			break
		}
	}
	return run, compile
}

// setMultiFile makes job run a multi-file program: bash runs the compile
// script, if any, then the run script with the job's arguments. The message
// says why it cannot.
func setMultiFile(job *sandbox.Job) string {
	run, compile := multiFileScripts(job.Files)
	if run == "" {
		return "must contain a run script (run or run.sh) at the top level for a " + multiFileDisplay
	}
	job.Language = multiFileImage
	job.Command = append([]string{"bash", run}, job.Args...)
	if compile != "" {
		job.CompileCommand = []string{"bash", compile}
	}
	return ""
}

// maxCompilerOptions bounds compiler options in characters, as Judge0
// bounds compiler_options.
const maxCompilerOptions = 512

// checkCompilerOptions says what is wrong with compiler options ("" when
// nothing). They reach the compiler as argv, never through a shell, and run
// in the job's own VM as the same unprivileged user as the program: an
// option that runs a program (-wrapper), loads one (-fplugin) or reads a
// file (@file) gains nothing the program itself does not have. So only
// their size and characters are bounded, and they are refused where there
// is no compiler to take them.
func checkCompilerOptions(words []string, lang language) string {
	n := 0
	for _, w := range words {
		n += len(w) + 1
		if strings.ContainsFunc(w, unicode.IsControl) {
			return "must not contain control characters"
		}
	}
	switch {
	case n-1 > maxCompilerOptions:
		return fmt.Sprintf("are too long (maximum is %d characters)", maxCompilerOptions)
	case lang.multiFile:
		return "do not apply to a " + multiFileDisplay + ": give its compile script the options it needs"
	case lang.image.ID != "" && !lang.compiled():
		return fmt.Sprintf("apply to compiled languages only: %s is not compiled", lang.image.ID)
	}
	return ""
}
