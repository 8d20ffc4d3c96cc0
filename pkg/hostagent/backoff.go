package hostagent

import (
	"math"
	"time"
)

// Backoff computes exponential delays with jitter between attempts.
type Backoff struct {
	Initial    time.Duration // the first delay (before jitter)
	Max        time.Duration // no delay exceeds it, jitter included
	Multiplier float64       // growth per attempt, >= 1
	// Jitter spreads each delay uniformly over [d*(1-Jitter), d*(1+Jitter)],
	// so that hosts rebooted together do not retry together. 0 to 1.
	Jitter float64
	// Rand returns a number in [0, 1); math/rand/v2's Float64 in a program.
	Rand func() float64
}

// DefaultBackoff starts at 500ms, doubles, and stays under 30s, with 20% jitter.
func DefaultBackoff(rand func() float64) Backoff {
	return Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2, Jitter: 0.2, Rand: rand}
}

// Delay returns the wait after the given failed attempt (0 for the first).
func (b Backoff) Delay(attempt int) time.Duration {
	mult := b.Multiplier
	if mult < 1 {
		mult = 1
	}
	d := float64(b.Initial) * math.Pow(mult, float64(attempt))
	if b.Max > 0 && d > float64(b.Max) {
		d = float64(b.Max)
	}
	if b.Jitter > 0 && b.Rand != nil {
		j := math.Min(b.Jitter, 1)
		d *= 1 - j + 2*j*b.Rand()
	}
	if b.Max > 0 && d > float64(b.Max) {
		d = float64(b.Max)
	}
	if d < 0 {
		d = 0
	}
	return time.Duration(d)
}

// Clock waits; a test fakes it to retry without sleeping.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time                         { return time.Now() }
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
