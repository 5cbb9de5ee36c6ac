package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"microbox/queue"
	"microbox/sandbox"
)

// Runner runs a job in a fresh microVM (sandbox.Runner).
type Runner interface {
	Run(ctx context.Context, job sandbox.Job) (sandbox.Result, error)
}

// Handler returns the queue handler that runs submissions: every
// submission ends with an outcome, Internal Error with a message if the host
// failed.
func Handler(r Runner, log *slog.Logger) queue.Handler {
	return func(ctx context.Context, id string, payload []byte) []byte {
		var sub submission
		if err := json.Unmarshal(payload, &sub); err != nil {
			return internalError(&submission{Token: id}, "undecodable submission: "+err.Error())
		}
		res, err := r.Run(ctx, sub.Job)
		if err != nil {
			log.Error("run failed", "job", id, "err", err)
			msg := "the job could not be run: " + err.Error()
			if errors.Is(err, sandbox.ErrBadJob) {
				msg = err.Error()
			}
			return internalError(&sub, msg)
		}
		return encodeOutcome(&sub, res)
	}
}

// Exhausted ends a submission whose workers kept dying while running it.
func Exhausted(id string, payload []byte, deliveries int64) []byte {
	var sub submission
	if err := json.Unmarshal(payload, &sub); err != nil {
		sub.Token = id
	}
	return internalError(&sub, "the job was started "+strconv.FormatInt(deliveries, 10)+" times and its worker died each time; it was not run again")
}

func internalError(sub *submission, msg string) []byte {
	o := outcome{submission: *sub, Status: sandbox.StatusInternalError, Message: msg, FinishedAt: time.Now()}
	b, _ := json.Marshal(o)
	return b
}

func encodeOutcome(sub *submission, res sandbox.Result) []byte {
	o := outcome{
		submission:    *sub,
		Stdout:        res.Stdout,
		Stderr:        res.Stderr,
		CompileOutput: res.CompileOutput,
		Message:       res.Message,
		Status:        res.Status,
		FinishedAt:    time.Now(),
		Time:          res.CPUTime.Seconds(),
		WallTime:      res.WallTime.Seconds(),
		Memory:        res.Memory >> 10,
		Accel:         string(res.Accel),
	}
	if sub.RedirectStderr {
		o.Stdout, o.Stderr = append(append([]byte{}, res.Stdout...), res.Stderr...), nil
	}
	if res.Signal != 0 {
		sig := res.Signal
		o.ExitSignal = &sig
	} else if res.Status != sandbox.StatusCompilationErr {
		code := res.ExitCode
		o.ExitCode = &code
	}
	// cpu_extra_time lets a program run past cpu_time_limit before it is
	// killed; past the limit it is still a Time Limit Exceeded (Judge0).
	if o.Status == sandbox.StatusAccepted && o.Time > sub.CPULimit {
		o.Status, o.Message = sandbox.StatusTimeLimit, "CPU time limit exceeded"
	}
	if o.Status == sandbox.StatusAccepted && sub.ExpectedOutput != nil && !sameOutput(o.Stdout, *sub.ExpectedOutput) {
		o.Status = sandbox.StatusWrongAnswer
	}
	b, _ := json.Marshal(o)
	return b
}
