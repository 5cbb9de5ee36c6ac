package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"microbox/sandbox/protocol"
)

// A file moves between the API and the worker in chunks through a Redis
// list, each chunk tagged: data, end, or abort (with why). The consumer
// pushes a token to the transfer's ack list for each chunk it has taken,
// and the producer waits for one when xferWindow chunks are out, so at
// most xferWindow chunks of a transfer are in Redis at once. A consumer
// that gives up pushes "stop".

const (
	xferChunk  = 256 << 10
	xferWindow = 8
	// xferIdle bounds the wait for the other side's next chunk or token:
	// a side that went away must not hold the other forever.
	xferIdle = 30 * time.Second
	xferTTL  = 2 * time.Minute

	tagData  = 'd'
	tagEnd   = 'e'
	tagAbort = 'x'
	ackOK    = "1"
	ackStop  = "stop"
)

var errPeerGone = errors.New("the other side of the transfer went away")

// xfer is one side of a transfer.
type xfer struct {
	rdb         *redis.Client
	list, acks  string
	outstanding int
}

func newXfer(rdb *redis.Client, k keys, id string) *xfer {
	return &xfer{rdb: rdb, list: k.xfer(id), acks: k.xferAck(id)}
}

// push sends a chunk, first waiting for room in the window. It returns
// errStopped when the consumer stopped.
func (x *xfer) push(ctx context.Context, tag byte, data []byte) error {
	if x.outstanding >= xferWindow {
		tok, err := x.pop(ctx, x.acks)
		if err != nil {
			return err
		}
		if tok == ackStop {
			return errStopped
		}
		x.outstanding--
	}
	item := append([]byte{tag}, data...)
	_, err := x.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, x.list, item)
		p.Expire(ctx, x.list, xferTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	x.outstanding++
	return nil
}

var errStopped = errors.New("the consumer stopped the transfer")

// next takes the next chunk and acknowledges it.
func (x *xfer) next(ctx context.Context) (byte, []byte, error) {
	item, err := x.pop(ctx, x.list)
	if err != nil {
		return 0, nil, err
	}
	if len(item) == 0 {
		return 0, nil, fmt.Errorf("session: empty transfer chunk")
	}
	x.ack(ctx, ackOK)
	return item[0], []byte(item[1:]), nil
}

func (x *xfer) ack(ctx context.Context, tok string) {
	_, _ = x.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, x.acks, tok)
		p.Expire(ctx, x.acks, xferTTL)
		return nil
	})
}

// pop waits for an item of a list, at most xferIdle.
func (x *xfer) pop(ctx context.Context, list string) (string, error) {
	res, err := x.rdb.BLPop(ctx, xferIdle, list).Result()
	if errors.Is(err, redis.Nil) {
		return "", errPeerGone
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return res[1], nil
}

func (x *xfer) cleanup(ctx context.Context) {
	_ = x.rdb.Del(context.WithoutCancel(ctx), x.list, x.acks).Err()
}

// transferRequest is the body of a write or a read.
type transferRequest struct {
	Xfer string `json:"xfer"`
	Path string `json:"path"`
	Mode uint32 `json:"mode,omitempty"`
}

// write receives a file from the API into the session.
func (l *live) write(c command) {
	h := l.h
	var req transferRequest
	if err := json.Unmarshal(c.Body, &req); err != nil {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusBadRequest, Message: "undecodable write"}})
		return
	}
	x := newXfer(h.cfg.Redis, h.keys, req.Xfer)
	pr, pw := io.Pipe()
	go func() {
		for {
			tag, data, err := x.next(h.ctx)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			switch tag {
			case tagData:
				if _, err := pw.Write(data); err != nil {
					return // the agent refused the file: WriteFile returned
				}
			case tagEnd:
				pw.Close()
				return
			default:
				pw.CloseWithError(fmt.Errorf("upload aborted: %s", data))
				return
			}
		}
	}()
	info, err := l.sess.WriteFile(h.ctx, req.Path, req.Mode, pr)
	if err != nil {
		pr.CloseWithError(err)
		x.ack(h.ctx, ackStop)
		h.answer(c, l.failed(err, nil, "path"))
		return
	}
	h.answerBody(c, info)
}

// read sends a file of the session to the API: its stat as the reply, then
// its data.
func (l *live) read(c command) {
	h := l.h
	var req transferRequest
	if err := json.Unmarshal(c.Body, &req); err != nil {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusBadRequest, Message: "undecodable read"}})
		return
	}
	done, err := l.sess.FileOp(h.ctx, protocol.FileOp{Op: protocol.FileStat, Path: req.Path})
	if err == nil && done.Info != nil && done.Info.Type == "dir" {
		err = &protocol.Failure{Kind: protocol.FailIsDir, Message: done.Info.Path + " is a directory: list it instead"}
	}
	if err != nil {
		h.answer(c, l.failed(err, nil, "path"))
		return
	}
	h.answerBody(c, done.Info)
	x := newXfer(h.cfg.Redis, h.keys, req.Xfer)
	w := &chunkWriter{ctx: h.ctx, x: x}
	_, err = l.sess.ReadFile(h.ctx, req.Path, w)
	if err == nil {
		err = w.flush()
	}
	switch {
	case err == nil:
		if err := x.push(h.ctx, tagEnd, nil); err != nil {
			h.log.Warn("download not ended: the API side will time out", "session", l.rec.ID, "err", err)
		}
	case !errors.Is(err, errStopped) && !errors.Is(err, errPeerGone):
		_ = x.push(h.ctx, tagAbort, []byte(err.Error()))
	}
}

// chunkWriter gathers a file's data into transfer chunks.
type chunkWriter struct {
	ctx context.Context
	x   *xfer
	buf []byte
	err error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.buf = append(w.buf, p...)
	for len(w.buf) >= xferChunk {
		if w.err = w.x.push(w.ctx, tagData, w.buf[:xferChunk]); w.err != nil {
			return 0, w.err
		}
		w.buf = append([]byte(nil), w.buf[xferChunk:]...)
	}
	return len(p), nil
}

func (w *chunkWriter) flush() error {
	if w.err != nil || len(w.buf) == 0 {
		return w.err
	}
	w.err = w.x.push(w.ctx, tagData, w.buf)
	w.buf = nil
	return w.err
}

// fileRequest is the body of a file operation without data.
type fileRequest struct {
	Op protocol.FileOp `json:"op"`
}

func (l *live) file(c command) {
	h := l.h
	var req fileRequest
	if err := json.Unmarshal(c.Body, &req); err != nil {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusBadRequest, Message: "undecodable file operation"}})
		return
	}
	done, err := l.sess.FileOp(h.ctx, req.Op)
	if err != nil {
		h.answer(c, l.failed(err, map[string]string{}, "path"))
		return
	}
	h.answerBody(c, done)
}
