package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mailwire/mailwire/internal/limits"
)

// errUsage: the problem and the usage were printed already.
var errUsage = errors.New("usage")

// errHelp: --help was asked for and printed (exit 0).
var errHelp = errors.New("help")

// parseFlags parses args, then sets the flags not given from their
// MAILWIRE_* variables. --help prints the usage (errHelp); a bad flag or
// value returns its error with a pointer to --help, not the whole usage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	usage, out := fs.Usage, fs.Output()
	helped := false
	fs.Usage = func() { helped = true }
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp) || (err == nil && helped):
		fs.Usage()
		return errHelp
	case err != nil:
		return fmt.Errorf("%s: %v (see %s --help)", fs.Name(), err, fs.Name())
	}
	return applyEnv(fs)
}

// envName is the environment variable of a flag (CONFIG.md).
func envName(flagName string) string {
	return "MAILWIRE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag that was not given on the command line from
// its MAILWIRE_* variable (the flag wins over the variable).
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var probs []string
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				probs = append(probs, fmt.Sprintf("%s=%q: %v", envName(f.Name), v, err))
			}
		}
	})
	if len(probs) > 0 {
		return errors.New("invalid environment: " + strings.Join(probs, "; "))
	}
	return nil
}

// sizeValue is a byte size flag accepting plain bytes or KiB/MiB/GiB
// (and KB/MB/GB as the same binary units).
type sizeValue struct{ n *int }

func (s sizeValue) String() string {
	if s.n == nil {
		return ""
	}
	return formatSize(*s.n)
}

func (s sizeValue) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s.n = n
	return nil
}

func parseSize(v string) (int, error) {
	v = strings.TrimSpace(v)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a size: want a number of bytes, optionally with KiB or MiB")
	}
	if n > (1<<40)/int64(mult) {
		return 0, fmt.Errorf("size too large")
	}
	return int(n) * mult, nil
}

func formatSize(n int) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.Itoa(n>>30) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n)
}

// scheduleValue is --retry-schedule: comma-separated durations.
type scheduleValue struct{ d *[]time.Duration }

func (s scheduleValue) String() string {
	if s.d == nil {
		return ""
	}
	parts := make([]string, len(*s.d))
	for i, d := range *s.d {
		parts[i] = formatDuration(d)
	}
	return strings.Join(parts, ",")
}

func (s scheduleValue) Set(v string) error {
	var out []time.Duration
	for _, p := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 0s,30s,2m)", p)
		}
		if d < 0 {
			return fmt.Errorf("%q is negative", p)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return errors.New("needs at least one delay")
	}
	*s.d = out
	return nil
}

func formatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
	return d.String()
}

// domainsValue is --mail-domain: it may be repeated, each value a
// comma-separated list (--mail-domain a --mail-domain b,c); the first Set
// replaces the default. The first domain goes to first (the default
// domain), the others to rest.
type domainsValue struct {
	first *string
	rest  *[]string
	set   bool
}

func (d *domainsValue) String() string {
	if d.first == nil {
		return ""
	}
	return strings.Join(append([]string{*d.first}, *d.rest...), ",")
}

func (d *domainsValue) Set(v string) error {
	if !d.set {
		*d.first, *d.rest, d.set = "", nil, true
	}
	for _, p := range strings.Split(v, ",") {
		switch p = strings.TrimSpace(p); {
		case p == "":
		case *d.first == "":
			*d.first = p
		default:
			*d.rest = append(*d.rest, p)
		}
	}
	return nil
}

// diskValue is --min-free-disk: a size, a percentage, or both ("1GiB,5%":
// whichever is smaller on the data directory's filesystem); "0" is no
// threshold.
type diskValue struct{ t *limits.DiskThreshold }

func (d diskValue) String() string {
	if d.t == nil {
		return ""
	}
	var parts []string
	if d.t.Bytes > 0 {
		parts = append(parts, formatSize(int(d.t.Bytes)))
	}
	if d.t.Percent > 0 {
		parts = append(parts, strconv.FormatFloat(d.t.Percent, 'g', -1, 64)+"%")
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, ",")
}

func (d diskValue) Set(v string) error {
	var t limits.DiskThreshold
	for _, part := range strings.Split(v, ",") {
		p, err := limits.ParseDiskThreshold(part, parseSize)
		if err != nil {
			return err
		}
		if p.Percent > 0 {
			t.Percent = p.Percent
		} else {
			t.Bytes = p.Bytes
		}
	}
	if t == (limits.DiskThreshold{}) {
		t.Bytes = -1 // "0": no threshold
	}
	*d.t = t
	return nil
}
