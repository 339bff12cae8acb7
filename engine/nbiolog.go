package engine

import (
	"fmt"
	"log/slog"

	"github.com/lesismal/nbio/logging"
)

// RouteNBIOLogs sends nbio's process-wide log lines to log. nbio's Info
// lines (engine start/stop banners) become Debug; its errors stay errors.
func RouteNBIOLogs(log *slog.Logger) {
	logging.SetLogger(nbioLogger{log.With("component", "nbio")})
	logging.SetLevel(logging.LevelAll)
}

type nbioLogger struct{ log *slog.Logger }

func (l nbioLogger) Debug(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l nbioLogger) Info(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l nbioLogger) Warn(format string, v ...any)  { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l nbioLogger) Error(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
