package api

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"microbox/queue"
	"microbox/sandbox"
)

// Metrics are the service's Prometheus metrics, served at /metrics. Each
// process (serve, api, worker) exports what it sees: the queue depth from
// any of them, job outcomes and latencies from the workers.
type Metrics struct {
	reg       *prometheus.Registry
	jobs      *prometheus.CounterVec
	endToEnd  prometheus.Histogram
	run       prometheus.Histogram
	vmStart   prometheus.Histogram
	vmStarts  *prometheus.CounterVec
	submitted prometheus.Counter
	sessions  *prometheus.GaugeVec
	created   *prometheus.CounterVec
	ended     *prometheus.CounterVec
}

// latencyBuckets span a fast pooled run to a slow compile under TCG.
var latencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60}

// NewMetrics registers the metrics; q, when set, is asked for its depth at
// each scrape.
func NewMetrics(q *queue.Queue) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "microbox_jobs_total", Help: "Finished jobs by status.",
		}, []string{"status"}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "microbox_job_end_to_end_seconds", Help: "From submission to result.", Buckets: latencyBuckets,
		}),
		run: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "microbox_job_run_seconds", Help: "Wall time of the program in its VM.", Buckets: latencyBuckets,
		}),
		vmStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "microbox_vm_start_seconds", Help: "From asking for a VM to its agent ready: a pool take, a snapshot restore or a cold boot.", Buckets: latencyBuckets,
		}),
		vmStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "microbox_vm_starts_total", Help: "VMs started for jobs, by how: pool, restore or boot.",
		}, []string{"start"}),
		submitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "microbox_submissions_total", Help: "Submissions accepted into the queue.",
		}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "microbox_sessions", Help: "Sessions this worker holds now, by the name of the API key that owns them.",
		}, []string{"key"}),
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "microbox_sessions_created_total", Help: "Sessions created on this worker, by API key name.",
		}, []string{"key"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "microbox_sessions_ended_total", Help: "Sessions ended on this worker, by API key name and how (expired: idle, deleted or at the lifetime cap; lost: its VM died, or the worker stopped).",
		}, []string{"key", "state"}),
	}
	m.reg.MustRegister(m.jobs, m.endToEnd, m.run, m.vmStart, m.vmStarts, m.submitted, m.sessions, m.created, m.ended,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if q != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "microbox_queue_depth", Help: "Jobs waiting or running.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			n, err := q.Depth(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}))
	}
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// observe records a finished submission.
func (m *Metrics) observe(o *outcome, start string, boot time.Duration) {
	m.record(o.Status, o.CreatedAt, o.FinishedAt, o.WallTime, start, boot)
}

// record records a finished job: its status, its time from submission to
// result, the wall seconds of its program, and how its VM was started
// and how long that took.
func (m *Metrics) record(st sandbox.Status, created, finished time.Time, wall float64, start string, boot time.Duration) {
	if m == nil {
		return
	}
	m.jobs.WithLabelValues(st.Description).Inc()
	m.endToEnd.Observe(finished.Sub(created).Seconds())
	m.run.Observe(wall)
	if boot > 0 {
		m.vmStart.Observe(boot.Seconds())
		m.vmStarts.WithLabelValues(start).Inc()
	}
}

// SessionStarted counts a session of the key named owner ("" without keys).
func (m *Metrics) SessionStarted(owner string) {
	m.sessions.WithLabelValues(owner).Inc()
	m.created.WithLabelValues(owner).Inc()
}

// SessionEnded counts a session's end.
func (m *Metrics) SessionEnded(owner, state string) {
	m.sessions.WithLabelValues(owner).Dec()
	m.ended.WithLabelValues(owner, state).Inc()
}
