package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/lmittmann/tint"
	"golang.org/x/term"
)

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// newLogger builds the process logger: tint for people (colour only on a
// terminal), slog's JSON handler for machines.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	lv, _ := parseLevel(level)
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv}))
	}
	colour := false
	if f, ok := w.(*os.File); ok {
		colour = term.IsTerminal(int(f.Fd()))
	}
	return slog.New(tint.NewTextHandler(w, &tint.Options{Level: lv, NoColor: !colour, TimeFormat: "2006-01-02T15:04:05.000Z07:00"}))
}
