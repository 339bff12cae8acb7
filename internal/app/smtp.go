package app

import (
	"context"
	"log/slog"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/engine"
	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/smtpd"
	"github.com/mailwire/mailwire/store"
)

type smtpServer interface {
	Addr() string
	Shutdown(context.Context) error
}

// startSMTP starts the SMTP listener (smtpd) on cfg.SMTP.Addr, with the
// ingest service's domain and message size and the node's budgets.
func startSMTP(cfg Config, db store.Directory, ing *ingest.Service, lim engine.Limits, set *metrics.Set, log *slog.Logger) (smtpServer, error) {
	sc := cfg.SMTP
	sc.Domain, sc.MaxMessageSize = cfg.Ingest.MailDomain, cfg.Ingest.MaxMessageSize
	sc.Memory, sc.Disk, sc.Descriptors = lim.Memory, lim.Disk, lim.Descriptors
	sc.Metrics, sc.Logger = set, log
	s, err := smtpd.New(sc, db, ing)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}
