package app

import (
	"context"
	"log/slog"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/store"
)

type smtpServer interface {
	Addr() string
	Shutdown(context.Context) error
}

// startSMTP is completed when the smtpd package lands.
func startSMTP(cfg Config, db *store.DB, ing *ingest.Service, set *metrics.Set, log *slog.Logger) (smtpServer, error) {
	return nil, nil
}
