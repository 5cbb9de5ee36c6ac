package api

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf8"

	"microbox/sandbox/protocol"
)

// Bounds on additional_files, so a zip bomb costs nothing: the entries are
// counted and each is read through a limit before anything is kept.
const (
	maxZipEntries  = 100
	maxZipUnpacked = 16 << 20 // bytes of all files together
)

// unzipFiles turns Judge0's additional_files (a base64-decoded zip) into
// files for the job's work dir.
func unzipFiles(data []byte, reserved string) ([]protocol.File, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("is not a zip archive")
	}
	if len(zr.File) > maxZipEntries {
		return nil, fmt.Errorf("has %d entries, more than %d", len(zr.File), maxZipEntries)
	}
	var files []protocol.File
	var total int64
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		// A name travels to the guest in JSON, which would replace the
		// bytes of one that is not UTF-8: the file written would not be
		// the one checked here.
		if !utf8.ValidString(f.Name) {
			return nil, fmt.Errorf("entry %q: its name is not valid UTF-8", f.Name)
		}
		name := path.Clean(strings.TrimPrefix(f.Name, "./"))
		if name == "." || path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return nil, fmt.Errorf("entry %q leaves the work dir", f.Name)
		}
		if name == reserved {
			return nil, fmt.Errorf("entry %q would overwrite the source file", f.Name)
		}
		if !f.Mode().IsRegular() {
			return nil, fmt.Errorf("entry %q is not a regular file", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("entry %q: %v", f.Name, err)
		}
		// Read one byte past what is left, whatever the header claims.
		b, err := io.ReadAll(io.LimitReader(rc, maxZipUnpacked-total+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("entry %q: %v", f.Name, err)
		}
		total += int64(len(b))
		if total > maxZipUnpacked {
			return nil, fmt.Errorf("unpacks to more than %d bytes", maxZipUnpacked)
		}
		mode := uint32(f.Mode().Perm())
		if mode == 0 {
			mode = 0o644
		}
		files = append(files, protocol.File{Name: name, Data: b, Mode: mode})
	}
	return files, nil
}
