// Baseline for bench_latency: rendezvous ping-pong between two goroutines over
// two unbuffered channels, the same workload bench_latency runs on kcoro.
//
// Usage: go_chan_latency [round_trips [reps]]
// Runs a warm-up of round_trips/10, then `reps` timed runs, and prints one
// machine-readable line:
//
//	go_latency round_trips=N reps=R gomaxprocs=G rt_ns_median=X rt_ns_min=Y
//
// GOMAXPROCS defaults to 2 (two threads, as in the C bench) unless set in the
// environment.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"time"
)

func pingPong(n int) time.Duration {
	ping := make(chan int64)
	pong := make(chan int64)
	done := make(chan struct{})
	go func() {
		for v := range ping {
			pong <- v
		}
		close(done)
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		ping <- int64(i)
		if v := <-pong; v != int64(i) {
			fmt.Fprintf(os.Stderr, "go_latency: got %d, want %d\n", v, i)
			os.Exit(1)
		}
	}
	elapsed := time.Since(start)
	close(ping)
	<-done
	return elapsed
}

func argInt(i, def int) int {
	if len(os.Args) <= i {
		return def
	}
	v, err := strconv.Atoi(os.Args[i])
	if err != nil || v <= 0 {
		fmt.Fprintf(os.Stderr, "go_latency: bad argument %q\n", os.Args[i])
		os.Exit(2)
	}
	return v
}

func main() {
	n := argInt(1, 100000)
	reps := argInt(2, 5)
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2)
	}
	pingPong(n/10 + 1) // warm-up
	rt := make([]float64, reps)
	for r := 0; r < reps; r++ {
		rt[r] = float64(pingPong(n).Nanoseconds()) / float64(n)
	}
	sort.Float64s(rt)
	fmt.Printf("go_latency round_trips=%d reps=%d gomaxprocs=%d rt_ns_median=%.1f rt_ns_min=%.1f\n",
		n, reps, runtime.GOMAXPROCS(0), rt[reps/2], rt[0])
}
