package languages

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// reduceToLayer turns root, a copy of the base tree with a language's
// packages installed, into the layer that overlayfs stacks on base to give
// root back: every entry identical in base is removed, every entry of base
// that root lacks becomes a whiteout (a 0:0 character device), and what is
// new or changed stays. A directory stays when anything under it does (it
// carries its own mode and owner) or when its metadata changed.
//
// Identical means the same type, mode, owner and, by type, the same bytes,
// link target or device number; times and extended attributes are not
// compared (the images carry no file capabilities, and a file that only got
// a new time reads the same).
func reduceToLayer(base, root string) (layerStat, error) {
	var st layerStat
	_, err := reduceDir(base, root, &st)
	return st, err
}

// reduceDir reduces dir against the base directory of the same path and
// says whether anything is left in it.
func reduceDir(base, dir string, st *layerStat) (keep bool, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	seen := make(map[string]bool, len(entries))
	drop := func(p string) error { // the base has it as it is
		st.Removed++
		return os.Remove(p)
	}
	for _, e := range entries {
		seen[e.Name()] = true
		p, bp := filepath.Join(dir, e.Name()), filepath.Join(base, e.Name())
		var fi, bfi unix.Stat_t
		if err := unix.Lstat(p, &fi); err != nil {
			return false, &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		if err := unix.Lstat(bp, &bfi); err != nil {
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
				return false, &os.PathError{Op: "lstat", Path: bp, Err: err}
			}
			st.Kept++ // new
			keep = true
			continue
		}
		if isDir(fi) && isDir(bfi) {
			inner, err := reduceDir(bp, p, st)
			if err != nil {
				return false, err
			}
			if inner || !sameMeta(fi, bfi) {
				st.Kept++
				keep = true
			} else if err := drop(p); err != nil {
				return false, err
			}
			continue
		}
		same, err := sameEntry(p, bp, fi, bfi)
		if err != nil {
			return false, err
		}
		if !same {
			st.Kept++
			keep = true
		} else if err := drop(p); err != nil {
			return false, err
		}
	}
	gone, err := os.ReadDir(base)
	if err != nil {
		return false, err
	}
	for _, e := range gone {
		if seen[e.Name()] {
			continue
		}
		if err := whiteout(filepath.Join(dir, e.Name())); err != nil {
			return false, err
		}
		st.Whiteouts++
		keep = true
	}
	return keep, nil
}

func isDir(st unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

func sameMeta(a, b unix.Stat_t) bool {
	return a.Mode == b.Mode && a.Uid == b.Uid && a.Gid == b.Gid
}

// sameEntry compares two entries of the same name that are not both
// directories.
func sameEntry(p, bp string, fi, bfi unix.Stat_t) (bool, error) {
	if !sameMeta(fi, bfi) {
		return false, nil
	}
	switch fi.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if fi.Size != bfi.Size {
			return false, nil
		}
		return sameContent(p, bp)
	case unix.S_IFLNK:
		a, err := os.Readlink(p)
		if err != nil {
			return false, err
		}
		b, err := os.Readlink(bp)
		return a == b, err
	case unix.S_IFCHR, unix.S_IFBLK:
		return fi.Rdev == bfi.Rdev, nil
	default: // fifos and sockets have nothing but their metadata
		return true, nil
	}
}

func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, errA := io.ReadFull(fa, ba)
		nb, errB := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		endA := errors.Is(errA, io.EOF) || errors.Is(errA, io.ErrUnexpectedEOF)
		endB := errors.Is(errB, io.EOF) || errors.Is(errB, io.ErrUnexpectedEOF)
		if errA != nil && !endA {
			return false, errA
		}
		if errB != nil && !endB {
			return false, errB
		}
		if endA || endB {
			return endA && endB, nil
		}
	}
}

// whiteout makes the overlayfs whiteout that hides path of the layers
// below: a character device 0:0.
func whiteout(path string) error {
	if err := unix.Mknod(path, unix.S_IFCHR, 0); err != nil {
		return &fs.PathError{Op: "mknod whiteout", Path: path, Err: err}
	}
	return nil
}
