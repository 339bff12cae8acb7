package bench

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Mix is the share of each subscription kind among subscribers:
//   - all: subscribe {} — every inbox of the account;
//   - inbox: subscribe {inbox_ids: [one inbox of the account]};
//   - type: subscribe {event_types: ["message.received"]} — every inbox,
//     through the event-type filter.
type Mix struct {
	All, Inbox, Type float64
}

// ParseMix reads "all=0.2,inbox=0.7,type=0.1" (shares are normalised).
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || f < 0 {
			return m, fmt.Errorf("--mix %q: want kind=share,... with kinds all, inbox, type", s)
		}
		switch k {
		case "all":
			m.All = f
		case "inbox":
			m.Inbox = f
		case "type":
			m.Type = f
		default:
			return m, fmt.Errorf("--mix: unknown kind %q (all, inbox, type)", k)
		}
	}
	if m.All+m.Inbox+m.Type <= 0 {
		return m, fmt.Errorf("--mix %q: the shares add up to 0", s)
	}
	return m, nil
}

func (m Mix) String() string {
	return fmt.Sprintf("all=%g,inbox=%g,type=%g", m.All, m.Inbox, m.Type)
}

// kind returns the subscription kind of subscriber i: kinds are spread
// over the index range by a low-discrepancy sequence, so every account
// gets its share.
func (m Mix) kind(i int) string {
	sum := m.All + m.Inbox + m.Type
	u := math.Mod(float64(i)*0.6180339887498949+0.5, 1) * sum
	switch {
	case u < m.All:
		return "all"
	case u < m.All+m.Inbox:
		return "inbox"
	}
	return "type"
}

// PlanConfig is the shape of a run.
type PlanConfig struct {
	Conns           int // subscribers
	Inboxes         int // inboxes in all (at least 1)
	ConnsPerAccount int // subscribers per account; accounts = ⌈Conns/ConnsPerAccount⌉
	Mix             Mix
	// Accounts, when > 0, fixes the number of accounts (webhook and
	// ingest runs have no subscribers).
	Accounts int
}

// Plan is a run's accounts, inboxes and subscribers, created through the
// API.
type Plan struct {
	Run      uint32       `json:"run"`
	Accounts []Account    `json:"-"`
	Inboxes  []LoadTarget `json:"-"`
	Clients  []ClientSpec `json:"-"`
	// Subscribers[i] is the number of subscribers that expect inbox i.
	Subscribers []int64        `json:"-"`
	Kinds       map[string]int `json:"kinds,omitempty"`
	NAccounts   int            `json:"accounts"`
	NInboxes    int            `json:"inboxes"`
}

// BuildPlan creates the accounts and inboxes (concurrently: the server
// groups their fsyncs) and lays out the subscribers.
func BuildPlan(ctx context.Context, api *API, run uint32, cfg PlanConfig) (*Plan, error) {
	cpa := max(cfg.ConnsPerAccount, 1)
	nacc := cfg.Accounts
	if nacc <= 0 {
		nacc = max(1, (cfg.Conns+cpa-1)/cpa)
	}
	ninb := max(cfg.Inboxes, 1)
	p := &Plan{Run: run, Accounts: make([]Account, nacc), Inboxes: make([]LoadTarget, ninb),
		Subscribers: make([]int64, ninb), Kinds: map[string]int{}, NAccounts: nacc, NInboxes: ninb}
	runHex := string(appendHex8(nil, run))
	err := parallel(ctx, nacc, 32, func(i int) error {
		a, err := api.CreateAccount("bench-" + runHex + "-" + strconv.Itoa(i))
		p.Accounts[i] = a
		return err
	})
	if err != nil {
		return nil, err
	}
	// Inbox j belongs to account j % nacc.
	err = parallel(ctx, ninb, 32, func(j int) error {
		acc := p.Accounts[j%nacc]
		in, err := api.CreateInbox(acc.Key, mailboxName(run, j))
		p.Inboxes[j] = LoadTarget{Key: acc.Key, InboxID: in.ID, Address: in.Address}
		return err
	})
	if err != nil {
		return nil, err
	}
	byAccount := make([][]int32, nacc)
	for j := 0; j < ninb; j++ {
		byAccount[j%nacc] = append(byAccount[j%nacc], int32(j))
	}
	// Subscriber i belongs to account i % nacc and is the (i / nacc)-th
	// of it.
	p.Clients = make([]ClientSpec, cfg.Conns)
	for i := range p.Clients {
		a := i % nacc
		own := byAccount[a]
		k := cfg.Mix.kind(i)
		if k == "inbox" && len(own) == 0 {
			k = "all"
		}
		spec := ClientSpec{Key: p.Accounts[a].Key}
		switch k {
		case "all":
			spec.Expect = own
		case "type":
			spec.Types = []string{"message.received"}
			spec.Expect = own
		case "inbox":
			j := own[(i/nacc)%len(own)]
			spec.InboxIDs = []string{p.Inboxes[j].InboxID}
			spec.Expect = []int32{j}
		}
		for _, j := range spec.Expect {
			p.Subscribers[j]++
		}
		p.Kinds[k]++
		p.Clients[i] = spec
	}
	return p, nil
}

// parallel runs f(0..n-1) on up to workers goroutines and returns the
// first error (the rest of the work is abandoned).
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// kindsText renders plan kinds in a stable order.
func kindsText(k map[string]int) string {
	var names []string
	for n := range k {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%d", n, k[n]))
	}
	return strings.Join(parts, " ")
}
