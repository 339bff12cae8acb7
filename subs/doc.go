// Package subs is the subscription index: for an event of an account (inbox, type) it finds the
// WebSocket connections whose subscription matches (PROTOCOL §4). It is a pure data structure: no
// I/O, no goroutines, no imports from the rest of mailwire.
//
// A [Filter] is one connection's subscription. It is an immutable value: every method returns a new
// Filter and never changes the slices of the one it was called on, so a Filter, once published, can
// be read by any number of goroutines without synchronisation.
//
// An [Index] maps (account, connection) to a Filter.
//
// Concurrency contract:
//   - Readers ([Index.Match], [Index.Has], [Index.Get]) never take a lock and never block. They read
//     copy-on-write snapshots published through atomic.Pointer: a reader sees each account either
//     wholly before or wholly after a write, never half of one. A reader that started before a
//     write may still return the old state; it never returns a connection of another account.
//   - Writers ([Index.Update], [Index.Remove], [Index.RemoveInbox]) are serialised per shard by a
//     mutex. There are 64 shards, picked by an FNV-1a hash of the account id computed inline
//     (no allocation). Writers of different shards run in parallel.
//   - A write copies only what it changes: the account's connection list on every change, and one
//     of the shard's 64 account maps (1/4096 of the accounts) only when an account appears or
//     disappears. Accounts left without a subscribed connection are dropped, so memory follows
//     the live subscriptions.
//   - [Index.Len] and [Index.Accounts] are atomic counters: exact when no write is in progress,
//     otherwise they may be one write behind or ahead of what a concurrent Match sees.
package subs
