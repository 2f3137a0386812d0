package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/engine"
)

// progress shows each stream's counters while a run goes on: redrawn in
// place on a terminal, a line per stream every few seconds otherwise.
type progress struct {
	w       io.Writer
	tty     bool
	streams []*engine.StreamProgress
	stop    chan struct{}
	done    sync.WaitGroup
	lines   int
	last    map[string]int64 // records at the previous line (non-tty)
}

func startProgress(w io.Writer, streams []*engine.StreamProgress) *progress {
	p := &progress{w: w, tty: isTerminal(w), streams: streams, stop: make(chan struct{}), last: map[string]int64{}}
	every := 10 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw(false)
			case <-p.stop:
				p.draw(true)
				return
			}
		}
	}()
	return p
}

// Stop draws the final state and ends the display.
func (p *progress) Stop() {
	close(p.stop)
	p.done.Wait()
}

func (p *progress) draw(final bool) {
	if !p.tty {
		if final {
			return // the summary follows
		}
		for _, s := range p.streams {
			if s.State() != engine.Running {
				continue
			}
			n := s.Records.Load()
			if n == p.last[s.Name] && n > 0 {
				continue
			}
			p.last[s.Name] = n
			line := fmt.Sprintf("%s: %d rows, %d pages, %s", s.Name, n, s.Pages.Load(), rate(n, s.Elapsed()))
			if r := s.HTTPRetries.Load(); r > 0 {
				line += fmt.Sprintf(", %d retries (waited %s)", r, waited(s))
			}
			if ps := s.PartitionsStarted.Load(); ps > 0 {
				line += fmt.Sprintf(", partitions %d done of %d started", s.PartitionsDone.Load(), ps)
			}
			fmt.Fprintln(p.w, line)
		}
		return
	}
	var b strings.Builder
	if p.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.lines) // back to the first line
	}
	t := &table{header: []string{"", "STREAM", "ROWS", "PAGES", "ROWS/S", "REJECTED", "RETRIES", "PARTITIONS", "TIME"}, right: map[int]bool{2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true}}
	for _, s := range p.streams {
		n := s.Records.Load()
		retries := "-"
		if r := s.HTTPRetries.Load(); r > 0 {
			retries = fmt.Sprintf("%d (%s)", r, waited(s))
		}
		parts := "-"
		if ps := s.PartitionsStarted.Load(); ps > 0 {
			parts = fmt.Sprintf("%d/%d", s.PartitionsDone.Load(), ps)
		}
		t.add(symbol(s.State()), s.Name, fmt.Sprint(n), fmt.Sprint(s.Pages.Load()), rate(n, s.Elapsed()), fmt.Sprint(s.Rejected.Load()), retries, parts, s.Elapsed().Round(100*time.Millisecond).String())
	}
	var tb strings.Builder
	t.write(&tb)
	for _, line := range strings.Split(strings.TrimRight(tb.String(), "\n"), "\n") {
		b.WriteString("\x1b[2K" + line + "\n")
	}
	p.lines = len(t.rows) + 1
	io.WriteString(p.w, b.String())
}

// waited is how long a stream's requests waited before retries.
func waited(s *engine.StreamProgress) string {
	return (time.Duration(s.Waited.Load()) * time.Microsecond).Round(100 * time.Millisecond).String()
}

func symbol(status int32) string {
	switch status {
	case engine.Running:
		return "…"
	case engine.Succeeded:
		return "✓"
	case engine.Failed:
		return "✗"
	case engine.Stopped:
		return "■"
	}
	return " "
}

func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	r := float64(n) / d.Seconds()
	switch {
	case r >= 10000:
		return fmt.Sprintf("%.0fk", r/1000)
	case r >= 1000:
		return fmt.Sprintf("%.1fk", r/1000)
	}
	return fmt.Sprintf("%.0f", r)
}

// table writes aligned columns.
type table struct {
	header []string
	rows   [][]string
	right  map[int]bool
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	width := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			if i < len(width) {
				width[i] = max(width[i], len([]rune(c)))
			}
		}
	}
	for _, r := range append([][]string{t.header}, t.rows...) {
		var b strings.Builder
		for i, c := range r {
			if i >= len(width) {
				break
			}
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if t.right[i] {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}
