package shopapi

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The generator draws every value from math/rand/v2's PCG source directly:
// PCG's output is specified, unlike the helper methods of rand.Rand, so a
// seed yields the same data on every Go release. Customers, products and
// orders use separate streams, so changing Options.Products does not
// change the customers.
const (
	streamCustomers = 0xc057
	streamProducts  = 0x9a0d
	streamOrders    = 0x0a0e
)

// rng is a deterministic pseudo-random generator.
type rng struct{ src *rand.PCG }

func newRNG(seed int64, stream uint64) *rng {
	return &rng{src: rand.NewPCG(uint64(seed), stream)}
}

// intn returns a value in [0, n); n must be positive. The modulo bias is
// negligible for the small n used here.
func (g *rng) intn(n int) int { return int(g.src.Uint64() % uint64(n)) }

// between returns a value in [lo, hi].
func (g *rng) between(lo, hi int) int { return lo + g.intn(hi-lo+1) }

// percent reports true with probability p/100.
func (g *rng) percent(p int) bool { return g.intn(100) < p }

func pick[T any](g *rng, xs []T) T { return xs[g.intn(len(xs))] }

// Every generated timestamp lies in [dataStart, dataEnd].
var (
	dataStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	dataEnd   = time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC)
)

// timeBetween returns a whole second in [lo, hi].
func (g *rng) timeBetween(lo, hi time.Time) time.Time {
	span := int(hi.Unix() - lo.Unix())
	return time.Unix(lo.Unix()+int64(g.between(0, span)), 0).UTC()
}

// later returns t plus between minD and maxD seconds, capped at dataEnd.
func (g *rng) later(t time.Time, minD, maxD time.Duration) time.Time {
	u := t.Add(time.Duration(g.between(int(minD/time.Second), int(maxD/time.Second))) * time.Second)
	if u.After(dataEnd) {
		u = dataEnd
	}
	return u
}

// centsToFloat turns cents into the float64 nearest to the decimal amount,
// which encoding/json prints with at most two decimals.
func centsToFloat(c int64) float64 { return float64(c) / 100 }

// formatCents prints cents as an exact decimal string: 12345 → "123.45".
func formatCents(c int64) string {
	frac := strconv.FormatInt(100+c%100, 10) // "100".."199": keeps the leading zero
	return strconv.FormatInt(c/100, 10) + "." + frac[1:]
}

type country struct {
	code        string
	streetFmt   string // %[1]s is the street name, %[2]d the house number
	streets     []string
	cities      []string
	postalCodes []string // per city: # is a digit, @ an upper-case letter
}

var countries = []country{
	{"DE", "%[1]s %[2]d", []string{"Hauptstraße", "Schillerstraße", "Gartenweg", "Bahnhofstraße"},
		[]string{"Berlin", "Hamburg", "München", "Leipzig", "Dresden"}, []string{"10###", "2####", "8####", "04###", "01###"}},
	{"US", "%[2]d %[1]s", []string{"Main St", "Oak Avenue", "Maple Drive", "Elm Street"},
		[]string{"New York", "Boston", "Austin", "Seattle", "Newark"}, []string{"100##", "021##", "787##", "981##", "071##"}},
	{"FR", "%[2]d %[1]s", []string{"rue de la Paix", "avenue Victor Hugo", "boulevard Saint-Michel"},
		[]string{"Paris", "Lyon", "Marseille", "Nice"}, []string{"750##", "6900#", "130##", "06###"}},
	{"GB", "%[2]d %[1]s", []string{"High Street", "Station Road", "Church Lane"},
		[]string{"London", "Manchester", "Edinburgh"}, []string{"SW# #@@", "M# #@@", "EH# #@@"}},
	{"NL", "%[1]s %[2]d", []string{"Keizersgracht", "Dorpsstraat", "Kerkstraat"},
		[]string{"Amsterdam", "Utrecht"}, []string{"10## @@", "35## @@"}},
	{"ES", "%[1]s, %[2]d", []string{"Calle Mayor", "Gran Vía", "Avenida de la Constitución"},
		[]string{"Madrid", "Barcelona", "Sevilla"}, []string{"280##", "080##", "410##"}},
	{"IT", "%[1]s %[2]d", []string{"Via Roma", "Corso Italia", "Via Garibaldi"},
		[]string{"Roma", "Milano", "Torino"}, []string{"001##", "201##", "101##"}},
	{"PL", "%[1]s %[2]d", []string{"ul. Marszałkowska", "ul. Długa", "ul. Polna"},
		[]string{"Warszawa", "Kraków", "Gdańsk"}, []string{"00-###", "31-###", "80-###"}},
	{"SE", "%[1]s %[2]d", []string{"Drottninggatan", "Storgatan"},
		[]string{"Stockholm", "Göteborg"}, []string{"11# ##", "41# ##"}},
	{"JP", "%[1]s %[2]d-1", []string{"Chiyoda 1-chome", "Shibuya 2-chome"},
		[]string{"Tokyo", "Osaka"}, []string{"100-00##", "530-00##"}},
	{"BR", "%[1]s, %[2]d", []string{"Avenida Paulista", "Rua Augusta"},
		[]string{"São Paulo", "Rio de Janeiro"}, []string{"01310-###", "20040-###"}},
	{"CA", "%[2]d %[1]s", []string{"King Street West", "Yonge Street"},
		[]string{"Toronto", "Vancouver"}, []string{"M5V #@#", "V6B #@#"}},
}

var (
	firstNames = []string{"Anna", "Lukas", "Zoë", "Mia", "Noah", "Léa", "Jonas", "Emma", "Mateo", "Sofía",
		"Oliver", "Chloé", "Liam", "Ingrid", "Björn", "Amélie", "Hiroshi", "Yuki", "Carlos", "Ana",
		"Piotr", "Zofia", "Grace", "Ethan", "Fatima", "Omar", "Elif", "Jan", "Marta", "Søren"}
	lastNames = []string{"Müller", "Schmidt", "Dubois", "Martin", "Smith", "Johnson", "García", "Fernández",
		"Rossi", "Bianchi", "Jansen", "de Vries", "Andersson", "Nilsson", "Kowalski", "Nowak", "Tanaka",
		"Suzuki", "Silva", "Santos", "O'Brien", "Murphy", "Brown", "Taylor", "Lefèvre", "Weiß", "Çelik", "Yılmaz"}
	emailDomains = []string{"example.com", "example.org", "example.net", "mail.example.com"}
	customerTags = []string{"vip", "newsletter", "wholesale", "b2b", "beta", "churn-risk", "student", "loyalty"}
)

// fillPattern replaces # with a random digit and @ with a random letter.
func (g *rng) fillPattern(p string) string {
	var b strings.Builder
	for _, r := range p {
		switch r {
		case '#':
			b.WriteByte(byte('0' + g.intn(10)))
		case '@':
			b.WriteByte(byte('A' + g.intn(26)))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// emailLocal folds a name to the lower-case ASCII an email address uses:
// "Zoë" → "zoe", "Weiß" → "weiss", "de Vries" → "devries".
func emailLocal(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r)
		case strings.ContainsRune("àáâãåä", r):
			b.WriteByte('a')
		case strings.ContainsRune("çć", r):
			b.WriteByte('c')
		case strings.ContainsRune("èéêë", r):
			b.WriteByte('e')
		case strings.ContainsRune("ìíîïı", r):
			b.WriteByte('i')
		case r == 'ł':
			b.WriteByte('l')
		case r == 'ñ' || r == 'ń':
			b.WriteByte('n')
		case strings.ContainsRune("òóôõöø", r):
			b.WriteByte('o')
		case r == 'ß':
			b.WriteString("ss")
		case r == 'ş' || r == 'ś':
			b.WriteByte('s')
		case strings.ContainsRune("ùúûü", r):
			b.WriteByte('u')
		}
	}
	return b.String()
}

func generateCustomers(seed int64, n int) []Customer {
	g := newRNG(seed, streamCustomers)
	out := make([]Customer, n)
	used := make(map[string]bool, n)
	for i := range out {
		first, last := pick(g, firstNames), pick(g, lastNames)
		local := emailLocal(first) + "." + emailLocal(last)
		domain := pick(g, emailDomains)
		email := local + "@" + domain
		for k := 2; used[email]; k++ {
			email = fmt.Sprintf("%s%d@%s", local, k, domain)
		}
		used[email] = true

		co := pick(g, countries)
		ci := g.intn(len(co.cities))
		created := g.timeBetween(dataStart, dataEnd)
		updated := created
		if g.percent(70) {
			updated = g.timeBetween(created, dataEnd)
		}
		tags := []string{}
		if g.percent(55) {
			for _, j := range g.perm(len(customerTags))[:g.between(1, 3)] {
				tags = append(tags, customerTags[j])
			}
		}
		var optIn *bool
		if !g.percent(15) {
			v := g.percent(40)
			optIn = &v
		}
		ltv := int64(0)
		if g.percent(85) {
			ltv = int64(g.between(500, 500000))
		}
		out[i] = Customer{
			ID:            i + 1,
			Email:         email,
			Name:          first + " " + last,
			Country:       co.code,
			IsActive:      g.percent(90),
			LifetimeValue: centsToFloat(ltv),
			CreatedAt:     created,
			UpdatedAt:     updated,
			Address: Address{
				Street:     fmt.Sprintf(co.streetFmt, pick(g, co.streets), g.between(1, 240)),
				City:       co.cities[ci],
				PostalCode: g.fillPattern(co.postalCodes[ci]),
			},
			Tags:           tags,
			MarketingOptIn: optIn,
		}
	}
	return out
}

// perm returns a random permutation of [0, n).
func (g *rng) perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		j := g.intn(i + 1)
		p[i] = p[j]
		p[j] = i
	}
	return p
}

type category struct {
	sku   string
	nouns []string
	attrs []string // attribute keys; each product carries two or three of them
}

var (
	categories = []category{
		{"APP", []string{"T-Shirt", "Hoodie", "Socks", "Cap", "Rain Jacket"}, []string{"color", "size", "material"}},
		{"KIT", []string{"Mug", "Teapot", "Cutting Board", "Water Bottle"}, []string{"color", "capacity_ml", "dishwasher_safe"}},
		{"ELE", []string{"Headphones", "USB-C Charger", "Speaker", "Keyboard"}, []string{"color", "wireless", "warranty_years", "weight_grams"}},
		{"BOK", []string{"Notebook", "Cookbook", "Field Guide"}, []string{"author", "pages", "language"}},
		{"COF", []string{"Espresso Beans", "Filter Coffee", "Cold Brew Kit"}, []string{"origin", "roast", "weight_grams"}},
	}
	adjectives = []string{"Classic", "Organic", "Vintage", "Everyday", "Premium", "Recycled", "Compact", "Deluxe"}
)

// attribute returns a value for the attribute key: a string, a bool or a
// whole float64 (the type encoding/json decodes numbers to).
func (g *rng) attribute(key string) any {
	switch key {
	case "color":
		return pick(g, []string{"black", "white", "navy", "forest green", "sand"})
	case "size":
		return pick(g, []string{"XS", "S", "M", "L", "XL"})
	case "material":
		return pick(g, []string{"cotton", "wool", "linen", "recycled polyester"})
	case "capacity_ml":
		return pick(g, []float64{250, 330, 500, 750, 1000})
	case "dishwasher_safe", "wireless":
		return g.percent(60)
	case "warranty_years":
		return float64(g.between(1, 3))
	case "weight_grams":
		return pick(g, []float64{250, 500, 1000})
	case "author":
		return pick(g, firstNames) + " " + pick(g, lastNames)
	case "pages":
		return float64(g.between(64, 480))
	case "language":
		return pick(g, []string{"en", "de", "fr", "es"})
	case "origin":
		return pick(g, []string{"Ethiopia", "Colombia", "Brazil", "Guatemala", "Kenya"})
	case "roast":
		return pick(g, []string{"light", "medium", "dark"})
	}
	panic("shopapi: unknown attribute " + key)
}

func generateProducts(seed int64, n int) []Product {
	g := newRNG(seed, streamProducts)
	out := make([]Product, n)
	width := idWidth(n, 4)
	for i := range out {
		cat := pick(g, categories)
		attrs := make(map[string]any)
		perm := g.perm(len(cat.attrs))
		for _, j := range perm[:g.between(2, 3)] {
			attrs[cat.attrs[j]] = g.attribute(cat.attrs[j])
		}
		currency := "EUR"
		if g.percent(30) {
			currency = "USD"
		}
		stock := 0
		if g.percent(90) {
			stock = g.between(1, 500)
		}
		out[i] = Product{
			ID:         fmt.Sprintf("prod_%0*d", width, i+1),
			Name:       pick(g, adjectives) + " " + pick(g, cat.nouns),
			SKU:        fmt.Sprintf("%s-%04d", cat.sku, i+1),
			Price:      centsToFloat(int64(g.between(199, 29999))),
			Currency:   currency,
			Stock:      stock,
			Active:     g.percent(90),
			Attributes: attrs,
			UpdatedAt:  g.timeBetween(dataStart, dataEnd),
		}
	}
	return out
}

// generateOrders gives each customer 0 to 8 orders of 1 to 4 items and
// numbers all orders by creation time, so within a customer the newest
// order has the highest ID.
func generateOrders(seed int64, customers []Customer, products []Product) []Order {
	if len(products) == 0 {
		return nil
	}
	g := newRNG(seed, streamOrders)
	byCurrency := make(map[string][]int)
	for i, p := range products {
		byCurrency[p.Currency] = append(byCurrency[p.Currency], i)
	}
	var out []Order
	for _, c := range customers {
		for range g.intn(9) {
			created := g.timeBetween(c.CreatedAt, dataEnd)
			first := products[g.intn(len(products))]
			same := byCurrency[first.Currency]
			var total int64
			items := make([]OrderItem, g.between(1, 4))
			for k := range items {
				p := first
				if k > 0 {
					p = products[pick(g, same)]
				}
				qty := 1
				if g.percent(30) {
					qty = g.between(2, 5)
				}
				cents := int64(math.Round(p.Price * 100))
				total += cents * int64(qty)
				items[k] = OrderItem{ProductID: p.ID, Quantity: qty, UnitPrice: p.Price}
			}
			var status string
			updated := created
			switch r := g.intn(100); {
			case r < 10:
				status = "pending"
			case r < 35:
				status = "paid"
				updated = g.later(created, time.Minute, 48*time.Hour)
			case r < 90:
				status = "shipped"
				updated = g.later(created, 24*time.Hour, 10*24*time.Hour)
			default:
				status = "refunded"
				updated = g.later(created, 10*24*time.Hour, 40*24*time.Hour)
			}
			out = append(out, Order{
				CustomerID: c.ID,
				Status:     status,
				Total:      formatCents(total),
				Currency:   first.Currency,
				Items:      items,
				CreatedAt:  created,
				UpdatedAt:  updated,
			})
		}
	}
	// Number by creation time; orders created in the same second keep
	// generation order. Sorting indexes is much cheaper than moving orders.
	order := make([]int, len(out))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(out[a].CreatedAt.Compare(out[b].CreatedAt), cmp.Compare(a, b))
	})
	sorted := make([]Order, len(out))
	width := idWidth(len(out), 6)
	for i, j := range order {
		sorted[i] = out[j]
		sorted[i].ID = fmt.Sprintf("ord_%0*d", width, i+1)
	}
	return sorted
}

// idWidth returns how many digits the numbers up to n need, at least
// least, so that IDs padded to it sort as strings in numeric order.
func idWidth(n, least int) int { return max(least, len(strconv.Itoa(n))) }
