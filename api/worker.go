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
// failed. A submission with a callback_url gets its result PUT there too,
// in the background, by the rules of callbacks.
func Handler(r Runner, callbacks CallbackPolicy, metrics *Metrics, log *slog.Logger) queue.Handler {
	return func(ctx context.Context, id string, payload []byte) []byte {
		var sub submission
		if err := json.Unmarshal(payload, &sub); err != nil {
			return internalError(&submission{Token: id}, "undecodable submission: "+err.Error())
		}
		var out []byte
		res, err := r.Run(ctx, sub.Job)
		if err != nil {
			log.Error("run failed", "job", id, "err", err)
			msg := "the job could not be run: " + err.Error()
			if errors.Is(err, sandbox.ErrBadJob) {
				msg = err.Error()
			}
			out = internalError(&sub, msg)
		} else {
			out = encodeOutcome(&sub, res)
		}
		var o outcome
		if json.Unmarshal(out, &o) == nil {
			metrics.observe(&o, string(res.Start), res.BootTime)
		}
		if sub.CallbackURL != "" {
			go sendCallback(callbacks, &sub, out, log.With("job", id))
		}
		return out
	}
}

// sendCallback PUTs the Judge0 rendering of a result to the submission's
// callback_url, as Judge0 does.
func sendCallback(p CallbackPolicy, sub *submission, result []byte, log *slog.Logger) {
	var o outcome
	if err := json.Unmarshal(result, &o); err != nil {
		return
	}
	m, err := render(&o, nil, sub.Base64, []string{"*"})
	if err != nil {
		// Not UTF-8: send it base64-encoded rather than not at all.
		if m, err = render(&o, nil, true, []string{"*"}); err != nil {
			return
		}
	}
	body, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.deliver(ctx, sub.CallbackURL, body, log); err != nil {
		log.Error("callback not delivered", "url", sub.CallbackURL, "err", err)
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
