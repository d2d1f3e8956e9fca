package allinone

import (
	"context"
	"errors"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/pipeline"
)

// raiseReusedAlerts is the local store's OnReused hook. The store marks an
// event whose (cluster, auditID, stage) it already holds with different
// content (decision 0012) after the stateless processor ran, so the
// processor can never raise the rules that test that marker (the shipped
// auditid-reused). They are raised here instead, with the processor's
// current rules (user file, per-cluster overrides and reloads included)
// and written to audit.alerts like every other alert, so that they reach
// Alertmanager through the alert consumer (decision 0016).
//
// The events are stored whatever happens here, and their redelivery is a
// duplicate the store does not report again: an alert that cannot be
// produced is logged and lost, not retried.
func (p *Pipeline) raiseReusedAlerts(ctx context.Context, events [][]byte) {
	if p.processor == nil || p.reusedAlerts == nil {
		return
	}
	rules := p.processor.Pipeline().Fleet().Detections
	var recs []kafka.Record
	var errs []error
	for _, ev := range events {
		r, err := pipeline.ReusedAuditIDAlerts(rules, p.cfg.Topics.Alerts, ev, time.Now().UTC())
		errs = append(errs, err)
		recs = append(recs, r...)
	}
	if err := errors.Join(errs...); err != nil {
		p.logger.Warn("detection rules on reused auditIDs", "component", "alerts", "err", err)
	}
	if len(recs) == 0 {
		return
	}
	if err := p.reusedAlerts.Produce(ctx, recs...); err != nil {
		p.logger.Error("alerts of reused auditIDs lost: cannot write them to the alerts topic",
			"component", "alerts", "topic", p.cfg.Topics.Alerts, "alerts", len(recs), "err", err)
	}
}
