package raftnode

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Attribute keys used in log records.
const (
	logKeyPeer      = "raft_id"
	logKeyComponent = "component"
)

// slogAdapter makes an *slog.Logger serve as raft's and badger's logger.
// A nil logger discards everything.
type slogAdapter struct{ l *slog.Logger }

func newSlogAdapter(l *slog.Logger, id uint64, component string) *slogAdapter {
	if l == nil {
		return &slogAdapter{}
	}
	return &slogAdapter{l: l.With(logKeyPeer, id, logKeyComponent, component)}
}

func (a *slogAdapter) log(level slog.Level, msg string) {
	if a.l == nil || !a.l.Enabled(context.Background(), level) {
		return
	}
	a.l.Log(context.Background(), level, strings.TrimSpace(msg))
}

func (a *slogAdapter) Debug(v ...any)              { a.log(slog.LevelDebug, fmt.Sprint(v...)) }
func (a *slogAdapter) Debugf(f string, v ...any)   { a.log(slog.LevelDebug, fmt.Sprintf(f, v...)) }
func (a *slogAdapter) Info(v ...any)               { a.log(slog.LevelInfo, fmt.Sprint(v...)) }
func (a *slogAdapter) Infof(f string, v ...any)    { a.log(slog.LevelInfo, fmt.Sprintf(f, v...)) }
func (a *slogAdapter) Warning(v ...any)            { a.log(slog.LevelWarn, fmt.Sprint(v...)) }
func (a *slogAdapter) Warningf(f string, v ...any) { a.log(slog.LevelWarn, fmt.Sprintf(f, v...)) }
func (a *slogAdapter) Error(v ...any)              { a.log(slog.LevelError, fmt.Sprint(v...)) }
func (a *slogAdapter) Errorf(f string, v ...any)   { a.log(slog.LevelError, fmt.Sprintf(f, v...)) }
func (a *slogAdapter) Fatal(v ...any)              { a.Panic(v...) }
func (a *slogAdapter) Fatalf(f string, v ...any)   { a.Panicf(f, v...) }
func (a *slogAdapter) Panic(v ...any) {
	s := fmt.Sprint(v...)
	a.log(slog.LevelError, s)
	panic(raftPanic(s))
}
func (a *slogAdapter) Panicf(f string, v ...any) {
	s := fmt.Sprintf(f, v...)
	a.log(slog.LevelError, s)
	panic(raftPanic(s))
}

// raftPanic is what raft's Panic and Fatal calls raise: raft met a state
// it cannot go on from (a corrupt log, or a message forged or from
// another cluster). The raft goroutine turns it into the peer's stop
// (ErrHalted), not the host process's crash.
type raftPanic string
