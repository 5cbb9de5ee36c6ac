package api

import (
	"archive/zip"
	"bytes"
	"strings"
	"testing"
)

func makeZip(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, content := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnzipFiles(t *testing.T) {
	files, err := unzipFiles(makeZip(t, map[string]string{"lib/util.py": "X = 1", "data.txt": "d"}), "main.py")
	if err != nil || len(files) != 2 {
		t.Fatalf("unzip: %v %v", files, err)
	}
	many := map[string]string{}
	for i := 0; i < maxZipEntries+1; i++ {
		many[strings.Repeat("f", 1+i%5)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "x"
	}
	tests := []struct {
		name string
		zip  []byte
		want string
	}{
		{"not a zip", []byte("hello"), "not a zip"},
		{"escapes", makeZip(t, map[string]string{"../evil": "x"}), "leaves"},
		{"absolute", makeZip(t, map[string]string{"/etc/passwd": "x"}), "leaves"},
		{"overwrites the source", makeZip(t, map[string]string{"main.py": "x"}), "overwrite"},
		{"too many entries", makeZip(t, many), "entries"},
		// A zip bomb: 64 MiB of zeros compresses to a few tens of KB.
		{"bomb", makeZip(t, map[string]string{"zeros": strings.Repeat("\x00", 64<<20)}), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := unzipFiles(tt.zip, "main.py")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
