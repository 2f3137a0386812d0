//go:build unix

package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// pageSize is the page size the connector asks for and the API's default.
const pageSize = 1000

// maxPageSize bounds the limit parameter, as real APIs do.
const maxPageSize = 10000

// epoch is the updated_at of record 0; updated_at of record i is epoch +
// i seconds, so it strictly increases with the id, as an API sorted by
// updated_at returns it.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// dataset is n records rendered once as JSON, joined by commas in one
// buffer, so that any page (any window of records) is a sub-slice of it
// and serving costs no rendering at all.
type dataset struct {
	buf []byte
	// off[i] is where record i starts; off[n] is len(buf)+1, as if a comma
	// followed the last record, so record i is buf[off[i]:off[i+1]-1].
	off []int
}

// newDataset renders n records deterministically: the same n always gives
// the same bytes, and the first m records of any two datasets are equal.
func newDataset(n int) *dataset {
	d := &dataset{off: make([]int, n+1)}
	d.buf = make([]byte, 0, n*300)
	for i := range n {
		if i > 0 {
			d.buf = append(d.buf, ',')
		}
		d.off[i] = len(d.buf)
		d.buf = appendRecord(d.buf, i)
	}
	d.off[n] = len(d.buf) + 1
	return d
}

// Len returns the number of records.
func (d *dataset) Len() int { return len(d.off) - 1 }

// records returns records [from, to) as JSON array elements.
func (d *dataset) records(from, to int) []byte {
	if from >= to {
		return nil
	}
	return d.buf[d.off[from] : d.off[to]-1]
}

// meanRecordSize returns the average size of a record in bytes.
func (d *dataset) meanRecordSize() float64 {
	if d.Len() == 0 {
		return 0
	}
	return float64(len(d.buf)-(d.Len()-1)) / float64(d.Len())
}

// mix is SplitMix64: cheap, deterministic pseudo-random bits per record.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

var (
	firstNames = []string{"Ada", "Grace", "Linus", "Meg", "Dennis", "Barbara", "Ken", "Frances", "Edsger", "Radia", "Donald", "Hedy", "Alan", "Kathy", "Nick", "Sophie"}
	lastNames  = []string{"Lovelace", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen", "Dijkstra", "Perlman", "Knuth", "Lamarr", "Turing", "Johnson", "Wirth", "Wilson"}
	statuses   = []string{"active", "active", "active", "pending", "suspended", "closed"}
	countries  = []string{"DE", "US", "FR", "GB", "NL", "SE", "JP", "BR", "IN", "CA", "ES", "IT"}
	sources    = []string{"web", "ios", "app", "api", "csv"}
	tags       = []string{"vip", "beta", "b2b", "trial", "new", "eu"}
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// updatedAt returns the updated_at of record i.
func updatedAt(i int) time.Time {
	return epoch.Add(time.Duration(i) * time.Second)
}

// quantity returns the quantity field of record i.
func quantity(i int) int64 { return int64((mix(uint64(i)+1)>>32)%100) + 1 }

// sumQuantity returns the sum of the quantity fields of the first n
// records, for checking what landed in the database.
func sumQuantity(n int) int64 {
	var s int64
	for i := range n {
		s += quantity(i)
	}
	return s
}

// appendRecord appends record i (id i+1). The shape is a typical SaaS
// "account": 12 fields, ints, strings, an enum, a float, a bool, two RFC
// 3339 timestamps and a nested object.
func appendRecord(b []byte, i int) []byte {
	id := int64(i) + 1
	r := mix(uint64(id))
	r2 := mix(r)
	first, last := firstNames[r%16], lastNames[(r>>4)%16]

	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"uuid":"`...)
	// A UUID in the 22-character base62 form ("short UUID") many APIs use.
	for k := range 22 {
		x := r
		if k >= 11 {
			x = r2
		}
		b = append(b, base62[(x>>(6*(k%11)))%62])
	}
	b = append(b, `","email":"`...)
	b = appendLower(b, first[:1])
	b = append(b, '.')
	b = appendLower(b, last)
	b = append(b, `@example.io","name":"`...)
	b = append(b, first...)
	b = append(b, ' ')
	b = append(b, last...)
	b = append(b, `","status":"`...)
	b = append(b, statuses[(r>>8)%uint64(len(statuses))]...)
	cents := int64((r >> 12) % 100000)
	b = append(b, `","amount":`...)
	b = strconv.AppendInt(b, cents/100, 10)
	b = append(b, '.', byte('0'+cents/10%10), byte('0'+cents%10))
	b = append(b, `,"quantity":`...)
	b = strconv.AppendInt(b, quantity(i), 10)
	b = append(b, `,"active":`...)
	b = strconv.AppendBool(b, (r>>40)%4 != 0)
	created := epoch.Add(time.Duration(i) * time.Second).Add(-time.Duration((r>>42)%(90*24*3600)) * time.Second)
	b = append(b, `,"created_at":"`...)
	b = created.AppendFormat(b, time.RFC3339)
	b = append(b, `","updated_at":"`...)
	b = updatedAt(i).AppendFormat(b, time.RFC3339)
	b = append(b, `","country":"`...)
	b = append(b, countries[(r2>>8)%uint64(len(countries))]...)
	b = append(b, `","meta":{"source":"`...)
	b = append(b, sources[(r2>>16)%uint64(len(sources))]...)
	b = append(b, `","tags":[`...)
	for k := range int((r2 >> 24) % 3) {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, tags[(r2>>(28+4*k))%uint64(len(tags))]...)
		b = append(b, '"')
	}
	score := (r2 >> 40) % 100
	b = append(b, `],"score":0.`...)
	b = append(b, byte('0'+score/10), byte('0'+score%10))
	b = append(b, `}}`...)
	return b
}

func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// api serves the first n records of a dataset at GET /accounts:
//
//	?limit=1000            page size (default 1000, at most 10000)
//	?cursor=K              opaque cursor from the previous page's next_cursor
//	?updated_since=T       RFC 3339: only records with updated_at >= T
//
// as {"data":[…],"has_more":true,"next_cursor":"K"}, records ordered by
// updated_at (and id). With a token, requests need "Authorization: Bearer
// token". Each response is three writes of pre-rendered bytes.
type api struct {
	data  *dataset
	n     int
	token string
}

// httpError is an error with the status to answer it with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := a.serve(w, r); err != nil {
		status := http.StatusInternalServerError
		var he *httpError
		if errors.As(err, &he) {
			status = he.status
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, "{\"error\":%q}\n", err.Error())
	}
}

func (a *api) serve(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path != "/accounts" {
		return &httpError{http.StatusNotFound, "no such resource"}
	}
	if a.token != "" {
		got := r.Header.Get("Authorization")
		if subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+a.token)) != 1 {
			return &httpError{http.StatusUnauthorized, "missing or wrong bearer token"}
		}
	}
	q := r.URL.Query()
	limit := pageSize
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > maxPageSize {
			return &httpError{http.StatusBadRequest, fmt.Sprintf("limit must be 1..%d", maxPageSize)}
		}
		limit = v
	}
	from := 0
	if s := q.Get("cursor"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > a.n {
			return &httpError{http.StatusBadRequest, "bad cursor"}
		}
		from = v
	} else if s := q.Get("updated_since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return &httpError{http.StatusBadRequest, "updated_since must be an RFC 3339 timestamp"}
		}
		from = sort.Search(a.n, func(i int) bool { return !updatedAt(i).Before(t) })
	}
	to := min(from+limit, a.n)
	var tail []byte
	if to < a.n {
		tail = strconv.AppendInt([]byte(`],"has_more":true,"next_cursor":"`), int64(to), 10)
		tail = append(tail, "\"}"...)
	} else {
		tail = []byte(`],"has_more":false,"next_cursor":null}`)
	}
	const head = `{"data":[`
	body := a.data.records(from, to)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(head)+len(body)+len(tail)))
	io.WriteString(w, head)
	w.Write(body)
	w.Write(tail)
	return nil
}

// startAPI serves the first n records of data on 127.0.0.1 until the
// returned stop function is called.
func startAPI(data *dataset, n int, token string) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: &api{data: data, n: n, token: token}, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String(), func() {
		srv.Close()
		<-done
	}, nil
}

// serveOnly runs the API in the foreground for manual runs and profiling:
// it prints "URL TOKEN" on one line and serves until interrupted
// (SIGINT or SIGTERM).
func serveOnly(n int, token string) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	data := newDataset(n)
	url, stop, err := startAPI(data, n, token)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("%s %s\n", url, token)
	fmt.Fprintf(os.Stderr, "serving %d records (%.0f bytes each) at %s/accounts (bearer token %s); Ctrl-C stops\n", n, data.meanRecordSize(), url, token)
	<-ctx.Done()
	return nil
}
