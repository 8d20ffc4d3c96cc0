// Package decisionlog writes ledgerfence's decision log to a file: one JSON
// line per decision, for a log pipeline to ship, in a file that rotates by
// size.
//
// File is a zapcore.WriteSyncer that renames path to path.1, path.1 to
// path.2, ... up to path.N (the oldest is removed) when a write would take
// the file past its size limit, and then starts path afresh. A line is never
// split across two files. NewCore wraps a File in a zap core with the JSON
// encoding of the decision log, so that filterd can log each decision to it:
//
//	f, err := decisionlog.Open(decisionlog.Config{Path: "/var/log/ledgerfence/decisions.log"})
//	...
//	defer f.Close()
//	decisions := zap.New(zapcore.NewTee(logger.Core(), decisionlog.NewCore(f, zapcore.InfoLevel)))
//	decisions.Info("decision", zap.String("decision_id", id), ...)
package decisionlog

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap/zapcore"
)

// Defaults.
const (
	DefaultMaxBytes   = 100 << 20
	DefaultMaxBackups = 5
	DefaultMode       = 0o640
)

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("decisionlog: file closed")

// Config says where the log goes and how much of it is kept.
type Config struct {
	// Path of the live file; its directory must exist.
	Path string
	// MaxBytes is the size past which the file rotates (DefaultMaxBytes).
	MaxBytes int64
	// MaxBackups is how many rotated files are kept, path.1 the newest
	// (DefaultMaxBackups). 0 takes the default; a negative value keeps none.
	MaxBackups int
	// Mode of new files (DefaultMode).
	Mode os.FileMode
}

func (c Config) withDefaults() (Config, error) {
	if c.Path == "" {
		return c, errors.New("decisionlog: no path")
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxBytes < 0 {
		return c, fmt.Errorf("decisionlog: max bytes %d", c.MaxBytes)
	}
	if c.MaxBackups == 0 {
		c.MaxBackups = DefaultMaxBackups
	}
	if c.MaxBackups < 0 {
		c.MaxBackups = 0
	}
	if c.Mode == 0 {
		c.Mode = DefaultMode
	}
	return c, nil
}

// File is an append-only log file that rotates by size. It is safe for
// concurrent use.
type File struct {
	cfg  Config
	mu   sync.Mutex
	f    *os.File
	size int64
}

var _ zapcore.WriteSyncer = (*File)(nil)

// Open opens (or creates) the file at cfg.Path for appending.
func Open(cfg Config) (*File, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &File{cfg: cfg}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, l.cfg.Mode)
	if err != nil {
		return fmt.Errorf("decisionlog: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("decisionlog: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write appends p, rotating first when p would take the file past
// MaxBytes. zap writes one whole line per call.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, ErrClosed
	}
	if l.size > 0 && l.size+int64(len(p)) > l.cfg.MaxBytes {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate shifts path.i to path.i+1, path to path.1, and opens a new path.
func (l *File) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("decisionlog: rotate: %w", err)
	}
	l.f = nil
	if l.cfg.MaxBackups == 0 {
		if err := os.Remove(l.cfg.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("decisionlog: rotate: %w", err)
		}
		return l.open()
	}
	for i := l.cfg.MaxBackups - 1; i >= 1; i-- {
		err := os.Rename(l.backup(i), l.backup(i+1))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("decisionlog: rotate: %w", err)
		}
	}
	if err := os.Rename(l.cfg.Path, l.backup(1)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("decisionlog: rotate: %w", err)
	}
	return l.open()
}

func (l *File) backup(i int) string { return l.cfg.Path + "." + strconv.Itoa(i) }

// Backups lists the rotated files that exist, newest first.
func (l *File) Backups() []string {
	var out []string
	for i := 1; i <= l.cfg.MaxBackups; i++ {
		if _, err := os.Stat(l.backup(i)); err == nil {
			out = append(out, l.backup(i))
		}
	}
	return out
}

// Sync commits the file to disk.
func (l *File) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return ErrClosed
	}
	return l.f.Sync()
}

// Close syncs and closes the file. Later writes fail with ErrClosed.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := errors.Join(l.f.Sync(), l.f.Close())
	l.f = nil
	return err
}

// EncoderConfig is the decision log's JSON encoding: "ts" in RFC 3339 with
// milliseconds (UTC), "level", "logger", "msg", then the fields.
func EncoderConfig() zapcore.EncoderConfig {
	return zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		NameKey:        "logger",
		MessageKey:     "msg",
		StacktraceKey:  "",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     utcMillis,
		EncodeDuration: zapcore.SecondsDurationEncoder,
		EncodeName:     zapcore.FullNameEncoder,
	}
}

func utcMillis(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendString(t.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
}

// NewCore is a zap core that writes entries at or above level to w as JSON
// lines, each in a single Write.
func NewCore(w zapcore.WriteSyncer, level zapcore.LevelEnabler) zapcore.Core {
	return zapcore.NewCore(zapcore.NewJSONEncoder(EncoderConfig()), w, level)
}
