package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/lmittmann/tint"
	"golang.org/x/term"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

// newLogger builds the process logger: tint for people (colour only on a
// terminal), slog's JSON handler for machines.
func newLogger(w io.Writer, s app.LogSettings) *slog.Logger {
	if s.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: s.Level}))
	}
	colour := false
	if f, ok := w.(*os.File); ok {
		colour = term.IsTerminal(int(f.Fd()))
	}
	return slog.New(tint.NewTextHandler(w, &tint.Options{Level: s.Level, NoColor: !colour, TimeFormat: "2006-01-02T15:04:05.000Z07:00"}))
}
