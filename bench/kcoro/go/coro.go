// Baseline for bench_coro: the same workloads on goroutines.
//
// Usage: go_coro yield N | spawn N | mem N | pingpong N | pc P C N | skynet
// Prints one line "go_coro <workload> ns_per_op=X" (mem: bytes_per_op=X;
// skynet: ms=X). GOMAXPROCS comes from the environment (bench_coro sets it).
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

func atoi(s string) int {
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		fmt.Fprintf(os.Stderr, "go_coro: bad number %q\n", s)
		os.Exit(2)
	}
	return v
}

func yield(n int) float64 {
	var wg sync.WaitGroup
	wg.Add(2)
	start := time.Now()
	for k := 0; k < 2; k++ {
		go func() {
			for i := 0; i < n; i++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return float64(time.Since(start).Nanoseconds()) / float64(2*n)
}

func spawn(n int) float64 {
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { wg.Done() }()
	}
	wg.Wait()
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

func mem(n int) float64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { <-gate; wg.Done() }()
	}
	runtime.Gosched()
	runtime.ReadMemStats(&b)
	close(gate)
	wg.Wait()
	return float64(b.Sys-a.Sys) / float64(n)
}

func pingpong(n int) float64 {
	ping, pong := make(chan int64), make(chan int64)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		ping <- int64(i)
		<-pong
	}
	el := time.Since(start)
	close(ping)
	return float64(el.Nanoseconds()) / float64(n)
}

func pc(p, c, n int) float64 {
	ch := make(chan int64, 1024)
	per := n / p
	var pw, cw sync.WaitGroup
	start := time.Now()
	for i := 0; i < c; i++ {
		cw.Add(1)
		go func() {
			for range ch {
			}
			cw.Done()
		}()
	}
	for i := 0; i < p; i++ {
		pw.Add(1)
		go func() {
			for k := 0; k < per; k++ {
				ch <- int64(k)
			}
			pw.Done()
		}()
	}
	pw.Wait()
	close(ch)
	cw.Wait()
	return float64(time.Since(start).Nanoseconds()) / float64(per*p)
}

func skynet(out chan int64, num, size, div int64) {
	if size == 1 {
		out <- num
		return
	}
	rc := make(chan int64, div)
	for i := int64(0); i < div; i++ {
		sub := num + i*(size/div)
		go skynet(rc, sub, size/div, div)
	}
	var sum int64
	for i := int64(0); i < div; i++ {
		sum += <-rc
	}
	out <- sum
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go_coro yield N | spawn N | mem N | pingpong N | pc P C N | skynet")
		os.Exit(2)
	}
	w := os.Args[1]
	switch w {
	case "yield":
		fmt.Printf("go_coro yield ns_per_op=%.2f\n", yield(atoi(os.Args[2])))
	case "spawn":
		fmt.Printf("go_coro spawn ns_per_op=%.2f\n", spawn(atoi(os.Args[2])))
	case "mem":
		fmt.Printf("go_coro mem bytes_per_op=%.0f\n", mem(atoi(os.Args[2])))
	case "pingpong":
		fmt.Printf("go_coro pingpong ns_per_op=%.2f\n", pingpong(atoi(os.Args[2])))
	case "pc":
		fmt.Printf("go_coro pc ns_per_op=%.2f\n", pc(atoi(os.Args[2]), atoi(os.Args[3]), atoi(os.Args[4])))
	case "skynet":
		start := time.Now()
		out := make(chan int64, 1)
		go skynet(out, 0, 1000000, 10)
		sum := <-out
		if sum != 499999500000 {
			fmt.Fprintf(os.Stderr, "go_coro: skynet sum %d\n", sum)
			os.Exit(1)
		}
		fmt.Printf("go_coro skynet ms=%.2f\n", float64(time.Since(start).Nanoseconds())/1e6)
	default:
		fmt.Fprintf(os.Stderr, "go_coro: unknown workload %q\n", w)
		os.Exit(2)
	}
}
