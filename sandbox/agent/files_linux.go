package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"

	"microbox/sandbox/protocol"
)

// File operations of a session, all through the work dir's os.Root: no
// "..", absolute symlink or symlink that climbs out can make the agent, which
// runs as root, touch anything outside the work dir, however the program
// arranged the tree. What the agent creates belongs to the program's user.

func (s *session) fileOp(id uint32, payload []byte) error {
	var op protocol.FileOp
	if err := json.Unmarshal(payload, &op); err != nil {
		return fmt.Errorf("decode file operation: %w", err)
	}
	rel, err := boxPath(op.Path)
	if err != nil {
		return err
	}
	st := &stream{id: id, credit: newCredit(protocol.InitialCredit), op: op}
	switch op.Op {
	case protocol.FileWrite:
		if err := s.add(id, st); err != nil {
			return err
		}
		return s.openWrite(st, rel)
	case protocol.FileRead:
		f, info, err := s.openRead(rel)
		if err != nil {
			return err
		}
		if err := s.add(id, st); err != nil {
			f.Close()
			return err
		}
		go s.sendFile(st, f, info)
		return nil
	}
	done, err := s.fileCall(op, rel)
	if err != nil {
		return s.explain(err)
	}
	return s.w.JSON(protocol.TypeDone, id, done)
}

// fileCall does the operations that need no data.
func (s *session) fileCall(op protocol.FileOp, rel string) (*protocol.Done, error) {
	switch op.Op {
	case protocol.FileStat:
		info, err := s.info(rel)
		return &protocol.Done{Info: info}, err
	case protocol.FileList:
		entries, truncated, err := s.list(rel, max(op.Depth, 1))
		return &protocol.Done{Entries: entries, Truncated: truncated}, err
	case protocol.FileMkdir:
		if err := s.mkdir(rel, op.Mode, op.Parents); err != nil {
			return nil, err
		}
		info, err := s.info(rel)
		return &protocol.Done{Info: info}, err
	case protocol.FileMove:
		to, err := boxPath(op.To)
		if err != nil {
			return nil, err
		}
		if rel == "." || to == "." {
			return nil, fmt.Errorf("%w: %s itself cannot be moved", errInvalid, workDir)
		}
		if err := s.box.Rename(rel, to); err != nil {
			return nil, err
		}
		info, err := s.info(to)
		return &protocol.Done{Info: info}, err
	case protocol.FileRemove:
		if rel == "." {
			return nil, fmt.Errorf("%w: %s itself cannot be removed", errInvalid, workDir)
		}
		if _, err := s.box.Lstat(rel); err != nil {
			return nil, err
		}
		return &protocol.Done{}, s.box.RemoveAll(rel)
	}
	return nil, fmt.Errorf("%w: unknown file operation %q", errInvalid, op.Op)
}

func (s *session) openWrite(st *stream, rel string) error {
	fail := func(err error) error {
		s.remove(st.id)
		return s.explain(err)
	}
	if st.op.Parents {
		if err := s.mkdir(path.Dir(rel), 0, true); err != nil {
			return fail(err)
		}
	}
	mode := fs.FileMode(st.op.Mode & 0o777)
	if mode == 0 {
		mode = 0o644
	}
	f, err := s.box.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fail(err)
	}
	if err := f.Chown(boxUID, boxGID); err != nil {
		f.Close()
		return fail(err)
	}
	// The mode asked for, not the umask's.
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fail(err)
	}
	st.file = f
	return nil
}

// writeData writes a chunk of a file being written; a write that failed
// (a full work dir) removes the file and drops the rest of its data.
func (s *session) writeData(st *stream, p []byte) {
	if st.file == nil || st.failed {
		return
	}
	if _, err := st.file.Write(p); err != nil {
		st.failed = true
		st.file.Close()
		if rel, perr := boxPath(st.op.Path); perr == nil {
			_ = s.box.Remove(rel)
		}
		s.sendFailure(st.id, s.explain(err))
	}
}

func (s *session) endWrite(st *stream) {
	s.remove(st.id)
	if st.file == nil || st.failed {
		return
	}
	if err := st.file.Close(); err != nil {
		s.sendFailure(st.id, s.explain(err))
		return
	}
	rel, _ := boxPath(st.op.Path)
	info, err := s.info(rel)
	if err != nil {
		s.sendFailure(st.id, err)
		return
	}
	_ = s.w.JSON(protocol.TypeDone, st.id, protocol.Done{Info: info})
}

func (s *session) openRead(rel string) (*os.File, *protocol.FileInfo, error) {
	f, err := s.box.Open(rel)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.IsDir() {
		err = fmt.Errorf("%s: %w", path.Join(workDir, rel), syscall.EISDIR)
	} else if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%w: %s is not a regular file", errInvalid, path.Join(workDir, rel))
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, s.fileInfo(rel, fi), nil
}

// sendFile streams a file to the host within its credit, then ends the
// stream.
func (s *session) sendFile(st *stream, f *os.File, info *protocol.FileInfo) {
	defer s.remove(st.id)
	defer f.Close()
	buf := make([]byte, protocol.ChunkSize)
	for {
		n, err := f.Read(buf)
		for p := buf[:n]; len(p) > 0; {
			k, live := st.credit.take(len(p))
			if !live {
				return
			}
			if werr := s.w.Frame(protocol.TypeData, st.id, p[:k]); werr != nil {
				return
			}
			p = p[k:]
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.sendFailure(st.id, err)
			return
		}
	}
	_ = s.w.Frame(protocol.TypeEnd, st.id, nil)
	_ = s.w.JSON(protocol.TypeDone, st.id, protocol.Done{Info: info})
}

// mkdir makes a directory (and with parents its missing parents), owned by
// the program's user.
func (s *session) mkdir(rel string, mode uint32, parents bool) error {
	perm := fs.FileMode(mode & 0o777)
	if perm == 0 {
		perm = 0o755
	}
	if rel == "." {
		return nil
	}
	if parents {
		if fi, err := s.box.Stat(rel); err == nil {
			if fi.IsDir() {
				return nil
			}
			return fmt.Errorf("%s: %w", path.Join(workDir, rel), syscall.ENOTDIR)
		}
		if err := s.mkdir(path.Dir(rel), 0, true); err != nil {
			return err
		}
	}
	if err := s.box.Mkdir(rel, perm); err != nil {
		return err
	}
	if err := s.box.Lchown(rel, boxUID, boxGID); err != nil {
		return err
	}
	return s.box.Chmod(rel, perm)
}

func (s *session) info(rel string) (*protocol.FileInfo, error) {
	fi, err := s.box.Lstat(rel)
	if err != nil {
		return nil, err
	}
	return s.fileInfo(rel, fi), nil
}

func (s *session) fileInfo(rel string, fi fs.FileInfo) *protocol.FileInfo {
	info := &protocol.FileInfo{
		Name: fi.Name(), Path: path.Join(workDir, rel), Size: fi.Size(),
		Mode: uint32(fi.Mode().Perm()), ModTime: fi.ModTime(), Type: "other",
	}
	if rel == "." {
		info.Name = path.Base(workDir)
	}
	switch {
	case fi.Mode().IsRegular():
		info.Type = "file"
	case fi.IsDir():
		info.Type = "dir"
	case fi.Mode()&fs.ModeSymlink != 0:
		info.Type = "symlink"
		info.Target, _ = s.box.Readlink(rel)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.UID, info.GID = int(st.Uid), int(st.Gid)
	}
	return info
}

// list returns the entries under dir, depth levels down, at most
// MaxListEntries of them.
func (s *session) list(rel string, depth int) ([]protocol.FileInfo, bool, error) {
	var out []protocol.FileInfo
	truncated := false
	var walk func(dir string, level int) error
	walk = func(dir string, level int) error {
		d, err := s.box.Open(dir)
		if err != nil {
			return err
		}
		entries, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return err
		}
		for _, e := range entries {
			if len(out) >= protocol.MaxListEntries {
				truncated = true
				return nil
			}
			child := path.Join(dir, e.Name())
			fi, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			out = append(out, *s.fileInfo(child, fi))
			if e.IsDir() && level < depth {
				if err := walk(child, level+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	fi, err := s.box.Stat(rel)
	if err != nil {
		return nil, false, err
	}
	if !fi.IsDir() {
		return nil, false, fmt.Errorf("%s: %w", path.Join(workDir, rel), syscall.ENOTDIR)
	}
	err = walk(rel, 1)
	return out, truncated, err
}
