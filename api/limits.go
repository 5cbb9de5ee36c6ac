package api

import (
	"encoding/json"
	"time"

	"microbox/sandbox"
)

// Limits are the defaults and maxima of the submission limits, in Judge0's
// units (seconds, kilobytes).
type Limits struct {
	CPUTime, CPUExtraTime, WallTime float64 // seconds
	Memory, Stack, FileSize         int64   // KB
	Processes                       int
}

// DefaultLimits and MaxLimits are Judge0 CE's.
var (
	DefaultLimits = Limits{CPUTime: 5, CPUExtraTime: 1, WallTime: 10, Memory: 128000, Stack: 64000, FileSize: 1024, Processes: 60}
	MaxLimits     = Limits{CPUTime: 15, CPUExtraTime: 5, WallTime: 20, Memory: 512000, Stack: 128000, FileSize: 4096, Processes: 120}
)

// limitFields are a request's limits as sent, each a JSON number, a numeric
// string or absent, in Judge0's units. The JSON names are the native API's;
// Judge0's requests fill the struct from their own fields.
type limitFields struct {
	CPUTime      json.RawMessage `json:"cpu_time"`
	CPUExtraTime json.RawMessage `json:"cpu_extra_time"`
	WallTime     json.RawMessage `json:"wall_time"`
	Memory       json.RawMessage `json:"memory"`
	Stack        json.RawMessage `json:"stack"`
	Processes    json.RawMessage `json:"processes"`
	FileSize     json.RawMessage `json:"file_size"`
}

// limitNames are the field names errors about each limit use.
type limitNames struct {
	cpu, extra, wall, memory, stack, processes, fileSize string
}

var (
	judge0LimitNames = limitNames{"cpu_time_limit", "cpu_extra_time", "wall_time_limit", "memory_limit",
		"stack_limit", "max_processes_and_or_threads", "max_file_size"}
	runLimitNames = limitNames{"limits.cpu_time", "limits.cpu_extra_time", "limits.wall_time", "limits.memory",
		"limits.stack", "limits.processes", "limits.file_size"}
)

// parse checks each limit, between 0 (exclusive, but for the extra time)
// and its maximum, and returns them for the sandbox with the CPU limit in
// seconds before cpu_extra_time (past it a run is Time Limit Exceeded).
func (l limitFields) parse(fe fieldErrors, names limitNames) (sandbox.Limits, float64) {
	get := func(field string, raw json.RawMessage, def, maxv float64) float64 {
		v, ok, err := number(raw)
		switch {
		case err != nil:
			fe.add(field, "is not a number")
		case !ok:
			return def
		case v <= 0 && field != names.extra:
			fe.add(field, "must be greater than 0")
		case v < 0:
			fe.add(field, "must be greater than or equal to 0")
		case v > maxv:
			fe.add(field, "must be less than or equal to %v", maxv)
		default:
			return v
		}
		return def
	}
	d, m := DefaultLimits, MaxLimits
	cpu := get(names.cpu, l.CPUTime, d.CPUTime, m.CPUTime)
	extra := get(names.extra, l.CPUExtraTime, d.CPUExtraTime, m.CPUExtraTime)
	wall := get(names.wall, l.WallTime, d.WallTime, m.WallTime)
	mem := get(names.memory, l.Memory, float64(d.Memory), float64(m.Memory))
	stack := get(names.stack, l.Stack, float64(d.Stack), float64(m.Stack))
	procs := get(names.processes, l.Processes, float64(d.Processes), float64(m.Processes))
	fsize := get(names.fileSize, l.FileSize, float64(d.FileSize), float64(m.FileSize))
	if mem < 4096 && fe[names.memory] == nil {
		fe.add(names.memory, "must be at least 4096 (KB)")
	}
	if procs < 2 && fe[names.processes] == nil {
		fe.add(names.processes, "must be at least 2")
	}
	return sandbox.Limits{
		CPUTime:   dur(cpu + extra),
		WallTime:  dur(wall),
		Memory:    int64(mem) << 10,
		Stack:     int64(stack) << 10,
		Processes: int(procs),
		FileSize:  int64(fsize) << 10,
	}, cpu
}

func dur(sec float64) time.Duration { return time.Duration(sec * float64(time.Second)) }
