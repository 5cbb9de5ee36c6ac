package languages

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Language is one catalog entry.
type Language struct {
	ID         string   // short id: "bash", "c", "cpp", "python3", "javascript", "ruby"
	Name       string   // display name, e.g. "Python 3"
	Packages   []string // Debian packages added to the shared base
	SourceFile string   // file name the source is written to in the work dir, e.g. "main.py"
	Extensions []string // file extensions that select it, e.g. {".py"}
	Compile    []string // compile argv run in the work dir; nil when interpreted
	Run        []string // run argv run in the work dir, e.g. {"python3", "main.py"} or {"./main"}
	VersionCmd []string // argv that prints the version; its output goes through ParseVersion
	// Hello prints "Hello, World!\n". It warms a snapshot's and a pooled
	// VM's runtime (compiler, interpreter and libraries in the page cache,
	// their code in TCG's translation cache) before a job needs them.
	Hello string
}

// ErrUnknown is wrapped by Lookup and ByExtension for ids and extensions
// not in the catalog.
var ErrUnknown = errors.New("unknown language")

// catalog is kept sorted by ID; All returns copies so callers cannot edit it.
var catalog = []Language{
	{
		ID:         "bash",
		Name:       "Bash",
		Packages:   []string{"bash"},
		SourceFile: "main.sh",
		Extensions: []string{".sh", ".bash"},
		Run:        []string{"bash", "main.sh"},
		VersionCmd: []string{"bash", "--version"},
		Hello:      `echo "Hello, World!"`,
	},
	{
		ID:         "c",
		Name:       "C (GCC)",
		Packages:   []string{"gcc", "libc6-dev"},
		SourceFile: "main.c",
		Extensions: []string{".c"},
		Compile:    []string{"gcc", "-O2", "-std=gnu17", "-o", "main", "main.c", "-lm"},
		Run:        []string{"./main"},
		VersionCmd: []string{"gcc", "--version"},
		Hello:      "#include <stdio.h>\nint main(void) { puts(\"Hello, World!\"); return 0; }\n",
	},
	{
		ID:         "cpp",
		Name:       "C++ (G++)",
		Packages:   []string{"g++"},
		SourceFile: "main.cpp",
		Extensions: []string{".cpp", ".cc", ".cxx"},
		Compile:    []string{"g++", "-O2", "-std=gnu++17", "-o", "main", "main.cpp"},
		Run:        []string{"./main"},
		VersionCmd: []string{"g++", "--version"},
		Hello:      "#include <iostream>\nint main() { std::cout << \"Hello, World!\" << std::endl; }\n",
	},
	{
		ID:         "javascript",
		Name:       "JavaScript (Node.js)",
		Packages:   []string{"nodejs"},
		SourceFile: "main.js",
		Extensions: []string{".js"},
		Run:        []string{"node", "main.js"},
		VersionCmd: []string{"node", "--version"},
		Hello:      `console.log("Hello, World!");`,
	},
	{
		// python3-minimal lacks most of the standard library (json,
		// asyncio, …), so the full interpreter package is used.
		ID:         "python3",
		Name:       "Python 3",
		Packages:   []string{"python3"},
		SourceFile: "main.py",
		Extensions: []string{".py"},
		Run:        []string{"python3", "main.py"},
		VersionCmd: []string{"python3", "--version"},
		Hello:      `print("Hello, World!")`,
	},
	{
		ID:         "ruby",
		Name:       "Ruby",
		Packages:   []string{"ruby"},
		SourceFile: "main.rb",
		Extensions: []string{".rb"},
		Run:        []string{"ruby", "main.rb"},
		VersionCmd: []string{"ruby", "--version"},
		Hello:      `puts "Hello, World!"`,
	},
}

// All returns the catalog sorted by ID.
func All() []Language {
	out := make([]Language, len(catalog))
	for i, l := range catalog {
		out[i] = l.clone()
	}
	slices.SortFunc(out, func(a, b Language) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// IDs returns the catalog's ids, sorted.
func IDs() []string {
	ids := make([]string, 0, len(catalog))
	for _, l := range All() {
		ids = append(ids, l.ID)
	}
	return ids
}

// Lookup returns the language with the given id.
func Lookup(id string) (Language, error) {
	for _, l := range catalog {
		if l.ID == id {
			return l.clone(), nil
		}
	}
	return Language{}, fmt.Errorf("%w %q (known: %s)", ErrUnknown, id, strings.Join(IDs(), ", "))
}

// ByExtension returns the language a file extension such as ".py" selects.
// The match ignores case.
func ByExtension(ext string) (Language, error) {
	for _, l := range catalog {
		for _, e := range l.Extensions {
			if strings.EqualFold(e, ext) {
				return l.clone(), nil
			}
		}
	}
	return Language{}, fmt.Errorf("%w for extension %q (known: %s)", ErrUnknown, ext, strings.Join(knownExtensions(), ", "))
}

func knownExtensions() []string {
	var exts []string
	for _, l := range All() {
		exts = append(exts, l.Extensions...)
	}
	return exts
}

// CompileArgv is the compile command with further source files and
// compiler options put where the command names the source file: the source
// file, then sources, then options, then whatever followed it (GCC's -lm,
// which must come after the objects that need it; GCC takes -D, -O, -W and
// -l anywhere else). nil for an interpreted language.
func (l Language) CompileArgv(sources, options []string) []string {
	if len(l.Compile) == 0 {
		return nil
	}
	at := len(l.Compile)
	if i := slices.Index(l.Compile, l.SourceFile); i >= 0 {
		at = i + 1
	}
	argv := slices.Clone(l.Compile[:at])
	argv = append(argv, sources...)
	argv = append(argv, options...)
	return append(argv, l.Compile[at:]...)
}

func (l Language) clone() Language {
	l.Packages = slices.Clone(l.Packages)
	l.Extensions = slices.Clone(l.Extensions)
	l.Compile = slices.Clone(l.Compile)
	l.Run = slices.Clone(l.Run)
	l.VersionCmd = slices.Clone(l.VersionCmd)
	return l
}

var (
	versionRE = regexp.MustCompile(`\d+\.\d+(?:\.\d+)?`)
	// gccRE recognises GCC's first line, "gcc (Debian 12.2.0-14) 12.2.0":
	// the parenthesised part is the packaging version, the last one is GCC's.
	gccRE = regexp.MustCompile(`^(?:[\w.-]*-)?(?:gcc|g\+\+|cc|c\+\+)(?:-\d+)?\s`)
)

// ParseVersion extracts a version from the output of a VersionCmd. It looks
// at the first non-blank line only: for GCC drivers it takes the last dotted
// version on the line, otherwise the first, so "Python 3.11.2" gives
// "3.11.2", "v18.19.0" gives "18.19.0" and "ruby 3.1.2p20 (…)" gives "3.1.2".
func ParseVersion(output string) (string, error) {
	var line string
	for l := range strings.Lines(output) {
		if l = strings.TrimSpace(l); l != "" {
			line = l
			break
		}
	}
	if line == "" {
		return "", errors.New("parse version: empty output")
	}
	if gccRE.MatchString(line) {
		if all := versionRE.FindAllString(line, -1); len(all) > 0 {
			return all[len(all)-1], nil
		}
	} else if v := versionRE.FindString(line); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("parse version: no version in %q", line)
}
