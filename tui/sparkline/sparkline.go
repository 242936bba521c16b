// Package sparkline draws a series of values as one line of block
// characters. It is pure.
package sparkline

import "strings"

var bars = []rune("▁▂▃▄▅▆▇█")

// Render draws the last width values scaled to top (values ≥ top draw a
// full block; top ≤ 0 scales to the largest value). Missing history is
// padded with spaces on the left so the newest sample is always rightmost.
func Render(values []float64, width int, top float64) string {
	if width <= 0 {
		return ""
	}
	if len(values) > width {
		values = values[len(values)-width:]
	}
	if top <= 0 {
		for _, v := range values {
			top = max(top, v)
		}
	}
	var sb strings.Builder
	sb.WriteString(strings.Repeat(" ", width-len(values)))
	for _, v := range values {
		i := 0
		if top > 0 {
			i = int(v / top * float64(len(bars)-1))
		}
		sb.WriteRune(bars[max(0, min(i, len(bars)-1))])
	}
	return sb.String()
}

// Ring keeps the last N samples of a series.
type Ring struct {
	vals []float64
	n    int
}

// NewRing returns a ring of n samples.
func NewRing(n int) *Ring { return &Ring{n: n} }

// Add appends a sample, dropping the oldest when full.
func (r *Ring) Add(v float64) {
	r.vals = append(r.vals, v)
	if len(r.vals) > r.n {
		r.vals = append(r.vals[:0:0], r.vals[len(r.vals)-r.n:]...)
	}
}

// Values returns the samples, oldest first.
func (r *Ring) Values() []float64 { return r.vals }

// Last returns the newest sample, 0 when empty.
func (r *Ring) Last() float64 {
	if len(r.vals) == 0 {
		return 0
	}
	return r.vals[len(r.vals)-1]
}
