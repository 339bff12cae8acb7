package engine

import (
	"io"

	"github.com/VictoriaMetrics/metrics"
)

func metricsWriteProcess(w io.Writer) { metrics.WriteProcessMetrics(w) }
