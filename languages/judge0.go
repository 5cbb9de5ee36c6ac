package languages

import "slices"

// Archived is a language Judge0 CE once had and keeps as archived: it
// lists it (GET /languages/all, /languages/{id}) and answers a submission
// in it that it "is archived and cannot be used anymore".
type Archived struct {
	Judge0ID int
	Name     string // Judge0's name, version included
}

// judge0Archived are Judge0 CE's archived languages, ids 1 to 42.
var judge0Archived = []Archived{
	{1, "Bash (4.4)"}, {2, "Bash (4.0)"}, {3, "Basic (fbc 1.05.0)"},
	{4, "C (gcc 7.2.0)"}, {5, "C (gcc 6.4.0)"}, {6, "C (gcc 6.3.0)"}, {7, "C (gcc 5.4.0)"},
	{8, "C (gcc 4.9.4)"}, {9, "C (gcc 4.8.5)"},
	{10, "C++ (g++ 7.2.0)"}, {11, "C++ (g++ 6.4.0)"}, {12, "C++ (g++ 6.3.0)"}, {13, "C++ (g++ 5.4.0)"},
	{14, "C++ (g++ 4.9.4)"}, {15, "C++ (g++ 4.8.5)"},
	{16, "C# (mono 5.4.0.167)"}, {17, "C# (mono 5.2.0.224)"}, {18, "Clojure (1.8.0)"},
	{19, "Crystal (0.23.1)"}, {20, "Elixir (1.5.1)"}, {21, "Erlang (OTP 20.0)"}, {22, "Go (1.9)"},
	{23, "Haskell (ghc 8.2.1)"}, {24, "Haskell (ghc 8.0.2)"}, {25, "Insect (5.0.0)"},
	{26, "Java (OpenJDK 9 with Eclipse OpenJ9)"}, {27, "Java (OpenJDK 8)"}, {28, "Java (OpenJDK 7)"},
	{29, "JavaScript (nodejs 8.5.0)"}, {30, "JavaScript (nodejs 7.10.1)"}, {31, "OCaml (4.05.0)"},
	{32, "Octave (4.2.0)"}, {33, "Pascal (fpc 3.0.0)"}, {34, "Python (3.6.0)"}, {35, "Python (3.5.3)"},
	{36, "Python (2.7.9)"}, {37, "Python (2.6.9)"}, {38, "Ruby (2.4.0)"}, {39, "Ruby (2.3.3)"},
	{40, "Ruby (2.2.6)"}, {41, "Ruby (2.1.9)"}, {42, "Rust (1.20.0)"},
}

// Judge0Archived returns Judge0 CE's archived languages, by id.
func Judge0Archived() []Archived { return slices.Clone(judge0Archived) }

// ArchivedJudge0 returns the archived Judge0 language with the given id.
func ArchivedJudge0(id int) (Archived, bool) {
	i := slices.IndexFunc(judge0Archived, func(a Archived) bool { return a.Judge0ID == id })
	if i < 0 {
		return Archived{}, false
	}
	return judge0Archived[i], true
}
