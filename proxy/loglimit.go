package proxy

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// logLimiter keeps a flood of refused connections from writing a log line
// each at info level: a token bucket lets logBurst lines through, refilled
// at logRate a second; past it the lines go to debug and are counted by
// outcome, and summary writes one info line with the counts every
// logSummaryEvery while there are any.
type logLimiter struct {
	summary    string // the summary line's message
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed map[string]int
	now        func() time.Time
}

const (
	logBurst        = 50
	logRate         = 10 // lines a second
	logSummaryEvery = 10 * time.Second
)

func newLogLimiter(summary string, now func() time.Time) *logLimiter {
	return &logLimiter{summary: summary, tokens: logBurst, last: now(), suppressed: map[string]int{}, now: now}
}

// allow takes a token for one line of the given outcome; without one it
// counts the line as suppressed.
func (l *logLimiter) allow(outcome string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.tokens = min(logBurst, l.tokens+now.Sub(l.last).Seconds()*logRate)
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	l.suppressed[outcome]++
	return false
}

// flush writes the summary of suppressed lines, if any, and resets it.
func (l *logLimiter) flush(log *slog.Logger) {
	l.mu.Lock()
	counts := l.suppressed
	if len(counts) > 0 {
		l.suppressed = map[string]int{}
	}
	l.mu.Unlock()
	if len(counts) == 0 {
		return
	}
	attrs := make([]slog.Attr, 0, len(counts)+1)
	total := 0
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		attrs = append(attrs, slog.Int(k, counts[k]))
		total += counts[k]
	}
	attrs = append(attrs, slog.Int("total", total))
	log.LogAttrs(context.Background(), slog.LevelInfo, l.summary,
		slog.Any("by_outcome", slog.GroupValue(attrs...)))
}

// summarise flushes every logSummaryEvery until stop closes, and once more then.
func (l *logLimiter) summarise(log *slog.Logger, stop <-chan struct{}) {
	t := time.NewTicker(logSummaryEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			l.flush(log)
			return
		case <-t.C:
			l.flush(log)
		}
	}
}
