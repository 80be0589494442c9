// Baseline for bench_throughput: P producers and C consumers on one buffered
// channel of int64, the same workload bench_throughput runs on kcoro.
//
// Usage: go_chan_throughput [P C msgs capacity [reps]]   (defaults 1 1 2000000 1024 5)
// Producers share msgs between them; consumers range over the channel until
// it is closed after the last producer. Runs one warm-up and `reps` timed runs
// and prints one machine-readable line:
//
//	go_throughput p=P c=C msgs=N cap=K reps=R gomaxprocs=G msgs_per_sec_median=X msgs_per_sec_max=Y
//
// GOMAXPROCS defaults to P+C (one thread per worker, as in the C bench) unless
// set in the environment.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"
)

func run(p, c, msgs, capacity int) time.Duration {
	ch := make(chan int64, capacity)
	var prod, cons sync.WaitGroup
	counts := make([]int64, c)
	sums := make([]int64, c)
	start := time.Now()
	for i := 0; i < c; i++ {
		cons.Add(1)
		go func(id int) {
			defer cons.Done()
			var n, s int64
			for v := range ch {
				n++
				s += v
			}
			counts[id], sums[id] = n, s
		}(i)
	}
	for i := 0; i < p; i++ {
		share := msgs / p
		if i < msgs%p {
			share++
		}
		prod.Add(1)
		go func(share int) {
			defer prod.Done()
			for k := 1; k <= share; k++ {
				ch <- int64(k)
			}
		}(share)
	}
	prod.Wait()
	close(ch)
	cons.Wait()
	elapsed := time.Since(start)

	var n int64
	for i := 0; i < c; i++ {
		n += counts[i]
	}
	if n != int64(msgs) {
		fmt.Fprintf(os.Stderr, "go_throughput: received %d, want %d\n", n, msgs)
		os.Exit(1)
	}
	return elapsed
}

func argInt(i, def int) int {
	if len(os.Args) <= i {
		return def
	}
	v, err := strconv.Atoi(os.Args[i])
	if err != nil || v <= 0 {
		fmt.Fprintf(os.Stderr, "go_throughput: bad argument %q\n", os.Args[i])
		os.Exit(2)
	}
	return v
}

func main() {
	p, c := argInt(1, 1), argInt(2, 1)
	msgs, capacity := argInt(3, 2000000), argInt(4, 1024)
	reps := argInt(5, 5)
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(p + c)
	}
	run(p, c, msgs/10+1, capacity) // warm-up
	rate := make([]float64, reps)
	for r := 0; r < reps; r++ {
		rate[r] = float64(msgs) / run(p, c, msgs, capacity).Seconds()
	}
	sort.Float64s(rate)
	fmt.Printf("go_throughput p=%d c=%d msgs=%d cap=%d reps=%d gomaxprocs=%d msgs_per_sec_median=%.0f msgs_per_sec_max=%.0f\n",
		p, c, msgs, capacity, reps, runtime.GOMAXPROCS(0), rate[reps/2], rate[reps-1])
}
