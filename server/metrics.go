package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// poolDepth registers sandbox_pool_depth: the warm sandboxes ready now,
// over every Runner the server holds (pool depth).
func (m *metrics) poolDepth(depth func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sandbox_pool_depth", Help: "Warm sandboxes ready (pool.size per configuration in use).",
	}, func() float64 { return float64(depth()) }))
}

// metrics are the Prometheus series of issue 7. Each Server has its own
// registry, so several servers (tests, embedding) never collide.
type metrics struct {
	reg        *prometheus.Registry
	runs       *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	memPeak    prometheus.Histogram
	inFlight   prometheus.Gauge
	queueDepth prometheus.Gauge
	rejected   *prometheus.CounterVec
	setup      *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_runs_total", Help: "Runs answered, by result status.",
		}, []string{"status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sandbox_run_duration_seconds", Help: "Wall-clock time of runs (from the start of the sandbox to the result), by status.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"status"}),
		memPeak: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sandbox_run_memory_peak_bytes", Help: "Peak memory of runs, where measured.",
			Buckets: prometheus.ExponentialBuckets(1<<20, 2, 14), // 1MiB .. 8GiB
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandbox_runs_in_flight", Help: "Runs holding a concurrency slot.",
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandbox_queue_depth", Help: "Runs waiting for a concurrency slot.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_rejected_total", Help: "Requests answered with an error, by error code (lower case).",
		}, []string{"reason"}),
		setup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sandbox_setup_duration_seconds", Help: "Time spent before the program runs, by phase (body: read and validated; queue; runner; sandbox).",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"phase"}),
	}
	m.reg.MustRegister(m.runs, m.duration, m.memPeak, m.inFlight, m.queueDepth, m.rejected, m.setup,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
