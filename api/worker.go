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
	"microbox/sandbox/protocol"
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
		if kindOf(payload) == kindRun {
			return handleRun(ctx, r, id, payload, metrics, log)
		}
		var sub submission
		if err := json.Unmarshal(payload, &sub); err != nil {
			return internalError(&submission{Token: id}, "undecodable submission: "+err.Error())
		}
		var out []byte
		job := sub.Job
		if sub.NumberOfRuns > 1 {
			// Judge0 runs it again while each run is Accepted: here every
			// run is a test of one job, in one VM, compiled once.
			job.Tests = make([]protocol.Test, sub.NumberOfRuns)
			for i := range job.Tests {
				job.Tests[i].Stdin = job.Stdin
			}
			job.StopOnFailure = true
		}
		res, err := r.Run(ctx, job)
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

// Exhausted ends a submission or run whose workers kept dying while
// running it.
func Exhausted(id string, payload []byte, deliveries int64) []byte {
	msg := "the job was started " + strconv.FormatInt(deliveries, 10) + " times and its worker died each time; it was not run again"
	if kindOf(payload) == kindRun {
		return runInternalError(id, payload, msg)
	}
	var sub submission
	if err := json.Unmarshal(payload, &sub); err != nil {
		sub.Token = id
	}
	return internalError(&sub, msg)
}

func internalError(sub *submission, msg string) []byte {
	o := outcome{submission: *sub, Status: sandbox.StatusInternalError, Message: msg, FinishedAt: time.Now()}
	b, _ := json.Marshal(o)
	return b
}

func encodeOutcome(sub *submission, res sandbox.Result) []byte {
	if len(res.Tests) > 0 {
		res = sub.foldRuns(res)
	}
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

		TimeScale: res.TimeScale, CompileTimeScale: res.CompileTimeScale,
		StartAllowance: res.StartAllowance.Seconds(), CompileStartAllowance: res.CompileStartAllowance.Seconds(),
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
	o.Status, o.Message = judge(o.Status, o.Message, o.Time, sub.CPULimit, o.Stdout, sub.ExpectedOutput, sandbox.Comparison{})
	b, _ := json.Marshal(o)
	return b
}

// judge adds to a run's verdict what only the API knows: cpu_extra_time
// lets a program run past cpu_time_limit before it is killed, but past the
// limit it is still a Time Limit Exceeded (Judge0); output that differs
// from the expected output (compared as cmp says) is a Wrong Answer.
func judge(st sandbox.Status, msg string, cpu, cpuLimit float64, stdout []byte, expected *string, cmp sandbox.Comparison) (sandbox.Status, string) {
	switch {
	case st != sandbox.StatusAccepted:
		return st, msg
	case cpu > cpuLimit:
		return sandbox.StatusTimeLimit, "CPU time limit exceeded"
	case expected != nil:
		if ok, why := cmp.Match(stdout, []byte(*expected)); !ok {
			return sandbox.StatusWrongAnswer, why
		}
	}
	return st, msg
}

// foldRuns makes the runs of a number_of_runs submission one result, as
// Judge0 reports them: the runs up to the first one not Accepted count
// (Judge0 stops there); the last of them gives the output, exit and
// verdict; time and wall_time are their mean and memory their peak. (Judge0
// CE averages memory too; the peak is what a memory limit judges.)
func (sub *submission) foldRuns(res sandbox.Result) sandbox.Result {
	var cpu, guest, wall time.Duration
	var mem int64
	n := 0
	for _, t := range res.Tests {
		n++
		cpu, guest, wall, mem = cpu+t.CPUTime, guest+t.GuestCPUTime, wall+t.WallTime, max(mem, t.Memory)
		res.Stdout, res.Stderr, res.ExitCode, res.Signal, res.Limit = t.Stdout, t.Stderr, t.ExitCode, t.Signal, t.Limit
		res.StdoutTruncated, res.StderrTruncated = t.StdoutTruncated, t.StderrTruncated
		out := t.Stdout
		if sub.RedirectStderr {
			out = append(append([]byte{}, t.Stdout...), t.Stderr...)
		}
		res.Status, res.Message = judge(t.Status, t.Message, t.CPUTime.Seconds(), sub.CPULimit, out, sub.ExpectedOutput, sandbox.Comparison{})
		if res.Status != sandbox.StatusAccepted {
			break
		}
	}
	res.CPUTime, res.GuestCPUTime, res.WallTime = cpu/time.Duration(n), guest/time.Duration(n), wall/time.Duration(n)
	res.Memory, res.Tests = mem, nil
	return res
}
