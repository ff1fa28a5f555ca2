package config

import (
	"fmt"
	"io"
	"log/slog"
)

// Level parses LogLevel.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return l, fmt.Errorf("log_level must be debug, info, warn or error, not %q", c.LogLevel)
	}
	return l, nil
}

// Logger returns the structured logger the settings ask for, writing to w.
func (c Config) Logger(w io.Writer) *slog.Logger {
	lvl, _ := c.Level()
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
