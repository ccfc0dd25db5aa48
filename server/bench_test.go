package server

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
)

// BenchmarkRunsTrue: POST /v1/runs of /bin/true from 8 clients over real
// loopback HTTP; reports runs/s and p50/p99 latency. The queue is large
// enough that nothing is rejected (the server's concurrency is NumCPU).
func BenchmarkRunsTrue(b *testing.B) {
	const clients = 8
	ts := startServer(b, sandbox.Config{Server: sandbox.ServerConfig{MaxQueue: 64}}, Options{})
	body := []byte(`{"handler":{"command":["/bin/true"]}}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var (
		next    atomic.Int64
		mu      sync.Mutex
		lat     = make([]time.Duration, 0, b.N)
		notOK   atomic.Int64
		wg      sync.WaitGroup
		started = time.Now()
	)
	b.ResetTimer()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				resp, err := client.Post(ts.url+"/v1/runs", "application/json", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if resp.StatusCode != 200 || !bytes.Contains(data, []byte(`"status":"ok"`)) {
					notOK.Add(1)
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(started)
	b.StopTimer()
	if n := notOK.Load(); n > 0 {
		b.Errorf("%d of %d answers were not 200 ok", n, b.N)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "runs/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
