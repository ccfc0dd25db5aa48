package sandbox

import (
	"sync"
	"sync/atomic"
	"time"
)

// Observer receives the lifecycle hooks of runs. Every field is optional.
//
// Order, per run and per observer: OnStart; then OnLog and OnProgress as they
// happen; then OnCancel when the caller cancelled; then OnError when the
// result is not ok; then OnComplete, always last, for every result.
//
// Each observer is called from its own goroutine, so a slow observer delays
// neither the run nor the other observers; a call that panics is recovered
// (and the observer keeps receiving events). Events queue per observer up to
// a bound; past it an observer that does not keep up loses log and progress
// events (never OnStart, OnCancel, OnError or OnComplete). Run waits briefly
// for the observers to see OnComplete before returning, and stops waiting for
// an observer that is blocked. The queue of each observer is bounded in
// events and in bytes (lines and progress messages counted as a run's log
// ring counts them), so an observer that falls behind a flood of output costs
// a bounded amount of memory.
type Observer struct {
	OnStart    func(StartEvent)
	OnLog      func(LogEvent)
	OnProgress func(ProgressEvent)
	OnComplete func(*Result)
	OnError    func(*Result)
	OnCancel   func(CancelEvent)
}

// StartEvent announces a run.
type StartEvent struct {
	RequestID string
	Kind      Kind
	Context   ExecutionContext
}

// LogEvent carries one log line of a run.
type LogEvent struct {
	RequestID string
	Line      LogLine
}

// ProgressEvent carries a progress report (percent in 0..100).
type ProgressEvent struct {
	RequestID string
	Percent   float64
	Message   string
}

// CancelEvent announces that the caller cancelled a run.
type CancelEvent struct {
	RequestID string
	Reason    string
}

const (
	observerQueue = 4096
	// observerQueueBytes bounds what the log and progress events queued for
	// one observer hold (their messages, metas and per-event overhead).
	observerQueueBytes = 8 << 20
	// hookWait bounds how long Run waits for observers to take OnComplete.
	hookWait = 200 * time.Millisecond
)

type event struct {
	call     func(*Observer)
	cost     int           // bytes charged to the queue's byte budget
	critical bool          // never dropped
	done     chan struct{} // closed once delivered (or skipped)
}

// dispatcher owns one goroutine per observer.
type dispatcher struct {
	obs []*observerLoop
}

type observerLoop struct {
	o       Observer
	ch      chan event
	busy    atomic.Int64 // unix nanos when the current call started, 0 when idle
	queued  atomic.Int64 // cost of the events queued and not yet delivered
	dropped atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newDispatcher(obs []Observer) *dispatcher {
	d := &dispatcher{}
	for _, o := range obs {
		l := &observerLoop{o: o, ch: make(chan event, observerQueue), stop: make(chan struct{})}
		l.wg.Add(1)
		go l.loop()
		d.obs = append(d.obs, l)
	}
	return d
}

func (l *observerLoop) loop() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		case ev := <-l.ch:
			l.busy.Store(time.Now().UnixNano())
			l.safeCall(ev.call)
			l.busy.Store(0)
			l.queued.Add(-int64(ev.cost))
			if ev.done != nil {
				close(ev.done)
			}
		}
	}
}

func (l *observerLoop) safeCall(f func(*Observer)) {
	defer func() { _ = recover() }() // an observer's panic never breaks a run
	f(&l.o)
}

// emit queues an event for every observer. Non-critical events are dropped
// for an observer whose queue is full, in events or in bytes (cost is what
// the event holds); critical ones wait for room, unless the observer is stuck
// in a call, in which case they are dropped too.
func (d *dispatcher) emit(call func(*Observer), critical bool, cost int) []chan struct{} {
	var dones []chan struct{}
	for _, l := range d.obs {
		ev := event{call: call, critical: critical}
		if critical {
			ev.done = make(chan struct{})
		} else {
			// Charged before queueing, so that concurrent runs cannot
			// together overshoot the budget.
			if l.queued.Add(int64(cost)) > observerQueueBytes {
				l.queued.Add(-int64(cost))
				l.dropped.Add(1)
				continue
			}
			ev.cost = cost
		}
		select {
		case l.ch <- ev:
		default:
			if !critical {
				l.queued.Add(-int64(cost))
			}
			if !critical || l.stuck() {
				l.dropped.Add(1)
				continue
			}
			select {
			case l.ch <- ev:
			case <-time.After(hookWait):
				l.dropped.Add(1)
				continue
			}
		}
		if ev.done != nil {
			dones = append(dones, ev.done)
		}
	}
	return dones
}

func (l *observerLoop) stuck() bool {
	started := l.busy.Load()
	return started != 0 && time.Since(time.Unix(0, started)) > hookWait
}

// wait waits for the given deliveries up to hookWait in total.
func waitDelivered(dones []chan struct{}) {
	if len(dones) == 0 {
		return
	}
	t := time.NewTimer(hookWait)
	defer t.Stop()
	for _, d := range dones {
		select {
		case <-d:
		case <-t.C:
			return
		}
	}
}

func (d *dispatcher) close() {
	for _, l := range d.obs {
		close(l.stop)
	}
	// A blocked observer is not waited for: its goroutine ends when its call returns.
}

func (d *dispatcher) start(e StartEvent) {
	if len(d.obs) == 0 {
		return
	}
	d.emit(func(o *Observer) {
		if o.OnStart != nil {
			o.OnStart(e)
		}
	}, true, 0)
}

func (d *dispatcher) logLine(e LogEvent, cost int) {
	if len(d.obs) == 0 {
		return
	}
	d.emit(func(o *Observer) {
		if o.OnLog != nil {
			o.OnLog(e)
		}
	}, false, cost)
}

func (d *dispatcher) progress(e ProgressEvent, cost int) {
	if len(d.obs) == 0 {
		return
	}
	d.emit(func(o *Observer) {
		if o.OnProgress != nil {
			o.OnProgress(e)
		}
	}, false, cost)
}

// finish delivers OnCancel, OnError and OnComplete and waits briefly for
// them. Observers get their own copy of the result: a slow one may still
// read it after Run has handed the original to the caller.
func (d *dispatcher) finish(r *Result) {
	if len(d.obs) == 0 {
		return
	}
	r = r.clone()
	if r.Status == StatusCancelled {
		ev := CancelEvent{RequestID: r.RequestID}
		if r.Error != nil {
			ev.Reason = r.Error.Message
		}
		d.emit(func(o *Observer) {
			if o.OnCancel != nil {
				o.OnCancel(ev)
			}
		}, true, 0)
	}
	if !r.OK {
		d.emit(func(o *Observer) {
			if o.OnError != nil {
				o.OnError(r)
			}
		}, true, 0)
	}
	waitDelivered(d.emit(func(o *Observer) {
		if o.OnComplete != nil {
			o.OnComplete(r)
		}
	}, true, 0))
}
