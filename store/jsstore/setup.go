package jsstore

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailwire/mailwire/store"
)

// setup makes sure every stream and bucket exists with the settings of
// names.go (creating them on a new cluster, updating them otherwise), then
// loads the directory and the index.
func (s *Store) setup() error {
	if s.maxEventBytes+8<<10 > s.maxPayload {
		return fmt.Errorf("--max-event-bytes (%d) must be at least 8KiB below the NATS server's max_payload (%d) in cluster mode", s.maxEventBytes, s.maxPayload)
	}
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
	defer cancel()
	r := s.opts.Replicas
	// The log keeps every event for the longest retention (pending ones
	// too: docs/CLUSTER.md), and a day more so an event's state and blobs
	// never outlive it by accident the other way round.
	age := s.opts.Retention
	var err error
	stream := func(cfg jetstream.StreamConfig) (jetstream.Stream, error) {
		cfg.Storage, cfg.Replicas = jetstream.FileStorage, r
		return retry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return s.js.CreateOrUpdateStream(ctx, cfg) })
	}
	if s.events, err = stream(jetstream.StreamConfig{Name: streamEvents, Subjects: []string{subjEvent + ".>"},
		MaxAge: age, Duplicates: dedupWindow, AllowDirect: true, Discard: jetstream.DiscardOld}); err != nil {
		return fmt.Errorf("cannot set up stream %s: %w", streamEvents, err)
	}
	if s.due, err = stream(jetstream.StreamConfig{Name: streamDue, Subjects: []string{subjSched + ".>", subjDue + ".>"},
		Retention: jetstream.WorkQueuePolicy, AllowMsgSchedules: true}); err != nil {
		return fmt.Errorf("cannot set up stream %s: %w", streamDue, err)
	}
	kv := func(cfg jetstream.KeyValueConfig, leaderReads bool) (jetstream.KeyValue, error) {
		cfg.Storage, cfg.Replicas = jetstream.FileStorage, r
		if cfg.History == 0 {
			cfg.History = 1
		}
		b, err := retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return s.js.CreateOrUpdateKeyValue(ctx, cfg) })
		if err != nil || !leaderReads {
			return b, err
		}
		// Compare-and-set reads must see the last write: no direct gets
		// (any replica, possibly behind), only the stream leader.
		st, err := s.js.Stream(ctx, "KV_"+cfg.Bucket)
		if err != nil {
			return nil, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, err
		}
		if info.Config.AllowDirect {
			c := info.Config
			c.AllowDirect = false
			if _, err := retry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return s.js.UpdateStream(ctx, c) }); err != nil {
				return nil, err
			}
		}
		return s.js.KeyValue(ctx, cfg.Bucket)
	}
	if s.dirKV, err = kv(jetstream.KeyValueConfig{Bucket: bucketDir, Description: "mailwire directory"}, true); err != nil {
		return fmt.Errorf("cannot set up bucket %s: %w", bucketDir, err)
	}
	if s.stateKV, err = kv(jetstream.KeyValueConfig{Bucket: bucketState, Description: "mailwire delivery states", TTL: age}, true); err != nil {
		return fmt.Errorf("cannot set up bucket %s: %w", bucketState, err)
	}
	if s.idemKV, err = kv(jetstream.KeyValueConfig{Bucket: bucketIdem, Description: "mailwire idempotency keys", TTL: idemTTL}, true); err != nil {
		return fmt.Errorf("cannot set up bucket %s: %w", bucketIdem, err)
	}
	if s.nodesKV, err = kv(jetstream.KeyValueConfig{Bucket: bucketNodes, Description: "mailwire nodes", TTL: nodeTTL}, false); err != nil {
		return fmt.Errorf("cannot set up bucket %s: %w", bucketNodes, err)
	}
	threadKV, err := kv(jetstream.KeyValueConfig{Bucket: bucketThreads, Description: "mailwire thread read marks", TTL: age}, false)
	if err != nil {
		return fmt.Errorf("cannot set up bucket %s: %w", bucketThreads, err)
	}
	if s.blobs, err = retry(ctx, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucketBlobs, Description: "mailwire message parts",
			TTL: age, Storage: jetstream.FileStorage, Replicas: r})
	}); err != nil {
		return fmt.Errorf("cannot set up object store %s: %w", bucketBlobs, err)
	}
	s.dl = newDeliveries(s)
	s.dir = newDirectory(s, s.dirKV)
	s.idx = newIndex(s)
	// The index follows inbox deletions made on any node.
	s.OnChange(func(c store.DirectoryChange) {
		if c.DeletedInbox != "" {
			s.idx.dropInbox(c.DeletedInbox)
		}
	})
	if err := s.dir.start(); err != nil {
		return err
	}
	if err := s.idx.start(); err != nil {
		return err
	}
	if err := s.openMarks(ctx, threadKV); err != nil {
		return err
	}
	if err := s.startNodes(); err != nil {
		return fmt.Errorf("cannot join the cluster's membership: %w", err)
	}
	s.wg.Add(1)
	go s.sweepLoop()
	return nil
}

// sweepLoop drops aged-out events from the index (the streams drop them).
func (s *Store) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.idx.sweep(time.Now().Add(-s.opts.Retention))
		}
	}
}
