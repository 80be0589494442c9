// Baseline for bench_echo: a TCP echo server with one goroutine per
// connection, the idiomatic Go shape (net.Conn Read/Write on the runtime's
// netpoller), same buffer size as kc_echo.
//
// Usage: go_echo [port]   (default 0: pick a free one)
// Prints "go_echo: listening on 127.0.0.1:PORT" once ready; runs until killed.
// GOMAXPROCS comes from the environment (bench_echo sets it). Go raises its
// soft RLIMIT_NOFILE to the hard limit by itself.
package main

import (
	"fmt"
	"net"
	"os"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func main() {
	port := "0"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "go_echo: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("go_echo: listening on %s\n", ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go_echo: accept: %v\n", err)
			continue
		}
		go serve(c)
	}
}
