// Package logtail reads the end of a log file, for error messages that show
// what a failed build or VM printed last.
package logtail

import (
	"os"
	"strings"
)

// Lines returns the last n lines of the file at path, or "" if it cannot be
// read.
func Lines(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
