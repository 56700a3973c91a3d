package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secondfactor/secondfactor/internal/client"
)

// loadFlags are the flags every load shares.
type loadFlags struct {
	target      client.Target
	users       int
	concurrency int
	duration    time.Duration
	requests    int
}

// parse defines the shared flags on fs (after the caller defined its
// own), parses args and checks the values. Problems are printed to stderr
// and returned as errUsage; -h returns flag.ErrHelp.
func (l *loadFlags) parse(fs *flag.FlagSet, args []string, getenv func(string) string, stderr io.Writer) error {
	l.target.AddFlags(fs, getenv)
	fs.IntVar(&l.users, "users", 50, "test `users` to enrol (loadgen-<run>-<n>)")
	fs.IntVar(&l.concurrency, "concurrency", 8, "`workers` sending requests at once")
	fs.DurationVar(&l.duration, "duration", 10*time.Second, "how long to send requests")
	fs.IntVar(&l.requests, "requests", 0, "stop after this many requests (0: run for -duration)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	var problem string
	switch {
	case fs.NArg() > 0:
		problem = fmt.Sprintf("unexpected argument %q (flags only)", fs.Arg(0))
	case l.users < 1 || l.users > 100000:
		problem = fmt.Sprintf("-users %d: want 1 to 100000", l.users)
	case l.concurrency < 1 || l.concurrency > 1024:
		problem = fmt.Sprintf("-concurrency %d: want 1 to 1024", l.concurrency)
	case l.duration <= 0 || l.duration > time.Hour:
		problem = fmt.Sprintf("-duration %s: want up to 1h", l.duration)
	case l.requests < 0:
		problem = fmt.Sprintf("-requests %d: want 0 or more", l.requests)
	default:
		if err := l.target.Check(); err != nil {
			problem = err.Error()
		}
	}
	if problem != "" {
		fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), problem)
		return errUsage
	}
	return nil
}

// outcome is the result of one request of a load.
type outcome int

const (
	accepted outcome = iota
	rejected
	failed
)

// stats are what a load measured.
type stats struct {
	done, rejected, failed int64
	latencies              []time.Duration // of accepted requests, sorted
	elapsed                time.Duration
	firstErr               error
}

// runLoad calls op from l.concurrency workers until l.duration has passed or
// l.requests were sent, printing progress to stderr every second. op gets
// the request's sequence number and says how it went.
func runLoad(ctx context.Context, l loadFlags, stderr io.Writer, op func(ctx context.Context, n int64) (outcome, error)) stats {
	var (
		done, nRejected, nFailed, next atomic.Int64
		mu                             sync.Mutex
		s                              stats
		wg                             sync.WaitGroup
	)
	lctx, stop := context.WithTimeout(ctx, l.duration)
	defer stop()
	start := time.Now()
	for range l.concurrency {
		wg.Go(func() {
			var mine []time.Duration
			defer func() {
				mu.Lock()
				s.latencies = append(s.latencies, mine...)
				mu.Unlock()
			}()
			for lctx.Err() == nil {
				n := next.Add(1)
				if l.requests > 0 && n > int64(l.requests) {
					return
				}
				t0 := time.Now()
				o, err := op(lctx, n)
				switch {
				case err != nil && lctx.Err() != nil:
					return // cut off by the end of the run
				case err != nil:
					nFailed.Add(1)
					mu.Lock()
					if s.firstErr == nil {
						s.firstErr = err
					}
					mu.Unlock()
				case o == accepted:
					mine = append(mine, time.Since(t0))
				default:
					nRejected.Add(1)
				}
				done.Add(1)
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	for waiting := true; waiting; {
		select {
		case <-progress.C:
			el := time.Since(start)
			fmt.Fprintf(stderr, "loadgen: %5.1fs  %d requests  %.0f/s  %d errors  %d rejected\n",
				el.Seconds(), done.Load(), float64(done.Load())/el.Seconds(), nFailed.Load(), nRejected.Load())
		case <-finished:
			waiting = false
		}
	}
	s.elapsed = time.Since(start)
	s.done, s.rejected, s.failed = done.Load(), nRejected.Load(), nFailed.Load()
	slices.Sort(s.latencies)
	return s
}

// percentile returns the p-th latency (0 < p ≤ 1) of accepted requests.
func (s stats) percentile(p float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	return s.latencies[min(len(s.latencies)-1, int(p*float64(len(s.latencies))))]
}

// report prints the figures of a load, what names one request, and returns
// errFailed if any request failed or was rejected.
func (s stats) report(stdout, stderr io.Writer, l loadFlags, what string) error {
	round := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
	fmt.Fprintf(stdout, "requests    %d in %s with %d workers over %d users\n", s.done, s.elapsed.Round(time.Millisecond), l.concurrency, l.users)
	fmt.Fprintf(stdout, "throughput  %.0f/s (each: %s)\n", float64(s.done)/s.elapsed.Seconds(), what)
	fmt.Fprintf(stdout, "accepted    %d, rejected %d, errors %d\n", len(s.latencies), s.rejected, s.failed)
	fmt.Fprintf(stdout, "latency     p50 %s  p90 %s  p99 %s  max %s (accepted requests, client side)\n",
		round(s.percentile(0.50)), round(s.percentile(0.90)), round(s.percentile(0.99)), round(s.percentile(1)))
	if s.firstErr != nil {
		fmt.Fprintf(stderr, "loadgen: first error: %v\n", s.firstErr)
	}
	if s.failed > 0 || s.rejected > 0 {
		return errFailed
	}
	return nil
}
