package cloud

import (
	"context"
	"sync"
)

// Lazy is a Client that authenticates on first use and again after a
// failed attempt, so that a daemon started before Keystone keeps trying.
type Lazy struct {
	cr   Credentials
	opts []Option
	mu   sync.Mutex
	c    *Client
}

// NewLazy returns a Lazy for cr; nothing is contacted yet.
func NewLazy(cr Credentials, opts ...Option) *Lazy { return &Lazy{cr: cr, opts: opts} }

// Client returns the connected client, connecting if needed.
func (l *Lazy) Client(ctx context.Context) (*Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		return l.c, nil
	}
	c, err := Connect(ctx, l.cr, l.opts...)
	if err != nil {
		return nil, err
	}
	l.c = c
	return c, nil
}

// ComputeServiceExists is Client.ComputeServiceExists.
func (l *Lazy) ComputeServiceExists(ctx context.Context, host string) (bool, error) {
	c, err := l.Client(ctx)
	if err != nil {
		return false, err
	}
	return c.ComputeServiceExists(ctx, host)
}

// ServersOnHost is Client.ServersOnHost.
func (l *Lazy) ServersOnHost(ctx context.Context, host string) ([]Server, error) {
	c, err := l.Client(ctx)
	if err != nil {
		return nil, err
	}
	return c.ServersOnHost(ctx, host)
}
