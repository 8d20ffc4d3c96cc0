// Command lfbench measures filterd's webhook end to end over loopback: it
// posts Nova's external-scheduler request for a regulated VM with 10, 100,
// 1,000 and 10,000 candidate hosts, from several concurrent clients, and
// reports latency percentiles and throughput; in-process it also reports the
// handler's allocations per request, from a testing.Benchmark.
//
// By default it starts its own filterd (embedded ledger in a temporary
// directory, listening on 127.0.0.1) and registers the hosts; with -url it
// loads a running filterd, registering the hosts with -admin-token.
//
// Each client is one keep-alive connection on which it writes the request
// and reads the answer itself, so that the load costs little beside the
// server's work.
//
// Latency is told twice. The p50 to max columns run from the request's write
// to the client's having read the answer. The socket columns stop when the
// kernel received the answer's last bytes at the client's socket (Linux's
// SO_TIMESTAMPNS): they leave out the time the client then waits to be
// scheduled. In-process, that wait is spent queued behind filterd's own
// handlers on the same cores, which Nova's scheduler, in a process and on a
// machine of its own, does not share; it is the load client's, not
// filterd's.
//
// Each row of filterd is followed by a row of the floor: the same load on a
// server that reads the body and answers {"hosts":[]} at once, listening as
// filterd does. It is what the loopback transport, HTTP and the load client
// cost on this machine with no decision at all; filterd cannot be faster.
//
//	lfbench                        # in-process filterd, the four sizes, concurrency 8
//	lfbench -hosts 1000 -c 1,2,8 -duration 10s
//	lfbench -url http://127.0.0.1:8787 -admin-token "$LEDGERFENCE_ADMIN_TOKEN"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lfbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lfbench:", err)
		os.Exit(1)
	}
}

type config struct {
	URL         string
	AdminToken  string
	Hosts       []int
	Concurrency []int
	Floor       bool
	Duration    time.Duration
	Warmup      time.Duration
	Allocs      bool
	CPUProfile  string
}

func parseConfig(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("lfbench", flag.ContinueOnError)
	fs.StringVar(&c.URL, "url", "", "filterd to load (none: start one in-process on an embedded ledger in a temporary directory)")
	fs.StringVar(&c.AdminToken, "admin-token", os.Getenv("LEDGERFENCE_ADMIN_TOKEN"), "admin token of -url, to register the hosts and the regulation")
	sizes := fs.String("hosts", "10,100,1000,10000", "candidate hosts per request, comma-separated")
	concs := fs.String("c", "8", "concurrent clients, comma-separated")
	fs.BoolVar(&c.Floor, "floor", true, "also measure the floor: a server that answers without deciding")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "measuring time per size")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "unmeasured time per size before measuring")
	fs.BoolVar(&c.Allocs, "allocs", true, "in-process: also measure the handler's allocations per request (testing.Benchmark)")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of the measured load (all sizes) to this file")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var err error
	if c.Hosts, err = counts("-hosts", *sizes, 100_000); err != nil {
		return config{}, err
	}
	if c.Concurrency, err = counts("-c", *concs, 1024); err != nil {
		return config{}, err
	}
	if c.Duration <= 0 || c.Warmup < 0 {
		return config{}, errors.New("-duration must be positive, -warmup not negative")
	}
	if c.URL != "" && c.AdminToken == "" {
		return config{}, errors.New("-url needs -admin-token (or LEDGERFENCE_ADMIN_TOKEN) to register the hosts")
	}
	return c, nil
}

// counts parses a comma-separated list of counts from 1 to max.
func counts(flagName, list string, max int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > max {
			return nil, fmt.Errorf("%s: %q is not a count from 1 to %d", flagName, f, max)
		}
		out = append(out, n)
	}
	return out, nil
}
