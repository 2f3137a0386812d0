package shopapi

import (
	"maps"
	"slices"
	"time"
)

// Customer is one record of GET /v1/customers. Its JSON encoding is the
// wire format: times are RFC 3339 in UTC with second precision, Tags is
// never null (an empty list is []), and MarketingOptIn is null for
// customers who never answered.
type Customer struct {
	ID             int       `json:"id"`
	Email          string    `json:"email"`
	Name           string    `json:"name"`
	Country        string    `json:"country"` // ISO 3166-1 alpha-2
	IsActive       bool      `json:"is_active"`
	LifetimeValue  float64   `json:"lifetime_value"` // at most two decimals
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	Address        Address   `json:"address"`
	Tags           []string  `json:"tags"`
	MarketingOptIn *bool     `json:"marketing_opt_in"`
}

// Address is a customer's postal address. PostalCode is a string because
// many have a leading zero ("01067") or letters ("SW1A 2AA").
type Address struct {
	Street     string `json:"street"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
}

// Product is one record of GET /v1/products. Attributes holds two or three
// category-dependent keys, so the set of keys varies from product to
// product; values are strings, booleans or float64 numbers (whole ones),
// the types encoding/json decodes them to.
type Product struct {
	ID         string         `json:"id"` // "prod_0001"
	Name       string         `json:"name"`
	SKU        string         `json:"sku"`
	Price      float64        `json:"price"`    // at most two decimals
	Currency   string         `json:"currency"` // "EUR" or "USD"
	Stock      int            `json:"stock"`
	Active     bool           `json:"active"`
	Attributes map[string]any `json:"attributes"`
	UpdatedAt  time.Time      `json:"updated_at"`
}

// Order is one record of GET /v1/customers/{id}/orders. Total is a decimal
// string ("123.45") so the amount stays exact; it equals the sum of
// Quantity × UnitPrice over Items. All items share the order's currency.
type Order struct {
	ID         string      `json:"id"` // "ord_000001"; numbered in creation order
	CustomerID int         `json:"customer_id"`
	Status     string      `json:"status"` // "pending", "paid", "shipped" or "refunded"
	Total      string      `json:"total"`
	Currency   string      `json:"currency"`
	Items      []OrderItem `json:"items"`
	CreatedAt  time.Time   `json:"created_at"`
	UpdatedAt  time.Time   `json:"updated_at"`
}

// OrderItem is one line of an order. UnitPrice is a JSON number with at
// most two decimals: the product's price when the order was generated.
type OrderItem struct {
	ProductID string  `json:"product_id"`
	Quantity  int     `json:"quantity"`
	UnitPrice float64 `json:"unit_price"`
}

// clone returns a copy of c that shares no memory with it.
func (c Customer) clone() Customer {
	c.Tags = slices.Clone(c.Tags)
	if c.MarketingOptIn != nil {
		v := *c.MarketingOptIn
		c.MarketingOptIn = &v
	}
	return c
}

// clone returns a copy of p that shares no memory with it. Attribute
// values are scalars, so a shallow map copy suffices.
func (p Product) clone() Product {
	p.Attributes = maps.Clone(p.Attributes)
	return p
}

// clone returns a copy of o that shares no memory with it.
func (o Order) clone() Order {
	o.Items = slices.Clone(o.Items)
	return o
}
